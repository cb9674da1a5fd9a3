//! The one duration syntax of every flag (`--interval`, `--window`,
//! `--duration`, `--recent`, ...): humantime's units (`500ms`, `30s`,
//! `2m`, `1h30m`) or plain seconds (`5`, `0.5`), each flag with its own
//! bounds, so a bad value is a usage error that names the accepted range.

use std::time::Duration;

/// Why a duration flag's value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("{input:?}: {reason} (e.g. 500ms, 30s, 2m, 1h30m, or seconds: 5)")]
    Malformed { input: String, reason: String },
    #[error("{input:?}: must be between {} and {}", show(*.min), show(*.max))]
    OutOfRange {
        input: String,
        min: Duration,
        max: Duration,
    },
}

fn show(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// Parse `s` and check it lies in `min..=max`.
pub fn parse(s: &str, min: Duration, max: Duration) -> Result<Duration, DurationError> {
    let t = s.trim();
    let d = match t.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs >= 0.0 => {
            Duration::try_from_secs_f64(secs).map_err(|_| out_of_range(s, min, max))?
        }
        Ok(_) => return Err(out_of_range(s, min, max)),
        Err(_) => humantime::parse_duration(t).map_err(|e| DurationError::Malformed {
            input: s.to_string(),
            reason: e.to_string(),
        })?,
    };
    if d < min || d > max {
        return Err(out_of_range(s, min, max));
    }
    Ok(d)
}

fn out_of_range(s: &str, min: Duration, max: Duration) -> DurationError {
    DurationError::OutOfRange {
        input: s.to_string(),
        min,
        max,
    }
}

/// A clap `value_parser` for a flag bounded to `min..=max`.
pub fn flag(
    min: Duration,
    max: Duration,
) -> impl Fn(&str) -> Result<Duration, DurationError> + Clone + Send + Sync + 'static {
    move |s| parse(s, min, max)
}

pub const MILLISECOND: Duration = Duration::from_millis(1);
pub const SECOND: Duration = Duration::from_secs(1);
pub const HOUR: Duration = Duration::from_secs(3600);
pub const DAY: Duration = Duration::from_secs(24 * 3600);
/// humantime's year (365.25 days), so a bound prints as `1year`.
pub const YEAR: Duration = Duration::from_secs(31_557_600);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS100: Duration = Duration::from_millis(100);

    #[test]
    fn units_and_plain_seconds() {
        assert_eq!(parse("500ms", MILLISECOND, HOUR), Ok(MS100 * 5));
        assert_eq!(parse("1h30m", MILLISECOND, DAY), Ok(HOUR * 3 / 2));
        assert_eq!(parse(" 5 ", MILLISECOND, HOUR), Ok(SECOND * 5));
        assert_eq!(parse("0.5", MILLISECOND, HOUR), Ok(SECOND / 2));
    }

    #[test]
    fn bounds_are_inclusive_and_named() {
        assert_eq!(parse("100ms", MS100, HOUR), Ok(MS100));
        assert_eq!(parse("1h", MS100, HOUR), Ok(HOUR));
        let e = parse("2h", MS100, HOUR).expect_err("above the bound");
        assert_eq!(e.to_string(), "\"2h\": must be between 100ms and 1h");
        assert!(matches!(
            parse("0", MS100, HOUR),
            Err(DurationError::OutOfRange { .. })
        ));
        assert!(matches!(
            parse("-1", MS100, HOUR),
            Err(DurationError::OutOfRange { .. })
        ));
        assert!(matches!(
            parse("1e300", MS100, HOUR),
            Err(DurationError::OutOfRange { .. })
        ));
        assert!(matches!(
            parse("NaN", MS100, HOUR),
            Err(DurationError::OutOfRange { .. })
        ));
        assert!(matches!(
            parse("inf", MS100, HOUR),
            Err(DurationError::OutOfRange { .. })
        ));
    }

    #[test]
    fn malformed_says_what_is_accepted() {
        for s in ["", "5 parsecs", "1x", "ms", "١٢s"] {
            let e = parse(s, MILLISECOND, HOUR).expect_err("malformed");
            assert!(matches!(e, DurationError::Malformed { .. }), "{s:?}: {e:?}");
            assert!(e.to_string().contains("e.g. 500ms"), "{e}");
        }
    }

    proptest! {
        #[test]
        fn never_panics_and_stays_in_bounds(s in "\\PC{0,24}") {
            if let Ok(d) = parse(&s, MS100, DAY) {
                prop_assert!((MS100..=DAY).contains(&d));
            }
        }

        #[test]
        fn whole_seconds_round_trip(n in 1u64..=86_400) {
            prop_assert_eq!(parse(&n.to_string(), SECOND, DAY), Ok(Duration::from_secs(n)));
            prop_assert_eq!(parse(&format!("{n}s"), SECOND, DAY), Ok(Duration::from_secs(n)));
        }
    }
}
