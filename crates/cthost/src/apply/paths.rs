//! The fixed set of paths `apply` and `rollback` may write, and their
//! resolution under a root. Nothing read from a plan file or a journal
//! becomes a path unless it is one of these (issue 8, section 1): the
//! netfilter sysctls nf_conntrack_max and `nf_conntrack_*timeout*`, the
//! hashsize module parameter, the config files (sysctl.d, modprobe.d,
//! modules-load.d), and the directories above those files that apply
//! created.

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use crate::source::Root;

pub const NF: &str = "/proc/sys/net/netfilter";
pub const HASHSIZE: &str = "/sys/module/nf_conntrack/parameters/hashsize";
pub const SYSCTL_FILE: &str = ctcore::plan::SYSCTL_FILE;
pub const MODPROBE_FILE: &str = ctcore::plan::MODPROBE_FILE;
/// Written with `--persist` only when nf_conntrack is a loadable module
/// nothing loads at boot ([`crate::drift::boot_load`]).
pub const MODULES_LOAD_FILE: &str = ctcore::drift::MODULES_LOAD_FILE;
/// Every config file apply may replace (with `--persist`).
pub const CONFIG_FILES: [&str; 3] = [SYSCTL_FILE, MODPROBE_FILE, MODULES_LOAD_FILE];

/// A sysctl file name as the kernel spells them: `nf_conntrack_` and then
/// lower-case letters, digits and `_` (no `/`, `..` or NUL can pass).
fn is_nf_name(name: &str) -> bool {
    name.len() <= 64
        && name.starts_with(ctcore::timeouts::PREFIX)
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn is_timeout_name(name: &str) -> bool {
    is_nf_name(name) && name.contains("timeout")
}

/// A key of a plan's `timeouts`: only `nf_conntrack_*timeout*` sysctls that
/// exist (as regular files) in the target's /proc/sys/net/netfilter.
pub fn check_timeout_name(root: &Root, name: &str) -> Result<(), String> {
    if name == "nf_conntrack_max" || name == "hashsize" || name == "nf_conntrack_buckets" {
        return Err(format!(
            "{name:?} is not a timeout: nf_conntrack_max and hashsize are set under \"settings\", where their safety checks apply"
        ));
    }
    if !is_timeout_name(name) {
        let name = super::shorten(&format!("{name:?}"));
        return Err(format!(
            "{name} is not a conntrack timeout sysctl (expected a name like nf_conntrack_tcp_timeout_established: nf_conntrack_*timeout*, letters, digits and _ only)"
        ));
    }
    let path = format!("{NF}/{name}");
    let full = resolve(root, &path)?;
    match fs::symlink_metadata(&full) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => Err(format!("{path} is not a regular file")),
        Err(e) => Err(format!("{name:?}: no such sysctl in {NF} ({e})")),
    }
}

/// A live value a journal may restore: a path apply could have written.
pub fn check_value_path(path: &str) -> Result<(), String> {
    if path == HASHSIZE {
        return Ok(());
    }
    match path.strip_prefix(NF).and_then(|n| n.strip_prefix('/')) {
        Some(name) if name == "nf_conntrack_max" || is_timeout_name(name) => Ok(()),
        _ => Err(format!(
            "{} is not a value apply writes (only {NF}/nf_conntrack_max, {NF}/nf_conntrack_*timeout* and {HASHSIZE})",
            super::shorten(&format!("{path:?}"))
        )),
    }
}

/// A config file a journal may restore or remove.
pub fn check_file_path(path: &str) -> Result<(), String> {
    if CONFIG_FILES.contains(&path) {
        Ok(())
    } else {
        Err(format!(
            "{} is not a file apply writes (only {SYSCTL_FILE}, {MODPROBE_FILE} and {MODULES_LOAD_FILE})",
            super::shorten(&format!("{path:?}"))
        ))
    }
}

/// A directory a journal may remove: a proper ancestor of `file` (which
/// passed [`check_file_path`]), never `/`.
pub fn check_created_dir(file: &str, dir: &str) -> Result<(), String> {
    let ok = dir != "/"
        && !dir.is_empty()
        && Path::new(file)
            .ancestors()
            .skip(1)
            .any(|a| a == Path::new(dir));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{} is not a directory above {file}: rollback removes only those",
            super::shorten(&format!("{dir:?}"))
        ))
    }
}

