//! The figures the benchmark prints: medians, and one summary line per
//! series (median, min, max, count). Pure arithmetic and printing.

/// The median of `v` (sorted in place); NaN when empty.
pub fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Prints `name` with the median, min and max of `v` (milliseconds) and
/// how many there are; returns the median.
pub fn summary(name: &str, v: &mut [f64]) -> f64 {
    let m = median(v);
    let (lo, hi) = (
        v.first().copied().unwrap_or(f64::NAN),
        v.last().copied().unwrap_or(f64::NAN),
    );
    println!(
        "  {name:<44} median {m:>9.3} ms   min {lo:>8.3}   max {hi:>8.3}   n={}",
        v.len()
    );
    m
}

#[cfg(test)]
mod tests {
    #[test]
    fn medians() {
        assert!(super::median(&mut []).is_nan());
        assert_eq!(super::median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(super::median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
