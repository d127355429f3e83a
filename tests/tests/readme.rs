//! Guards against the README drifting from the binaries (issue 16: `$TOKEN` never defined, a
//! packaged agent that could not read its CA, commands that failed as written). Every command
//! block of README.md marked `<!-- readme-test -->` is run as written, in order, in one bash
//! shell, in an empty directory: agent, central and the Odoo simulator are started by the
//! README's own commands, on loopback ports the OS chose (the README takes them from
//! `AGENT_ADDR`, `CENTRAL_ADDR`, `ADMIN_ADDR` and `ODOO_ADDR`).
//!
//! Two things differ from a person following the README: the binaries on `PATH` are the ones
//! this test run built (the README's `cargo build --release` lines are answered by a `cargo`
//! function that builds nothing), and a shell trap stops what the blocks left running.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail, ensure};

const MARK: &str = "<!-- readme-test -->";
/// The whole walk-through: four processes, two syncs and a merge, with a minute for each wait
/// the README itself bounds.
const TIMEOUT: Duration = Duration::from_secs(240);

/// The marked blocks of `markdown`, in order: a marked line must be followed by a ```sh fence.
fn marked_blocks(markdown: &str) -> anyhow::Result<Vec<String>> {
    let mut lines = markdown.lines().enumerate();
    let mut blocks = Vec::new();
    while let Some((number, line)) = lines.next() {
        if line.trim() != MARK {
            continue;
        }
        match lines.next() {
            Some((_, "```sh")) => {}
            other => bail!(
                "README.md line {}: {MARK} must be followed by a ```sh block, not {other:?}",
                number + 1
            ),
        }
        let mut block = String::new();
        loop {
            match lines.next() {
                Some((_, "```")) => break,
                Some((_, line)) => {
                    block.push_str(line);
                    block.push('\n');
                }
                None => bail!("README.md line {}: the block never ends", number + 1),
            }
        }
        blocks.push(block);
    }
    Ok(blocks)
}

/// Loopback addresses of ports the OS picked. They are released just before the script binds
/// them; a port taken in between fails the run loudly (the daemon cannot bind), never silently.
fn free_addresses(n: usize) -> anyhow::Result<Vec<String>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .context("cannot bind a loopback port")?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.to_string()))
        .collect()
}

/// A directory holding the binaries the README calls, as this test run built them.
fn bin_dir(dir: &Path) -> anyhow::Result<PathBuf> {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin)?;
    let binaries = [
        ("tally-agent", tally_tests::agent_binary()?),
        ("tally-central", tally_tests::central::central_binary()?),
        ("tally-odoo-sim", tally_tests::odoo_sim_binary()?),
    ];
    for (name, path) in binaries {
        std::os::unix::fs::symlink(&path, bin.join(name))
            .with_context(|| format!("cannot link {}", path.display()))?;
    }
    Ok(bin)
}

const PRELUDE: &str = r#"set -euo pipefail
# The binaries on PATH are this test run's build: the README's builds have nothing to do.
cargo() {
  if [ "$1" != build ]; then echo "the README runs cargo $*, which this test does not" >&2; return 1; fi
}
# Whatever a failing block left running is stopped with the shell.
trap 'kill $(jobs -p) 2>/dev/null || true; wait' EXIT
"#;

#[tokio::test]
async fn the_readme_command_blocks_run_as_written() -> anyhow::Result<()> {
    let readme_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
    let readme = std::fs::read_to_string(readme_path).context("reading README.md")?;
    let blocks = marked_blocks(&readme)?;
    ensure!(blocks.len() >= 5, "only {} marked blocks", blocks.len());
    ensure!(
        std::process::Command::new("curl")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success()),
        "the README's commands need curl"
    );

    let dir = tempfile::tempdir()?;
    let bin = bin_dir(dir.path())?;
    let work = dir.path().join("work");
    std::fs::create_dir(&work)?;
    let mut script = String::from(PRELUDE);
    for (i, block) in blocks.iter().enumerate() {
        script.push_str(&format!("echo '### README block {}' >&2\n", i + 1));
        script.push_str(block);
    }
    let log_path = dir.path().join("readme.log");
    let log = std::fs::File::create(&log_path)?;

    let addresses = free_addresses(4)?;
    let path = std::env::join_paths(std::iter::once(bin).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))?;
    let mut command = tokio::process::Command::new("bash");
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("TALLY_") {
            command.env_remove(name);
        }
    }
    let mut child = command
        .arg("-c")
        .arg(&script)
        .current_dir(&work)
        .env("PATH", path)
        .env("AGENT_ADDR", &addresses[0])
        .env("CENTRAL_ADDR", &addresses[1])
        .env("ADMIN_ADDR", &addresses[2])
        .env("ODOO_ADDR", &addresses[3])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own process group, which holds the daemons the blocks start in the background.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .context("cannot run bash")?;
    let status = match tokio::time::timeout(TIMEOUT, child.wait()).await {
        Ok(status) => Some(status?),
        Err(_) => {
            // The trap does not run on SIGKILL: the daemons go with the whole group.
            if let Some(pid) = child
                .id()
                .and_then(|id| rustix::process::Pid::from_raw(id as i32))
            {
                let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
            }
            let _ = child.kill().await;
            None
        }
    };
    let output = std::fs::read_to_string(&log_path).unwrap_or_default();
    match status {
        Some(status) if status.success() => {}
        Some(status) => bail!("the README's blocks failed ({status}):\n{output}"),
        None => bail!(
            "the README's blocks did not finish within {} s:\n{output}",
            TIMEOUT.as_secs()
        ),
    }
    println!("{output}");
    // What the walk-through says it shows.
    for expected in [
        r#""id":"gun3-000123","seq":1"#,
        r#""merged_events":2"#,
        r#""parked_events":1"#,
        "tally-odoo-sim (Odoo 17 simulator, not a real Odoo)",
        "discarded 1 parked events of SKU-9 in WH",
        "in picking tally-wh1-agent-",
    ] {
        ensure!(output.contains(expected), "no {expected:?} in:\n{output}");
    }
    Ok(())
}

#[test]
fn blocks_are_found_and_a_mark_without_a_block_is_an_error() {
    let text = "a\n<!-- readme-test -->\n```sh\necho one\necho two\n```\n```sh\nnot marked\n```\n";
    assert_eq!(marked_blocks(text).unwrap(), ["echo one\necho two\n"]);
    assert!(marked_blocks("<!-- readme-test -->\ntext\n").is_err());
    assert!(marked_blocks("<!-- readme-test -->\n```sh\nnever ends\n").is_err());
}
