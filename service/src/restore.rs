//! The file handling of a restore, the same for the agent's log and central's store: refuse
//! while the daemon runs or while an earlier restore's file is still kept aside, work on a
//! private copy of the backup (the backup itself is never opened for writing), and put the
//! checked result in place by one rename, the replaced file kept aside and the directory
//! fsynced. A failure at any step leaves the live file as it was.
//!
//! What "checked" means is each daemon's own: [`RestoreFiles::restore`] hands it the working
//! copy and where to write the checked file.

use std::path::{Path, PathBuf};

use redb::{Database, DatabaseError};

/// Why a restore did not start, or failed on a file.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The live file is open: its daemon is running.
    #[error("{} is open by a running daemon", path.display())]
    Running { path: PathBuf },
    /// An earlier restore's replaced file is still where this one would keep its own.
    #[error("{} is still kept from an earlier restore", path.display())]
    AsideExists { path: PathBuf },
    #[error("cannot restore {}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// The files of one restore beside the live file `live`.
#[derive(Debug, Clone)]
pub struct RestoreFiles {
    pub live: PathBuf,
    /// Where the replaced file is kept.
    pub aside: PathBuf,
    /// The backup's copy, migrated and checked in place.
    work: PathBuf,
    /// What the check wrote: becomes the live file.
    checked: PathBuf,
}

impl RestoreFiles {
    /// The files of a restore of `data_dir/file`, keeping the replaced one as
    /// `data_dir/aside` (the working files are hidden beside them).
    pub fn new(data_dir: &Path, file: &str, aside: &str) -> RestoreFiles {
        RestoreFiles {
            live: data_dir.join(file),
            aside: data_dir.join(aside),
            work: data_dir.join(format!(".{file}.restoring")),
            checked: data_dir.join(format!(".{file}.restored")),
        }
    }

    /// Puts the backup `from` in place. `check(work, checked)` gets a private copy of the
    /// backup at `work` (its to change, for migrations) and must write the file to put in
    /// place at `checked`. Returns what `check` returned and where the replaced file was kept,
    /// if there was one.
    pub fn restore<T, E: From<Refusal>>(
        &self,
        from: &Path,
        check: impl FnOnce(&Path, &Path) -> Result<T, E>,
    ) -> Result<(T, Option<PathBuf>), E> {
        self.refuse_while_in_use()?;
        let _ = std::fs::remove_file(&self.work);
        let _ = std::fs::remove_file(&self.checked);
        let result = self
            .copy_backup(from)
            .map_err(E::from)
            .and_then(|()| check(&self.work, &self.checked));
        let _ = std::fs::remove_file(&self.work);
        let checked = match result {
            Ok(checked) => checked,
            Err(error) => {
                let _ = std::fs::remove_file(&self.checked);
                return Err(error);
            }
        };
        Ok((checked, self.swap_in()?))
    }

    /// A damaged live file is what a restore is for: only a running daemon (the file is open)
    /// or a file still kept aside stops it.
    fn refuse_while_in_use(&self) -> Result<(), Refusal> {
        if !self.live.exists() {
            return Ok(());
        }
        if let Err(DatabaseError::DatabaseAlreadyOpen) = Database::open(&self.live) {
            return Err(Refusal::Running {
                path: self.live.clone(),
            });
        }
        if self.aside.exists() {
            return Err(Refusal::AsideExists {
                path: self.aside.clone(),
            });
        }
        Ok(())
    }

    fn copy_backup(&self, from: &Path) -> Result<(), Refusal> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |error| Refusal::Io { path, error }
        };
        crate::create_private_file(&self.work).map_err(io(&self.work))?;
        let mut source = std::fs::File::open(from).map_err(io(from))?;
        let mut target = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&self.work)
            .map_err(io(&self.work))?;
        std::io::copy(&mut source, &mut target).map_err(io(from))?;
        Ok(())
    }

    /// The replaced file aside, the checked one in its place, both renames made durable.
    fn swap_in(&self) -> Result<Option<PathBuf>, Refusal> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |error| Refusal::Io { path, error }
        };
        let mut previous = None;
        if self.live.exists() {
            std::fs::rename(&self.live, &self.aside).map_err(io(&self.live))?;
            previous = Some(self.aside.clone());
        }
        std::fs::rename(&self.checked, &self.live).map_err(io(&self.live))?;
        let dir = self.live.parent().unwrap_or(Path::new("."));
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(dir))?;
        Ok(previous)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    enum Error {
        Refused(Refusal),
        Check,
    }

    impl From<Refusal> for Error {
        fn from(r: Refusal) -> Error {
            Error::Refused(r)
        }
    }

    fn files(dir: &Path) -> RestoreFiles {
        RestoreFiles::new(dir, "data.redb", "data.redb.before-restore")
    }

    #[test]
    fn the_checked_file_replaces_the_live_one_which_is_kept_aside() {
        let dir = tempfile::tempdir().unwrap();
        let files = files(dir.path());
        let backup = dir.path().join("backup");
        std::fs::write(&backup, b"backup").unwrap();
        std::fs::write(&files.live, b"live").unwrap();
        let (seen, previous) = files
            .restore(&backup, |work, checked| {
                let copied = std::fs::read(work).unwrap();
                std::fs::write(checked, b"checked").unwrap();
                Ok::<_, Error>(copied)
            })
            .unwrap();
        assert_eq!(seen, b"backup");
        assert_eq!(previous.as_deref(), Some(files.aside.as_path()));
        assert_eq!(std::fs::read(&files.live).unwrap(), b"checked");
        assert_eq!(std::fs::read(&files.aside).unwrap(), b"live");
        assert_eq!(std::fs::read(&backup).unwrap(), b"backup");
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(left.is_empty(), "working files left: {left:?}");
    }

    #[test]
    fn a_failed_check_leaves_the_live_file_and_no_working_files() {
        let dir = tempfile::tempdir().unwrap();
        let files = files(dir.path());
        let backup = dir.path().join("backup");
        std::fs::write(&backup, b"backup").unwrap();
        std::fs::write(&files.live, b"live").unwrap();
        let failed = files.restore(&backup, |_, checked| {
            std::fs::write(checked, b"half").unwrap();
            Err::<(), _>(Error::Check)
        });
        assert!(matches!(failed, Err(Error::Check)));
        assert_eq!(std::fs::read(&files.live).unwrap(), b"live");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn a_file_kept_from_an_earlier_restore_or_a_missing_backup_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let files = files(dir.path());
        let missing = dir.path().join("missing");
        let never = |_: &Path, _: &Path| -> Result<(), Error> { unreachable!("not checked") };
        assert!(matches!(
            files.restore(&missing, never),
            Err(Error::Refused(Refusal::Io { path, .. })) if path == missing
        ));
        std::fs::write(&files.live, b"live").unwrap();
        std::fs::write(&files.aside, b"older").unwrap();
        assert!(matches!(
            files.restore(&missing, never),
            Err(Error::Refused(Refusal::AsideExists { .. }))
        ));
    }
}
