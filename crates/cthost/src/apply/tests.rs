//! Unit tests of apply and rollback on a fake tree: each case of issue 8.

use std::fs;

use super::fixture::Tree;
use super::journal::{APPLYING, load};
use super::*;
use crate::plan::Settings;

mod props;

fn settings() -> Settings {
    Settings {
        nf_conntrack_max: 524_288,
        hashsize: 524_288,
        timeouts: [
            ("nf_conntrack_tcp_timeout_established".to_string(), 7440),
            ("nf_conntrack_udp_timeout".to_string(), 30),
        ]
        .into(),
    }
}

fn files() -> Vec<(String, String)> {
    vec![
        (
            SYSCTL_FILE.to_string(),
            "net.netfilter.nf_conntrack_max = 524288\n".to_string(),
        ),
        (
            MODPROBE_FILE.to_string(),
            "options nf_conntrack hashsize=524288\n".to_string(),
        ),
    ]
}

fn ok() -> Fault {
    Fault::default()
}

fn rolled_back(t: &Tree) -> RolledBack {
    rollback(&t.root(), &t.journal(), ok()).expect("rollback")
}

#[test]
fn apply_then_rollback_restores_byte_for_byte() {
    let t = Tree::new("ok");
    let before = t.snapshot();
    let d = diff(&t.root(), &settings(), false, &files()).expect("diff");
    // udp_timeout is unchanged: 3 values and 2 files differ.
    assert_eq!(d.values.len(), 3);
    assert_eq!(d.files.len(), 2);
    assert_eq!(d.count, Some(1000));
    let a = apply(&t.root(), &t.journal(), &d, ok()).expect("apply");
    assert_eq!(a.journal.state, "applied");
    assert!(!a.stacked);
    assert_eq!(
        fs::read(t.path(&format!("{NF}/nf_conntrack_max"))).expect("max"),
        b"524288\n"
    );
    assert_eq!(
        fs::read(t.path(MODPROBE_FILE)).expect("modprobe"),
        b"options nf_conntrack hashsize=524288\n"
    );
    assert!(matches!(rolled_back(&t), RolledBack::Done(_)));
    assert_eq!(t.snapshot(), before);
    // The directory apply created for the modprobe file is gone again.
    assert!(!t.path("/etc/modprobe.d").exists());
}

#[test]
fn an_error_or_enospc_at_every_write_leaves_the_tree_unchanged() {
    // 2 journal steps, 3 values, 2 files x 2 steps, 2 journal steps.
    for kind in [FaultKind::Error, FaultKind::NoSpace] {
        for n in 0..11 {
            let t = Tree::new("fault");
            let before = t.snapshot();
            let d = diff(&t.root(), &settings(), false, &files()).expect("diff");
            let err = apply(&t.root(), &t.journal(), &d, Fault::at(n, kind))
                .expect_err("fault")
                .to_string();
            assert!(
                err.contains("the system is as before"),
                "{kind:?} {n}: {err}"
            );
            assert!(!err.contains("RESTORE FAILED"), "{kind:?} {n}: {err}");
            if kind == FaultKind::NoSpace {
                assert!(err.contains("No space left on device"), "{n}: {err}");
            }
            // Byte for byte, and no temp file left anywhere.
            assert_eq!(t.snapshot(), before, "{kind:?} at write {n}");
            // The journal has nothing pending: a rollback changes nothing.
            if let Some(j) = load(&t.journal()).expect("journal") {
                assert!(!j.pending(), "{kind:?} {n}: {j:?}");
            }
        }
    }
}

#[test]
fn a_file_that_cannot_be_written_rolls_back() {
    let t = Tree::new("eisdir");
    let d = diff(&t.root(), &settings(), false, &[]).expect("diff");
    // The fake kernel refuses the third value: its path is a directory.
    let p = t.path(&format!("{NF}/nf_conntrack_tcp_timeout_established"));
    fs::remove_file(&p).expect("rm");
    fs::create_dir(&p).expect("dir");
    let before = t.snapshot();
    let err = apply(&t.root(), &t.journal(), &d, ok()).expect_err("must fail");
    assert!(
        err.to_string()
            .contains("writing /proc/sys/net/netfilter/nf_conntrack_tcp_timeout_established"),
        "{err}"
    );
    assert_eq!(t.snapshot(), before);
}

