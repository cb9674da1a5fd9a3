//! The bpf(2) commands ctdoctor needs to read a pinned map, and nothing
//! else: BPF_OBJ_GET (open a pin), BPF_OBJ_GET_INFO_BY_FD (type,
//! max_entries, key and value sizes) and, to count the keys,
//! BPF_MAP_LOOKUP_BATCH (kernel 5.6+: thousands of keys per call) or, where
//! the kernel or the map type has no batch support (EINVAL, ENOTSUPP,
//! EOPNOTSUPP on the first call; per-CPU maps, whose values would need
//! the possible-CPU count), BPF_MAP_GET_NEXT_KEY (one key per call). Raw
//! because the crates' typed maps (aya's HashMap<K, V>) need key and value
//! sizes at compile time, and Cilium's and Calico's values change size
//! between versions. This is the only unsafe code in cthost: each call
//! passes a zeroed, repr(C) attribute the kernel reads within its size.

#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;
const BPF_OBJ_GET: libc::c_long = 7;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
const BPF_MAP_TYPE_PERCPU_HASH: u32 = 5;
const BPF_MAP_TYPE_LRU_PERCPU_HASH: u32 = 10;
/// The kernel's ENOTSUPP (not in libc: kernel-internal, yet returned by
/// BPF_MAP_LOOKUP_BATCH for map types without batch operations).
const ENOTSUPP: i32 = 524;
/// Keys per BPF_MAP_LOOKUP_BATCH call (doubled when one hash bucket holds
/// more, ENOSPC), up to [`MAX_BATCH`].
const BATCH: usize = 4096;
const MAX_BATCH: usize = 1 << 20;
/// Values larger than this are not batched (the buffer would be big).
const MAX_BATCH_VALUE: u32 = 4096;
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

/// `attr.batch` of the BPF_MAP_*_BATCH commands.
#[repr(C)]
#[derive(Default)]
struct Batch {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
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
    pub map_type: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
}

pub fn info(fd: impl AsFd) -> io::Result<Info> {
    let fd = fd.as_fd();
    let mut info = MapInfo::default();
    let mut attr = InfoByFd {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: std::mem::size_of::<MapInfo>() as u32,
        info: &mut info as *mut MapInfo as u64,
    };
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    Ok(Info {
        map_type: info.map_type,
        key_size: info.key_size,
        value_size: info.value_size,
        max_entries: info.max_entries,
    })
}

/// How the keys were counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// BPF_MAP_LOOKUP_BATCH.
    Batch,
    /// BPF_MAP_GET_NEXT_KEY, one key per call.
    NextKey,
}

/// Count the keys, at most `limit` (the caller passes max_entries): in
/// batches where the kernel and the map type allow, else key by key.
pub fn count(fd: impl AsFd, info: &Info, limit: u64) -> io::Result<(u64, Method)> {
    let fd = fd.as_fd();
    match count_batch(fd, info, limit)? {
        Some(n) => Ok((n, Method::Batch)),
        None => count_keys(fd, info.key_size, limit).map(|n| (n, Method::NextKey)),
    }
}

fn check_key_size(key_size: u32) -> io::Result<()> {
    if key_size == 0 || key_size > MAX_KEY {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("key size {key_size} is not a hash map's"),
        ));
    }
    Ok(())
}

/// Count the keys with BPF_MAP_LOOKUP_BATCH, at most `limit` (a batch may
/// end past it: the count is capped). `None` when batches are not
/// available for this map here (old kernel, map type without batch
/// operations, per-CPU or very large values): count key by key instead.
pub fn count_batch(fd: impl AsFd, info: &Info, limit: u64) -> io::Result<Option<u64>> {
    let fd = fd.as_fd();
    check_key_size(info.key_size)?;
    if matches!(
        info.map_type,
        BPF_MAP_TYPE_PERCPU_HASH | BPF_MAP_TYPE_LRU_PERCPU_HASH
    ) || info.value_size == 0
        || info.value_size > MAX_BATCH_VALUE
    {
        return Ok(None);
    }
    let (key, value) = (info.key_size as usize, info.value_size as usize);
    let mut chunk = BATCH;
    let mut keys = vec![0u8; key * chunk];
    let mut values = vec![0u8; value * chunk];
    // The batch tokens: a u32 bucket index for hash maps, a key for the
    // generic implementation; MAX_KEY bytes hold either.
    let mut tokens = [[0u8; MAX_KEY as usize]; 2];
    let mut first = true;
    let mut total = 0u64;
    while total < limit {
        let (a, b) = tokens.split_at_mut(1);
        let (cur, next) = (&mut a[0], &mut b[0]);
        let mut attr = Batch {
            in_batch: if first { 0 } else { cur.as_ptr() as u64 },
            out_batch: next.as_mut_ptr() as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: chunk as u32,
            map_fd: fd.as_raw_fd() as u32,
            ..Default::default()
        };
        match bpf(BPF_MAP_LOOKUP_BATCH, &mut attr) {
            Ok(_) => {}
            // The end: the last keys come with it.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                total += u64::from(attr.count);
                break;
            }
            // One bucket holds more keys than the buffer: a bigger one.
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) && attr.count == 0 => {
                if chunk >= MAX_BATCH {
                    return Err(e);
                }
                chunk *= 2;
                keys.resize(key * chunk, 0);
                values.resize(value * chunk, 0);
                continue;
            }
            Err(e)
                if first
                    && matches!(
                        e.raw_os_error(),
                        Some(libc::EINVAL | libc::EOPNOTSUPP | ENOTSUPP)
                    ) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(e),
        }
        total += u64::from(attr.count);
        // The next call starts where this one ended.
        tokens.swap(0, 1);
        first = false;
    }
    Ok(Some(total.min(limit)))
}

/// Count the keys by walking BPF_MAP_GET_NEXT_KEY, at most `limit` steps
/// (a map changing under the walk can restart it; the caller passes
/// max_entries).
pub fn count_keys(fd: impl AsFd, key_size: u32, limit: u64) -> io::Result<u64> {
    let fd = fd.as_fd();
    check_key_size(key_size)?;
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

/// A map made with BPF_MAP_CREATE, for tests of map types aya cannot make
/// (a sockhash has no batch operations: the fallback's case).
#[cfg(test)]
pub fn create_map(map_type: u32, key_size: u32, value_size: u32, max: u32) -> io::Result<OwnedFd> {
    #[repr(C)]
    #[derive(Default)]
    struct Create {
        map_type: u32,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
        map_flags: u32,
        inner_map_fd: u32,
        numa_node: u32,
        map_name: [u8; 16],
        map_ifindex: u32,
    }
    let mut attr = Create {
        map_type,
        key_size,
        value_size,
        max_entries: max,
        ..Default::default()
    };
    let fd = bpf(0, &mut attr)?;
    let fd = i32::try_from(fd).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    // SAFETY: BPF_MAP_CREATE returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
