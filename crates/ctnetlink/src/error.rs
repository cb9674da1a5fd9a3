//! Errors of the ctnetlink client. "Not permitted", "not supported here",
//! "malformed reply" and plain I/O are different variants with different hints.

use std::io;

/// A reply that does not decode. Names the kernel constant involved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("truncated {0}")]
    Truncated(&'static str),
    #[error("{what} is {len} but only {available} bytes remain")]
    BadLength {
        what: &'static str,
        len: usize,
        available: usize,
    },
    #[error("{attr} has {got} bytes, expected {expected}")]
    AttrSize {
        attr: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("{0} missing")]
    Missing(&'static str),
    /// Two attributes that the kernel always sends alike disagree.
    #[error("{0}")]
    Inconsistent(&'static str),
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "{what}: permission denied: ctnetlink needs CAP_NET_ADMIN in the network namespace (run as root)"
    )]
    Permission { what: &'static str },
    #[error("{what}: not supported by this kernel ({source})")]
    Unsupported {
        what: &'static str,
        source: io::Error,
    },
    #[error(
        "{what}: netlink receive buffer overrun (ENOBUFS): the kernel dropped part of the reply; retry"
    )]
    Overrun { what: &'static str },
    #[error("{what}: the kernel answered {source}")]
    Kernel {
        what: &'static str,
        source: io::Error,
    },
    #[error("{what}: malformed reply: {source}")]
    Decode {
        what: &'static str,
        source: DecodeError,
    },
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        source: io::Error,
    },
    #[error("network namespace {spec}: {why}")]
    Netns { spec: String, why: String },
}

impl Error {
    /// Classify an errno from the kernel (NLMSG_ERROR or a failed syscall).
    pub fn from_errno(what: &'static str, errno: i32) -> Self {
        let source = io::Error::from_raw_os_error(errno);
        match errno {
            libc::EPERM | libc::EACCES => Self::Permission { what },
            libc::ENOBUFS => Self::Overrun { what },
            libc::EPROTONOSUPPORT | libc::EOPNOTSUPP | libc::EAFNOSUPPORT => {
                Self::Unsupported { what, source }
            }
            _ => Self::Kernel { what, source },
        }
    }

    pub fn from_io(what: &'static str, e: io::Error) -> Self {
        match e.raw_os_error() {
            Some(errno) => Self::from_errno(what, errno),
            None => Self::Io { what, source: e },
        }
    }

    pub fn is_permission(&self) -> bool {
        matches!(self, Self::Permission { .. })
    }
}
