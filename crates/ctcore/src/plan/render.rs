//! The plan's renderers: sysctl.d, modprobe.d, nftables and iptables
//! NOTRACK files, and the text explanation. Strings out, no I/O.

use super::*;
use crate::diagnose::mib;

fn header(p: &Plan, file: &str) -> String {
    format!(
        "# {file}: written by ctdoctor plan (profile {}, kernel {}, {} RAM, peak {} x {})\n",
        p.inputs.profile.name(),
        p.inputs.kernel,
        mib(p.inputs.ram),
        p.inputs.peak,
        p.inputs.headroom
    )
}

/// Body of /etc/sysctl.d/90-conntrack.conf.
pub fn render_sysctl(p: &Plan) -> String {
    sysctl_body(&header(p, SYSCTL_FILE), &p.settings)
}

/// The sysctl.d body for `settings`, after a comment `header`.
pub fn sysctl_body(header: &str, settings: &Settings) -> String {
    let mut s = header.to_string();
    s.push_str(&format!(
        "net.netfilter.nf_conntrack_max = {}\n",
        settings.nf_conntrack_max
    ));
    s.push_str("# resizes the hash table at boot (initial namespace; also works when nf_conntrack is built in)\n");
    s.push_str(&format!(
        "net.netfilter.nf_conntrack_buckets = {}\n",
        settings.hashsize
    ));
    for (name, v) in &settings.timeouts {
        s.push_str(&format!("net.netfilter.{name} = {v}\n"));
    }
    s
}

/// Body of /etc/modprobe.d/nf_conntrack.conf.
pub fn render_modprobe(p: &Plan) -> String {
    modprobe_body(&header(p, MODPROBE_FILE), &p.settings)
}

pub fn modprobe_body(header: &str, settings: &Settings) -> String {
    let mut s = header.to_string();
    s.push_str(
        "# Buckets set at runtime are lost at reboot, and the buckets sysctl is read-only\n",
    );
    s.push_str("# outside the initial namespace. When nf_conntrack is built into the kernel,\n");
    s.push_str(&format!(
        "# use the boot parameter nf_conntrack.hashsize={} instead.\n",
        settings.hashsize
    ));
    s.push_str(&format!(
        "options nf_conntrack hashsize={}\n",
        settings.hashsize
    ));
    s
}

const NOTRACK_CAVEATS: &str = "# Caveats: untracked packets cannot be NATed, bypass conntrack helpers, and no\n\
# longer match \"ct state established\" (they are \"untracked\"): accept them\n\
# before any stateful rule, in every filter chain that drops by state.\n";

fn ports_of(p: &Plan, udp: bool) -> Vec<u16> {
    p.notrack_ports
        .iter()
        .filter(|x| x.udp == udp)
        .map(|x| x.port)
        .collect()
}

/// A loadable nftables file (`nft -c -f` then `nft -f`).
pub fn render_nft(p: &Plan) -> String {
    let mut s = header(p, "NOTRACK rules (nftables)");
    s.push_str(NOTRACK_CAVEATS);
    s.push_str(
        "# notrack must run before conntrack (priority -200): these chains use raw (-300).\n",
    );
    s.push_str(
        "# In an existing stateful chain, also add first: ct state untracked accept, e.g.\n",
    );
    s.push_str("#   nft insert rule inet filter input ct state untracked accept\n");
    s.push_str("table inet ctdoctor_notrack {\n");
    for (chain, hook) in [("prerouting", "prerouting"), ("output", "output")] {
        s.push_str(&format!(
            "\tchain {chain} {{\n\t\ttype filter hook {hook} priority raw; policy accept;\n"
        ));
        if p.notrack_loopback {
            let dev = if hook == "output" { "oif" } else { "iif" };
            s.push_str(&format!("\t\t{dev} \"lo\" notrack\n"));
        }
        for (proto, udp) in [("tcp", false), ("udp", true)] {
            let ports = ports_of(p, udp);
            if ports.is_empty() {
                continue;
            }
            let set = ports
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            // Both directions and both roles: requests to the port and its replies.
            s.push_str(&format!("\t\t{proto} dport {{ {set} }} notrack\n"));
            s.push_str(&format!("\t\t{proto} sport {{ {set} }} notrack\n"));
        }
        s.push_str("\t}\n");
    }
    s.push_str("\tchain input {\n\t\ttype filter hook input priority filter - 10; policy accept;\n\t\tct state untracked accept\n\t}\n");
    s.push_str("}\n");
    s
}

