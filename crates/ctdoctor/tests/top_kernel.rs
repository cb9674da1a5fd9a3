//! `ctdoctor top` against a real conntrack table: a namespace filled with a
//! known mix over ctnetlink plus real loopback TCP/UDP traffic tracked
//! through an nft `ct state` rule. `top --json` from the netlink, proc, file
//! and stdin sources must equal counts computed here, independently of the
//! code under test, from `conntrack -L -o extended` of the same namespace.

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use common::{BIN, json, run, run_stdin, stderr, text};
use ctlab::{Mix, Netns};
use serde_json::Value;

type Counts = BTreeMap<String, BTreeMap<String, u64>>;

/// Upper bounds of the timeout histogram, as documented for `top`.
const BUCKETS: [(u64, &str); 6] = [
    (10, "<10s"),
    (60, "10s-1m"),
    (300, "1m-5m"),
    (3600, "5m-1h"),
    (86_400, "1h-1d"),
    (432_000, "1d-5d"),
];

/// Count `conntrack -L -o extended` output with plain string handling.
fn independent_counts(text: &str) -> (u64, Counts) {
    let mut c = Counts::new();
    let mut n = 0;
    let mut add = |group: &str, key: String| {
        *c.entry(group.into()).or_default().entry(key).or_insert(0) += 1;
    };
    for line in text.lines().filter(|l| l.starts_with("ipv")) {
        n += 1;
        let f: Vec<&str> = line.split_whitespace().collect();
        let l4 = f[2];
        add("l3", f[0].to_string());
        add(
            "l4",
            if l4 == "unknown" {
                f[3].to_string()
            } else {
                l4.to_string()
            },
        );
        if l4 == "tcp" {
            add("tcp_state", f[5].to_string());
        }
        let timeout: u64 = f[4].parse().expect("timeout column");
        let bucket = BUCKETS
            .iter()
            .find(|(b, _)| timeout < *b)
            .map_or(">=5d", |(_, l)| l);
        add("timeout", bucket.to_string());
        let assured = f.contains(&"[ASSURED]");
        let unreplied = f.contains(&"[UNREPLIED]");
        if assured {
            add("flags", "assured".into());
        }
        if unreplied {
            add("flags", "unreplied".into());
        }
        if !assured && !unreplied {
            add("flags", "other".into());
        }
        let vals =
            |key: &str| -> Vec<&str> { f.iter().filter_map(|t| t.strip_prefix(key)).collect() };
        let (src, dst) = (vals("src="), vals("dst="));
        add("top_src", src[0].to_string());
        add("top_dst", dst[0].to_string());
        let (sport, dport) = (vals("sport="), vals("dport="));
        if !dport.is_empty() {
            add("top_dport", format!("{l4}/{}", dport[0]));
        }
        add("zone", vals("zone=").first().unwrap_or(&"0").to_string());
        add("mark", vals("mark=")[0].to_string());
        let (ids, skeys, dkeys) = (vals("id="), vals("srckey="), vals("dstkey="));
        let snat = src[0] != dst[1]
            || (sport.len() == 2 && sport[0] != dport[1])
            || (l4.starts_with("icmp") && ids[0] != ids[1])
            || (skeys.len() == 2 && skeys[0] != dkeys[1]);
        let dnat = dst[0] != src[1]
            || (dport.len() == 2 && dport[0] != sport[1])
            || (dkeys.len() == 2 && dkeys[0] != skeys[1]);
        add(
            "nat",
            match (snat, dnat) {
                (false, false) => "none",
                (true, false) => "snat",
                (false, true) => "dnat",
                (true, true) => "snat+dnat",
            }
            .into(),
        );
    }
    (n, c)
}

/// The same groups read back from `top --json -n 0` (every key).
fn report_counts(v: &Value) -> Counts {
    let mut c = Counts::new();
    for group in [
        "l3",
        "l4",
        "tcp_state",
        "flags",
        "zone",
        "mark",
        "nat",
        "timeout",
    ] {
        let m = c.entry(group.into()).or_default();
        for (k, n) in v[group].as_object().expect("object") {
            let n = n.as_u64().expect("count");
            if n > 0 {
                m.insert(k.clone(), n);
            }
        }
    }
    for group in ["top_src", "top_dst", "top_dport"] {
        let m = c.entry(group.into()).or_default();
        for kc in v[group].as_array().expect("array") {
            m.insert(
                kc["key"].as_str().expect("key").into(),
                kc["count"].as_u64().expect("count"),
            );
        }
    }
    c.retain(|_, m| !m.is_empty());
    c
}

fn top_json(args: &[&str], stdin: Option<&[u8]>) -> Value {
    let out = match stdin {
        Some(input) => run_stdin(args, input),
        None => run(args),
    };
    assert_eq!(
        out.status.code(),
        Some(0),
        "ctdoctor {args:?}: {}",
        text(&out)
    );
    json(&out)
}

