//! The drift guard (issue 20): what is persisted for conntrack (sysctl.d in
//! systemd-sysctl's order, modprobe.d `options nf_conntrack hashsize=`,
//! modules-load.d), what kube-proxy sets at start (its flags or its
//! KubeProxyConfiguration), and the pure comparison of live values with
//! the persisted ones and with ctdoctor's last apply journal, naming who
//! set the live value where that can be told. No I/O: cthost reads.

use std::collections::BTreeMap;

use yaml_rust2::{Yaml, YamlLoader};

/// The hash table size key (the module parameter; nf_conntrack_buckets
/// shows the same number).
pub const HASHSIZE: &str = "hashsize";
pub const MAX: &str = "nf_conntrack_max";

/// systemd-sysctl's directories, highest priority first (systemd's
/// src/sysctl/sysctl.c reads CONF_PATHS_STRV("sysctl.d"): /etc, /run,
/// /usr/local/lib, /usr/lib; /lib only on split-usr systems; order and
/// name masking per sysctl.d(5)). A name in an
/// earlier directory hides the same name in a later one; the files are then
/// applied in lexical order of their names, a later assignment winning.
pub const SYSCTL_DIRS: [&str; 5] = [
    "/etc/sysctl.d",
    "/run/sysctl.d",
    "/usr/local/lib/sysctl.d",
    "/usr/lib/sysctl.d",
    "/lib/sysctl.d",
];
/// Read last by `sysctl --system` (procps); systemd-sysctl reads it only
/// through a sysctl.d link such as Debian's /etc/sysctl.d/99-sysctl.conf
/// (sysctl.c reads no /etc/sysctl.conf of its own: checked in its source).
pub const SYSCTL_CONF: &str = "/etc/sysctl.conf";
/// kmod's directories, in the same precedence.
pub const MODPROBE_DIRS: [&str; 5] = [
    "/etc/modprobe.d",
    "/run/modprobe.d",
    "/usr/local/lib/modprobe.d",
    "/usr/lib/modprobe.d",
    "/lib/modprobe.d",
];
/// systemd-modules-load's directories, in the same precedence; Debian's
/// /etc/modules is read too.
pub const MODULES_LOAD_DIRS: [&str; 5] = [
    "/etc/modules-load.d",
    "/run/modules-load.d",
    "/usr/local/lib/modules-load.d",
    "/usr/lib/modules-load.d",
    "/lib/modules-load.d",
];
pub const ETC_MODULES: &str = "/etc/modules";

/// kube-proxy's defaults (pkg/proxy/apis/config/v1alpha1/defaults.go:
/// MaxPerCore 32*1024, Min 128*1024, TCPEstablishedTimeout 24h,
/// TCPCloseWaitTimeout 1h; checked against kubernetes/kubernetes).
pub const KUBE_PROXY_MAX_PER_CORE: i64 = 32768;
pub const KUBE_PROXY_MIN: i64 = 131072;
pub const KUBE_PROXY_TCP_ESTABLISHED: u64 = 86_400;
pub const KUBE_PROXY_TCP_CLOSE_WAIT: u64 = 3600;

/// The fixed key set the guard compares and the exporter labels with:
/// nf_conntrack_max, hashsize and every timeout `plan` may persist.
pub fn keys() -> Vec<&'static str> {
    let mut k = vec![MAX, HASHSIZE];
    k.extend(crate::plan::planned_timeouts().map(|t| t.sysctl()));
    k
}

/// The files of `dirs` (each with the `.conf` names found in it, in the
/// order of `dirs`) in the order systemd reads them: per name, the first
/// directory holding it; then by name.
pub fn conf_order(dirs: &[(&str, Vec<String>)]) -> Vec<String> {
    let mut by_name: BTreeMap<&str, &str> = BTreeMap::new();
    for (dir, names) in dirs {
        // Hidden files are skipped (systemd's conf_files_list, kmod).
        for n in names
            .iter()
            .filter(|n| n.ends_with(".conf") && !n.starts_with('.'))
        {
            by_name.entry(n.as_str()).or_insert(dir);
        }
    }
    by_name
        .into_iter()
        .map(|(n, d)| format!("{}/{n}", d.trim_end_matches('/')))
        .collect()
}

/// One persisted assignment and where it is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Setting {
    pub key: String,
    pub value: u64,
    pub file: String,
    pub line: usize,
}

/// The conntrack key of a sysctl name: `net.netfilter.nf_conntrack_max`,
/// `net/netfilter/nf_conntrack_max` and the alias `net.nf_conntrack_max`
/// all give `nf_conntrack_max`; `net.netfilter.nf_conntrack_buckets` (how
/// `plan --format sysctl` persists the table size) gives [`HASHSIZE`].
pub fn sysctl_key(name: &str) -> Option<String> {
    let n = name.trim().trim_start_matches('-').replace('/', ".");
    let key = n
        .strip_prefix("net.netfilter.")
        .or_else(|| (n == "net.nf_conntrack_max").then_some("nf_conntrack_max"))?;
    if key == "nf_conntrack_buckets" {
        return Some(HASHSIZE.into());
    }
    (key.starts_with("nf_conntrack_") && !key.contains(['*', '.'])).then(|| key.to_string())
}

