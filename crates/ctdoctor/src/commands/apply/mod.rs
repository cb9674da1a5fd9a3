//! `ctdoctor apply` and `rollback`: diff the plan (from flags, or a plan
//! file) against the system under the host's root, apply it through
//! cthost's journaled writer after the safety checks, and roll the last
//! apply back from its journal.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use ctcore::drift::BootLoad;
use cthost::Host;
use cthost::apply::{self, Diff, Fault, FaultKind, MODPROBE_FILE, RolledBack, SYSCTL_FILE};
use cthost::plan::{self, Settings};

use super::plan::{PlanArgs, make_plan};

#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub plan: PlanArgs,

    /// Apply this plan (`ctdoctor plan --format json` output, or any JSON
    /// with a "settings" object) instead of planning from flags.
    #[arg(long = "plan", value_name = "FILE")]
    pub plan_file: Option<PathBuf>,

    /// Really change the system (without it: show the diff only).
    #[arg(long)]
    pub yes: bool,

    /// Also write /etc/sysctl.d/90-conntrack.conf and
    /// /etc/modprobe.d/nf_conntrack.conf, and
    /// /etc/modules-load.d/ctdoctor-nf_conntrack.conf when nf_conntrack is
    /// a loadable module nothing loads at boot (atomically, old ones
    /// journaled).
    #[arg(long)]
    pub persist: bool,

    /// Apply values the safety checks refuse.
    #[arg(long)]
    pub force: bool,

    /// Change only the timeouts (the only part writable inside a network
    /// namespace).
    #[arg(long)]
    pub timeouts_only: bool,

    /// Directory of the journal (default /var/lib/ctdoctor under the root).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// Test hook: inject --fault at write N (journal, values, temp files
    /// and renames counted from 0).
    #[arg(long, hide = true)]
    pub fail_after: Option<usize>,

    /// Test hook: what --fail-after injects: error, nospace (ENOSPC),
    /// kill (stop dead, as SIGKILL), signal (SIGTERM to itself).
    #[arg(long, hide = true, default_value = "error", value_parser = parse_fault)]
    pub fault: FaultKind,
}

