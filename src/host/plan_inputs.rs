//! Fills the crash-kernel plan's [`Inputs`] from a root directory (`/`, or a fixture sysroot).
//!
//! Thin: it reads what the plan asks for. [`read`] plans, reads every path the plan wanted, and plans again until
//! nothing more is wanted. Absolute paths, and absolute symlink targets, are resolved inside the root, so a
//! fixture's `/var/lib/kdump/vmlinuz -> /boot/vmlinuz-…` stays in the fixture.

use std::fs;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use super::kexec_version;
use crate::core::plan::{self, Inputs, KexecBinary, PathFact, PathKind, Plan};

/// Larger files are described but not read (kernel images, initrds); procfs and sysfs files report size 0.
const MAX_TEXT: u64 = 1 << 20;
/// Enough for any plan: each round only adds paths that the previous answers led to.
const MAX_ROUNDS: usize = 16;

/// The inputs and the plan for the host rooted at `root`.
pub fn read_and_plan(root: &Path) -> (Inputs, Plan) {
    read_and_plan_with(root, |_| {})
}

/// Like [`read_and_plan`], with `adjust` applied to the inputs before each plan (a test's way to state what a
/// fixture tree cannot hold, such as a read-only /boot when the tests run as root).
pub fn read_and_plan_with(root: &Path, adjust: impl Fn(&mut Inputs)) -> (Inputs, Plan) {
    let mut inputs = Inputs {
        release: release(root),
        secure_boot: secure_boot(root),
        securelevel: text(root, "/sys/kernel/security/securelevel")
            .is_some_and(|t| t.trim() == "1"),
        lockdown: text(root, "/sys/kernel/security/lockdown").and_then(|t| lockdown_mode(&t)),
        kexec: kexec_binary(root),
        ..Inputs::default()
    };
    adjust(&mut inputs);
    let mut plan = plan::plan(&inputs);
    for _ in 0..MAX_ROUNDS {
        if plan.wanted.is_empty() {
            break;
        }
        for path in std::mem::take(&mut plan.wanted) {
            let (fact, contents) = probe(root, &path);
            if let Some(contents) = contents {
                inputs.files.insert(path.clone(), contents);
            }
            inputs.paths.insert(path, fact);
        }
        adjust(&mut inputs);
        plan = plan::plan(&inputs);
    }
    (inputs, plan)
}

/// The inputs for the host rooted at `root`.
pub fn read(root: &Path) -> Inputs {
    read_and_plan(root).0
}

/// `/proc/sys/kernel/osrelease` in the root, else uname(2) (as `edge::kexec::kernel_release`).
fn release(root: &Path) -> String {
    if let Some(text) = text(root, "/proc/sys/kernel/osrelease") {
        return text.trim().to_owned();
    }
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Secure Boot enforced: byte 4 of `SecureBoot-*` is 1 and of `SetupMode-*` is 0 (the efivar's first four bytes
/// are its attributes), the rule of kdump-config `check_secure_boot` and kdump-lib.sh `is_secure_boot_enforced`.
fn secure_boot(root: &Path) -> bool {
    let Some(dir) = resolve(root, "/sys/firmware/efi/efivars") else {
        return false;
    };
    let byte = |prefix: &str| -> Option<u8> {
        let entry = fs::read_dir(&dir)
            .ok()?
            .flatten()
            .find(|e| e.file_name().to_string_lossy().starts_with(prefix))?;
        fs::read(entry.path()).ok()?.get(4).copied()
    };
    byte("SecureBoot-") == Some(1) && byte("SetupMode-") == Some(0)
}

/// `none [integrity] confidentiality` → `integrity`.
fn lockdown_mode(text: &str) -> Option<String> {
    let start = text.find('[')? + 1;
    let end = start + text[start..].find(']')?;
    Some(text[start..end].to_owned())
}

/// The distro tools' kexec ([`plan::TOOL_KEXEC`]) and the version in it: the binary their loads run decides the
/// syscall, whichever package put it there.
fn kexec_binary(root: &Path) -> Option<KexecBinary> {
    let path = resolve(root, plan::TOOL_KEXEC).filter(|p| p.is_file())?;
    Some(KexecBinary {
        path: plan::TOOL_KEXEC.to_owned(),
        version: kexec_version::read(&path),
    })
}

fn text(root: &Path, absolute: &str) -> Option<String> {
    fs::read_to_string(resolve(root, absolute)?).ok()
}

/// `absolute` inside `root`, every symlink on the way followed inside the root. `None` when it does not exist
/// (or loops).
pub fn resolve(root: &Path, absolute: &str) -> Option<PathBuf> {
    let mut pending: Vec<String> = components(absolute).into_iter().rev().collect();
    let mut inside: Vec<String> = Vec::new();
    let mut hops = 0;
    while let Some(part) = pending.pop() {
        match part.as_str() {
            ".." => {
                inside.pop();
                continue;
            }
            "." => continue,
            _ => {}
        }
        let candidate = inside
            .iter()
            .chain(std::iter::once(&part))
            .fold(root.to_path_buf(), |p, c| p.join(c));
        let meta = fs::symlink_metadata(&candidate).ok()?;
        if meta.file_type().is_symlink() {
            hops += 1;
            if hops > 40 {
                return None;
            }
            let target = fs::read_link(&candidate).ok()?;
            let target = target.to_string_lossy();
            if target.starts_with('/') {
                inside.clear();
            }
            pending.extend(components(&target).into_iter().rev());
        } else {
            inside.push(part);
        }
    }
    Some(inside.iter().fold(root.to_path_buf(), |p, c| p.join(c)))
}

fn components(path: &str) -> Vec<String> {
    Path::new(path)
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_string_lossy().into_owned()),
            Component::ParentDir => Some("..".to_owned()),
            _ => None,
        })
        .collect()
}

