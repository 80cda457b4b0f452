//! The two floating-point types the losses run in, with the few operations the
//! fused kernel needs in a form the compiler can vectorise.

use std::fmt::Debug;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Sub, SubAssign};

/// `f32` or `f64`.
pub trait Real:
    Copy
    + Send
    + Sync
    + Debug
    + Default
    + PartialOrd
    + 'static
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
    + Sum
{
    const ZERO: Self;
    const ONE: Self;
    const NEG_INFINITY: Self;
    /// Name for messages and JSON (`"f32"`, `"f64"`).
    const NAME: &'static str;
    fn from_f64(x: f64) -> Self;
    fn to_f64(self) -> f64;
    fn sqrt(self) -> Self;
    fn ln(self) -> Self;
    fn powf(self, e: Self) -> Self;
    fn abs(self) -> Self;
    fn max(self, o: Self) -> Self;
    fn min(self, o: Self) -> Self;
    fn is_finite(self) -> bool;
    /// exp, accurate to a few ulps, branch-free so that loops over it vectorise.
    /// Returns 0 below the smallest normal result instead of a subnormal.
    fn exp_fast(self) -> Self;
}

macro_rules! real_common {
    () => {
        #[inline(always)]
        fn sqrt(self) -> Self {
            self.sqrt()
        }
        #[inline(always)]
        fn ln(self) -> Self {
            self.ln()
        }
        #[inline(always)]
        fn powf(self, e: Self) -> Self {
            self.powf(e)
        }
        #[inline(always)]
        fn abs(self) -> Self {
            self.abs()
        }
        #[inline(always)]
        fn max(self, o: Self) -> Self {
            if self > o {
                self
            } else {
                o
            }
        }
        #[inline(always)]
        fn min(self, o: Self) -> Self {
            if self < o {
                self
            } else {
                o
            }
        }
        #[inline(always)]
        fn is_finite(self) -> bool {
            self.is_finite()
        }
    };
}

impl Real for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const NEG_INFINITY: Self = f32::NEG_INFINITY;
    const NAME: &'static str = "f32";
    #[inline(always)]
    fn from_f64(x: f64) -> Self {
        x as f32
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
    real_common!();

    /// Cody-Waite range reduction x = n ln2 + r, |r| <= ln2 / 2, then a degree-6
    /// minimax polynomial for e^r (relative error below 2e-7) and 2^n by the exponent bits.
    #[inline(always)]
    fn exp_fast(self) -> f32 {
        const LOG2E: f32 = std::f32::consts::LOG2_E;
        const LN2_HI: f32 = 0.693_359_4;
        const LN2_LO: f32 = -2.121_944_4e-4;
        // Below -87.3 the result is subnormal or zero: flush to zero (also for -inf).
        let underflow = self < -87.3;
        let x = self.clamp(-87.3, 88.7);
        // Round x log2(e) to the nearest integer n with the 1.5 * 2^23 trick: the sum's low
        // mantissa bits then hold n, read back by a bit cast (an `as i32` would not vectorise).
        const MAGIC: f32 = 12_582_912.0;
        let shifted = x * LOG2E + MAGIC;
        let n = shifted - MAGIC;
        let r = x - n * LN2_HI - n * LN2_LO;
        let mut p = 1.987_569_1e-4_f32;
        p = p * r + 1.398_199_9e-3;
        p = p * r + 8.333_452e-3;
        p = p * r + 4.166_579_6e-2;
        p = p * r + 1.666_666_5e-1;
        p = p * r + 0.5;
        let er = p * r * r + r + 1.0;
        let n_bits = shifted.to_bits().wrapping_sub(MAGIC.to_bits());
        let scale = f32::from_bits(n_bits.wrapping_add(127) << 23);
        if underflow {
            0.0
        } else {
            er * scale
        }
    }
}

impl Real for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const NEG_INFINITY: Self = f64::NEG_INFINITY;
    const NAME: &'static str = "f64";
    #[inline(always)]
    fn from_f64(x: f64) -> Self {
        x
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
    real_common!();
    #[inline(always)]
    fn exp_fast(self) -> f64 {
        self.exp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_matches_std_over_the_range_losses_use() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let got = x.exp_fast() as f64;
            let want = (x as f64).exp();
            worst = worst.max(((got - want) / want).abs());
            x += 0.0137;
        }
        assert!(worst < 5e-7, "worst relative error {worst}");
        assert_eq!(f32::NEG_INFINITY.exp_fast(), 0.0);
        assert_eq!((-1000.0f32).exp_fast(), 0.0);
        assert_eq!(0.0f32.exp_fast(), 1.0);
    }
}
