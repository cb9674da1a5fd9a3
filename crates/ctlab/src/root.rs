//! Whether a kernel test may run here: network namespaces need
//! CAP_SYS_ADMIN and ctnetlink CAP_NET_ADMIN, so these tests need root.
//! An ordinary user's `cargo test` skips them with a note (and still runs
//! the unit tests); under CI (`CI` set, as `.ci/run` does) a missing root
//! is a failure, never a silent skip, so CI cannot pass without running
//! them.

/// What most kernel tests need root for; [`require_root!`] takes another.
pub const NAMESPACES: &str = "network namespaces, ctnetlink";

/// The note printed for a skipped test, and the start of the CI panic.
fn needs_root(test: &str, why: &str) -> String {
    format!("{test} needs root ({why}); run scripts/test as root")
}

/// Whether `CI` says this is a CI run (`CI=true`, `CI=1`; not `false`,
/// `0` or empty).
fn under_ci(value: Option<&std::ffi::OsStr>) -> bool {
    value.is_some_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// True when the test may go on (the effective user is root). Otherwise
/// prints `skipped: <test> needs root (<why>); run scripts/test as root` to
/// stderr and returns false, or panics when `CI` is set. Tests call it
/// through [`require_root!`].
pub fn skip_unless_root(test: &str, why: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if under_ci(std::env::var_os("CI").as_deref()) {
        panic!(
            "{} (CI is set: a skip would hide it)",
            needs_root(test, why)
        );
    }
    // Straight to fd 2, not eprintln!: libtest captures eprintln! of a
    // passing test, and a skip must be seen.
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "skipped: {}", needs_root(test, why));
    false
}

/// The name of the enclosing function with its module path, e.g.
/// `lab_kernel::non_root_is_refused`.
#[doc(hidden)]
pub fn test_name(type_name_of_marker: &str) -> &str {
    type_name_of_marker
        .strip_suffix("::marker")
        .unwrap_or(type_name_of_marker)
}

/// At the start of a test that needs root: returns from the test (a pass,
/// with a `skipped:` note on stderr) unless root; panics instead under CI.
/// `require_root!()` is for namespaces and ctnetlink; `require_root!("chown")`
/// names another reason. See [`skip_unless_root`].
#[macro_export]
macro_rules! require_root {
    () => {
        $crate::require_root!($crate::root::NAMESPACES)
    };
    ($why:expr) => {{
        fn marker() {}
        let name = $crate::root::test_name(::std::any::type_name_of_val(&marker));
        if !$crate::root::skip_unless_root(name, $why) {
            return;
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn ci_values() {
        assert!(under_ci(Some(OsStr::new("true"))));
        assert!(under_ci(Some(OsStr::new("1"))));
        assert!(!under_ci(Some(OsStr::new("false"))));
        assert!(!under_ci(Some(OsStr::new("0"))));
        assert!(!under_ci(Some(OsStr::new(""))));
        assert!(!under_ci(None));
    }

    #[test]
    fn name_of_the_enclosing_function() {
        fn marker() {}
        assert_eq!(
            test_name(std::any::type_name_of_val(&marker)),
            "ctlab::root::tests::name_of_the_enclosing_function"
        );
    }
}
