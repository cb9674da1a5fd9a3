//! deploy/systemd and deploy/kubernetes: the unit passes `systemd-analyze
//! verify` (alone and with each drop-in) and carries the hardening the
//! exporter needs; the DaemonSet parses as YAML and has hostNetwork,
//! CAP_NET_ADMIN only, a read-only root, resources and a scrape target.

use std::path::{Path, PathBuf};
use std::process::Command;

use yaml_rust2::{Yaml, YamlLoader};

mod common;
use common::{BIN, TempDir};

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy")
        .join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(deploy(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `Key=value` settings of a unit (comments and sections dropped), in order.
fn settings(unit: &str) -> Vec<(String, String)> {
    unit.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// The last value of `key` (systemd: a later assignment wins).
fn last<'a>(s: &'a [(String, String)], key: &str) -> &'a str {
    s.iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {key}= in the unit"))
}

/// `systemd-analyze verify` of `text` as ctdoctor-export.service, with
/// ExecStart pointing at the binary under test (verify checks that it
/// exists); no output at all means no warning either.
fn verify(text: &str) {
    let dir = TempDir::new("owners-unit");
    let unit = text.replace("/usr/bin/ctdoctor", BIN);
    dir.put("ctdoctor-export.service", &unit);
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(dir.p("ctdoctor-export.service"))
        .output()
        .expect("systemd-analyze (package systemd) must be installed");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "verify: {said}\n{unit}"
    );
}

#[test]
fn unit_verifies_alone_and_with_each_drop_in() {
    let unit = read("systemd/ctdoctor-export.service");
    verify(&unit);
    for drop_in in ["systemd/kernel-log.conf", "systemd/all-netns.conf"] {
        verify(&format!("{unit}\n{}", read(drop_in)));
    }
}

#[test]
fn broken_unit_fails_verify() {
    // The check above can fail: a bad value is an error verify reports.
    let unit =
        read("systemd/ctdoctor-export.service").replace("DynamicUser=yes", "DynamicUser=maybe");
    let dir = TempDir::new("owners-unit-bad");
    dir.put(
        "ctdoctor-export.service",
        &unit.replace("/usr/bin/ctdoctor", BIN),
    );
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(dir.p("ctdoctor-export.service"))
        .output()
        .expect("systemd-analyze");
    assert!(!out.status.success());
}

#[test]
fn unit_is_hardened_with_net_admin_only() {
    let s = settings(&read("systemd/ctdoctor-export.service"));
    assert_eq!(
        last(&s, "ExecStart"),
        "/usr/bin/ctdoctor export --listen 127.0.0.1:9466"
    );
    for (key, want) in [
        ("DynamicUser", "yes"),
        ("AmbientCapabilities", "CAP_NET_ADMIN"),
        ("CapabilityBoundingSet", "CAP_NET_ADMIN"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("ProtectKernelLogs", "no"),
        ("DevicePolicy", "closed"),
        ("DeviceAllow", "/dev/kmsg r"),
        (
            "RestrictAddressFamilies",
            "AF_NETLINK AF_INET AF_INET6 AF_UNIX",
        ),
    ] {
        assert_eq!(last(&s, key), want, "{key}");
    }
    assert!(
        !s.iter().any(|(k, _)| k == "PrivateDevices"),
        "would hide /dev/kmsg"
    );
    // Drop-ins widen the capability set, each for its one purpose.
    let k = settings(&read("systemd/kernel-log.conf"));
    assert_eq!(
        last(&k, "CapabilityBoundingSet"),
        "CAP_NET_ADMIN CAP_SYSLOG"
    );
    let a = settings(&read("systemd/all-netns.conf"));
    assert!(last(&a, "ExecStart").ends_with("--all-netns"));
    assert_eq!(
        last(&a, "AmbientCapabilities"),
        "CAP_NET_ADMIN CAP_SYS_ADMIN CAP_SYS_PTRACE"
    );
}

fn docs(path: &str) -> Vec<Yaml> {
    YamlLoader::load_from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn of_kind<'a>(docs: &'a [Yaml], kind: &str) -> &'a Yaml {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some(kind))
        .unwrap_or_else(|| panic!("no {kind}"))
}

fn strings(y: &Yaml) -> Vec<&str> {
    y.as_vec()
        .map(|v| v.iter().filter_map(Yaml::as_str).collect())
        .unwrap_or_default()
}

