//! The three bpf(2) commands ctdoctor needs to read a pinned map, and
//! nothing else: BPF_OBJ_GET (open a pin), BPF_OBJ_GET_INFO_BY_FD
//! (max_entries, key size) and BPF_MAP_GET_NEXT_KEY (count the keys). Raw
//! because the crates' typed maps (aya's HashMap<K, V>) need key and value
//! sizes at compile time, and Cilium's and Calico's values change size
//! between versions. This is the only unsafe code in cthost: each call
//! passes a zeroed, repr(C) attribute the kernel reads within its size.

#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;
const BPF_OBJ_GET: libc::c_long = 7;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
/// Larger than any key a map may have (the kernel caps keys at
/// KMALLOC_MAX_SIZE; conntrack keys are 14 to 40 bytes).
const MAX_KEY: u32 = 512;

#[repr(C)]
#[derive(Default)]
struct ObjGet {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
    path_fd: i32,
    /// Explicit, so the tail is zero: the kernel rejects (EINVAL) an
    /// attribute whose bytes past the last field it knows are not.
    _pad: u32,
}

#[repr(C)]
#[derive(Default)]
struct InfoByFd {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

#[repr(C)]
#[derive(Default)]
struct NextKey {
    map_fd: u32,
    _pad: u32,
    key: u64,
    next_key: u64,
}

/// The head of `struct bpf_map_info` (the kernel fills what fits).
#[repr(C)]
#[derive(Default)]
struct MapInfo {
    map_type: u32,
    id: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    name: [u8; 16],
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live repr(C) value of the layout the kernel
    // expects for `cmd`, and its size is passed with it; pointers inside it
    // point at buffers that outlive the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Open the map pinned at `path` (BPF_OBJ_GET).
pub fn open_pin(path: &Path) -> io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut attr = ObjGet {
        pathname: c.as_ptr() as u64,
        ..Default::default()
    };
    let fd = bpf(BPF_OBJ_GET, &mut attr)?;
    let fd = i32::try_from(fd).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    // SAFETY: BPF_OBJ_GET returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// What BPF_OBJ_GET_INFO_BY_FD says of a map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Info {
    pub key_size: u32,
    pub max_entries: u32,
}

pub fn info(fd: &OwnedFd) -> io::Result<Info> {
    let mut info = MapInfo::default();
    let mut attr = InfoByFd {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: std::mem::size_of::<MapInfo>() as u32,
        info: &mut info as *mut MapInfo as u64,
    };
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    Ok(Info {
        key_size: info.key_size,
        max_entries: info.max_entries,
    })
}

/// Count the keys by walking BPF_MAP_GET_NEXT_KEY, at most `limit` steps
/// (a map changing under the walk can restart it; the caller passes
/// max_entries).
pub fn count_keys(fd: &OwnedFd, key_size: u32, limit: u64) -> io::Result<u64> {
    if key_size == 0 || key_size > MAX_KEY {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("key size {key_size} is not a hash map's"),
        ));
    }
    let mut bufs = [[0u8; MAX_KEY as usize]; 2];
    let mut count = 0u64;
    let mut first = true;
    while count < limit {
        let (a, b) = bufs.split_at_mut(1);
        let (cur, next) = if count.is_multiple_of(2) {
            (&mut a[0], &mut b[0])
        } else {
            (&mut b[0], &mut a[0])
        };
        let mut attr = NextKey {
            map_fd: fd.as_raw_fd() as u32,
            key: if first { 0 } else { cur.as_ptr() as u64 },
            next_key: next.as_mut_ptr() as u64,
            ..Default::default()
        };
        match bpf(BPF_MAP_GET_NEXT_KEY, &mut attr) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => break,
            Err(e) => return Err(e),
        }
        first = false;
        count += 1;
    }
    Ok(count)
}