/// A value as the kernel prints an int sysctl: decimal digits only.
pub fn check_value_text(path: &str, v: &str) -> Result<(), String> {
    if !v.is_empty() && v.len() <= 20 && v.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(format!(
            "{path}: {} is not a decimal number",
            super::shorten(&format!("{v:?}"))
        ))
    }
}

/// `path` (one of the fixed set, absolute) under `root`. Refuses a
/// symlink at the last component (apply writes regular files only), and
/// any symlink above it that leads out of the root: a planted link must not
/// redirect a write (issue 8). With the real root `/` nothing can lead out.
pub fn resolve(root: &Root, path: &str) -> Result<PathBuf, String> {
    let rel = Path::new(path.trim_start_matches('/'));
    if path.contains('\0') || rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(format!("{path:?}: not a plain absolute path"));
    }
    let full = root.prefix.join(rel);
    let confined = root.prefix != Path::new("/");
    let base = if confined {
        match fs::canonicalize(&root.prefix) {
            Ok(b) => Some(b),
            // Nothing exists under a missing root, so no link can lead out:
            // the caller finds the path missing (rollback: no journal).
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(full),
            Err(e) => return Err(format!("root {}: {e}", root.prefix.display())),
        }
    } else {
        None
    };
    let mut cur = root.prefix.clone();
    let parts: Vec<_> = rel.components().collect();
    for (i, c) in parts.iter().enumerate() {
        cur.push(c);
        let meta = match fs::symlink_metadata(&cur) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => break,
            Err(e) => return Err(format!("{}: {e}", cur.display())),
        };
        if !meta.file_type().is_symlink() {
            continue;
        }
        if i + 1 == parts.len() {
            return Err(format!(
                "{} is a symlink: apply and rollback write only regular files and never follow a link",
                cur.display()
            ));
        }
        if let Some(base) = &base {
            let inside = fs::canonicalize(&cur).is_ok_and(|t| t.starts_with(base));
            if !inside {
                return Err(format!(
                    "{} is a symlink leading out of the root {}: refusing to follow it",
                    cur.display(),
                    root.prefix.display()
                ));
            }
        }
    }
    Ok(full)
}

/// The temporary name a config file or journal is written to before the
/// rename: fixed, so a run killed between the two leaves a name that the
/// next apply or rollback knows to remove.
pub fn temp_of(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "file".into(), |f| f.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.ctdoctor-tmp"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_timeout_names_are_refused() {
        let root = Root::under("/nonexistent-ctdoctor-root");
        for bad in [
            "../../../../tmp/x",
            "/etc/passwd",
            "nf_conntrack_tcp_timeout_established/../../x",
            "nf_conntrack_udp_timeout\0",
            "nf_conntrack_max",
            "hashsize",
            "",
            "..",
            "nf_conntrack_count",
        ] {
            assert!(check_timeout_name(&root, bad).is_err(), "{bad:?}");
        }
        let e = check_timeout_name(&root, "nf_conntrack_max").expect_err("max");
        assert!(e.contains("under \"settings\""), "{e}");
    }

    #[test]
    fn journal_paths_outside_the_fixed_set_are_refused() {
        for bad in [
            "/../../../tmp/victim",
            "/proc/sys/net/netfilter/../../../../tmp/victim",
            "/proc/sys/net/netfilter/nf_conntrack_count",
            "/etc/passwd",
            "/proc/sys/net/ipv4/ip_forward",
        ] {
            assert!(check_value_path(bad).is_err(), "{bad}");
            assert!(check_file_path(bad).is_err(), "{bad}");
        }
        assert!(check_value_path("/proc/sys/net/netfilter/nf_conntrack_max").is_ok());
        assert!(check_value_path(HASHSIZE).is_ok());
        assert!(check_created_dir(SYSCTL_FILE, "/etc/sysctl.d").is_ok());
        assert!(check_created_dir(SYSCTL_FILE, "/").is_err());
        assert!(check_created_dir(SYSCTL_FILE, "/tmp").is_err());
        assert!(check_created_dir(SYSCTL_FILE, "/etc/../tmp").is_err());
        assert!(check_value_text("x", "12\n").is_err());
        assert!(check_value_text("x", "262144").is_ok());
    }
}