#[test]
fn a_symlink_planted_at_a_value_is_not_written_through() {
    let t = Tree::new("valuelink");
    let d = diff(&t.root(), &settings(), false, &[]).expect("diff");
    let hs = t.path(HASHSIZE);
    fs::remove_file(&hs).expect("rm");
    std::os::unix::fs::symlink(t.victim(), &hs).expect("symlink");
    let before = t.snapshot();
    let err = apply(&t.root(), &t.journal(), &d, ok()).expect_err("refused");
    assert!(err.to_string().contains("is a symlink"), "{err}");
    assert_eq!(t.snapshot(), before);
}

#[test]
fn plan_timeouts_naming_other_paths_are_refused() {
    let t = Tree::new("badkey");
    let before = t.snapshot();
    // The issue's example: a path escape and max smuggled in as a timeout.
    for (key, hint) in [
        ("../../../../tmp/x", "not a conntrack timeout sysctl"),
        ("../../../outside/victim", "not a conntrack timeout sysctl"),
        ("nf_conntrack_max", "under \"settings\""),
        (
            "nf_conntrack_udp_timeout\0",
            "not a conntrack timeout sysctl",
        ),
        ("nf_conntrack_bogus_timeout", "no such sysctl"),
    ] {
        let s = Settings {
            timeouts: [(key.to_string(), 7)].into(),
            ..settings()
        };
        let err = diff(&t.root(), &s, true, &[]).expect_err(key).to_string();
        assert!(err.contains(hint), "{key:?}: {err}");
    }
    assert_eq!(t.snapshot(), before);
}

