//! What apply would change (live values and config files against the
//! plan) and what it refuses without `--force`. Reads only; every key of a
//! plan's timeouts must name an existing conntrack timeout sysctl.

use std::io;

use super::paths::{self, HASHSIZE, NF};
use super::write::read_nofollow;
use super::{ApplyError, Diff, FileChange, Perm, ValueChange};
use crate::plan::{Settings, round_buckets};
use crate::source::Root;

/// The share of RAM a full table may take without `--force`. Entries
/// (slab `nf_conntrack`) and the bucket array (kvmalloc) are unswappable,
/// unreclaimable kernel memory: past a quarter of RAM, a flood that fills
/// the table starts taking memory that page cache and processes need, and
/// the OOM killer is worse than "table full" (issue 8, section 3).
pub const SAFE_RAM_PERCENT: u64 = 25;

/// The largest value the kernel's int sysctl accepts.
const INT_MAX: u64 = i32::MAX as u64;

/// The largest timeout (seconds) apply writes. Timeouts are
/// proc_dointvec_jiffies sysctls: the kernel stores seconds * HZ in an int
/// and refuses (EINVAL) anything above INT_MAX / HZ
/// (do_proc_dointvec_jiffies_conv, kernel/sysctl.c). HZ is a build option
/// (100 to 1000) the target's kernel does not export to us, so the bound
/// for the largest, HZ = 1000, is the one valid on every kernel: 2147483 s
/// (24.8 days), far above any useful timeout (review item 3).
pub const MAX_TIMEOUT_SECS: u64 = INT_MAX / 1000;

/// Plan timeouts apply refuses even with `--force`: above
/// [`MAX_TIMEOUT_SECS`], which the kernel would refuse or wrap.
pub fn timeout_errors(s: &Settings) -> Vec<String> {
    s.timeouts
        .iter()
        .filter(|(_, v)| **v > MAX_TIMEOUT_SECS)
        .map(|(k, v)| {
            format!(
                "{} = {v} s is above {MAX_TIMEOUT_SECS} s, the largest a jiffies sysctl takes on any kernel (INT_MAX / HZ for HZ up to 1000)",
                shorten(k)
            )
        })
        .collect()
}

/// Plan timeouts refused unless `--force`: 0, which expires every entry of
/// that kind at once (each new packet then makes a new entry).
pub fn timeout_refusals(s: &Settings) -> Vec<String> {
    s.timeouts
        .iter()
        .filter(|(_, v)| **v == 0)
        .map(|(k, _)| {
            format!(
                "{} = 0: entries would expire at once, and every packet of such a flow would be a new entry",
                shorten(k)
            )
        })
        .collect()
}

/// `text` cut to 80 characters for an error message: a hostile plan or
/// journal must not flood the terminal (review item 8).
pub fn shorten(text: &str) -> String {
    const MAX: usize = 80;
    match text.char_indices().nth(MAX) {
        None => text.to_string(),
        Some((i, _)) => format!("{}... ({} bytes)", &text[..i], text.len()),
    }
}

/// Whether a hashsize read back after writing `written` shows the kernel
/// took it: it rounds buckets up to a multiple of 512 (PAGE_SIZE / 8,
/// nf_ct_alloc_hashtable), so 1000 reads back as 1024.
pub fn hashsize_taken(written: &str, back: &str) -> bool {
    back == written
        || written
            .parse::<u64>()
            .is_ok_and(|w| w <= INT_MAX && back == round_buckets(w).to_string())
}

fn read_value(root: &Root, path: &str) -> Result<String, ApplyError> {
    let full = paths::resolve(root, path).map_err(ApplyError::Path)?;
    read_nofollow(&full)
        .map(|s| s.trim().to_string())
        .map_err(|source| ApplyError::Read {
            path: path.into(),
            source,
        })
}

/// The ancestors of `path` that do not exist under `root`, outermost first.
fn missing_dirs(root: &Root, path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut p = std::path::Path::new(path).parent();
    while let Some(dir) = p {
        if dir.as_os_str().is_empty()
            || dir == std::path::Path::new("/")
            || root.path(&dir.to_string_lossy()).exists()
        {
            break;
        }
        out.push(dir.to_string_lossy().into_owned());
        p = dir.parent();
    }
    out.reverse();
    out
}

