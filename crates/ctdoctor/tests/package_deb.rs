//! scripts/package builds the .deb from the binary under test (its cargo
//! profile, `--no-build`: no cargo build inside a test); `dpkg-deb -c` and
//! `-I` show the binary, man pages, completions, the unit (installed, not
//! enabled) and deploy/ under /usr/share/ctdoctor; the extracted files work.

use std::path::Path;
use std::process::Command;

mod common;
use common::{BIN, TempDir};

fn dpkg_deb(args: &[&str], deb: &Path) -> String {
    let out = Command::new("dpkg-deb")
        .args(args)
        .arg(deb)
        .output()
        .expect("dpkg-deb");
    assert!(
        out.status.success(),
        "dpkg-deb {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn deb_holds_binary_docs_unit_and_deploy_files() {
    // The profile whose binary this test runs: target/debug or target/release.
    let dir = Path::new(BIN)
        .parent()
        .and_then(Path::file_name)
        .and_then(|d| d.to_str())
        .expect("profile directory");
    let profile = if dir == "debug" { "dev" } else { dir };
    let out_dir = TempDir::new("owners-deb");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new(root.join("scripts/package"))
        .args(["--no-build", "--profile", profile, "--output", out_dir.s()])
        .output()
        .expect("scripts/package");
    assert!(
        out.status.success(),
        "scripts/package: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deb = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let deb = Path::new(&deb);
    assert!(deb.starts_with(&out_dir.0), "{}", deb.display());

    let list = dpkg_deb(&["-c"], deb);
    let paths: Vec<&str> = list
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .collect();
    for want in [
        "./usr/bin/ctdoctor",
        "./usr/share/man/man1/ctdoctor.1.gz",
        "./usr/share/man/man1/ctdoctor-check.1.gz",
        "./usr/share/man/man1/ctdoctor-top.1.gz",
        "./usr/share/bash-completion/completions/ctdoctor",
        "./usr/share/zsh/vendor-completions/_ctdoctor",
        "./usr/share/fish/vendor_completions.d/ctdoctor.fish",
        "./usr/lib/systemd/system/ctdoctor-export.service",
        "./usr/share/ctdoctor/deploy/systemd/ctdoctor-export.service",
        "./usr/share/ctdoctor/deploy/systemd/kernel-log.conf",
        "./usr/share/ctdoctor/deploy/systemd/all-netns.conf",
        "./usr/share/ctdoctor/deploy/kubernetes/daemonset.yaml",
        "./usr/share/ctdoctor/deploy/kubernetes/all-netns-patch.yaml",
    ] {
        assert!(paths.contains(&want), "no {want} in:\n{list}");
    }
    // Every deploy/ file of the tree is shipped (also those added later).
    let deploy = root.join("deploy");
    let mut stack = vec![deploy.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("deploy dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(&deploy).expect("under deploy");
                let want = format!("./usr/share/ctdoctor/deploy/{}", rel.display());
                assert!(paths.contains(&want.as_str()), "no {want} in:\n{list}");
            }
        }
    }
    let bin_line = list
        .lines()
        .find(|l| l.ends_with(" ./usr/bin/ctdoctor"))
        .expect("binary line");
    assert!(bin_line.starts_with("-rwxr-xr-x 0/0"), "{bin_line}");

    let info = dpkg_deb(&["-I"], deb);
    for field in [
        "Package: ctdoctor",
        "Version: 0.1.0-1",
        "Section: net",
        "Priority: optional",
        "Maintainer: ",
        "Depends: libc6",
        "Description: Find, explain and fix conntrack table exhaustion",
    ] {
        assert!(info.contains(field), "no {field:?} in:\n{info}");
    }
    // Disabled by default: the maintainer scripts never enable or start the
    // unit on their own (only re-enable it where the admin had enabled it).
    let ctrl = TempDir::new("owners-deb-control");
    let out = Command::new("dpkg-deb")
        .arg("-e")
        .arg(deb)
        .arg(ctrl.p("DEBIAN"))
        .output()
        .expect("dpkg-deb -e");
    assert!(out.status.success());
    for script in ["postinst", "prerm", "postrm"] {
        let text = std::fs::read_to_string(ctrl.p(&format!("DEBIAN/{script}"))).unwrap_or_default();
        for bad in [
            "systemctl start",
            "systemctl enable",
            "deb-systemd-invoke start",
        ] {
            assert!(!text.contains(bad), "{script} runs {bad:?}:\n{text}");
        }
        if text.contains("deb-systemd-helper enable") {
            assert!(
                text.contains("was-enabled"),
                "{script} enables unconditionally:\n{text}"
            );
        }
    }

    // The extracted files work: the binary prints its version, the bash
    // completion parses, the man page renders.
    let tree = TempDir::new("owners-deb-tree");
    let out = Command::new("dpkg-deb")
        .arg("-x")
        .arg(deb)
        .arg(&tree.0)
        .output()
        .expect("dpkg-deb -x");
    assert!(out.status.success());
    let v = Command::new(tree.p("usr/bin/ctdoctor"))
        .arg("--version")
        .output()
        .expect("extracted binary");
    assert_eq!(String::from_utf8_lossy(&v.stdout).trim(), "ctdoctor 0.1.0");
    let bash = Command::new("bash")
        .arg("-n")
        .arg(tree.p("usr/share/bash-completion/completions/ctdoctor"))
        .status()
        .expect("bash");
    assert!(bash.success());
    let gz = std::fs::read(tree.p("usr/share/man/man1/ctdoctor-check.1.gz")).expect("man page");
    assert_eq!(&gz[..2], &[0x1f, 0x8b], "gzip");
}