/// A sysctl value as the kernel's proc_dointvec family parses it (these
/// keys are all `int`): leading blanks skipped, base 0 (`0x` hex, a
/// leading `0` octal, so `01048576` is invalid), no sign (a negative is
/// outside every key's range), at most 2147483647, and after the number
/// only a blank may follow, whatever comes after it is ignored
/// (`1048576 # tuned` is 1048576). The buckets sysctl also rejects 0.
/// Timeouts are converted to jiffies, which can lower their bound by HZ:
/// not known here, so not checked. The error says why.
pub fn parse_sysctl_value(key: &str, v: &str) -> Result<u64, String> {
    const BLANK: [char; 3] = [' ', '\t', '\n'];
    let s = v.trim_start_matches(BLANK);
    let (radix, digits) = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(r) if r.starts_with(|c: char| c.is_ascii_hexdigit()) => (16, r),
        _ if s.starts_with('0') => (8, s),
        _ => (10, s),
    };
    let end = digits
        .find(|c: char| !c.is_digit(radix))
        .unwrap_or(digits.len());
    let (num, rest) = digits.split_at(end);
    if num.is_empty() {
        return Err(format!("{v:?} is not an unsigned number"));
    }
    if !rest.is_empty() && !rest.starts_with(BLANK) {
        let base = if radix == 8 {
            " (a leading 0 is octal)"
        } else {
            ""
        };
        return Err(format!("{v:?}: {rest:?} follows the number{base}"));
    }
    let n = u64::from_str_radix(num, radix)
        .ok()
        .filter(|n| *n <= i32::MAX as u64)
        .ok_or_else(|| format!("{v:?} is over the kernel's int range (2147483647)"))?;
    if key == HASHSIZE && n == 0 {
        return Err(format!("{v:?}: the kernel rejects 0 buckets"));
    }
    Ok(n)
}

/// A module parameter as kstrtouint(val, 0) reads it (hashsize's setter):
/// an optional `+`, base 0, one trailing newline at most, an unsigned
/// 32-bit value; 0 (size the table by memory) is no persisted size.
pub fn parse_module_uint(v: &str) -> Option<u64> {
    let s = v.strip_suffix('\n').unwrap_or(v);
    let s = s.strip_prefix('+').unwrap_or(s);
    let (radix, digits) = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(r) => (16, r),
        None if s.len() > 1 && s.starts_with('0') => (8, &s[1..]),
        None => (10, s),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u32::from_str_radix(digits, radix)
        .ok()
        .filter(|n| *n > 0)
        .map(u64::from)
}

/// One assignment of a sysctl.d file whose value the kernel would reject.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Invalid {
    pub key: String,
    pub why: String,
    pub file: String,
    pub line: usize,
}

/// The conntrack assignments of one sysctl.d file in order (`key = value`,
/// `#` and `;` comments, a leading `-` ignoring errors; other keys left
/// out), each valid or why not ([`parse_sysctl_value`]). A UTF-8 BOM is
/// skipped (systemd does).
pub fn parse_sysctl(text: &str, file: &str) -> Vec<Result<Setting, Invalid>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| {
            let l = l.trim();
            if l.starts_with('#') || l.starts_with(';') {
                return None;
            }
            let (k, v) = l.split_once('=')?;
            let key = sysctl_key(k)?;
            let (file, line) = (file.to_string(), i + 1);
            Some(match parse_sysctl_value(&key, v.trim()) {
                Ok(value) => Ok(Setting {
                    key,
                    value,
                    file,
                    line,
                }),
                Err(why) => Err(Invalid {
                    key,
                    why,
                    file,
                    line,
                }),
            })
        })
        .collect()
}

/// The logical lines of a modprobe.d file, with the number of each one's
/// first line: a trailing backslash joins the next line (kmod's
/// getline_wrapped).
fn modprobe_lines(text: &str) -> Vec<(usize, String)> {
    let mut out: Vec<(usize, String)> = Vec::new();
    let mut open = false;
    for (i, l) in text.lines().enumerate() {
        let (body, cont) = match l.strip_suffix('\\') {
            Some(b) => (b, true),
            None => (l, false),
        };
        match out.last_mut() {
            Some((_, last)) if open => last.push_str(body),
            _ => out.push((i + 1, body.to_string())),
        }
        open = cont;
    }
    out
}

/// `options nf_conntrack hashsize=N` in one modprobe.d file (the module
/// name with `-` or `_`); the last one wins, as the kernel parses the
/// concatenated options in order.
pub fn parse_modprobe(text: &str, file: &str) -> Option<Setting> {
    let mut found = None;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (line, l) in modprobe_lines(text) {
        let mut w = l.split_whitespace();
        if w.next() != Some("options") {
            continue;
        }
        if w.next().map(|m| m.replace('-', "_")).as_deref() != Some("nf_conntrack") {
            continue;
        }
        for opt in w.take_while(|o| !o.starts_with('#')) {
            if let Some(v) = opt.strip_prefix("hashsize=")
                && let Some(value) = parse_module_uint(v.trim_matches('"'))
            {
                found = Some(Setting {
                    key: HASHSIZE.into(),
                    value,
                    file: file.to_string(),
                    line,
                });
            }
        }
    }
    found
}

/// What is persisted: `sysctl_files` and `modprobe_files` as (path, text)
/// in read order; a later assignment of a key replaces an earlier one.
pub fn persisted(
    sysctl_files: &[(String, String)],
    modprobe_files: &[(String, String)],
) -> BTreeMap<String, Setting> {
    persisted_and_invalid(sysctl_files, modprobe_files).0
}