fn parse_fault(s: &str) -> Result<FaultKind, String> {
    Ok(match s {
        "error" => FaultKind::Error,
        "nospace" => FaultKind::NoSpace,
        "kill" => FaultKind::Kill,
        "signal" => FaultKind::Signal,
        _ => return Err("expected error, nospace, kill or signal".into()),
    })
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// Directory of the journal (as given to apply).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

fn print_diff(d: &Diff, out: &mut impl Write) -> std::io::Result<()> {
    if d.values.is_empty() && d.files.is_empty() {
        writeln!(
            out,
            "nothing to change: the live values already match the plan"
        )?;
    }
    for v in &d.values {
        writeln!(out, "  {:<62} {} -> {}", v.path, v.old, v.new)?;
    }
    for f in &d.files {
        let what = if f.old.is_some() { "replace" } else { "create" };
        writeln!(out, "  {:<62} {what}", f.path)?;
    }
    Ok(())
}

/// Run apply; the exit code is 0 when applied (or nothing to do or a dry
/// run), and an error otherwise.
pub fn run_apply(a: &ApplyArgs, host: &Host, out: &mut impl Write) -> Result<()> {
    let root = host.root();
    // (settings, file header, budget, memory of a full table when the plan
    // knows it, RAM when the plan knows it)
    let (settings, header, budget, planned_memory, planned_ram) = match &a.plan_file {
        Some(path) => {
            let text = apply::write::read_plan(path).map_err(anyhow::Error::msg)?;
            let settings = Settings::from_plan_json(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            (
                settings,
                format!("# written by ctdoctor apply --plan {}\n", path.display()),
                None,
                None,
                None,
            )
        }
        None => {
            let p = make_plan(&a.plan, host)?;
            // The plan's warnings matter as much when applying it.
            for w in &p.warnings {
                writeln!(out, "warning: {w}")?;
            }
            let budget = p.inputs.budget.map(|b| b.bytes(p.inputs.ram));
            let memory = Some(p.memory_at_max);
            (
                p.settings.clone(),
                format!(
                    "# written by ctdoctor apply (profile {})\n",
                    p.inputs.profile.name()
                ),
                budget,
                memory,
                Some(p.inputs.ram),
            )
        }
    };
    if !a.timeouts_only
        && host.has_kernel()
        && let (Some(here), Some(init)) = (
            cthost::namespaces::current_inode(),
            cthost::namespaces::init_inode(root),
        )
        && here != init
    {
        return Err(
            apply::ApplyError::NotInitNamespace("nf_conntrack_max or hashsize".into()).into(),
        );
    }
    let files = if a.persist {
        let mut files = vec![
            (
                SYSCTL_FILE.to_string(),
                plan::sysctl_body(&header, &settings),
            ),
            (
                MODPROBE_FILE.to_string(),
                plan::modprobe_body(&header, &settings),
            ),
        ];
        // A loadable nf_conntrack nothing loads at boot: without this file
        // the sysctl file is read before the keys exist (drift's cause).
        let boot = cthost::drift::boot_load(root);
        match &boot {
            BootLoad::Write { file } => {
                files.push((file.clone(), ctcore::drift::modules_load_body(&header)))
            }
            other => writeln!(out, "note: {}", other.explain())?,
        }
        files
    } else {
        vec![]
    };
    let journal = apply::journal_path(root, a.state_dir.as_deref())?;
    // With --yes, lock before reading the live values: the diff becomes the
    // journal's `old` values, which another apply or rollback must not
    // change in between (a dry run writes nothing and takes no lock).
    let lock = if a.yes {
        Some(apply::lock::take(
            apply::lock::state_dir_of(&journal),
            apply::lock::LOCK_WAIT,
        )?)
    } else {
        None
    };
    let d = apply::diff(root, &settings, a.timeouts_only, &files)?;
    // A plan file carries no entry size: estimate as check does.
    let memory = planned_memory.unwrap_or(plan::sizing::table_memory(
        settings.nf_conntrack_max,
        settings.hashsize,
        cthost::diagnose::ESTIMATED_ENTRY_BYTES,
    ));
    // Without a plan, the target is the machine under the root.
    let ram = planned_ram.or_else(|| {
        root.read("/proc/meminfo", "")
            .ok()
            .and_then(|t| cthost::slab::parse_memtotal(&t))
    });
    if ram.is_none() && !a.timeouts_only {
        writeln!(
            out,
            "warning: MemTotal unreadable under the root: the {}%-of-RAM check is skipped",
            apply::SAFE_RAM_PERCENT
        )?;
    }
    let mut refusals = if a.timeouts_only {
        vec![]
    } else {
        apply::safety(&settings, d.count, memory, budget, ram)
    };
    refusals.extend(apply::timeout_refusals(&settings));
    writeln!(out, "changes:")?;
    print_diff(&d, out)?;
    if !refusals.is_empty() && !a.force {
        return Err(apply::ApplyError::Unsafe(refusals).into());
    }
    let Some(lock) = lock else {
        writeln!(out, "dry run: nothing changed; pass --yes to apply")?;
        return Ok(());
    };
    if d.values.is_empty() && d.files.is_empty() {
        return Ok(());
    }
    let fault = Fault {
        at: a.fail_after,
        kind: a.fault,
    };
    let done = apply::apply_locked(root, &journal, &lock, &d, fault)?;
    let j = &done.journal;
    if done.stacked {
        writeln!(
            out,
            "stacked on the journal of {} (not rolled back): rollback returns to the values from before it",
            j.created
        )?;
    }
    writeln!(
        out,
        "applied {} values and {} files; journal {} (ctdoctor rollback restores them)",
        d.values.len(),
        d.files.len(),
        journal.display()
    )?;
    Ok(())
}

pub fn run_rollback(a: &RollbackArgs, host: &Host, out: &mut impl Write) -> Result<()> {
    let root = host.root();
    let path = apply::journal_path(root, a.state_dir.as_deref())?;
    let j = match apply::rollback(root, &path, Fault::default())? {
        RolledBack::Done(j) => j,
        RolledBack::NoJournal => {
            writeln!(
                out,
                "nothing to roll back: no journal at {}; nothing changed",
                path.display()
            )?;
            return Ok(());
        }
        RolledBack::AlreadyDone(j) => {
            writeln!(
                out,
                "nothing to roll back: the journal of {} was rolled back at {}; nothing changed",
                j.created,
                j.rolled_back.as_deref().unwrap_or("an earlier run")
            )?;
            return Ok(());
        }
    };
    for v in &j.values {
        writeln!(out, "  {:<62} {}", v.path, v.old)?;
    }
    for f in &j.files {
        let what = if f.old.is_some() {
            "restored"
        } else {
            "removed"
        };
        writeln!(out, "  {:<62} {what}", f.path)?;
    }
    writeln!(
        out,
        "rolled back the journal of {} ({} values, {} files)",
        j.created,
        j.values.len(),
        j.files.len()
    )?;
    if j.values.is_empty() && j.files.is_empty() {
        bail!("the journal was empty");
    }
    Ok(())
}
