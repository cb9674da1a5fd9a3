//! `simulate --from-live` against a real table: a throwaway namespace
//! (prefix `simcli`) filled with a generated mix; the model starts from
//! exactly the dumped entries and says what it measured.

use ctlab::Netns;

mod common;
use common::{json, run, text};

#[test]
fn from_live_seeds_the_model_with_the_dumped_table() {
    ctlab::require_root!();
    let ns = Netns::create("simcli-live").expect("netns");
    let mix = ctlab::generate(2_000, 11, ctlab::Mix::default());
    ns.insert(&mix).expect("insert mix");
    let args = [
        "--netns",
        ns.name(),
        "simulate",
        "--from-live",
        "--rate",
        "10",
        "--duration",
        "60s",
        "--step",
        "10s",
    ];
    let o = run(&args);
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("live table: 2000 entries dumped"), "{t}");
    assert!(t.contains("live creation rate"), "{t}");
    let mut with_json = vec!["--json"];
    with_json.extend(args);
    let o = run(&with_json);
    let v = json(&o);
    let first = &v["series"][0];
    assert_eq!(first["t"].as_f64(), Some(0.0));
    // Entries of protocols the model has no state for (GRE, SCTP, ...)
    // are listed, with their counts, instead of being seeded.
    let skipped: u64 = t
        .lines()
        .find_map(|l| l.split_once("not seeded: ").map(|(_, r)| r.to_string()))
        .map_or(0, |r| {
            r.split(", ")
                .filter_map(|g| g.rsplit_once(' ').and_then(|(_, n)| n.parse::<u64>().ok()))
                .sum()
        });
    assert_eq!(
        first["entries"].as_u64(),
        Some(2_000 - skipped),
        "{first}\n{t}"
    );
    assert!(skipped < 400, "most of the mix is TCP, UDP and ICMP: {t}");
}
