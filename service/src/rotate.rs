//! A log file that rotates by size, for services without a journal to log to (the Windows
//! service logs to `%ProgramData%\Tally\logs`).
//!
//! `tally-agent.log` is written until the next write would take it past `max_bytes`; then it
//! becomes `tally-agent.log.1`, the older ones move up a number (`.1` → `.2` …) and the oldest,
//! `.{keep}`, is deleted. A write is never split across two files, so a log line (one write of
//! the tracing formatter) stays whole. The files are closed before they are renamed, which
//! Windows requires.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The writer; wrap it in a `Mutex` to hand it to `tracing_subscriber` (see
/// [`crate::init_logging_to`]).
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    keep: usize,
    file: Option<File>,
    written: u64,
}

impl RotatingFile {
    /// Opens `path` for appending (creating it and its directory, private to the owner),
    /// keeping `keep` rotated files (at least one) of at most `max_bytes` each.
    pub fn open(path: &Path, max_bytes: u64, keep: usize) -> io::Result<RotatingFile> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::create_private_dir(dir)?;
        }
        let mut rotating = RotatingFile {
            path: path.to_owned(),
            max_bytes: max_bytes.max(1),
            keep: keep.max(1),
            file: None,
            written: 0,
        };
        rotating.open_current()?;
        Ok(rotating)
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The name of the `n`th rotated file (`tally-agent.log.n`).
    pub fn rotated(&self, n: usize) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    fn open_current(&mut self) -> io::Result<()> {
        crate::create_private_file(&self.path)?;
        let file = OpenOptions::new().append(true).open(&self.path)?;
        self.written = file.metadata()?.len();
        self.file = Some(file);
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        if let Some(file) = self.file.take() {
            file.sync_all()?;
        }
        for n in (1..self.keep).rev() {
            rename_if_present(&self.rotated(n), &self.rotated(n + 1))?;
        }
        // `.{keep}` is replaced (Windows' rename refuses an existing target: remove it first).
        remove_if_present(&self.rotated(1))?;
        std::fs::rename(&self.path, self.rotated(1))?;
        self.open_current()
    }
}

fn rename_if_present(from: &Path, to: &Path) -> io::Result<()> {
    if !from.exists() {
        return Ok(());
    }
    remove_if_present(to)?;
    std::fs::rename(from, to)
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.written > 0 && self.written + buf.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        if self.file.is_none() {
            // A rotation that failed half-way (a full disk) is tried again by the next write.
            self.open_current()?;
        }
        let file = self.file.as_mut().expect("opened above");
        file.write_all(buf)?;
        self.written += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().map_or(Ok(()), |f| f.flush())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap_or_default()
    }

    #[test]
    fn files_rotate_by_size_keep_whole_lines_and_drop_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/tally-agent.log");
        let mut log = RotatingFile::open(&path, 25, 2).unwrap();
        for n in 0..7 {
            // 9 bytes a line: two lines fit in 25 bytes, the third rotates.
            log.write_all(format!("line {n:03}\n").as_bytes()).unwrap();
        }
        log.flush().unwrap();
        assert_eq!(read(&path), "line 006\n");
        assert_eq!(read(&log.rotated(1)), "line 004\nline 005\n");
        assert_eq!(read(&log.rotated(2)), "line 002\nline 003\n");
        // Lines 000 and 001 went with the oldest file; no third file is kept.
        assert!(!log.rotated(3).exists());

        // Opened again (a restart), the file is appended to and its size counts.
        drop(log);
        let mut log = RotatingFile::open(&path, 25, 2).unwrap();
        log.write_all(b"line 007\n").unwrap();
        assert_eq!(read(&path), "line 006\nline 007\n");
        log.write_all(b"line 008\n").unwrap();
        assert_eq!(read(&path), "line 008\n");
        assert_eq!(read(&log.rotated(1)), "line 006\nline 007\n");
        assert_eq!(read(&log.rotated(2)), "line 004\nline 005\n");
    }

    #[test]
    fn a_line_longer_than_the_limit_is_written_whole_in_its_own_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let mut log = RotatingFile::open(&path, 8, 3).unwrap();
        log.write_all(b"a very long line\n").unwrap();
        log.write_all(b"short\n").unwrap();
        assert_eq!(read(&path), "short\n");
        assert_eq!(read(&log.rotated(1)), "a very long line\n");
    }

    #[cfg(unix)]
    #[test]
    fn log_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/a.log");
        let mut log = RotatingFile::open(&path, 4, 1).unwrap();
        log.write_all(b"12345\n").unwrap();
        log.write_all(b"67890\n").unwrap();
        for p in [path.clone(), log.rotated(1)] {
            let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", p.display());
        }
    }
}
