//! /dev/kmsg, the kernel's log ring buffer: the one place ctdoctor opens,
//! drains and follows it. `check` drains the records still in the ring,
//! `lab` drains what was logged since it started, `watch` and `export`
//! follow it in a thread. What a record means (table-full lines, their
//! namespace, dating) is [`crate::kernel_log`]'s.
//!
//! One `read` returns one record ("PRIO,SEQ,USEC,FLAGS;text\n" plus
//! " KEY=value" continuation lines); EPIPE means the ring overwrote records
//! not read yet, and the next read returns the oldest one left.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::kernel_log;
use crate::source::{Root, Unreadable, io_unreadable};

const PATH: &str = "/dev/kmsg";
const NEEDS: &str = "CAP_SYSLOG (root)";
/// A record is at most 8 KiB (printk's PRINTK_MESSAGE_MAX plus the
/// dictionary); a read into a smaller buffer fails with EINVAL.
const RECORD_MAX: usize = 16 * 1024;

/// Whether `m` is the kmsg device: char 1:11 (drivers/char/mem.c devlist
/// "kmsg"), whatever path it has.
pub fn is_device(m: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    m.file_type().is_char_device() && m.rdev() == libc::makedev(1, 11)
}

/// Where reading starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum From {
    /// The oldest record still in the ring buffer.
    Start,
    /// Only records logged after opening.
    End,
}

/// An open /dev/kmsg.
pub struct Kmsg {
    file: File,
}

/// What one [`Kmsg::drain`] read past.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drained {
    pub records: u64,
    /// Records were lost: the ring overwrote them before they were read
    /// (EPIPE), or, from [`From::Start`], the oldest record left is not the
    /// boot's first (its sequence number is above 0).
    pub overrun: bool,
}

impl Kmsg {
    /// Open `/dev/kmsg` under `root`. `blocking`: reads wait for the next
    /// record (for [`Kmsg::follow`]); otherwise the end of the ring buffer
    /// ends a read (for [`Kmsg::drain`]).
    pub fn open(root: &Root, from: From, blocking: bool) -> Result<Self, Unreadable> {
        // The kmsg device (char 1:11), or a regular file standing in for it
        // in a fake tree; never a FIFO (the open would block) or another
        // device (/dev/zero never ends).
        {
            let m =
                std::fs::metadata(root.path(PATH)).map_err(|e| io_unreadable(PATH, NEEDS, &e))?;
            if !(is_device(&m) || m.is_file()) {
                return Err(Unreadable {
                    what: PATH.into(),
                    why: crate::source::Why::Malformed(
                        "neither the kmsg device (char 1:11) nor a regular file".into(),
                    ),
                });
            }
        }
        let flags = if blocking { 0 } else { libc::O_NONBLOCK };
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(flags)
            .open(root.path(PATH))
            .map_err(|e| io_unreadable(PATH, NEEDS, &e))?;
        if from == From::End {
            file.seek(SeekFrom::End(0))
                .map_err(|e| io_unreadable(PATH, NEEDS, &e))?;
        }
        Ok(Self { file })
    }

    /// Every record available now, each passed to `record` (its first
    /// line, the record itself without continuation lines); returns at the
    /// end of the ring buffer (open it non-blocking).
    pub fn drain(&mut self, mut record: impl FnMut(&str)) -> Result<Drained, Unreadable> {
        drain(&mut self.file, &mut record).map_err(|e| io_unreadable(PATH, NEEDS, &e))
    }

    /// Follow the log until reading fails, calling `found(netns inode,
    /// lines)` for every table-full record (open it blocking).
    pub fn follow(mut self, found: impl FnMut(Option<u64>, u64)) -> io::Result<()> {
        follow(&mut self.file, found)
    }
}