/// Real loopback flows: ESTABLISHED (kept open), TIME_WAIT (closed), and
/// answered UDP, over IPv4 and IPv6. Returns the sockets to keep them open.
fn loopback_traffic() -> Vec<Box<dyn Send>> {
    let mut keep: Vec<Box<dyn Send>> = Vec::new();
    for addr in ["127.0.0.1:0", "[::1]:0"] {
        let listener = TcpListener::bind(addr).expect("listen");
        let target = listener.local_addr().expect("addr");
        for i in 0..6 {
            let client = TcpStream::connect(target).expect("connect");
            let (server, _) = listener.accept().expect("accept");
            if i < 2 {
                drop(client); // active close by the client: TIME_WAIT
                let mut server = server;
                let mut buf = [0u8; 1];
                let _ = server.read(&mut buf);
            } else {
                keep.push(Box::new(client));
                keep.push(Box::new(server));
            }
        }
        keep.push(Box::new(listener));
        let echo = UdpSocket::bind(addr).expect("udp bind");
        let client = UdpSocket::bind(if addr.starts_with('[') {
            "[::1]:0"
        } else {
            "127.0.0.1:0"
        })
        .expect("udp");
        echo.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        for _ in 0..3 {
            client
                .send_to(b"ping", echo.local_addr().expect("addr"))
                .expect("send");
            let mut buf = [0u8; 16];
            let (_, from) = echo.recv_from(&mut buf).expect("recv");
            echo.send_to(b"pong", from).expect("reply");
        }
        keep.push(Box::new(echo));
        keep.push(Box::new(client));
    }
    keep
}

#[test]
fn top_matches_conntrack_on_a_real_table() {
    ctlab::require_root!();
    let ns = Netns::create("top").expect("netns");
    ns.track_loopback().expect("nft ct rule");
    let mix = ctlab::generate(12_000, 42, Mix::default());
    ns.insert(&mix).expect("insert mix");
    let _sockets = ns.run(loopback_traffic).expect("traffic");
    // Let fresh ESTABLISHED timeouts (432000 s) move off the bucket edge.
    std::thread::sleep(Duration::from_millis(1500));

    let listing = ns
        .exec("conntrack", &["-L", "-o", "extended"])
        .expect("conntrack -L");
    let text = String::from_utf8(listing.stdout).expect("utf8");
    let (n, expected) = independent_counts(&text);
    // 12,000 inserted + per family 6 TCP flows and 1 UDP flow.
    assert_eq!(n, 12_014, "mix plus loopback flows");
    // The real traffic is in the table, tracked by the nft rule.
    assert!(expected["top_src"].contains_key("127.0.0.1"));
    assert!(expected["top_src"].contains_key("::1"));
    assert!(expected["tcp_state"]["TIME_WAIT"] > 0 && expected["l4"]["sctp"] > 0);
    assert!(expected["nat"].contains_key("snat") && expected["nat"].contains_key("dnat"));
    assert!(expected["zone"].contains_key("7"));

    let dir = std::env::temp_dir().join(format!("ctdoctor-top-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let file = dir.join("extended.txt");
    std::fs::write(&file, &text).expect("write dump");
    let file_arg = file.to_string_lossy().to_string();

    let netns = ns.name();
    for (what, args, stdin) in [
        (
            "netlink",
            vec!["--netns", netns, "top", "--json", "-n", "0"],
            None,
        ),
        (
            "proc",
            vec![
                "--netns", netns, "top", "--source", "proc", "--json", "-n", "0",
            ],
            None,
        ),
        (
            "file",
            vec!["top", "--file", &file_arg, "--json", "-n", "0"],
            None,
        ),
        (
            "stdin",
            vec!["top", "--file", "-", "--json", "-n", "0"],
            Some(text.as_bytes()),
        ),
    ] {
        let v = top_json(&args, stdin);
        assert_eq!(v["entries"].as_u64(), Some(n), "{what}: entries");
        assert_eq!(v["skipped_lines"].as_u64(), Some(0), "{what}: skipped");
        let got = report_counts(&v);
        for (group, want) in &expected {
            assert_eq!(got.get(group), Some(want), "{what}: group {group}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn top_filters_and_limits_on_a_real_table() {
    ctlab::require_root!();
    let ns = Netns::create("filter").expect("netns");
    let mix = ctlab::generate(3_000, 7, Mix::default());
    ns.insert(&mix).expect("insert mix");
    let tcp_syn_sent = mix
        .iter()
        .filter(|e| e.l4 == Some(ctmodel::L4Proto::Tcp) && e.state_name() == Some("SYN_SENT"))
        .count() as u64;
    let v = top_json(
        &[
            "--netns",
            ns.name(),
            "top",
            "--json",
            "-n",
            "3",
            "--filter",
            "l4=tcp",
            "--filter",
            "state=SYN_SENT",
        ],
        None,
    );
    assert_eq!(v["entries"].as_u64(), Some(tcp_syn_sent));
    assert_eq!(v["filtered_out"].as_u64(), Some(3_000 - tcp_syn_sent));
    assert_eq!(v["top_src"].as_array().map(Vec::len), Some(3));
    assert_eq!(v["flags"]["unreplied"].as_u64(), Some(tcp_syn_sent));
}

#[test]
fn top_reports_missing_namespace_and_bad_filter() {
    let out = run(&["--netns", "ctd-does-not-exist", "top"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.contains("/run/netns/ctd-does-not-exist does not exist"),
        "{err}"
    );
    let out = run_stdin(&["top", "--file", "-", "--filter", "colour=red"], b"");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(err.contains("unknown key"), "{err}");
}

/// Without CAP_NET_ADMIN: a clear message naming the capability, exit 1, no panic.
#[test]
fn top_without_privileges_says_what_is_missing() {
    for source in ["netlink", "proc"] {
        let out = ctlab::run_unprivileged(BIN, &["top", "--source", source]).expect("setpriv");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{source}: {err}");
        assert!(!err.contains("panicked"), "{source}: {err}");
        let hint = if source == "netlink" {
            "CAP_NET_ADMIN"
        } else {
            "Permission denied"
        };
        assert!(err.contains(hint), "{source}: {err}");
    }
}
