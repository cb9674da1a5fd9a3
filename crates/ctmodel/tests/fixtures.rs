//! Every text form captured from the kernel (see fixtures/README.md) parses
//! to the same table. Expected counts are read off the fixture by hand.

use ctmodel::scan::scan;
use ctmodel::{Breakdown, Filter};

fn breakdown(name: &str) -> (Breakdown, ctmodel::scan::ScanReport) {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read(&path).expect("fixture");
    scan(&text[..], 2, || Breakdown::new(Filter::default())).expect("scan")
}

fn owned(v: Vec<(&str, u64)>) -> Vec<(String, u64)> {
    v.into_iter().map(|(k, c)| (k.to_string(), c)).collect()
}

#[test]
fn every_form_gives_the_same_table() {
    // (file, lines, ignored summary lines, skipped noise lines)
    let forms = [
        ("proc.txt", 14, 0, 0),
        ("plain.txt", 14, 0, 0),
        ("extended.txt", 15, 1, 0),
        ("id.txt", 15, 1, 0),
        ("timestamp.txt", 15, 1, 0),
        ("ktimestamp.txt", 15, 1, 0),
        ("labels.txt", 16, 1, 1),
        ("combo.txt", 16, 1, 1),
    ];
    for (name, lines, ignored, skipped) in forms {
        let (b, r) = breakdown(name);
        assert_eq!(
            (r.lines, r.ignored, r.skipped),
            (lines, ignored, skipped),
            "{name}"
        );
        assert_eq!(b.entries, 14, "{name}");
        assert_eq!(
            b.l4(),
            owned(vec![
                ("tcp", 6),
                ("udp", 2),
                ("icmp", 1),
                ("dccp", 1),
                ("gre", 1),
                ("icmpv6", 1),
                ("sctp", 1),
                ("udplite", 1)
            ]),
            "{name}"
        );
        assert_eq!(b.l3(), owned(vec![("ipv4", 11), ("ipv6", 3)]), "{name}");
        assert_eq!(
            b.tcp_state(),
            owned(vec![("TIME_WAIT", 3), ("ESTABLISHED", 2), ("SYN_SENT", 1)]),
            "{name}"
        );
        // sctp carries both [UNREPLIED] and [ASSURED]; SYN_SENT has neither.
        assert_eq!((b.assured, b.unreplied, b.other_flags), (6, 8, 1), "{name}");
        assert_eq!(
            b.nat(),
            vec![("none", 12), ("snat", 1), ("dnat", 1)],
            "{name}"
        );
        assert_eq!(b.zone(), vec![(0, 13), (7, 1)], "{name}");
        assert_eq!(b.mark(0), vec![(0, 13), (42, 1)], "{name}");
        let src = b.top_src(1);
        assert_eq!(src[0].0.to_string(), "10.1.1.1", "{name}");
        assert_eq!(src[0].1, 8, "{name}");
        // Ties are ordered by protocol then port number.
        let dport = b.top_dport(3);
        assert_eq!(
            dport,
            owned(vec![("tcp/80", 2), ("tcp/443", 2), ("tcp/8080", 2)]),
            "{name}"
        );
    }
}

#[test]
fn the_first_error_names_line_and_reason() {
    let (_, r) = breakdown("labels.txt");
    assert_eq!(r.first_errors.len(), 1);
    assert_eq!(r.first_errors[0].line, 1);
    assert!(
        r.first_errors[0]
            .error
            .to_string()
            .contains("protocol number")
    );
}
