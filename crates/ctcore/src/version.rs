//! The kernel version, `major.minor`: the one type every command and the
//! simulator use to pick version-dependent behaviour (defaults, timeouts,
//! GC, ctnetlink attributes). The patch level never changes conntrack's
//! behaviour in the cases KERNEL.md lists, so it is not kept.

use std::fmt;
use std::str::FromStr;

/// A kernel version, `major.minor`. Serialised as `{"major":6,"minor":18}`
/// (plan JSON's `kernel`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
}

/// A string that holds no kernel version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a kernel version like 6.18 or 5.15.0-91-generic")]
pub struct VersionError(pub String);

impl Version {
    /// The newest kernel whose behaviour ctdoctor models (KERNEL.md).
    pub const LATEST: Version = Version::new(6, 18);

    pub const fn new(major: u32, minor: u32) -> Self {
        Self { major, minor }
    }

    /// From `6.18`, `5.15.0-91-generic`, `6.18.44-fc-v657`, `v6.1` or `6`
    /// (minor 0): the first two runs of digits. Components beyond u32
    /// are an error, not a wrap.
    pub fn parse(s: &str) -> Result<Self, VersionError> {
        let bad = || VersionError(s.to_string());
        let mut it = s
            .split(|c: char| !c.is_ascii_digit())
            .filter(|p| !p.is_empty());
        let major = it.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
        let minor = match it.next() {
            Some(m) => m.parse().map_err(|_| bad())?,
            None => 0,
        };
        Ok(Self { major, minor })
    }

    pub fn at_least(self, major: u32, minor: u32) -> bool {
        self >= Self::new(major, minor)
    }

    /// The range `(lo, hi)` of the random chain length above which
    /// `__nf_conntrack_confirm` refuses an insert, drops the packet and
    /// counts `chaintoolong` (KERNEL.md sections 8 and 15): 50..79 since
    /// 6.3, 8..31 in 5.15-6.2; `None` before 5.15 (no limit). The one
    /// table: the simulator and `check` both read it.
    pub fn chain_limit(self) -> Option<(u32, u32)> {
        if self.at_least(6, 3) {
            Some((50, 79))
        } else if self.at_least(5, 15) {
            Some((8, 31))
        } else {
            None
        }
    }
}

impl FromStr for Version {
    type Err = VersionError;
    fn from_str(s: &str) -> Result<Self, VersionError> {
        Self::parse(s)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_an_operator_or_uname_gives() {
        for (s, v) in [
            ("6.18", Version::new(6, 18)),
            ("5.15.0-91-generic", Version::new(5, 15)),
            ("6.18.44-fc-v657", Version::new(6, 18)),
            ("v6.1", Version::new(6, 1)),
            ("6", Version::new(6, 0)),
            (" 4.19\n", Version::new(4, 19)),
        ] {
            assert_eq!(Version::parse(s), Ok(v), "{s}");
        }
    }

    #[test]
    fn no_digits_or_overflow_is_an_error() {
        for s in ["", "linux", "-", "4294967296.1", "6.4294967296"] {
            assert!(Version::parse(s).is_err(), "{s}");
        }
    }

    #[test]
    fn chain_limit_by_version() {
        assert_eq!(Version::new(6, 18).chain_limit(), Some((50, 79)));
        assert_eq!(Version::new(6, 3).chain_limit(), Some((50, 79)));
        assert_eq!(Version::new(6, 2).chain_limit(), Some((8, 31)));
        assert_eq!(Version::new(5, 15).chain_limit(), Some((8, 31)));
        assert_eq!(Version::new(5, 14).chain_limit(), None);
        assert_eq!(Version::new(4, 19).chain_limit(), None);
    }

    #[test]
    fn order_and_display() {
        assert!(Version::new(5, 11).at_least(5, 11));
        assert!(!Version::new(5, 10).at_least(5, 11));
        assert!(Version::new(6, 0) > Version::new(5, 19));
        assert_eq!(Version::new(6, 18).to_string(), "6.18");
    }
}
