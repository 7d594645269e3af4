//! Roots every read of `/proc` and `/sys` under a directory (`--sysroot`), so fixtures can stand in for a host.

use std::path::{Path, PathBuf};

#[derive(Clone, Debug)]
pub struct Sysroot {
    root: PathBuf,
}

#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct SysrootError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

impl Sysroot {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Maps an absolute host path such as `/proc/iomem` into the sysroot.
    pub fn path(&self, absolute: &str) -> PathBuf {
        self.root.join(absolute.trim_start_matches('/'))
    }

    pub fn read_to_string(&self, absolute: &str) -> Result<String, SysrootError> {
        let path = self.path(absolute);
        std::fs::read_to_string(&path).map_err(|source| SysrootError { path, source })
    }

    /// Opens a file for reading, e.g. to keep `/proc/iomem` open across reads.
    pub fn open(&self, absolute: &str) -> Result<std::fs::File, SysrootError> {
        let path = self.path(absolute);
        std::fs::File::open(&path).map_err(|source| SysrootError { path, source })
    }

    /// Whether the path exists (a dangling symlink does not).
    pub fn exists(&self, absolute: &str) -> bool {
        self.path(absolute).exists()
    }

    /// Like [`Self::read_to_string`], but a missing file is `Ok(None)`.
    pub fn read_optional(&self, absolute: &str) -> Result<Option<String>, SysrootError> {
        match self.read_to_string(absolute) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.source.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_host_paths_under_the_root() {
        assert_eq!(
            Sysroot::new("/").path("/proc/iomem"),
            PathBuf::from("/proc/iomem")
        );
        assert_eq!(
            Sysroot::new("tests/fixtures/small-vm").path("/sys/kernel/kexec_crash_loaded"),
            PathBuf::from("tests/fixtures/small-vm/sys/kernel/kexec_crash_loaded")
        );
    }

    #[test]
    fn missing_files_are_none_and_other_errors_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let root = Sysroot::new(dir.path());
        assert_eq!(root.read_optional("/proc/iomem").unwrap(), None);
        assert!(!root.exists("/proc/iomem"));
        std::fs::create_dir_all(dir.path().join("proc/iomem")).unwrap();
        assert!(root.exists("/proc/iomem"));
        let error = root.read_optional("/proc/iomem").unwrap_err();
        assert_eq!(error.path, dir.path().join("proc/iomem"));
        assert!(error
            .to_string()
            .starts_with(&dir.path().join("proc/iomem").display().to_string()));
    }
}
