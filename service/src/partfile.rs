//! A file written whole or not at all: a download of a backup lands in a hidden file beside its
//! target, and only the whole, fsynced file is renamed over the target.

use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt;

#[derive(Debug, thiserror::Error)]
#[error("cannot write {}: {error}", path.display())]
pub struct PartFileError {
    pub path: PathBuf,
    pub error: std::io::Error,
}

/// A file being written as `.NAME.part` (mode 0600) beside `NAME`. [`PartFile::finish`] fsyncs
/// it and renames it over the target; dropped unfinished (an error on the way, a cancelled
/// task), the part file is removed and the target is as it was.
#[derive(Debug)]
pub struct PartFile {
    to: PathBuf,
    part: PathBuf,
    file: tokio::fs::File,
    written: u64,
    finished: bool,
}

impl PartFile {
    pub async fn create(to: &Path) -> Result<PartFile, PartFileError> {
        let error = |path: &Path| {
            let path = path.to_owned();
            move |error| PartFileError { path, error }
        };
        let name = to.file_name().ok_or_else(|| {
            error(to)(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a file name",
            ))
        })?;
        let mut part_name = std::ffi::OsString::from(".");
        part_name.push(name);
        part_name.push(".part");
        let part = to.with_file_name(part_name);
        let _ = std::fs::remove_file(&part);
        crate::create_private_file(&part).map_err(error(&part))?;
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .open(&part)
            .await
            .map_err(error(&part))?;
        Ok(PartFile {
            to: to.to_owned(),
            part,
            file,
            written: 0,
            finished: false,
        })
    }

    pub async fn write(&mut self, data: &[u8]) -> Result<(), PartFileError> {
        self.file
            .write_all(data)
            .await
            .map_err(|error| PartFileError {
                path: self.part.clone(),
                error,
            })?;
        self.written += data.len() as u64;
        Ok(())
    }

    /// Fsyncs the file and puts it in place; returns the bytes written.
    pub async fn finish(mut self) -> Result<u64, PartFileError> {
        self.file.sync_all().await.map_err(|error| PartFileError {
            path: self.part.clone(),
            error,
        })?;
        tokio::fs::rename(&self.part, &self.to)
            .await
            .map_err(|error| PartFileError {
                path: self.to.clone(),
                error,
            })?;
        self.finished = true;
        Ok(self.written)
    }
}

impl Drop for PartFile {
    fn drop(&mut self) {
        if !self.finished {
            let _ = std::fs::remove_file(&self.part);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_target_is_the_whole_file_or_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let to = dir.path().join("backup.redb");
        std::fs::write(&to, b"older").unwrap();

        let mut unfinished = PartFile::create(&to).await.unwrap();
        unfinished.write(b"half").await.unwrap();
        drop(unfinished);
        assert_eq!(std::fs::read(&to).unwrap(), b"older");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

        let mut file = PartFile::create(&to).await.unwrap();
        file.write(b"who").await.unwrap();
        file.write(b"le").await.unwrap();
        assert_eq!(file.finish().await.unwrap(), 5);
        assert_eq!(std::fs::read(&to).unwrap(), b"whole");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&to).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