#[test]
fn rollback_refuses_a_journal_naming_other_paths() {
    let t = Tree::new("hostilejournal");
    let before = t.snapshot();
    let victim = t.victim();
    let escape = format!("/../..{}", victim.display());
    for (values, files) in [
        (
            format!(r#"[{{"path": "{escape}", "old": "1", "new": "2"}}]"#),
            "[]".to_string(),
        ),
        (
            "[]".to_string(),
            format!(r#"[{{"path": "{escape}", "old": null, "new": ""}}]"#),
        ),
        (
            "[]".to_string(),
            format!(
                r#"[{{"path": "{SYSCTL_FILE}", "old": null, "new": "", "created_dirs": ["{}"]}}]"#,
                t.outside().display()
            ),
        ),
    ] {
        let j = format!(
            r#"{{"created": "x", "values": {values}, "files": {files}, "state": "applied"}}"#
        );
        fs::create_dir_all(t.journal().parent().expect("dir")).expect("mkdir");
        fs::write(t.journal(), &j).expect("journal");
        let err = rollback(&t.root(), &t.journal(), ok())
            .expect_err("hostile")
            .to_string();
        assert!(err.contains("names a path apply never writes"), "{err}");
        assert_eq!(t.snapshot(), before, "{j}");
        assert_eq!(fs::read(&victim).expect("victim"), b"precious\n");
    }
}

#[test]
fn a_config_dir_linked_out_of_the_root_is_refused() {
    let t = Tree::new("dirlink");
    fs::remove_dir_all(t.path("/etc/sysctl.d")).expect("rm");
    std::os::unix::fs::symlink(t.outside(), t.path("/etc/sysctl.d")).expect("link");
    let before = t.snapshot();
    let err = diff(&t.root(), &settings(), false, &files()).expect_err("refused");
    assert!(err.to_string().contains("leading out of the root"), "{err}");
    // A diff made before the link was planted is refused by apply too.
    let d = Diff {
        files: vec![FileChange {
            path: SYSCTL_FILE.into(),
            old: None,
            new: "x\n".into(),
            created_dirs: vec![],
            old_perm: None,
        }],
        ..Diff::default()
    };
    let err = apply(&t.root(), &t.journal(), &d, ok()).expect_err("refused");
    assert!(err.to_string().contains("leading out of the root"), "{err}");
    assert_eq!(t.snapshot(), before);
}

#[test]
fn a_symlink_planted_at_the_temp_name_does_not_redirect_the_write() {
    let t = Tree::new("templink");
    let tmp = paths::temp_of(&t.path(SYSCTL_FILE));
    std::os::unix::fs::symlink(t.victim(), &tmp).expect("plant");
    let d = diff(&t.root(), &settings(), false, &files()).expect("diff");
    apply(&t.root(), &t.journal(), &d, ok()).expect("apply");
    assert_eq!(fs::read(t.victim()).expect("victim"), b"precious\n");
    assert_eq!(
        fs::read(t.path(SYSCTL_FILE)).expect("file"),
        b"net.netfilter.nf_conntrack_max = 524288\n"
    );
    assert!(fs::symlink_metadata(&tmp).is_err(), "temp name left behind");
}

#[test]
fn a_second_apply_stacks_and_rollback_returns_to_the_original() {
    let t = Tree::new("stack");
    let before = t.snapshot();
    let d = diff(&t.root(), &settings(), false, &files()).expect("diff");
    apply(&t.root(), &t.journal(), &d, ok()).expect("first");
    let second = Settings {
        nf_conntrack_max: 1_048_576,
        hashsize: 1_048_576,
        ..settings()
    };
    let files2 = vec![(SYSCTL_FILE.to_string(), "second\n".to_string())];
    let d2 = diff(&t.root(), &second, false, &files2).expect("diff2");
    let a = apply(&t.root(), &t.journal(), &d2, ok()).expect("second");
    assert!(a.stacked);
    assert_eq!(a.journal.applies, 2);
    assert!(matches!(rolled_back(&t), RolledBack::Done(_)));
    assert_eq!(t.snapshot(), before);
}

#[test]
fn an_apply_after_a_killed_one_keeps_the_original_values() {
    for kill in 0..11 {
        let t = Tree::new("killed");
        let before = t.snapshot();
        let d = diff(&t.root(), &settings(), false, &files()).expect("diff");
        let err = apply(
            &t.root(),
            &t.journal(),
            &d,
            Fault::at(kill, FaultKind::Kill),
        )
        .expect_err("killed");
        assert!(matches!(err, ApplyError::Killed(_)), "{err}");
        // Killed before the journal's rename: no journal, nothing changed.
        let j = load(&t.journal()).expect("load");
        assert_eq!(
            j.map(|j| j.state),
            (kill >= 2).then(|| APPLYING.to_string())
        );
        // The second apply reads the half-changed values as "old": the
        // journal must keep the first ones.
        let d = diff(&t.root(), &settings(), false, &files()).expect("diff");
        apply(&t.root(), &t.journal(), &d, ok()).expect("second apply");
        rolled_back(&t);
        assert_eq!(t.snapshot(), before, "killed before write {kill}");
    }
}

#[test]
fn a_second_rollback_changes_nothing() {
    let t = Tree::new("rollback2");
    let d = diff(&t.root(), &settings(), false, &files()).expect("diff");
    apply(&t.root(), &t.journal(), &d, ok()).expect("apply");
    rolled_back(&t);
    // The admin creates the modprobe file by hand since.
    t.put(MODPROBE_FILE, "options nf_conntrack hashsize=4096\n");
    let before = t.snapshot();
    assert!(matches!(rolled_back(&t), RolledBack::AlreadyDone(_)));
    assert_eq!(t.snapshot(), before);
}

#[test]
fn a_corrupt_or_unreadable_journal_is_reported_as_such() {
    let t = Tree::new("corrupt");
    let jp = t.journal();
    fs::create_dir_all(jp.parent().expect("dir")).expect("mkdir");
    fs::write(&jp, "{\"created\": \"x\",\n \"values\": [1").expect("write");
    let err = rollback(&t.root(), &jp, ok())
        .expect_err("corrupt")
        .to_string();
    assert!(
        err.contains("is corrupt") && err.contains("line 2 column"),
        "{err}"
    );
    // apply refuses too, and leaves the journal as it is.
    let d = diff(&t.root(), &settings(), false, &[]).expect("diff");
    let before = t.snapshot();
    let err = apply(&t.root(), &jp, &d, ok())
        .expect_err("corrupt")
        .to_string();
    assert!(err.contains("is corrupt"), "{err}");
    assert_eq!(t.snapshot(), before);
    assert!(fs::read_to_string(&jp).expect("kept").ends_with("[1"));
    // A journal that cannot be read is not "no journal".
    fs::remove_file(&jp).expect("rm");
    fs::create_dir(&jp).expect("dir");
    let err = rollback(&t.root(), &jp, ok())
        .expect_err("unreadable")
        .to_string();
    assert!(err.contains("cannot read the journal"), "{err}");
    assert!(!err.contains("no journal"), "{err}");
}

#[test]
fn a_second_run_refuses_while_the_lock_is_held() {
    let t = Tree::new("lock");
    let d = diff(&t.root(), &settings(), false, &[]).expect("diff");
    let before = t.snapshot();
    let state = t.journal().parent().expect("dir").to_path_buf();
    let held = lock::take(&state, lock::LOCK_WAIT).expect("first lock");
    // A journal, so that rollback has something to take the lock for.
    t.put(
        &format!("{}/{}", super::STATE_DIR, super::JOURNAL_FILE),
        r#"{"created": "x", "state": "applied", "values": [], "files": []}"#,
    );
    let err = apply(&t.root(), &t.journal(), &d, ok()).expect_err("locked");
    assert!(
        err.to_string()
            .contains("another ctdoctor apply or rollback"),
        "{err}"
    );
    let err = rollback(&t.root(), &t.journal(), ok()).expect_err("locked");
    assert!(
        err.to_string()
            .contains("another ctdoctor apply or rollback"),
        "{err}"
    );
    assert_eq!(t.snapshot(), before);
    drop(held);
    apply(&t.root(), &t.journal(), &d, ok()).expect("after the first ends");
}

#[test]
fn a_hashsize_rounded_up_to_512_reads_back_as_taken() {
    assert!(hashsize_taken("1000", "1024"));
    assert!(hashsize_taken("1024", "1024"));
    assert!(hashsize_taken("262145", "262656"));
    assert!(!hashsize_taken("1000", "1000000"));
    assert!(!hashsize_taken("1025", "1024"));
    // Live 1024 already is what writing 1000 gives: no change to make.
    let t = Tree::new("round");
    t.put(HASHSIZE, "1024\n");
    let s = Settings {
        hashsize: 1000,
        ..settings()
    };
    let d = diff(&t.root(), &s, false, &[]).expect("diff");
    assert!(!d.values.iter().any(|v| v.path == HASHSIZE), "{d:?}");
}

#[test]
fn safety_refusals() {
    let mut s = settings();
    assert!(safety(&s, Some(1000), 1, None, None).is_empty());
    s.nf_conntrack_max = 500;
    assert_eq!(safety(&s, Some(1000), 1, None, None).len(), 2); // below count; hashsize > 8 x max
    s.nf_conntrack_max = 0;
    s.hashsize = 512;
    assert_eq!(safety(&s, None, 1, None, None).len(), 3);
    assert_eq!(safety(&settings(), None, 10, Some(5), None).len(), 1);
    s.nf_conntrack_max = u64::MAX;
    s.hashsize = u64::MAX;
    assert!(safety(&s, None, 1, None, None)[0].contains("above 2147483647"));
}

#[test]
fn a_table_above_a_quarter_of_ram_is_refused_without_a_budget() {
    let gib = 1u64 << 30;
    let v = safety(&settings(), None, 3 * gib, None, Some(8 * gib));
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(v[0].contains("above 25% of RAM"), "{v:?}");
    assert!(safety(&settings(), None, gib, None, Some(8 * gib)).is_empty());
}