/// Compare `settings` with the live values under `root`. `files` are the
/// config files to write with `--persist` (only the fixed set).
pub fn diff(
    root: &Root,
    s: &Settings,
    timeouts_only: bool,
    files: &[(String, String)],
) -> Result<Diff, ApplyError> {
    for name in s.timeouts.keys() {
        paths::check_timeout_name(root, name).map_err(ApplyError::BadKey)?;
    }
    let errors = timeout_errors(s);
    if !errors.is_empty() {
        return Err(ApplyError::BadValue(errors.join("; ")));
    }
    let mut d = Diff {
        count: read_value(root, &format!("{NF}/nf_conntrack_count"))
            .ok()
            .and_then(|c| c.parse().ok()),
        ..Diff::default()
    };
    let mut want: Vec<(String, String)> = Vec::new();
    if !timeouts_only {
        want.push((
            format!("{NF}/nf_conntrack_max"),
            s.nf_conntrack_max.to_string(),
        ));
        want.push((HASHSIZE.to_string(), s.hashsize.to_string()));
    }
    for (name, v) in &s.timeouts {
        want.push((format!("{NF}/{name}"), v.to_string()));
    }
    for (path, new) in want {
        let old = read_value(root, &path)?;
        let same = if path == HASHSIZE {
            hashsize_taken(&new, &old)
        } else {
            old == new
        };
        if !same {
            d.values.push(ValueChange { path, old, new });
        }
    }
    for (path, new) in files {
        paths::check_file_path(path).map_err(ApplyError::Path)?;
        let full = paths::resolve(root, path).map_err(ApplyError::Path)?;
        let old = match read_nofollow(&full) {
            Ok(t) => Some(t),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(ApplyError::Read {
                    path: path.clone(),
                    source,
                });
            }
        };
        if old.as_deref() != Some(new.as_str()) {
            let old_perm = match &old {
                None => None,
                Some(_) => {
                    use std::os::unix::fs::MetadataExt;
                    let m =
                        std::fs::symlink_metadata(&full).map_err(|source| ApplyError::Read {
                            path: path.clone(),
                            source,
                        })?;
                    Some(Perm {
                        mode: m.mode() & 0o7777,
                        uid: m.uid(),
                        gid: m.gid(),
                    })
                }
            };
            d.files.push(FileChange {
                path: path.clone(),
                old,
                new: new.clone(),
                created_dirs: missing_dirs(root, path),
                old_perm,
            });
        }
    }
    Ok(d)
}

/// Refusals unless `--force`: max zero, above INT_MAX or below the live
/// count, buckets out of proportion, memory above the budget or above
/// [`SAFE_RAM_PERCENT`] of `ram` (when known).
pub fn safety(
    s: &Settings,
    count: Option<u64>,
    memory: u64,
    budget: Option<u64>,
    ram: Option<u64>,
) -> Vec<String> {
    let mut v = Vec::new();
    if s.nf_conntrack_max == 0 {
        v.push("nf_conntrack_max = 0 (unlimited before 6.19, a full stop after)".into());
    }
    if s.nf_conntrack_max > INT_MAX {
        v.push(format!(
            "nf_conntrack_max {} is above {INT_MAX}, the largest the kernel's int sysctl takes",
            s.nf_conntrack_max
        ));
    }
    if let Some(c) = count
        && s.nf_conntrack_max < c
    {
        v.push(format!("nf_conntrack_max {} is below the current count {c}: new flows would be dropped at once", s.nf_conntrack_max));
    }
    if s.hashsize < 1024 {
        v.push(format!("hashsize {} is below 1024", s.hashsize));
    }
    let eight_max = s.nf_conntrack_max.saturating_mul(8);
    if s.hashsize > eight_max {
        v.push(format!(
            "hashsize {} is above 8 x max ({eight_max}): memory for empty buckets",
            s.hashsize
        ));
    }
    if let Some(b) = budget
        && memory > b
    {
        v.push(format!(
            "a full table needs {memory} bytes, above the budget of {b}"
        ));
    }
    if let Some(ram) = ram {
        let safe = ram / 100 * SAFE_RAM_PERCENT;
        if memory > safe {
            v.push(format!(
                "a full table needs {memory} bytes, above {SAFE_RAM_PERCENT}% of RAM ({safe} of {ram}): conntrack memory is unswappable kernel memory, and a table that fills it would push the host into the OOM killer"
            ));
        }
    }
    v
}
