//! The timeout rules: timeouts that keep dead entries for long (TCP
//! established, TIME_WAIT, UDP), and NAT timeouts below RFC 5382's floor.

use super::*;

pub(super) fn timeouts(f: &Facts, s: &Summary, t: &Thresholds) -> Vec<Finding> {
    let Some(mix) = &f.mix else { return vec![] };
    let fill = match (s.count, s.max) {
        (Some(c), Some(m)) if m > 0 => pct(c, m),
        _ => 0.0,
    };
    let pressure = fill >= t.warn / 2.0;
    let mut out = Vec::new();
    if let Some(&est) = f.timeouts.get("nf_conntrack_tcp_timeout_established") {
        let idle = mix.established_idle_1h;
        let share = pct(idle, mix.entries.max(1));
        if est > RFC5382_ESTABLISHED && share >= 20.0 && pressure {
            out.push(Finding {
                id: FindingId::TimeoutTcpEstablished,
                severity: Severity::Warning,
                title: format!("idle ESTABLISHED entries hold {share:.0}% of the table (timeout {est} s)"),
                evidence: vec![
                    format!("{idle} ESTABLISHED entries idle for over an hour, of {} dumped", mix.entries),
                    format!("nf_conntrack_tcp_timeout_established = {est} s ({:.1} days)", est as f64 / 86_400.0),
                ],
                fix: vec![format!(
                    "sysctl -w net.netfilter.nf_conntrack_tcp_timeout_established={RFC5382_ESTABLISHED}   # 2 h 4 min, the RFC 5382 floor for NAT; applications need TCP keepalives below it"
                )],
            });
        } else if est >= 86_400 && idle > 0 {
            out.push(Finding {
                id: FindingId::TimeoutTcpEstablished,
                severity: Severity::Info,
                title: format!("tcp_timeout_established is {est} s; idle ESTABLISHED entries: {share:.1}% of the table"),
                evidence: vec![format!("{idle} of {} entries idle for over an hour", mix.entries)],
                fix: vec![],
            });
        }
    }
    let tw = mix.state("TIME_WAIT");
    let tw_share = pct(tw, mix.entries.max(1));
    if tw_share >= 30.0 && pressure {
        let tw_timeout = f
            .timeouts
            .get("nf_conntrack_tcp_timeout_time_wait")
            .copied()
            .unwrap_or(120);
        out.push(Finding {
            id: FindingId::TimeoutTcpTimeWait,
            severity: Severity::Warning,
            title: format!("TIME_WAIT entries are {tw_share:.0}% of the table: many short connections"),
            evidence: vec![format!("{tw} TIME_WAIT of {} dumped; nf_conntrack_tcp_timeout_time_wait = {tw_timeout} s", mix.entries)],
            fix: vec![
                "reuse connections (HTTP keep-alive, connection pools) for the busiest peers: ctdoctor top --filter state=TIME_WAIT --by src,dst,dport".into(),
                "for local services that need no NAT or state: exempt them, e.g. nft add table inet raw; nft add chain inet raw pre '{ type filter hook prerouting priority raw; }'; nft add rule inet raw pre tcp dport 80 notrack (and the same for output with sport), then accept ct state untracked before stateful rules".into(),
                format!("lowering tcp_timeout_time_wait below 120 s (2 x MSL) trades protection against late duplicates: sysctl -w net.netfilter.nf_conntrack_tcp_timeout_time_wait=60 only if you accept that"),
            ],
        });
    }
    out
}