#[test]
fn daemonset_has_the_required_fields() {
    let d = docs("kubernetes/daemonset.yaml");
    let ns = of_kind(&d, "Namespace")["metadata"]["name"]
        .as_str()
        .expect("namespace name");
    for doc in d.iter().filter(|x| x["kind"].as_str() != Some("Namespace")) {
        assert_eq!(doc["metadata"]["namespace"].as_str(), Some(ns), "{doc:?}");
    }
    let sa = of_kind(&d, "ServiceAccount");
    assert_eq!(sa["automountServiceAccountToken"].as_bool(), Some(false));

    let ds = of_kind(&d, "DaemonSet");
    assert_eq!(ds["apiVersion"].as_str(), Some("apps/v1"));
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"].as_bool(), Some(true));
    assert_eq!(
        pod["hostPID"].as_bool(),
        Some(false),
        "only the all-netns patch needs it"
    );
    assert_eq!(
        pod["serviceAccountName"].as_str(),
        sa["metadata"]["name"].as_str()
    );
    let labels = &ds["spec"]["template"]["metadata"]["labels"];
    assert_eq!(&ds["spec"]["selector"]["matchLabels"], labels);

    let c = &pod["containers"][0];
    let sc = &c["securityContext"];
    assert_eq!(strings(&sc["capabilities"]["drop"]), ["ALL"]);
    assert_eq!(strings(&sc["capabilities"]["add"]), ["NET_ADMIN"]);
    assert_eq!(sc["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(sc["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert_eq!(sc["privileged"].as_bool(), Some(false));
    for part in ["requests", "limits"] {
        for res in ["cpu", "memory"] {
            assert!(
                c["resources"][part][res].as_str().is_some(),
                "resources.{part}.{res}"
            );
        }
    }
    let args = strings(&c["args"]);
    assert_eq!(args[0], "export");
    let port = c["ports"][0]["containerPort"]
        .as_i64()
        .expect("containerPort");
    assert!(
        args.iter().any(|a| a.ends_with(&format!(":{port}"))),
        "{args:?}"
    );
    assert_eq!(
        c["livenessProbe"]["httpGet"]["path"].as_str(),
        Some("/healthz")
    );

    // Scraping: annotations and a Service on the same port and pods.
    let ann = &ds["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(ann["prometheus.io/scrape"].as_str(), Some("true"));
    assert_eq!(
        ann["prometheus.io/port"].as_str(),
        Some(port.to_string().as_str())
    );
    assert_eq!(ann["prometheus.io/path"].as_str(), Some("/metrics"));
    let svc = of_kind(&d, "Service");
    assert_eq!(svc["spec"]["ports"][0]["port"].as_i64(), Some(port));
    let sel = svc["spec"]["selector"].as_hash().expect("selector");
    for (k, v) in sel {
        assert_eq!(&labels[k.as_str().expect("label key")], v, "selector {k:?}");
    }
}

#[test]
fn all_netns_patch_adds_exactly_what_setns_needs() {
    let d = docs("kubernetes/all-netns-patch.yaml");
    let pod = &d[0]["spec"]["template"]["spec"];
    assert_eq!(pod["hostPID"].as_bool(), Some(true));
    let c = &pod["containers"][0];
    assert_eq!(
        c["name"].as_str(),
        Some("export"),
        "merges by container name"
    );
    assert!(strings(&c["args"]).contains(&"--all-netns"));
    assert_eq!(
        strings(&c["securityContext"]["capabilities"]["drop"]),
        ["ALL"]
    );
    assert_eq!(
        strings(&c["securityContext"]["capabilities"]["add"]),
        ["NET_ADMIN", "SYS_ADMIN", "SYS_PTRACE"]
    );
    let mounts: Vec<(&str, bool)> = c["volumeMounts"]
        .as_vec()
        .expect("mounts")
        .iter()
        .map(|m| {
            (
                m["mountPath"].as_str().unwrap_or(""),
                m["readOnly"].as_bool() == Some(true),
            )
        })
        .collect();
    assert_eq!(mounts, [("/run/netns", true), ("/var/log/pods", true)]);
}

/// Issue 18: the DaemonSet's container and the image agree: the image it
/// names is the one `scripts/package image` tags (this version), its
/// command plus the first arg is the Containerfile's ENTRYPOINT, its port
/// is the one the image exposes, and its user is the image's (root, for
/// the reason the Containerfile gives). containers_kernel.rs runs the
/// image with exactly this spec.
#[test]
fn daemonset_container_matches_the_image() {
    let d = docs("kubernetes/daemonset.yaml");
    let c = &of_kind(&d, "DaemonSet")["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        c["image"].as_str(),
        Some(format!("ghcr.io/ctdoctor/ctdoctor:{}", env!("CARGO_PKG_VERSION")).as_str())
    );
    let file = read("container/Containerfile");
    let directive = |name: &str| {
        file.lines()
            .find_map(|l| l.strip_prefix(name).map(str::trim))
            .unwrap_or_else(|| panic!("no {name} in the Containerfile"))
    };
    assert_eq!(directive("FROM "), "scratch", "nothing to pull");
    let entrypoint: Vec<String> =
        serde_json::from_str(directive("ENTRYPOINT ")).expect("ENTRYPOINT in exec form");
    let mut run: Vec<&str> = strings(&c["command"]);
    run.push(strings(&c["args"])[0]);
    assert_eq!(entrypoint, run);
    let port = c["ports"][0]["containerPort"].as_i64().expect("port");
    assert_eq!(directive("EXPOSE "), port.to_string());
    let uid = c["securityContext"]["runAsUser"]
        .as_i64()
        .expect("runAsUser");
    assert_eq!(directive("USER "), format!("{uid}:{uid}"));
}