/// Records until the end (of a non-blocking ring, or of a file), the one
/// loop every reader of /dev/kmsg goes through.
///
/// /dev/kmsg returns one record per read, always ending in a newline. A
/// regular file standing in for it (a fake tree under `--root`, the
/// exporter's golden test) returns many records per read, and a read may
/// end inside one: every line not starting with a space (a continuation
/// line) is a record, and an unfinished last line waits for the next read.
/// On the device both rules give exactly one record per read.
fn drain(r: &mut impl Read, record: &mut impl FnMut(&str)) -> io::Result<Drained> {
    let mut buf = vec![0u8; RECORD_MAX];
    let mut pending: Vec<u8> = Vec::new();
    let mut out = Drained::default();
    let mut records = |bytes: &[u8], out: &mut Drained| {
        let text = String::from_utf8_lossy(bytes);
        for line in text.lines().filter(|l| !l.starts_with(' ')) {
            count(out, line, record);
        }
    };
    loop {
        match r.read(&mut buf) {
            Ok(0) => {
                if !pending.is_empty() {
                    records(&pending, &mut out);
                }
                return Ok(out);
            }
            Ok(n) => {
                pending.extend_from_slice(&buf[..n]);
                if let Some(end) = pending.iter().rposition(|&b| b == b'\n') {
                    records(&pending[..=end], &mut out);
                    pending.drain(..=end);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(out),
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => out.overrun = true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// One record read: the first one's sequence number says whether older
/// records were lost.
fn count(out: &mut Drained, line: &str, record: &mut impl FnMut(&str)) {
    if out.records == 0 {
        out.overrun |= line.split(',').nth(1).is_some_and(|s| s != "0");
    }
    out.records += 1;
    record(line);
}

/// Every table-full record until reading fails (or a file ends).
fn follow(r: &mut impl Read, mut found: impl FnMut(Option<u64>, u64)) -> io::Result<()> {
    drain(r, &mut |line| {
        for g in kernel_log::scan(std::iter::once(line)).table_full {
            found(g.netns_inode, g.count);
        }
    })
    .map(|_| ())
}

/// A thread following /dev/kmsg from [`From::End`]: `found` gets every
/// table-full record's namespace inode and line count. `failed()` turns
/// true when reading stopped; the thread ends with the process.
pub struct Follower {
    failed: Arc<AtomicBool>,
}

impl Follower {
    pub fn spawn(
        kmsg: Kmsg,
        found: impl FnMut(Option<u64>, u64) + Send + 'static,
    ) -> io::Result<Self> {
        let failed = Arc::new(AtomicBool::new(false));
        let flag = failed.clone();
        std::thread::Builder::new()
            .name("ctdoctor-kmsg".into())
            .spawn(move || {
                if kmsg.follow(found).is_err() {
                    flag.store(true, Ordering::Relaxed);
                }
            })?;
        Ok(Self { failed })
    }

    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// Hands out one record or error per read, like /dev/kmsg.
    struct Ring(VecDeque<io::Result<Vec<u8>>>);

    impl Read for Ring {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match self.0.pop_front() {
                None => Err(io::ErrorKind::WouldBlock.into()),
                Some(Err(e)) => Err(e),
                Some(Ok(rec)) => {
                    buf[..rec.len()].copy_from_slice(&rec);
                    Ok(rec.len())
                }
            }
        }
    }

    fn drained(ring: Vec<io::Result<&str>>) -> (io::Result<Drained>, Vec<String>) {
        let mut seen = Vec::new();
        let ring = ring.into_iter().map(|r| r.map(|s| s.as_bytes().to_vec()));
        let r = drain(&mut Ring(ring.collect()), &mut |l: &str| {
            seen.push(l.to_string())
        });
        (r, seen)
    }

    #[test]
    fn drains_to_the_end_of_the_ring_keeping_only_each_records_first_line() {
        let (r, seen) = drained(vec![
            Ok("6,0,1,-;Linux version 6.1\n"),
            Ok("4,1,2,-;eth0: link up\n SUBSYSTEM=net\n DEVICE=n2\n"),
        ]);
        assert_eq!(
            r.expect("drains"),
            Drained {
                records: 2,
                overrun: false
            }
        );
        assert_eq!(seen, ["6,0,1,-;Linux version 6.1", "4,1,2,-;eth0: link up"]);
    }

    #[test]
    fn an_overwritten_start_or_epipe_is_an_overrun_and_reading_goes_on() {
        let (r, _) = drained(vec![Ok("6,7,1,-;late start\n")]);
        assert!(r.expect("drains").overrun, "first record's seq is 7");
        let (r, seen) = drained(vec![
            Ok("6,0,1,-;a\n"),
            Err(io::Error::from_raw_os_error(libc::EPIPE)),
            Ok("6,9,2,-;b\n"),
        ]);
        let d = r.expect("drains");
        assert!(d.overrun);
        assert_eq!(d.records, 2);
        assert_eq!(seen.len(), 2);
    }

    #[test]
    fn a_read_error_is_returned_and_garbage_is_lossy_not_a_panic() {
        let (r, _) = drained(vec![Err(io::Error::from_raw_os_error(libc::EIO))]);
        assert!(r.is_err());
        let mut ring = Ring(VecDeque::from([
            Ok(b"\xff\xfe;\x00\n".to_vec()),
            Ok(Vec::new()),
        ]));
        let mut seen = Vec::new();
        let r = drain(&mut ring, &mut |l: &str| seen.push(l.to_string()));
        assert_eq!(r.expect("drains").records, 1);
        assert_eq!(seen, ["\u{fffd}\u{fffd};\0"]);
    }

    #[test]
    fn follows_table_full_records_across_an_overrun() {
        let mut ring = Ring(
            [
                "4,100,5000000,-;nf_conntrack: nf_conntrack: table full, dropping packet\n",
                "6,101,5000001,-;eth0: link up\n SUBSYSTEM=net\n",
            ]
            .into_iter()
            .map(|s| Ok(s.as_bytes().to_vec()))
            .chain([Err(io::Error::from_raw_os_error(libc::EPIPE))])
            .chain(
                [
                    "4,180,6000000,-;nf_conntrack: nf_conntrack: table full in netns 4026532245, dropping packet\n",
                    "4,181,6000001,-;nf_conntrack: nf_conntrack: table full, dropping packet\n",
                ]
                .into_iter()
                .map(|s| Ok(s.as_bytes().to_vec())),
            )
            .collect(),
        );
        let mut seen = std::collections::BTreeMap::new();
        follow(&mut ring, |ns, n| *seen.entry(ns).or_insert(0) += n).expect("follows");
        assert_eq!(seen.get(&None), Some(&2));
        assert_eq!(seen.get(&Some(4026532245)), Some(&1));
        assert_eq!(seen.len(), 2);
    }

    /// A regular file in a fake tree: many records per read, continuation
    /// lines, and (in 5-byte reads) records cut across reads.
    #[test]
    fn a_regular_file_is_split_into_records() {
        const FILE: &str = "6,1230,4990000,-;eth0: NIC Link is Up\n SUBSYSTEM=pci\n DEVICE=+pci:0000:00:1f.6\n4,1234,5000000,-;nf_conntrack: nf_conntrack: table full, dropping packet\n4,1235,5000300,-;nf_conntrack: nf_conntrack: table full in netns 4026532245, dropping packet\n4,1236,5000412,-;no newline at the end";
        let want = [
            "6,1230,4990000,-;eth0: NIC Link is Up",
            "4,1234,5000000,-;nf_conntrack: nf_conntrack: table full, dropping packet",
            "4,1235,5000300,-;nf_conntrack: nf_conntrack: table full in netns 4026532245, dropping packet",
            "4,1236,5000412,-;no newline at the end",
        ];
        let mut seen = Vec::new();
        let d = drain(&mut io::Cursor::new(FILE), &mut |l: &str| {
            seen.push(l.to_string())
        })
        .expect("drains");
        assert_eq!(seen, want);
        assert_eq!(
            d,
            Drained {
                records: 4,
                overrun: true
            }
        );
        let small = FILE
            .as_bytes()
            .chunks(5)
            .map(|c| Ok(c.to_vec()))
            .chain([Ok(Vec::new())]);
        let mut seen = Vec::new();
        drain(&mut Ring(small.collect()), &mut |l: &str| {
            seen.push(l.to_string())
        })
        .expect("drains");
        assert_eq!(seen, want);
        let mut found = std::collections::BTreeMap::new();
        follow(&mut io::Cursor::new(FILE), |ns, n| {
            *found.entry(ns).or_insert(0) += n
        })
        .expect("follows to the end of the file");
        assert_eq!(found.get(&None), Some(&1));
        assert_eq!(found.get(&Some(4026532245)), Some(&1));
    }

    #[test]
    fn other_errors_end_the_follower() {
        let mut ring = Ring(VecDeque::from([Err(io::Error::from_raw_os_error(
            libc::EIO,
        ))]));
        assert!(follow(&mut ring, |_, _| {}).is_err());
    }

    #[test]
    fn a_missing_kmsg_names_the_path() {
        let dir = std::env::temp_dir().join(format!("ctdoctor-kmsg-{}", std::process::id()));
        let e = Kmsg::open(&Root::under(&dir), From::Start, false)
            .err()
            .expect("absent");
        assert_eq!(e.what, PATH);
    }

    #[test]
    fn a_tree_kmsg_that_never_ends_or_blocks_is_refused() {
        let dir = std::env::temp_dir().join(format!("ctd-kmsg-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("dev")).expect("mkdir");
        let root = Root::under(&dir);
        std::os::unix::fs::symlink("/dev/zero", dir.join("dev/kmsg")).expect("symlink");
        let zero = Kmsg::open(&root, From::Start, false)
            .err()
            .map(|e| e.to_string());
        std::fs::remove_file(dir.join("dev/kmsg")).expect("rm");
        nix::unistd::mkfifo(&dir.join("dev/kmsg"), nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
        let fifo = Kmsg::open(&root, From::Start, true)
            .err()
            .map(|e| e.to_string());
        let _ = std::fs::remove_dir_all(&dir);
        for e in [zero, fifo] {
            assert!(
                e.as_deref()
                    .is_some_and(|e| e.contains("nor a regular file")),
                "{e:?}"
            );
        }
    }
}