/// [`persisted`], and the keys whose last sysctl.d assignment the kernel
/// rejects. systemd-sysctl keeps only the last assignment of a key, so an
/// invalid last one leaves nothing valid applied for it from sysctl.d.
/// hashsize: modprobe.d's `hashsize=` is set when the module loads and the
/// nf_conntrack_buckets sysctl later, by systemd-sysctl, so when both are
/// there the sysctl wins; an invalid buckets sysctl leaves modprobe's.
pub fn persisted_and_invalid(
    sysctl_files: &[(String, String)],
    modprobe_files: &[(String, String)],
) -> (BTreeMap<String, Setting>, BTreeMap<String, Invalid>) {
    let mut last: BTreeMap<String, Result<Setting, Invalid>> = BTreeMap::new();
    for (path, text) in sysctl_files {
        for a in parse_sysctl(text, path) {
            let key = match &a {
                Ok(s) => s.key.clone(),
                Err(i) => i.key.clone(),
            };
            last.insert(key, a);
        }
    }
    let mut out = BTreeMap::new();
    for (path, text) in modprobe_files {
        if let Some(s) = parse_modprobe(text, path) {
            out.insert(s.key.clone(), s);
        }
    }
    let mut invalid = BTreeMap::new();
    for (k, a) in last {
        match a {
            Ok(s) => {
                out.insert(k, s);
            }
            Err(i) => {
                invalid.insert(k, i);
            }
        }
    }
    (out, invalid)
}

/// Whether a persisted setting comes from a modprobe.d file.
fn from_modprobe(s: &Setting) -> bool {
    MODPROBE_DIRS
        .iter()
        .any(|d| s.file.strip_prefix(d).is_some_and(|r| r.starts_with('/')))
}

/// The first module of a modules-load.d file (or /etc/modules) that loads
/// nf_conntrack with it: nf_conntrack itself or a module depending on it.
pub fn loads_conntrack(text: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
        .filter_map(|l| l.split_whitespace().next())
        .map(|m| m.replace('-', "_"))
        .find(|m| {
            m.starts_with("nf_conntrack")
                || m.starts_with("nf_nat")
                || m.starts_with("ip_vs")
                || [
                    "xt_conntrack",
                    "xt_state",
                    "xt_nat",
                    "xt_MASQUERADE",
                    "nft_ct",
                    "nft_nat",
                    "nft_masq",
                    "openvswitch",
                ]
                .contains(&m.as_str())
        })
}

/// The modules-load.d file `apply --persist` writes when nf_conntrack is
/// a loadable module nothing loads at boot: systemd-modules-load then
/// loads it before systemd-sysctl runs, so the sysctl.d file finds its keys.
pub const MODULES_LOAD_FILE: &str = "/etc/modules-load.d/ctdoctor-nf_conntrack.conf";

/// Body of [`MODULES_LOAD_FILE`], after a comment `header`.
pub fn modules_load_body(header: &str) -> String {
    format!(
        "{header}# Loads nf_conntrack at boot before systemd-sysctl runs, so that the\n# net.netfilter.nf_conntrack_* keys of the sysctl.d file exist when it is applied.\nnf_conntrack\n"
    )
}

/// Whether `apply --persist` writes [`MODULES_LOAD_FILE`], and why not.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BootLoad {
    /// A loadable module that nothing loads at boot: the file is written.
    Write { file: String },
    /// Built into the kernel: present before any sysctl file is read.
    Builtin,
    /// Already loaded at boot by this file's entry (`module`).
    AlreadyLoaded { file: String, module: String },
    /// nf_conntrack is not loaded here, so whether it is a module is unknown.
    Unknown,
}

impl BootLoad {
    /// From [`DriftFacts::builtin`] and [`DriftFacts::loaded_at_boot`], the
    /// same facts the drift cause [`Cause::ReadBeforeLoad`] is judged on.
    pub fn decide(builtin: Option<bool>, loaded_at_boot: Option<&(String, String)>) -> BootLoad {
        match (builtin, loaded_at_boot) {
            (Some(true), _) => BootLoad::Builtin,
            (_, Some((file, module))) => BootLoad::AlreadyLoaded {
                file: file.clone(),
                module: module.clone(),
            },
            (Some(false), None) => BootLoad::Write {
                file: MODULES_LOAD_FILE.into(),
            },
            (None, None) => BootLoad::Unknown,
        }
    }

    /// One line for plan and apply.
    pub fn explain(&self) -> String {
        match self {
            BootLoad::Write { file } => format!(
                "{file}: nf_conntrack is a loadable module that nothing loads at boot; written with --persist so the sysctl file takes effect at boot"
            ),
            BootLoad::Builtin => format!(
                "{MODULES_LOAD_FILE} not needed: nf_conntrack is built into the kernel, so its sysctls exist before the sysctl file is read"
            ),
            BootLoad::AlreadyLoaded { file, module } => format!(
                "{MODULES_LOAD_FILE} not needed: {file} already loads {module} (and with it nf_conntrack) at boot"
            ),
            BootLoad::Unknown => format!(
                "{MODULES_LOAD_FILE} not written: nf_conntrack is not loaded here (no /sys/module/nf_conntrack), so whether it is a module is unknown"
            ),
        }
    }
}

