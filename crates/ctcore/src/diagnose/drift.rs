//! The drift rule (issue 20): a live conntrack value that differs from
//! what is persisted (sysctl.d, modprobe.d) or from ctdoctor's last apply
//! is WARNING, naming both values and who set the live one
//! ([`crate::drift::Cause`]), with the fix for that cause.

use super::*;
use crate::drift::{Cause, Drift, HASHSIZE, MAX};

fn persisted_text(d: &Drift) -> Vec<String> {
    let mut v = Vec::new();
    if let Some(p) = &d.persisted {
        v.push(format!("{} in {}:{}", p.value, p.file, p.line));
    }
    if let Some(j) = d.journal {
        v.push(format!("{j} from ctdoctor apply (journal)"));
    }
    v
}

fn wanted(d: &Drift) -> u64 {
    d.journal
        .or(d.persisted.as_ref().map(|p| p.value))
        .unwrap_or(d.live)
}

fn finding(d: &Drift) -> Finding {
    let want = wanted(d);
    let (who, fix): (String, Vec<String>) = match &d.cause {
        Cause::KubeProxy { pid, source, formula } => (
            format!("set by kube-proxy (pid {pid}, {source}: {formula})"),
            match d.key.as_str() {
                MAX | HASHSIZE => vec![
                    format!("kube-proxy rewrites nf_conntrack_max (and raises hashsize to max/4) each time it starts: set its conntrack maxPerCore to 0 (--conntrack-max-per-core=0, or conntrack.maxPerCore: 0 in its KubeProxyConfiguration) to leave the persisted value alone, or set conntrack.min to {want}"),
                ],
                _ => vec![format!(
                    "kube-proxy sets this timeout at start: set the matching conntrack timeout in its configuration to {want} s, or to 0 to leave it alone"
                )],
            },
        ),
        Cause::ReadBeforeLoad { file } => (
            format!("{file} is applied at boot before nf_conntrack is loaded, when the key does not exist yet"),
            vec![
                format!("load the module before systemd-sysctl runs: ctdoctor apply --persist writes {} (or: echo nf_conntrack > {0})", crate::drift::MODULES_LOAD_FILE),
                format!("then apply it now: sysctl -w net.netfilter.{}={want}", d.key),
            ],
        ),
        Cause::SysReadOnly => (
            "/sys is mounted read-only here, so hashsize cannot be written at runtime".into(),
            vec![
                "write hashsize from a process that sees /sys read-write (the host, not a container with a read-only /sys)".into(),
                format!("echo {want} > /sys/module/nf_conntrack/parameters/hashsize"),
            ],
        ),
        Cause::BuiltinModprobe { file } => (
            format!("nf_conntrack is built into the kernel, so {file} is never read"),
            vec![
                format!("set it on the kernel command line: nf_conntrack.hashsize={want}"),
                format!("or at runtime (and at each boot): echo {want} > /sys/module/nf_conntrack/parameters/hashsize"),
            ],
        ),
        Cause::Unknown => (
            "changed at runtime by something else (sysctl -w, a tuning daemon, a container runtime)".into(),
            vec![if d.key == HASHSIZE {
                format!("echo {want} > /sys/module/nf_conntrack/parameters/hashsize")
            } else {
                format!("sysctl -w net.netfilter.{}={want}, and find what rewrote it", d.key)
            }],
        ),
    };
    let was = persisted_text(d).join(", ");
    let mut evidence = vec![format!("live {} = {}", d.key, d.live)];
    evidence.extend(
        persisted_text(d)
            .into_iter()
            .map(|p| format!("persisted/applied: {p}")),
    );
    if let Some(i) = &d.invalid {
        evidence.push(format!(
            "ignored: {}:{} sets {} to a value the kernel rejects ({}), so nothing is applied from it",
            i.file, i.line, i.key, i.why
        ));
    }
    evidence.push(format!("cause: {who}"));
    Finding {
        id: FindingId::Drift(d.key.clone()),
        severity: Severity::Warning,
        title: format!("{} drifted: live {}, but {was}; {who}", d.key, d.live),
        evidence,
        fix,
    }
}

pub(super) fn drift(f: &Facts) -> Vec<Finding> {
    f.drift
        .as_ref()
        .map(|d| d.drifts().iter().map(finding).collect())
        .unwrap_or_default()
}