/// What the plan needs to know about one path, and its text when it is a small text file.
fn probe(root: &Path, absolute: &str) -> (PathFact, Option<String>) {
    let mut fact = PathFact::default();
    // The path's own link text, when its last component is a symlink.
    if let Some(parent) = Path::new(absolute)
        .parent()
        .and_then(|p| resolve(root, &p.to_string_lossy()))
    {
        if let Some(name) = Path::new(absolute).file_name() {
            if let Ok(target) = fs::read_link(parent.join(name)) {
                fact.link = Some(target.to_string_lossy().into_owned());
            }
        }
    }
    let Some(path) = resolve(root, absolute) else {
        return (fact, None);
    };
    let Ok(meta) = fs::metadata(&path) else {
        return (fact, None);
    };
    fact.writable = nix::unistd::access(&path, nix::unistd::AccessFlags::W_OK).is_ok();
    let mut contents = None;
    if meta.is_dir() {
        fact.kind = PathKind::Dir;
        let mut entries: Vec<String> = fs::read_dir(&path)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        entries.sort();
        fact.entries = entries;
    } else if meta.is_file() {
        fact.kind = PathKind::File;
        if let Ok(file) = fs::File::open(&path) {
            let mut bytes = Vec::new();
            if file.take(MAX_TEXT + 1).read_to_end(&mut bytes).is_ok() {
                fact.elf = bytes.starts_with(b"\x7fELF");
                if bytes.len() as u64 <= MAX_TEXT && (meta.len() <= MAX_TEXT) {
                    contents = String::from_utf8(bytes).ok();
                }
            }
        }
    } else {
        fact.kind = PathKind::Other;
    }
    (fact, contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("boot")).unwrap();
        fs::create_dir_all(root.join("var/lib/kdump")).unwrap();
        fs::write(root.join("boot/vmlinuz-6.1"), b"MZ").unwrap();
        std::os::unix::fs::symlink("/boot/vmlinuz-6.1", root.join("var/lib/kdump/vmlinuz"))
            .unwrap();
        std::os::unix::fs::symlink("../../var", root.join("boot/up")).unwrap();
        assert_eq!(
            resolve(root, "/var/lib/kdump/vmlinuz"),
            Some(root.join("boot/vmlinuz-6.1"))
        );
        assert_eq!(
            resolve(root, "/boot/up/lib/kdump"),
            Some(root.join("var/lib/kdump"))
        );
        assert_eq!(resolve(root, "/boot/missing"), None);
        let (fact, text) = probe(root, "/var/lib/kdump/vmlinuz");
        assert_eq!(fact.kind, PathKind::File);
        assert_eq!(fact.link.as_deref(), Some("/boot/vmlinuz-6.1"));
        assert_eq!(text.as_deref(), Some("MZ"));
    }

    #[test]
    fn host_facts() {
        assert_eq!(
            lockdown_mode("none [integrity] confidentiality\n").as_deref(),
            Some("integrity")
        );
    }

    #[test]
    fn the_tools_kexec_is_read_through_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        assert_eq!(kexec_binary(root), None);
        // Merged /usr with an absolute link: followed inside the root, not to the host's /usr/sbin.
        fs::create_dir_all(root.join("usr/sbin")).unwrap();
        std::os::unix::fs::symlink("/usr/sbin", root.join("sbin")).unwrap();
        fs::write(
            root.join("usr/sbin/kexec"),
            b"\x7fELF\0kexec-tools 2.0.27\n\0",
        )
        .unwrap();
        assert_eq!(
            kexec_binary(root),
            Some(KexecBinary {
                path: "/sbin/kexec".to_owned(),
                version: Some("2.0.27".to_owned()),
            })
        );
        fs::write(root.join("usr/sbin/kexec"), b"").unwrap();
        assert_eq!(kexec_binary(root).unwrap().version, None);
    }
}