/// kube-proxy's conntrack settings (KubeProxyConntrackConfiguration);
/// `None` is "not given": the default applies.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct KubeProxyConntrack {
    pub max_per_core: Option<i64>,
    pub min: Option<i64>,
    pub tcp_established: Option<u64>,
    pub tcp_close_wait: Option<u64>,
    pub udp: Option<u64>,
    pub udp_stream: Option<u64>,
}

/// One running kube-proxy and the settings it started with.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KubeProxy {
    pub pid: u32,
    /// "flags" or "config FILE".
    pub source: String,
    pub settings: KubeProxyConntrack,
}

/// kube-proxy's command line, split.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KubeProxyArgs {
    pub flags: KubeProxyConntrack,
    /// `--config FILE`: then the file's values apply and these flags are
    /// ignored (kube-proxy's flag help says so).
    pub config: Option<String>,
}

/// Whether a command line is kube-proxy's (argv[0]'s base name, or
/// `hyperkube kube-proxy`).
pub fn is_kube_proxy(argv: &[String]) -> bool {
    let base = |s: &String| s.rsplit('/').next().unwrap_or(s).to_string();
    match argv.first().map(base).as_deref() {
        Some("kube-proxy") => true,
        Some("hyperkube") => argv
            .get(1)
            .is_some_and(|a| a == "kube-proxy" || a == "proxy"),
        _ => false,
    }
}

/// A Go duration (`24h0m0s`, `1h`, `0s`) in whole seconds.
fn go_secs(s: &str) -> Option<u64> {
    let s = s.trim().trim_matches('"');
    if s == "0" {
        return Some(0);
    }
    humantime::parse_duration(s).ok().map(|d| d.as_secs())
}

/// pflag's forms: `--name=value` and `--name value`.
pub fn parse_args(argv: &[String]) -> KubeProxyArgs {
    let mut out = KubeProxyArgs::default();
    let mut i = 1;
    while i < argv.len() {
        let a = argv[i].as_str();
        i += 1;
        let Some(flag) = a.strip_prefix("--").or_else(|| a.strip_prefix('-')) else {
            continue;
        };
        let (name, value) = match flag.split_once('=') {
            Some((n, v)) => (n, v.to_string()),
            None => {
                let Some(v) = argv.get(i) else { break };
                if !matches!(
                    flag,
                    "config"
                        | "conntrack-max-per-core"
                        | "conntrack-min"
                        | "conntrack-tcp-timeout-established"
                        | "conntrack-tcp-timeout-close-wait"
                        | "conntrack-udp-timeout"
                        | "conntrack-udp-timeout-stream"
                ) {
                    continue;
                }
                i += 1;
                (flag, v.clone())
            }
        };
        let f = &mut out.flags;
        match name {
            "config" => out.config = Some(value),
            "conntrack-max-per-core" => f.max_per_core = value.parse().ok(),
            "conntrack-min" => f.min = value.parse().ok(),
            "conntrack-tcp-timeout-established" => f.tcp_established = go_secs(&value),
            "conntrack-tcp-timeout-close-wait" => f.tcp_close_wait = go_secs(&value),
            "conntrack-udp-timeout" => f.udp = go_secs(&value),
            "conntrack-udp-timeout-stream" => f.udp_stream = go_secs(&value),
            _ => {}
        }
    }
    out
}

/// The `conntrack:` section of a KubeProxyConfiguration (YAML or JSON).
pub fn parse_config(text: &str) -> Result<KubeProxyConntrack, String> {
    let docs = YamlLoader::load_from_str(text).map_err(|e| e.to_string())?;
    let doc = docs.first().ok_or("empty document")?;
    if let Some(kind) = doc["kind"].as_str()
        && kind != "KubeProxyConfiguration"
    {
        return Err(format!("kind {kind:?} is not KubeProxyConfiguration"));
    }
    let c = &doc["conntrack"];
    let secs = |y: &Yaml| match y {
        Yaml::String(s) => go_secs(s),
        Yaml::Integer(i) => u64::try_from(*i).ok(),
        _ => None,
    };
    Ok(KubeProxyConntrack {
        max_per_core: c["maxPerCore"].as_i64(),
        min: c["min"].as_i64(),
        tcp_established: secs(&c["tcpEstablishedTimeout"]),
        tcp_close_wait: secs(&c["tcpCloseWaitTimeout"]),
        udp: secs(&c["udpTimeout"]),
        udp_stream: secs(&c["udpStreamTimeout"]),
    })
}

impl KubeProxyConntrack {
    /// What kube-proxy writes to nf_conntrack_max on `cpus` CPUs
    /// (getConntrackMax, cmd/kube-proxy/app/conntrack.go, formerly
    /// server_linux.go): maxPerCore x CPUs, at least min; `None` when
    /// maxPerCore is 0 (left as is). Its SetMax then raises hashsize to
    /// max/4 only when the live one is smaller.
    pub fn max(&self, cpus: u64) -> Option<u64> {
        let per = self.max_per_core.unwrap_or(KUBE_PROXY_MAX_PER_CORE);
        if per <= 0 {
            return None;
        }
        let floor = u64::try_from(self.min.unwrap_or(KUBE_PROXY_MIN)).unwrap_or(0);
        let scaled = (per as u64).saturating_mul(cpus);
        Some(scaled.max(floor))
    }

