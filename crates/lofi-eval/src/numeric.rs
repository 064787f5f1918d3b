//! numpy's summation order, so that sums and means agree with the official tool bit for bit.
//!
//! `np.sum` and `np.mean` over a contiguous float64 array do not add left to right: they use
//! pairwise summation (runs of fewer than 8 added in order, runs of up to 128 with eight
//! interleaved accumulators, longer runs split near the middle at a multiple of 8). The
//! difference from a plain loop is a few units in the last place, which is harmless, but
//! reproducing it makes our numbers equal to the official ones rather than merely close.

/// `numpy.add.reduce` of a contiguous float64 array.
pub fn numpy_sum(values: &[f64]) -> f64 {
    let n = values.len();
    if n < 8 {
        let mut sum = 0.0;
        for &v in values {
            sum += v;
        }
        sum
    } else if n <= 128 {
        let mut r = [0.0f64; 8];
        r.copy_from_slice(&values[..8]);
        let whole = n - n % 8;
        let mut i = 8;
        while i < whole {
            for (k, acc) in r.iter_mut().enumerate() {
                *acc += values[i + k];
            }
            i += 8;
        }
        let mut sum = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for &v in &values[whole..] {
            sum += v;
        }
        sum
    } else {
        let mut half = n / 2;
        half -= half % 8;
        numpy_sum(&values[..half]) + numpy_sum(&values[half..])
    }
}

/// `numpy.mean` of a contiguous float64 array.
pub fn numpy_mean(values: &[f64]) -> f64 {
    numpy_sum(values) / values.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_runs_add_in_order() {
        assert_eq!(numpy_sum(&[]), 0.0);
        assert_eq!(numpy_sum(&[1.0, 2.0, 3.5]), 6.5);
        assert_eq!(numpy_mean(&[1.0, 2.0]), 1.5);
    }

    #[test]
    fn pairwise_order_differs_from_a_plain_loop_as_numpy_does() {
        // np.sum([0.1] * 10) == 1.0 (pairwise) while a left-to-right loop gives
        // 0.9999999999999999.
        let tenths = [0.1; 10];
        assert_eq!(tenths.iter().sum::<f64>(), 0.9999999999999999);
        assert_eq!(numpy_sum(&tenths), 1.0);
        // Longer than one block: np.sum(np.arange(1, 201) / 11) == 1827.2727272727273 with
        // numpy 2.4, while a loop gives 1827.2727272727275.
        let elevenths: Vec<f64> = (1..=200).map(|i| i as f64 / 11.0).collect();
        assert_eq!(elevenths.iter().sum::<f64>(), 1827.2727272727275);
        assert_eq!(numpy_sum(&elevenths), 1827.2727272727273);
    }
}
