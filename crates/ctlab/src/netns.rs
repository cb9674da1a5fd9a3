//! A network namespace owned by a test: created with `ip netns add`, its
//! loopback brought up, deleted on drop (also during a panic's unwinding).

use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result, bail};

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub struct Netns {
    name: String,
}

fn run(cmd: &mut Command) -> Result<Output> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

impl Netns {
    /// Create `ctd-<tag>-<pid>-<n>` with loopback up (IPv4 and IPv6).
    pub fn create(tag: &str) -> Result<Self> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("ctd-{tag}-{}-{n}", std::process::id());
        run(Command::new("ip").args(["netns", "add", &name]))?;
        let ns = Self { name };
        run(Command::new("ip").args(["-n", &ns.name, "link", "set", "lo", "up"]))?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Run a program inside the namespace; fails on a non-zero exit.
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<Output> {
        run(Command::new("ip")
            .args(["netns", "exec", &self.name, program])
            .args(args))
    }

    /// Set a sysctl inside the namespace (`sysctl -qw key=value`), e.g.
    /// `net.netfilter.nf_conntrack_events`; the initial namespace's value
    /// is not touched.
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        self.exec("sysctl", &["-qw", &format!("{key}={value}")])?;
        Ok(())
    }

    /// Load an nft ruleset into the namespace.
    pub fn nft(&self, ruleset: &str) -> Result<()> {
        use std::io::Write;
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.name, "nft", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .context("spawning nft")?;
        child
            .stdin
            .take()
            .context("nft stdin")?
            .write_all(ruleset.as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!("nft -f failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }

    /// Make loopback traffic tracked: conntrack hooks register in a
    /// namespace only when a rule there needs them.
    pub fn track_loopback(&self) -> Result<()> {
        self.nft(
            "table inet ctlab {\n\
             chain out { type filter hook output priority 0; ct state new,established,related accept; }\n\
             chain in { type filter hook input priority 0; ct state new,established,related accept; }\n\
             }\n",
        )
    }

    /// Run `f` on a thread that has entered this namespace (setns affects
    /// only the calling thread; sockets opened there stay in the namespace).
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        std::thread::scope(|s| {
            s.spawn(|| -> Result<T> {
                ctnetlink::netns::enter(&self.name)?;
                Ok(f())
            })
            .join()
            .map_err(|_| anyhow::anyhow!("thread in netns {} panicked", self.name))?
        })
    }

    /// Insert entries over ctnetlink; fails unless every insert succeeds.
    pub fn insert(&self, entries: &[ctmodel::Entry]) -> Result<()> {
        let report = self.run(|| -> Result<ctnetlink::BatchReport> {
            let mut ct = ctnetlink::Conntrack::open()?;
            Ok(ct.create(entries)?)
        })??;
        if report.failures() > 0 {
            bail!(
                "{} of {} inserts failed: {:?} (errno, count)",
                report.failures(),
                entries.len(),
                report.failed
            );
        }
        Ok(())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}
