//! Wall-clock text in JSON: Unix seconds as RFC 3339 UTC. chrono is the
//! one time crate for dates (humantime is only the duration syntax, see
//! [`crate::duration`]).

/// Unix seconds as RFC 3339 UTC to the second (`2025-01-02T03:04:05Z`);
/// what is not a representable time (negative, NaN, past year 9999)
/// becomes the epoch rather than failing.
pub fn rfc3339(unix: f64) -> String {
    let secs = if unix.is_finite() && unix > 0.0 {
        unix as i64
    } else {
        0
    };
    chrono::DateTime::from_timestamp(secs, 0)
        .or_else(|| chrono::DateTime::from_timestamp(0, 0))
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".into())
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn utc_to_the_second_and_the_epoch_for_nonsense() {
        assert_eq!(rfc3339(1_735_787_045.9), "2025-01-02T03:04:05Z");
        for bad in [f64::NAN, -1.0, f64::INFINITY, 1e300] {
            assert_eq!(rfc3339(bad), "1970-01-01T00:00:00Z", "{bad}");
        }
    }
}
