//! `ctdoctor completions SHELL` and `ctdoctor man [SUBCOMMAND]`: generated
//! from the clap definitions, so every subcommand and flag is in them.

mod common;
use common::{run, text};

const SUBCOMMANDS: &[&str] = &[
    "check",
    "top",
    "plan",
    "apply",
    "rollback",
    "completions",
    "man",
];

fn stdout(args: &[&str]) -> String {
    let out = run(args);
    assert!(out.status.success(), "{args:?}: {}", text(&out));
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn every_shell_completes_every_subcommand() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = stdout(&["completions", shell]);
        assert!(script.len() > 1000, "{shell}: {} bytes", script.len());
        for sub in SUBCOMMANDS {
            assert!(script.contains(sub), "{shell} completion lacks {sub}");
        }
        // Flags of subcommands too, not only the top level.
        assert!(script.contains("all-netns"), "{shell} lacks --all-netns");
    }
    assert!(stdout(&["completions", "bash"]).contains("complete -F _ctdoctor"));
    assert!(stdout(&["completions", "zsh"]).starts_with("#compdef ctdoctor"));
    assert!(stdout(&["completions", "fish"]).contains("complete -c ctdoctor"));
}

#[test]
fn unknown_shell_is_bad_usage() {
    let out = run(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("tcsh"));
}

#[test]
fn man_page_lists_subcommands() {
    let page = stdout(&["man"]);
    assert!(page.contains(".TH ctdoctor 1"), "{page}");
    for sub in SUBCOMMANDS {
        assert!(
            page.contains(&format!("ctdoctor\\-{sub}(1)")) || page.contains(sub),
            "man lacks {sub}"
        );
    }
    assert!(page.contains("\\-\\-netns"), "global flags in the page");
}

#[test]
fn subcommand_pages() {
    let page = stdout(&["man", "check"]);
    assert!(page.contains(".TH ctdoctor-check 1"), "{page}");
    assert!(page.contains("all\\-netns"), "{page}");
    assert!(
        page.contains("ctdoctor check"),
        "synopsis names the full command"
    );
    let out = run(&["man", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("no subcommand \"nope\" (one of: check, top"),
        "{}",
        text(&out)
    );
}
