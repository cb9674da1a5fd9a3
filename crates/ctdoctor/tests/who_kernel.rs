//! `ctdoctor check`'s "what turns conntrack on here" (`who.*` findings)
//! against rules made by the real `iptables`/`ip6tables` (nf_tables
//! backend) and `nft` inside a test namespace, and against real processes
//! (issue 7 section 4). Each test creates and deletes its own namespace;
//! none touches the host's firewall.

use std::os::unix::fs::MetadataExt;
use std::process::{Child, Command};
use std::time::Duration;

use ctlab::Netns;

mod common;
use common::{TempDir, check_json, evidence, finding};

/// Run `tool args...` in the namespace, after checking that `tool` is the
/// nf_tables backend (the distributions' default the issue is about).
fn xtables(ns: &Netns, tool: &str, args: &[&str]) {
    let v = ns.exec(tool, &["-V"]).expect("iptables -V");
    let v = String::from_utf8_lossy(&v.stdout);
    assert!(v.contains("(nf_tables)"), "{tool} is not iptables-nft: {v}");
    ns.exec(tool, args).expect("iptables rule");
}

#[test]
fn iptables_nft_rules_are_seen_in_their_iptables_form() {
    ctlab::require_root!();
    let ns = Netns::create("ipt").expect("netns");
    // The issue's two rules, and their IPv6 twins.
    xtables(
        &ns,
        "iptables",
        &[
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-s",
            "172.17.0.0/16",
            "-j",
            "MASQUERADE",
        ],
    );
    xtables(
        &ns,
        "iptables",
        &[
            "-A",
            "FORWARD",
            "-m",
            "conntrack",
            "--ctstate",
            "RELATED,ESTABLISHED",
            "-j",
            "ACCEPT",
        ],
    );
    xtables(
        &ns,
        "ip6tables",
        &[
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-s",
            "fd00::/64",
            "-j",
            "MASQUERADE",
        ],
    );
    xtables(
        &ns,
        "ip6tables",
        &[
            "-A",
            "FORWARD",
            "-m",
            "conntrack",
            "--ctstate",
            "RELATED,ESTABLISHED",
            "-j",
            "ACCEPT",
        ],
    );
    // nft -j shows them as bare xt statements: the reason they were missed.
    let json = ns.exec("nft", &["-j", "list", "ruleset"]).expect("nft -j");
    let json = String::from_utf8_lossy(&json.stdout);
    assert!(
        json.contains(r#"{"xt": {"type": "target", "name": "MASQUERADE"}}"#)
            && json.contains(r#"{"xt": {"type": "match", "name": "conntrack"}}"#),
        "{json}"
    );

    let v = check_json(&ns);
    let rules = finding(&v, "who.rules").unwrap_or_else(|| panic!("no who.rules: {v:#}"));
    assert_eq!(
        rules["title"],
        "firewall rules need conntrack: 2 NAT, 2 stateful"
    );
    assert_eq!(
        evidence(rules),
        vec![
            "iptables-nft -t nat -A POSTROUTING -s 172.17.0.0/16 -j MASQUERADE",
            "ip6tables-nft -t nat -A POSTROUTING -s fd00::/64 -j MASQUERADE",
            "iptables-nft -A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
            "ip6tables-nft -A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        ]
    );
    assert!(finding(&v, "who.unneeded").is_none(), "{v:#}");
}

/// The NOTRACK companion `ct state untracked accept` (nft) and
/// `-m conntrack --ctstate UNTRACKED -j ACCEPT` (iptables) accept only what
/// conntrack skipped: an exemption, not a reason conntrack is needed.
#[test]
fn notrack_with_untracked_accept_is_not_a_reason_for_conntrack() {
    ctlab::require_root!();
    let ns = Netns::create("notrack").expect("netns");
    ns.nft(
        "table inet exempt {\n\
         chain pre { type filter hook prerouting priority raw; udp dport 123 notrack; }\n\
         chain in { type filter hook input priority 0; ct state untracked accept; }\n\
         }\n",
    )
    .expect("nft");
    xtables(
        &ns,
        "iptables",
        &[
            "-t",
            "raw",
            "-A",
            "PREROUTING",
            "-p",
            "udp",
            "--dport",
            "53",
            "-j",
            "NOTRACK",
        ],
    );
    xtables(
        &ns,
        "iptables",
        &[
            "-A",
            "INPUT",
            "-m",
            "conntrack",
            "--ctstate",
            "UNTRACKED",
            "-j",
            "ACCEPT",
        ],
    );

    let v = check_json(&ns);
    assert!(finding(&v, "who.rules").is_none(), "{v:#}");
    let notrack = finding(&v, "who.notrack").unwrap_or_else(|| panic!("no who.notrack: {v:#}"));
    assert_eq!(
        evidence(notrack),
        vec![
            "inet exempt pre: notrack",
            "iptables-nft -t raw -A PREROUTING -p udp -m udp --dport 53 -j NOTRACK",
        ]
    );
    assert!(finding(&v, "who.unneeded").is_some(), "{v:#}");
}

/// Send one UDP datagram to 127.0.0.1:9 from inside the namespace.
fn udp_to_discard(ns: &Netns) {
    ns.run(|| {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        s.send_to(b"x", "127.0.0.1:9").expect("send");
    })
    .expect("in netns");
}

/// KERNEL.md section 10: nft accepts `notrack` in a chain at priority 0,
/// where it runs after conntrack and does nothing: the kernel tracks the
/// flow all the same. Before, check reported it as an exemption.
#[test]
fn notrack_after_conntrack_priority_is_reported_as_doing_nothing() {
    ctlab::require_root!();
    let ns = Netns::create("latenotrack").expect("netns");
    ns.nft(
        "table inet late {\n\
         chain out { type filter hook output priority 0; udp dport 9 notrack; }\n\
         chain in { type filter hook input priority 0; ct state established accept; }\n\
         }\n",
    )
    .expect("nft");
    udp_to_discard(&ns);

    let v = check_json(&ns);
    // The kernel's answer: the "exempted" flow has an entry.
    assert!(v["summary"]["count"].as_u64() >= Some(1), "{v:#}");
    assert!(finding(&v, "who.notrack").is_none(), "{v:#}");
    let late = finding(&v, "who.notrack_ineffective")
        .unwrap_or_else(|| panic!("no who.notrack_ineffective: {v:#}"));
    assert_eq!(late["severity"], "warning");
    assert_eq!(
        evidence(late),
        vec![
            "inet late out: notrack in a chain run at hook output priority 0, after conntrack (priority -200): does nothing"
        ]
    );
    assert!(
        late["fix"][0]
            .as_str()
            .is_some_and(|f| f.contains("priority raw")),
        "{late:#}"
    );
}

/// An nft `ct helper` object alone turns conntrack on in its namespace
/// (the kernel tracks loopback traffic there); before, check said
/// "nothing found here needs conntrack".
#[test]
fn ct_helper_object_alone_is_a_reason_for_conntrack() {
    ctlab::require_root!();
    let ns = Netns::create("cthelper").expect("netns");
    ns.nft("table ip t {\n ct helper ftph { type \"ftp\" protocol tcp; }\n}\n")
        .expect("nft");
    udp_to_discard(&ns);

    let v = check_json(&ns);
    assert!(v["summary"]["count"].as_u64() >= Some(1), "{v:#}");
    assert!(finding(&v, "who.unneeded").is_none(), "{v:#}");
    let rules = finding(&v, "who.rules").unwrap_or_else(|| panic!("no who.rules: {v:#}"));
    assert_eq!(evidence(rules), vec!["ip t: ct helper ftph"]);
}

/// nf_conntrack is built in on this machine's kernel, and a new namespace
/// tracks nothing: check still says that nothing here needs it.
#[test]
fn who_unneeded_is_said_on_an_empty_table() {
    ctlab::require_root!();
    let ns = Netns::create("empty").expect("netns");
    let v = check_json(&ns);
    assert_eq!(v["summary"]["count"], 0, "{v:#}");
    let how = if std::path::Path::new("/sys/module/nf_conntrack/initstate").exists() {
        "loaded as a module"
    } else {
        "built into the kernel"
    };
    let w = finding(&v, "who.unneeded").unwrap_or_else(|| panic!("no who.unneeded: {v:#}"));
    assert_eq!(
        w["title"],
        format!("nothing found here needs conntrack, yet nf_conntrack is {how} (table empty)")
    );
    assert_eq!(w["severity"], "info");
}

/// A process this test starts under a service's name (a copy of sleep
/// called `dockerd`); killed and reaped on drop.
struct FakeService {
    child: Child,
    _dir: TempDir,
}

impl FakeService {
    /// `dockerd` on the host, or inside `ns` when given.
    fn dockerd(ns: Option<&Netns>, tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("ctd-svc-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let dir = TempDir(dir);
        let exe = dir.0.join("dockerd");
        std::fs::copy("/bin/sleep", &exe).expect("copy sleep");
        let exe = exe.to_string_lossy().into_owned();
        // Another test thread may fork while the copy's write descriptor is
        // open; exec then fails with ETXTBSY until that child has exec'd.
        let spawn = || match ns {
            None => Command::new(&exe).arg("120").spawn(),
            Some(ns) => Command::new("ip")
                .args(["netns", "exec", ns.name(), &exe, "120"])
                .spawn(),
        };
        let mut tries = 0;
        let child = loop {
            match spawn() {
                Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && tries < 50 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                other => break other.expect("spawn"),
            }
        };
        // `ip netns exec` execs the program: wait until the pid is dockerd.
        let comm = format!("/proc/{}/comm", child.id());
        for _ in 0..200 {
            if std::fs::read_to_string(&comm).is_ok_and(|c| c.trim() == "dockerd") {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Self { child, _dir: dir }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for FakeService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// With `--netns`, /proc still lists the host's processes: a dockerd on
/// the host is the host's, one inside the namespace is this namespace's.
#[test]
fn host_services_are_reported_as_the_hosts_with_netns() {
    ctlab::require_root!();
    let ns = Netns::create("svc").expect("netns");
    let host = FakeService::dockerd(None, "host");
    let inside = FakeService::dockerd(Some(&ns), "inside");
    let init = std::fs::metadata("/proc/2/ns/net")
        .expect("kthreadd netns")
        .ino();

    let v = check_json(&ns);
    let here = finding(&v, "who.services").unwrap_or_else(|| panic!("no who.services: {v:#}"));
    assert_eq!(here["title"], "services that use conntrack: Docker");
    assert_eq!(evidence(here).len(), 1, "{here:#}");
    assert!(
        evidence(here)[0].starts_with(&format!("Docker (running (pid {}), netns ", inside.pid())),
        "{here:#}"
    );
    let away =
        finding(&v, "who.host_services").unwrap_or_else(|| panic!("no who.host_services: {v:#}"));
    assert!(
        away["title"].as_str().is_some_and(|t| t
            .starts_with("services that use conntrack in the host's namespace, not in this one: ")),
        "{away:#}"
    );
    // One line for the host's dockerd (the first found, should the host
    // run a real one too), none for the namespace's.
    let docker_lines: Vec<&str> = evidence(away)
        .into_iter()
        .filter(|l| l.starts_with("Docker ("))
        .collect();
    assert_eq!(docker_lines.len(), 1, "{away:#}");
    assert!(
        docker_lines[0].starts_with("Docker (running (pid ")
            && docker_lines[0].ends_with(&format!(
                ", host netns {init}): NAT for published ports and container masquerade"
            )),
        "{away:#}"
    );
    drop(host);
}