    /// The formula, for a finding: `--conntrack-max-per-core=32768 x 4
    /// CPUs = 131072, at least --conntrack-min=131072`.
    pub fn explain_max(&self, cpus: u64) -> String {
        let per = self.max_per_core.unwrap_or(KUBE_PROXY_MAX_PER_CORE);
        let min = self.min.unwrap_or(KUBE_PROXY_MIN);
        format!(
            "maxPerCore {per}{} x {cpus} CPUs = {}, at least min {min}{}",
            if self.max_per_core.is_none() {
                " (default)"
            } else {
                ""
            },
            (per.max(0) as u64).saturating_mul(cpus),
            if self.min.is_none() { " (default)" } else { "" },
        )
    }

    /// What kube-proxy writes to a timeout sysctl, `None` when it leaves
    /// it (0, or a timeout it does not set).
    pub fn timeout(&self, key: &str) -> Option<u64> {
        let v = match key {
            "nf_conntrack_tcp_timeout_established" => {
                self.tcp_established.unwrap_or(KUBE_PROXY_TCP_ESTABLISHED)
            }
            "nf_conntrack_tcp_timeout_close_wait" => {
                self.tcp_close_wait.unwrap_or(KUBE_PROXY_TCP_CLOSE_WAIT)
            }
            "nf_conntrack_udp_timeout" => self.udp?,
            "nf_conntrack_udp_timeout_stream" => self.udp_stream?,
            _ => return None,
        };
        (v > 0).then_some(v)
    }
}

/// Everything the guard compares, read by cthost.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DriftFacts {
    /// Live values by key (hashsize from the module parameter).
    pub live: BTreeMap<String, u64>,
    pub persisted: BTreeMap<String, Setting>,
    /// Keys whose last sysctl.d assignment the kernel rejects (so not
    /// persisted), by key ([`persisted_and_invalid`]).
    pub invalid: BTreeMap<String, Invalid>,
    /// The new values of ctdoctor's last apply that is not rolled back.
    pub journal: BTreeMap<String, u64>,
    pub journal_path: Option<String>,
    pub kube_proxy: Vec<KubeProxy>,
    /// Online CPUs (kube-proxy counts /sys/devices/system/cpu).
    pub cpus: Option<u64>,
    /// nf_conntrack is built into the kernel; `None` unknown.
    pub builtin: Option<bool>,
    /// The modules-load.d file and module that load nf_conntrack at boot.
    pub loaded_at_boot: Option<(String, String)>,
    pub sys_read_only: bool,
    /// Timeouts are per namespace: outside the initial one only
    /// nf_conntrack_max and hashsize (global) are compared.
    pub init_netns: bool,
}

/// Who set a drifted live value.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Cause {
    /// kube-proxy's settings reproduce the live value.
    KubeProxy {
        pid: u32,
        source: String,
        formula: String,
    },
    /// A sysctl file sets the key but nf_conntrack is a module that nothing
    /// loads before systemd-sysctl runs: the key does not exist yet.
    ReadBeforeLoad {
        file: String,
    },
    /// hashsize cannot be written while /sys is mounted read-only.
    SysReadOnly,
    /// nf_conntrack is built in: modprobe.d options never reach it.
    BuiltinModprobe {
        file: String,
    },
    Unknown,
}

/// One key whose live value differs from what was persisted or applied.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Drift {
    pub key: String,
    pub live: u64,
    pub persisted: Option<Setting>,
    pub journal: Option<u64>,
    /// The key's last sysctl.d assignment, when the kernel rejects it.
    pub invalid: Option<Invalid>,
    pub cause: Cause,
}

impl DriftFacts {
    fn compared(&self) -> impl Iterator<Item = &'static str> + '_ {
        keys()
            .into_iter()
            .filter(|k| self.init_netns || *k == MAX || *k == HASHSIZE)
    }

    /// (key, drifted) for every key of [`keys`] that has a live value and
    /// a persisted or journal value: the exporter's series.
    pub fn status(&self) -> Vec<(&'static str, bool)> {
        self.compared()
            .filter_map(|k| {
                let live = *self.live.get(k)?;
                let p = self.persisted.get(k).map(|s| s.value);
                let j = self.journal.get(k).copied();
                (p.is_some() || j.is_some()).then(|| {
                    (
                        k,
                        p.is_some_and(|v| v != live) || j.is_some_and(|v| v != live),
                    )
                })
            })
            .collect()
    }

    /// The drifted keys, each with its most likely cause.
    pub fn drifts(&self) -> Vec<Drift> {
        self.status()
            .into_iter()
            .filter(|(_, d)| *d)
            .filter_map(|(k, _)| {
                let live = *self.live.get(k)?;
                Some(Drift {
                    key: k.to_string(),
                    live,
                    persisted: self.persisted.get(k).cloned(),
                    journal: self.journal.get(k).copied(),
                    invalid: self.invalid.get(k).cloned(),
                    cause: self.cause(k, live),
                })
            })
            .collect()
    }

