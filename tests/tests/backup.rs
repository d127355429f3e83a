//! Backups of central's store (issue 14, item 5): a running central's backup through the CLI
//! and its admin API, restored by the CLI while central is stopped, with the replaced store
//! kept aside. (Unusable backups are refused in central/tests/backup.rs.)

use std::process::Command;

use tally_central::store::backup::{BEFORE_RESTORE_FILE, restore};
use tally_central::store::{STORE_FORMAT, Store};
use tally_tests::central::CentralProcess;
use tally_tests::central_binary;

/// `tally-central` run with `args`, without the `TALLY_*` variables of the test's environment.
fn central_cli(args: &[&str]) -> std::process::Output {
    let mut command = Command::new(central_binary().unwrap());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("TALLY_") {
            command.env_remove(name);
        }
    }
    command.args(args).output().unwrap()
}

#[tokio::test]
async fn a_running_centrals_backup_restores_while_it_is_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("central");
    let central = CentralProcess::builder(&data).spawn().await.unwrap();
    central.admin().add_agent("wh-1", "WH").await.unwrap();
    let backup = dir.path().join("central.backup");
    central
        .cli("backup", &["--to", backup.to_str().unwrap()])
        .await
        .unwrap();
    // Restoring under a running central is refused, and changes nothing.
    let running = central_cli(&[
        "restore",
        "--data-dir",
        data.to_str().unwrap(),
        "--from",
        backup.to_str().unwrap(),
    ]);
    assert_eq!(running.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&running.stderr).contains("stop central before restoring"),
        "{}",
        String::from_utf8_lossy(&running.stderr)
    );
    central.admin().add_agent("wh-2", "WH2").await.unwrap();
    central.terminate().await.unwrap();

    let output = central_cli(&[
        "restore",
        "--data-dir",
        data.to_str().unwrap(),
        "--from",
        backup.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(data.join(BEFORE_RESTORE_FILE).exists());
    let store = Store::open(&data).unwrap();
    let agents: Vec<_> = store
        .list_agents()
        .unwrap()
        .into_iter()
        .map(|a| a.agent_id)
        .collect();
    assert_eq!(agents, ["wh-1"], "the store as it was at the backup");
    drop(store);

    // A stopped central's backup is made by the CLI on the store itself.
    let offline = dir.path().join("offline.backup");
    let output = central_cli(&[
        "backup",
        "--data-dir",
        data.to_str().unwrap(),
        "--to",
        offline.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let fresh = dir.path().join("fresh");
    std::fs::create_dir_all(&fresh).unwrap();
    let restored = restore(&fresh, &offline).unwrap();
    assert_eq!(restored.backup_version, STORE_FORMAT.current);
    assert_eq!(restored.previous, None);
    assert_eq!(Store::open(&fresh).unwrap().list_agents().unwrap().len(), 1);
}
