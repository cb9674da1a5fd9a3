//! Property tests for the kernel-log scanner: any bytes, in any chunking,
//! never panic, and table-full lines among arbitrary other lines are all
//! counted, whatever the line lengths (issue 7 section 5: bounded streaming).

use std::io::{self, BufReader};

use ctcore::kernel_log::{Context, MAX_LINE, scan_reader};
use proptest::prelude::*;

const FULL: &str =
    "Nov 26 13:35:03 gw kernel: nf_conntrack: nf_conntrack: table full in netns 7, dropping packet";

fn ctx() -> Context {
    Context {
        now: Some(1_795_701_600.0),
        boot_time: Some(1_795_700_000.0),
        utc_offset: 0,
        this_boot: false,
        netns_inode: None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn any_bytes_in_any_chunks_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..4096),
        chunk in 1usize..64,
    ) {
        let r = BufReader::with_capacity(chunk, io::Cursor::new(bytes));
        let s = scan_reader(r, ctx()).expect("a finite input is always read");
        prop_assert!(s.total_full() <= s.lines);
    }

    #[test]
    fn every_table_full_line_is_counted_between_other_lines(
        others in proptest::collection::vec("[^\n]{0,200}", 0..20),
        long in proptest::option::of(Just(MAX_LINE + 10)),
        chunk in 1usize..512,
    ) {
        let mut text = String::new();
        let mut want = 0u64;
        for o in &others {
            text.push_str(o);
            text.push('\n');
            text.push_str(FULL);
            text.push('\n');
            want += 1;
        }
        if let Some(n) = long {
            text.push_str(&"x".repeat(n));
            text.push('\n');
            text.push_str(FULL);
            text.push('\n');
            want += 1;
        }
        let r = BufReader::with_capacity(chunk, io::Cursor::new(text.into_bytes()));
        let s = scan_reader(r, ctx()).expect("scan");
        let mine = s.table_full.iter().find(|g| g.netns_inode == Some(7)).map_or(0, |g| g.count);
        // Random lines may themselves be table-full lines of other groups.
        prop_assert_eq!(mine, want);
        prop_assert_eq!(s.skipped_long, u64::from(long.is_some()));
    }
}