    fn cause(&self, key: &str, live: u64) -> Cause {
        let cpus = self.cpus.unwrap_or(1);
        for kp in &self.kube_proxy {
            let s = &kp.settings;
            let max = s.max(cpus);
            let formula = match key {
                MAX if max == Some(live) => Some(s.explain_max(cpus)),
                // It raises hashsize to max/4 when smaller.
                HASHSIZE if max.is_some_and(|m| m / 4 == live) => Some(format!(
                    "hashsize = nf_conntrack_max / 4 ({})",
                    s.explain_max(cpus)
                )),
                _ if key != MAX && key != HASHSIZE && s.timeout(key) == Some(live) => {
                    Some(format!("{key} = {live} s"))
                }
                _ => None,
            };
            if let Some(formula) = formula {
                return Cause::KubeProxy {
                    pid: kp.pid,
                    source: kp.source.clone(),
                    formula,
                };
            }
        }
        let persisted = self.persisted.get(key);
        if key == HASHSIZE {
            if self.sys_read_only {
                return Cause::SysReadOnly;
            }
            if let Some(p) = persisted.filter(|p| from_modprobe(p)) {
                if self.builtin == Some(true) {
                    return Cause::BuiltinModprobe {
                        file: p.file.clone(),
                    };
                }
                return Cause::Unknown;
            }
            // Else persisted as the nf_conntrack_buckets sysctl (or by
            // the journal only): as the other sysctls.
        }
        match persisted {
            Some(p)
                if p.value != live
                    && self.builtin == Some(false)
                    && self.loaded_at_boot.is_none() =>
            {
                Cause::ReadBeforeLoad {
                    file: p.file.clone(),
                }
            }
            _ => Cause::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn systemd_order_first_directory_wins_then_by_name() {
        let order = conf_order(&[
            (
                "/etc/sysctl.d",
                vec!["90-conntrack.conf".into(), "README".into()],
            ),
            ("/run/sysctl.d", vec!["10-a.conf".into()]),
            (
                "/usr/lib/sysctl.d",
                vec!["90-conntrack.conf".into(), "50-default.conf".into()],
            ),
        ]);
        assert_eq!(
            order,
            [
                "/run/sysctl.d/10-a.conf",
                "/usr/lib/sysctl.d/50-default.conf",
                "/etc/sysctl.d/90-conntrack.conf"
            ]
        );
    }

    #[test]
    fn sysctl_files_parse_and_the_last_assignment_wins() {
        let a = "# c\n; c\nnet.netfilter.nf_conntrack_max = 1048576\nnet.ipv4.ip_forward=1\n-net/netfilter/nf_conntrack_tcp_timeout_established=7440\nnet.netfilter.nf_conntrack_max = lots\n";
        let s: Vec<_> = parse_sysctl(a, "/etc/sysctl.d/90.conf")
            .into_iter()
            .flatten()
            .collect();
        assert_eq!(s.len(), 2);
        assert_eq!(
            (s[0].key.as_str(), s[0].value, s[0].line),
            (MAX, 1048576, 3)
        );
        assert_eq!(s[1].key, "nf_conntrack_tcp_timeout_established");
        let p = persisted(
            &[
                ("/a".into(), a.into()),
                ("/etc/sysctl.conf".into(), "net.nf_conntrack_max=2000000".into()),
            ],
            &[(
                "/etc/modprobe.d/x.conf".into(),
                "options nf-conntrack hashsize=1000 # old\noptions nf_conntrack expect_hashsize=9 hashsize=262144\n".into(),
            )],
        );
        assert_eq!(p[MAX].value, 2_000_000);
        assert_eq!(p[MAX].file, "/etc/sysctl.conf");
        assert_eq!((p[HASHSIZE].value, p[HASHSIZE].line), (262144, 2));
        assert_eq!(parse_modprobe("options nf_nat hashsize=5", "x"), None);
        assert_eq!(sysctl_key("net.netfilter.nf_conntrack_*"), None);
    }

    #[test]
    fn sysctl_values_parse_as_the_kernel_does() {
        let v = |s| parse_sysctl_value(MAX, s);
        assert_eq!(v("1048576"), Ok(1048576));
        assert_eq!(v("0x100000"), Ok(1048576));
        assert_eq!(v("04000000"), Ok(1048576));
        assert_eq!(v("1048576 # tuned by ops"), Ok(1048576));
        assert_eq!(v("1048576\tx"), Ok(1048576));
        assert_eq!(v("2147483647"), Ok(2147483647));
        assert_eq!(v("0"), Ok(0));
        for bad in [
            "01048576",
            "2147483648",
            "99999999999999999999999",
            "+5",
            "-5",
            "lots",
            "",
            "1048576#x",
            "12k",
            "0x",
        ] {
            assert!(v(bad).is_err(), "{bad:?}");
        }
        assert!(v("01048576").is_err_and(|e| e.contains("octal")));
        assert!(parse_sysctl_value(HASHSIZE, "0").is_err());
        assert_eq!(parse_sysctl_value(HASHSIZE, "0x20000"), Ok(131072));
    }

    #[test]
    fn buckets_sysctl_is_hashsize_and_applies_after_modprobe() {
        assert_eq!(
            sysctl_key("net.netfilter.nf_conntrack_buckets").as_deref(),
            Some(HASHSIZE)
        );
        let modprobe = [(
            "/etc/modprobe.d/nf.conf".to_string(),
            "options nf_conntrack hashsize=65536\n".to_string(),
        )];
        let sysctl = |t: &str| [("/etc/sysctl.d/90.conf".to_string(), t.to_string())];
        let p = persisted(
            &sysctl("net.netfilter.nf_conntrack_buckets = 131072\n"),
            &modprobe,
        );
        assert_eq!(
            (p[HASHSIZE].value, p[HASHSIZE].file.as_str()),
            (131072, "/etc/sysctl.d/90.conf")
        );
        // An invalid buckets sysctl leaves modprobe's size.
        let (p, inv) = persisted_and_invalid(
            &sysctl("net.netfilter.nf_conntrack_buckets = 0\n"),
            &modprobe,
        );
        assert_eq!(p[HASHSIZE].value, 65536);
        assert_eq!(inv[HASHSIZE].line, 1);
        // Drift from a sysctl-persisted size is told as a sysctl's, not as
        // modprobe.d that a built-in module never reads.
        let f = DriftFacts {
            live: [(HASHSIZE.to_string(), 65536)].into(),
            persisted: persisted(&sysctl("net.netfilter.nf_conntrack_buckets=131072\n"), &[]),
            builtin: Some(true),
            init_netns: true,
            ..DriftFacts::default()
        };
        let d = f.drifts();
        assert_eq!(
            (d[0].key.as_str(), d[0].cause.clone()),
            (HASHSIZE, Cause::Unknown)
        );
    }

    #[test]
    fn the_last_sysctl_assignment_wins_even_if_invalid() {
        let files = [
            (
                "/etc/sysctl.d/10.conf".to_string(),
                "net.netfilter.nf_conntrack_max = 1048576\n".to_string(),
            ),
            (
                "/etc/sysctl.d/90.conf".to_string(),
                "\u{feff}net.netfilter.nf_conntrack_max = 01048576\n".to_string(),
            ),
        ];
        let (p, inv) = persisted_and_invalid(&files, &[]);
        assert!(!p.contains_key(MAX), "{p:?}");
        assert_eq!(
            (inv[MAX].file.as_str(), inv[MAX].line),
            ("/etc/sysctl.d/90.conf", 1)
        );
        // The BOM is skipped: the key is read on line 1.
        let bom = "\u{feff}net.netfilter.nf_conntrack_max = 0x100000 # ops\n";
        assert_eq!(
            parse_sysctl(bom, "f")[0].as_ref().map(|s| s.value),
            Ok(1048576)
        );
        // No false drift from an invalid value.
        let f = DriftFacts {
            live: [(MAX.to_string(), 262144)].into(),
            persisted: p,
            init_netns: true,
            ..DriftFacts::default()
        };
        assert!(f.drifts().is_empty());
        // A drift for another reason names the rejected assignment.
        let f = DriftFacts {
            journal: [(MAX.to_string(), 300000)].into(),
            invalid: inv,
            ..f
        };
        let d = f.drifts();
        assert!(
            d[0].invalid
                .as_ref()
                .is_some_and(|i| i.why.contains("octal")),
            "{d:?}"
        );
    }

    #[test]
    fn modprobe_hex_and_continued_lines() {
        let h = |t: &str| parse_modprobe(t, "m").map(|s| (s.value, s.line));
        assert_eq!(
            h("options nf_conntrack hashsize=0x20000\n"),
            Some((131072, 1))
        );
        assert_eq!(
            h("# x\noptions nf_conntrack \\\n  hashsize=131072\n"),
            Some((131072, 2))
        );
        assert_eq!(
            h("options \\\nnf_conntrack \\\nhashsize=+0400000\n"),
            Some((131072, 1))
        );
        for bad in ["0", "0x", "12k", "4294967296", "-1", "08"] {
            assert_eq!(
                h(&format!("options nf_conntrack hashsize={bad}")),
                None,
                "{bad}"
            );
        }
        assert_eq!(parse_module_uint("4294967295"), Some(4294967295));
    }

    #[test]
    fn hidden_files_are_skipped() {
        let order = conf_order(&[(
            "/etc/sysctl.d",
            vec![".90-x.conf".into(), "90-x.conf".into()],
        )]);
        assert_eq!(order, ["/etc/sysctl.d/90-x.conf"]);
    }

    #[test]
    fn modules_load_entries_that_pull_in_conntrack() {
        assert_eq!(
            loads_conntrack("# x\nbr_netfilter\nnf_conntrack\n").as_deref(),
            Some("nf_conntrack")
        );
        assert_eq!(
            loads_conntrack("xt_conntrack").as_deref(),
            Some("xt_conntrack")
        );
        assert_eq!(loads_conntrack("br_netfilter\n;nf_conntrack\n"), None);
    }

    #[test]
    fn boot_load_only_for_a_module_nothing_loads() {
        assert_eq!(
            BootLoad::decide(Some(false), None),
            BootLoad::Write {
                file: MODULES_LOAD_FILE.into()
            }
        );
        assert_eq!(BootLoad::decide(Some(true), None), BootLoad::Builtin);
        let entry = ("/etc/modules".to_string(), "nf_nat".to_string());
        assert!(matches!(
            BootLoad::decide(Some(false), Some(&entry)),
            BootLoad::AlreadyLoaded { module, .. } if module == "nf_nat"
        ));
        assert_eq!(BootLoad::decide(None, None), BootLoad::Unknown);
        // The file it writes is one the drift reader counts as loading it.
        assert_eq!(
            loads_conntrack(&modules_load_body("# h\n")).as_deref(),
            Some("nf_conntrack")
        );
        assert!(
            BootLoad::Builtin
                .explain()
                .contains("built into the kernel")
        );
    }

    #[test]
    fn kube_proxy_flags_config_and_formula() {
        assert!(is_kube_proxy(&argv("/usr/local/bin/kube-proxy --v=2")));
        assert!(is_kube_proxy(&argv("/hyperkube kube-proxy")));
        assert!(!is_kube_proxy(&argv("/bin/sleep kube-proxy")));
        let a = parse_args(&argv(
            "kube-proxy --conntrack-max-per-core=65536 --v 2 --conntrack-min 100 --conntrack-tcp-timeout-established=1h30m0s --conntrack-tcp-timeout-close-wait 0s",
        ));
        assert_eq!(a.flags.max_per_core, Some(65536));
        assert_eq!(a.flags.min, Some(100));
        assert_eq!(a.flags.tcp_established, Some(5400));
        assert_eq!(a.flags.max(4), Some(262144));
        assert_eq!(a.flags.timeout("nf_conntrack_tcp_timeout_close_wait"), None);
        assert!(a.config.is_none());
        // Defaults: 32768 x CPUs, at least 131072.
        let d = KubeProxyConntrack::default();
        assert_eq!((d.max(2), d.max(8)), (Some(131072), Some(262144)));
        assert_eq!(
            d.timeout("nf_conntrack_tcp_timeout_established"),
            Some(86400)
        );
        assert_eq!(d.timeout("nf_conntrack_udp_timeout"), None);
        // maxPerCore 0: left as is.
        let zero = parse_args(&argv("kube-proxy --conntrack-max-per-core=0"));
        assert_eq!(zero.flags.max(8), None);
        let c = parse_args(&argv("kube-proxy --config /var/lib/kube-proxy/config.conf"));
        assert_eq!(c.config.as_deref(), Some("/var/lib/kube-proxy/config.conf"));
        let y = parse_config(
            "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nconntrack:\n  max: null\n  maxPerCore: 0\n  min: null\n  tcpEstablishedTimeout: 24h0m0s\n  udpTimeout: 30s\n",
        )
        .expect("yaml");
        assert_eq!(
            (y.max_per_core, y.min, y.tcp_established, y.udp),
            (Some(0), None, Some(86400), Some(30))
        );
        assert!(parse_config("kind: Pod\n").is_err());
        assert!(parse_config(": : [").is_err());
    }

    fn facts() -> DriftFacts {
        DriftFacts {
            live: [(MAX.to_string(), 262144), (HASHSIZE.to_string(), 65536)].into(),
            persisted: persisted(
                &[(
                    "/etc/sysctl.d/90-conntrack.conf".into(),
                    "net.netfilter.nf_conntrack_max = 1048576\n".into(),
                )],
                &[(
                    "/etc/modprobe.d/nf_conntrack.conf".into(),
                    "options nf_conntrack hashsize=262144\n".into(),
                )],
            ),
            cpus: Some(4),
            builtin: Some(true),
            init_netns: true,
            ..DriftFacts::default()
        }
    }

    #[test]
    fn causes_are_told_apart() {
        let mut f = facts();
        assert_eq!(f.drifts()[0].cause, Cause::Unknown);
        f.kube_proxy.push(KubeProxy {
            pid: 7,
            source: "flags".into(),
            settings: parse_args(&argv("kube-proxy --conntrack-max-per-core=65536")).flags,
        });
        let d = f.drifts();
        assert_eq!(d.len(), 2);
        assert!(
            matches!(&d[0].cause, Cause::KubeProxy { pid: 7, formula, .. } if formula.contains("65536 x 4 CPUs")),
            "{d:?}"
        );
        assert!(matches!(&d[1].cause, Cause::KubeProxy { .. }), "{d:?}");
        let mut f = facts();
        f.live.insert(HASHSIZE.into(), 1000);
        assert!(matches!(f.drifts()[1].cause, Cause::BuiltinModprobe { .. }));
        f.sys_read_only = true;
        assert_eq!(f.drifts()[1].cause, Cause::SysReadOnly);
        f.builtin = Some(false);
        assert!(
            matches!(&f.drifts()[0].cause, Cause::ReadBeforeLoad { file } if file == "/etc/sysctl.d/90-conntrack.conf")
        );
        f.loaded_at_boot = Some(("/etc/modules-load.d/x.conf".into(), "nf_conntrack".into()));
        assert_eq!(f.drifts()[0].cause, Cause::Unknown);
    }

    #[test]
    fn journal_and_no_drift() {
        let mut f = DriftFacts {
            live: [(MAX.to_string(), 262144)].into(),
            journal: [(MAX.to_string(), 262144)].into(),
            init_netns: true,
            ..DriftFacts::default()
        };
        assert_eq!(f.status(), [(MAX, false)]);
        assert!(f.drifts().is_empty());
        f.journal.insert(MAX.into(), 300000);
        assert_eq!(f.drifts()[0].journal, Some(300000));
        // Outside the initial namespace timeouts are not compared.
        f.init_netns = false;
        f.live.insert("nf_conntrack_udp_timeout".into(), 30);
        f.journal.insert("nf_conntrack_udp_timeout".into(), 60);
        assert_eq!(f.status().len(), 1);
    }
}
