//! The header record as a file in the runtime directory, beside the instance lock.

use std::io::ErrorKind;
use std::path::PathBuf;

use super::HeaderRecords;

/// The record's name inside the runtime directory.
pub const RECORD_FILE: &str = "loaded-header";

pub struct HeaderRecordFile {
    path: PathBuf,
}

impl HeaderRecordFile {
    pub fn in_runtime_dir(dir: &std::path::Path) -> Self {
        HeaderRecordFile {
            path: dir.join(RECORD_FILE),
        }
    }
}

impl HeaderRecords for HeaderRecordFile {
    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn read(&self) -> std::io::Result<Option<String>> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => Ok(Some(text)),
            Err(error) if error.kind() == ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error),
        }
    }

    fn write(&self, text: &str) -> std::io::Result<()> {
        let partial = self.path.with_extension("new");
        std::fs::write(&partial, text)?;
        std::fs::rename(&partial, &self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_written_whole_and_read_back() {
        let dir =
            std::env::temp_dir().join(format!("kdump-hotplugd-record-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = HeaderRecordFile::in_runtime_dir(&dir);
        assert_eq!(file.read().unwrap(), None);
        file.write("one\n").unwrap();
        file.write("two\n").unwrap();
        assert_eq!(file.read().unwrap().as_deref(), Some("two\n"));
        assert!(!dir.join("loaded-header.new").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
