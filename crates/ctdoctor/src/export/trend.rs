//! Time to full: a least-squares line through (time, count) samples and
//! where it meets the limit. Pure; the sampling lives in the sources.

/// Seconds from the last sample until the fitted count reaches `max`.
/// +Inf when the trend is flat or falling, or fewer than two samples span
/// time; 0 when the table is already at or above `max`.
pub fn time_to_full(samples: &[(f64, f64)], max: f64) -> f64 {
    let Some(&(t_last, c_last)) = samples.last() else {
        return f64::INFINITY;
    };
    if c_last >= max {
        return 0.0;
    }
    let n = samples.len() as f64;
    if samples.len() < 2 {
        return f64::INFINITY;
    }
    let mean_t = samples.iter().map(|s| s.0).sum::<f64>() / n;
    let mean_c = samples.iter().map(|s| s.1).sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for &(t, c) in samples {
        sxy += (t - mean_t) * (c - mean_c);
        sxx += (t - mean_t) * (t - mean_t);
    }
    if sxx <= 0.0 {
        return f64::INFINITY;
    }
    let slope = sxy / sxx;
    if !slope.is_finite() || slope <= 0.0 {
        return f64::INFINITY;
    }
    // The fitted line's value now, not the last raw sample: one noisy
    // sample must not move the answer more than the trend does.
    let fitted_now = mean_c + slope * (t_last - mean_t);
    ((max - fitted_now) / slope).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_single_are_infinite() {
        assert_eq!(time_to_full(&[], 100.0), f64::INFINITY);
        assert_eq!(time_to_full(&[(0.0, 10.0)], 100.0), f64::INFINITY);
    }

    #[test]
    fn flat_and_falling_are_infinite() {
        let flat: Vec<_> = (0..10).map(|i| (f64::from(i) * 10.0, 50.0)).collect();
        assert_eq!(time_to_full(&flat, 100.0), f64::INFINITY);
        let falling: Vec<_> = (0..10)
            .map(|i| (f64::from(i) * 10.0, 90.0 - f64::from(i)))
            .collect();
        assert_eq!(time_to_full(&falling, 100.0), f64::INFINITY);
    }

    #[test]
    fn linear_growth_is_exact() {
        // 1 entry/s from 0 at t=0..90: at t=90 count 90, full (1000) in 910 s.
        let s: Vec<_> = (0..10)
            .map(|i| (f64::from(i) * 10.0, f64::from(i) * 10.0))
            .collect();
        let ttf = time_to_full(&s, 1000.0);
        assert!((ttf - 910.0).abs() < 1e-6, "{ttf}");
    }

    #[test]
    fn noise_is_averaged() {
        let s = [(0.0, 0.0), (10.0, 30.0), (20.0, 10.0), (30.0, 30.0)];
        // slope = 350/500 = 0.7/s by least squares; fitted now = 17.5 + 0.7 x 15 = 28
        let ttf = time_to_full(&s, 100.0);
        assert!((ttf - 72.0 / 0.7).abs() < 1e-6, "{ttf}");
    }

    #[test]
    fn full_is_zero() {
        assert_eq!(time_to_full(&[(0.0, 10.0), (10.0, 100.0)], 100.0), 0.0);
    }

    #[test]
    fn same_time_is_infinite() {
        assert_eq!(
            time_to_full(&[(5.0, 1.0), (5.0, 2.0)], 100.0),
            f64::INFINITY
        );
    }
}
