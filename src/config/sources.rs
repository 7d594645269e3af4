//! Which files make up the configuration, and in what order, under a [`Sysroot`].
//!
//! The drop-in rules are systemd's (`systemd.unit(5)`, "drop-in" directories; `conf_files_list()` in
//! systemd's `src/basic/conf-files.c`): files from all three directories are ordered by file name alone; a file
//! in a later directory replaces a same-named one from an earlier directory; hidden files are ignored. So a
//! package ships `/usr/lib/.../config.d/50-x.toml`, and the admin overrides it whole with
//! `/etc/.../config.d/50-x.toml` (an empty file, or a symlink to `/dev/null`, switches it off).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::ErrorKind;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use super::ConfigError;
use crate::host::sysroot::Sysroot;

/// The main file, applied before every drop-in. Optional.
pub const MAIN_FILE: &str = "/etc/kdump-hotplugd/config.toml";

/// Drop-in directories, lowest precedence first.
pub const DROP_IN_DIRS: [&str; 3] = [
    "/usr/lib/kdump-hotplugd/config.d",
    "/run/kdump-hotplugd/config.d",
    "/etc/kdump-hotplugd/config.d",
];

const DROP_IN_SUFFIX: &[u8] = b".toml";

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ConfigFile {
    /// The host path, as errors and `check-config` show it (`/etc/kdump-hotplugd/config.d/10-x.toml`).
    pub shown: String,
    /// Where it is read from: `shown` under the sysroot.
    pub path: PathBuf,
    /// A missing file is not an error (the main file; a drop-in can only go missing in a race).
    pub optional: bool,
}

/// The files to apply, in order: the main file, then the drop-ins.
pub(crate) fn discover(sysroot: &Sysroot) -> Result<Vec<ConfigFile>, ConfigError> {
    let mut files = vec![ConfigFile {
        shown: MAIN_FILE.to_owned(),
        path: sysroot.path(MAIN_FILE),
        optional: true,
    }];
    let mut drop_ins: BTreeMap<OsString, ConfigFile> = BTreeMap::new();
    for dir in DROP_IN_DIRS {
        let entries = match std::fs::read_dir(sysroot.path(dir)) {
            Ok(entries) => entries,
            Err(error) if error.kind() == ErrorKind::NotFound => continue,
            Err(error) => return Err(io_error(dir, &error)),
        };
        for entry in entries {
            let entry = entry.map_err(|error| io_error(dir, &error))?;
            let name = entry.file_name();
            let bytes = name.as_bytes();
            if bytes.starts_with(b".") || !bytes.ends_with(DROP_IN_SUFFIX) {
                continue;
            }
            // Follows symlinks, so a link to /dev/null stays in (and masks) while a directory is skipped.
            if std::fs::metadata(entry.path()).is_ok_and(|meta| meta.is_dir()) {
                continue;
            }
            let shown = format!("{dir}/{}", name.to_string_lossy());
            let file = ConfigFile {
                path: sysroot.path(&shown),
                shown,
                optional: false,
            };
            drop_ins.insert(name, file);
        }
    }
    files.extend(drop_ins.into_values());
    Ok(files)
}

fn io_error(shown: &str, error: &std::io::Error) -> ConfigError {
    ConfigError::Io {
        file: shown.to_owned(),
        message: error.to_string(),
    }
}

/// The file's text; `None` for a missing optional file.
pub(crate) fn read(file: &ConfigFile) -> Result<Option<String>, ConfigError> {
    let bytes = match std::fs::read(&file.path) {
        Ok(bytes) => bytes,
        Err(error) if file.optional && error.kind() == ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(io_error(&file.shown, &error)),
    };
    String::from_utf8(bytes).map(Some).map_err(|error| {
        let valid = &error.as_bytes()[..error.utf8_error().valid_up_to()];
        ConfigError::Invalid {
            file: file.shown.clone(),
            line: valid.iter().filter(|&&byte| byte == b'\n').count() + 1,
            key: super::diagnostics::NO_KEY.to_owned(),
            message: "not valid UTF-8 text".to_owned(),
        }
    })
}