/// An iptables-restore file. Load with --noflush: a plain iptables-restore
/// would flush the tables it names.
pub fn render_iptables(p: &Plan) -> String {
    let mut s = header(p, "NOTRACK rules (iptables-restore --noflush)");
    s.push_str(NOTRACK_CAVEATS);
    s.push_str(
        "# Load with: iptables-restore --test --noflush FILE && iptables-restore --noflush FILE\n",
    );
    s.push_str("*raw\n");
    for (chain, dev) in [("PREROUTING", "-i"), ("OUTPUT", "-o")] {
        if p.notrack_loopback {
            s.push_str(&format!("-A {chain} {dev} lo -j CT --notrack\n"));
        }
        for port in &p.notrack_ports {
            let proto = port.proto();
            for dir in ["--dport", "--sport"] {
                s.push_str(&format!(
                    "-A {chain} -p {proto} -m {proto} {dir} {} -j CT --notrack\n",
                    port.port
                ));
            }
        }
    }
    s.push_str("COMMIT\n*filter\n");
    for chain in ["INPUT", "FORWARD", "OUTPUT"] {
        s.push_str(&format!(
            "-I {chain} 1 -m conntrack --ctstate UNTRACKED -j ACCEPT\n"
        ));
    }
    s.push_str("COMMIT\n");
    s
}

/// The plan explained, for people.
pub fn render_text(p: &Plan) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "Plan for a {} host: kernel {}, {} RAM, {} CPUs\n\n",
        p.inputs.profile.name(),
        p.inputs.kernel,
        mib(p.inputs.ram),
        p.inputs.cpus
    ));
    s.push_str(&format!(
        "nf_conntrack_max = {}   hashsize (buckets) = {}   memory at max = {}\n",
        p.settings.nf_conntrack_max,
        p.settings.hashsize,
        mib(p.memory_at_max)
    ));
    if let Some(n) = &p.netns {
        s.push_str(&format!("  - {}\n", n.note));
    }
    for line in &p.sizing {
        s.push_str(&format!("  - {line}\n"));
    }
    for w in &p.warnings {
        s.push_str(&format!("  ! {w}\n"));
    }
    s.push_str("\nTimeouts (seconds):\n");
    for t in &p.timeouts {
        let cur = t.current.map_or_else(|| "?".to_string(), |c| c.to_string());
        s.push_str(&format!("  {:<40} {cur:>7} -> {:<7}\n", t.sysctl, t.value));
        s.push_str(&format!("      why: {}\n", t.reason));
        s.push_str(&format!("      floor {} s: {}\n", t.floor, t.floor_source));
        if let Some(e) = &t.effect {
            s.push_str(&format!("      effect: {e}\n"));
        }
    }
    if p.notrack_loopback || !p.notrack_ports.is_empty() {
        s.push_str("\nNOTRACK: ");
        let mut what: Vec<String> = p
            .notrack_ports
            .iter()
            .map(|x| format!("{}/{}", x.port, x.proto()))
            .collect();
        if p.notrack_loopback {
            what.insert(0, "loopback".into());
        }
        s.push_str(&what.join(", "));
        s.push_str(" (ctdoctor plan --format nft | iptables for the rules)\n");
    }
    s.push_str("\nFiles: ctdoctor plan --format sysctl | modprobe | nft | iptables | json\n");
    s.push_str(&format!(
        "apply --persist writes: {}\n",
        p.persist_files.join(", ")
    ));
    if let Some(b) = &p.boot_load {
        s.push_str(&format!("  - {}\n", b.explain()));
    }
    s.push_str(
        "Apply live, with a journal and rollback: ctdoctor apply (same flags) --yes [--persist]\n",
    );
    s
}
