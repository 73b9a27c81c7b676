//! Sums of floats that do not depend on the order of their terms.
//!
//! An aggregation folded in the scan ([`crate::Direct`]) adds its series' values in scan order,
//! the kept series are added in label order, and which rows go which way depends on how the
//! scan was cut into partitions. A float sum in order would then differ in its last bits from
//! one run to the next (one core or two, one leaf or eight). [`ExactSum`] keeps the exact sum
//! and rounds once, when the value is read: any order of the same terms gives the same bits,
//! and that value is the correctly rounded one (never further from the true sum than a
//! sequential sum).

/// Bits of the wide accumulator's limbs: each limb holds 32 of them in an `i64`, so a limb
/// takes 2^31 additions before its carries must be moved up.
const LIMB_BITS: u32 = 32;
/// The wide accumulator's lowest bit is 2^-1088, below the smallest subnormal (2^-1074).
const LOW_EXP: i32 = -1088;
/// 2^-1088 .. 2^1216: the double range (2^-1074 .. 2^1024) with 192 bits to spare for
/// carries, so no sum of finite doubles overflows it.
const LIMBS: usize = 72;
/// Additions between carry normalizations: well under 2^31.
const NORMALIZE_EVERY: u32 = 1 << 30;

/// An exact, order-free sum of doubles (see the module docs).
///
/// Values whose bits all lie between 2^-64 and 2^61 (every double from about 0.00025 up to
/// 2^61, and every integer below 2^61) go into a 128-bit fixed-point integer; anything else,
/// or a sum that would leave it, into a wide accumulator allocated on first use.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExactSum {
    /// Units of 2^-64.
    fixed: i128,
    wide: Option<Box<Wide>>,
    /// A NaN was added.
    nan: bool,
    /// +inf was added.
    pos_inf: bool,
    /// -inf was added.
    neg_inf: bool,
}

impl ExactSum {
    /// Adds `v`.
    #[inline]
    pub fn add(&mut self, v: f64) {
        if !v.is_finite() {
            if v.is_nan() {
                self.nan = true;
            } else if v > 0.0 {
                self.pos_inf = true;
            } else {
                self.neg_inf = true;
            }
            return;
        }
        if let Some(f) = fixed_of(v)
            && let Some(sum) = self.fixed.checked_add(f)
        {
            self.fixed = sum;
            return;
        }
        self.wide.get_or_insert_with(Box::default).add_f64(v);
    }

    /// Adds every term of `other`.
    pub fn merge(&mut self, other: &ExactSum) {
        self.nan |= other.nan;
        self.pos_inf |= other.pos_inf;
        self.neg_inf |= other.neg_inf;
        match self.fixed.checked_add(other.fixed) {
            Some(sum) => self.fixed = sum,
            None => self
                .wide
                .get_or_insert_with(Box::default)
                .add_fixed(other.fixed),
        }
        if let Some(w) = &other.wide {
            self.wide.get_or_insert_with(Box::default).merge(w);
        }
    }

    /// The sum, rounded to the nearest double (ties to even); NaN when a NaN or both
    /// infinities were added, the infinity when one of them was.
    pub fn value(&self) -> f64 {
        if self.nan || (self.pos_inf && self.neg_inf) {
            return f64::NAN;
        }
        if self.pos_inf {
            return f64::INFINITY;
        }
        if self.neg_inf {
            return f64::NEG_INFINITY;
        }
        match &self.wide {
            // `as` rounds to nearest, ties to even; scaling by 2^-64 is exact (the result is
            // 0 or at least 2^-64, far from the subnormals).
            None => self.fixed as f64 * pow2(-64),
            Some(w) => {
                let mut w = w.as_ref().clone();
                w.add_fixed(self.fixed);
                w.value()
            }
        }
    }
}

/// `v` in units of 2^-64, when that is an integer below 2^125 in magnitude.
#[inline]
fn fixed_of(v: f64) -> Option<i128> {
    if v == 0.0 {
        return Some(0);
    }
    let (m, e) = decompose(v);
    // v = m * 2^e; in units of 2^-64 that is m << (e + 64), with m below 2^53.
    let shift = e + 64;
    if !(0..=72).contains(&shift) {
        return None;
    }
    let units = i128::from(m) << shift;
    Some(if v < 0.0 { -units } else { units })
}

/// `|v| = m * 2^e` for a finite `v`, `m < 2^53`.
#[inline]
fn decompose(v: f64) -> (u64, i32) {
    let bits = v.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32;
    let frac = bits & ((1u64 << 52) - 1);
    if exp == 0 {
        (frac, -1074)
    } else {
        (frac | (1u64 << 52), exp - 1075)
    }
}

/// 2^k for -1022 <= k <= 1023.
fn pow2(k: i32) -> f64 {
    f64::from_bits(((k + 1023) as u64) << 52)
}

/// `x * 2^k` with one rounding at most, for any `k`.
fn scale(mut x: f64, mut k: i32) -> f64 {
    while k > 1000 {
        x *= pow2(1000);
        k -= 1000;
    }
    while k < -1000 {
        x *= pow2(-1000);
        k += 1000;
    }
    x * pow2(k)
}

/// A fixed-point number wide enough for any sum of doubles: limb `i` weighs
/// 2^(32 i + [`LOW_EXP`]). Limbs are signed and may run past 32 bits between normalizations.
#[derive(Debug, Clone, PartialEq)]
struct Wide {
    limbs: [i64; LIMBS],
    /// Additions since the last normalization.
    pending: u32,
}

impl Default for Wide {
    fn default() -> Self {
        Wide {
            limbs: [0; LIMBS],
            pending: 0,
        }
    }
}

impl Wide {
    fn add_f64(&mut self, v: f64) {
        let (m, e) = decompose(v);
        let negative = v < 0.0;
        let at = (e - LOW_EXP) as u32;
        let wide = u128::from(m) << (at % LIMB_BITS);
        self.add_bits(wide, (at / LIMB_BITS) as usize, negative);
    }

    /// Adds a 128-bit fixed-point value in units of 2^-64.
    fn add_fixed(&mut self, f: i128) {
        let at = (-64 - LOW_EXP) as u32;
        debug_assert_eq!(at % LIMB_BITS, 0);
        self.add_bits(f.unsigned_abs(), (at / LIMB_BITS) as usize, f < 0);
    }

    /// Adds (or subtracts) `bits << (32 * limb)`.
    fn add_bits(&mut self, mut bits: u128, mut limb: usize, negative: bool) {
        if self.pending >= NORMALIZE_EVERY {
            self.normalize();
        }
        self.pending += 1;
        while bits != 0 && limb < LIMBS {
            let part = (bits & 0xffff_ffff) as i64;
            self.limbs[limb] += if negative { -part } else { part };
            bits >>= LIMB_BITS;
            limb += 1;
        }
    }

    fn merge(&mut self, other: &Wide) {
        let mut other = other.clone();
        other.normalize();
        self.normalize();
        for (a, b) in self.limbs.iter_mut().zip(other.limbs) {
            *a += b;
        }
        self.pending = 1;
    }

    /// Moves carries up: every limb but the top one ends in `0..2^32`; the top one holds the
    /// sign.
    fn normalize(&mut self) {
        for i in 0..LIMBS - 1 {
            let carry = self.limbs[i] >> LIMB_BITS;
            self.limbs[i] -= carry << LIMB_BITS;
            self.limbs[i + 1] += carry;
        }
        self.pending = 0;
    }

    fn value(mut self) -> f64 {
        self.normalize();
        let negative = self.limbs[LIMBS - 1] < 0;
        if negative {
            for l in &mut self.limbs {
                *l = -*l;
            }
            self.normalize();
        }
        let Some(top) = self.limbs.iter().rposition(|&l| l != 0) else {
            return 0.0;
        };
        // The top three limbs (at least 65 significant bits when the top one is at least
        // limb 2), with every lower bit folded into the last one: rounding to 53 bits then
        // sees exactly whether the rest is zero, under, at or over half an ulp.
        let limb = |i: usize| self.limbs[i] as u128;
        let mut x = limb(top) << 64;
        if top >= 1 {
            x |= limb(top - 1) << 32;
        }
        if top >= 2 {
            x |= limb(top - 2);
            if self.limbs[..top - 2].iter().any(|&l| l != 0) {
                x |= 1;
            }
        }
        // Below 2^-1022 the exact sum, a multiple of 2^-1074, has at most 52 significant
        // bits: the conversion is exact and so is the scaling into the subnormals.
        let magnitude = scale(x as f64, (top as i32 - 2) * LIMB_BITS as i32 + LOW_EXP);
        if negative { -magnitude } else { magnitude }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(values: &[f64]) -> f64 {
        let mut s = ExactSum::default();
        for &v in values {
            s.add(v);
        }
        s.value()
    }

    /// A small deterministic generator (xorshift), so failures reproduce.
    fn values(seed: u64, n: usize, f: impl Fn(u64) -> f64) -> Vec<f64> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                f(x)
            })
            .collect()
    }

    #[test]
    fn exact_where_a_sequential_sum_is_not() {
        assert_eq!(sum(&[1e100, 1.0, -1e100]), 1.0);
        assert_eq!(sum(&[0.1; 10]), 1.0);
        assert_eq!(sum(&[1e308, 1e308, -1e308]), 1e308);
        assert_eq!(sum(&[f64::MAX, f64::MAX]), f64::INFINITY);
        assert_eq!(sum(&[-f64::MAX, -f64::MAX]), f64::NEG_INFINITY);
        assert_eq!(sum(&[5e-324, 5e-324, 5e-324]), 1.5e-323);
        assert_eq!(sum(&[1e-300, -1e-300]), 0.0);
        assert_eq!(sum(&[]), 0.0);
        assert_eq!(sum(&[-2.5]), -2.5);
        assert_eq!(sum(&[1e-5, 2e-5]), 1e-5 + 2e-5);
        // 2^53 + 1 is a tie between 2^53 and 2^53 + 2: even wins; a tiny term breaks it.
        let two53 = 9_007_199_254_740_992.0;
        assert_eq!(sum(&[two53, 1.0]), two53);
        assert_eq!(sum(&[two53, 1.0, 1e-30]), two53 + 2.0);
        assert_eq!(sum(&[two53, 1.0, -1e-30]), two53);
        assert_eq!(sum(&[two53, 3.0]), two53 + 4.0);
    }

    #[test]
    fn infinities_and_nan() {
        assert!(sum(&[1.0, f64::NAN]).is_nan());
        assert!(sum(&[f64::INFINITY, f64::NEG_INFINITY]).is_nan());
        assert_eq!(sum(&[f64::INFINITY, -1e308, -1e308]), f64::INFINITY);
        assert_eq!(sum(&[f64::NEG_INFINITY, 3.0]), f64::NEG_INFINITY);
    }

    #[test]
    fn any_order_and_any_split_give_the_same_bits() {
        let generators: [fn(u64) -> f64; 3] = [
            // Durations in milliseconds with fractions.
            |x| (x % 100_000) as f64 / 7.0,
            // Any magnitude, any sign.
            |x| {
                let mag = ((x >> 11) % 600) as i32 - 300;
                let v = (x % 1000) as f64 * 10f64.powi(mag);
                if x & 1 == 0 { v } else { -v }
            },
            // Large integers that overflow the fixed-point part.
            |x| ((x >> 3) % (1 << 61)) as f64 * if x & 1 == 0 { 1.0 } else { 3.0 },
        ];
        for (i, g) in generators.iter().enumerate() {
            let v = values(7 + i as u64, 5000, g);
            let forward = sum(&v);
            let mut rev = v.clone();
            rev.reverse();
            assert_eq!(sum(&rev).to_bits(), forward.to_bits(), "generator {i}");
            let (a, b) = v.split_at(1234);
            let mut sa = ExactSum::default();
            a.iter().for_each(|&x| sa.add(x));
            let mut sb = ExactSum::default();
            b.iter().for_each(|&x| sb.add(x));
            sb.merge(&sa);
            assert_eq!(sb.value().to_bits(), forward.to_bits(), "generator {i}");
        }
    }

    #[test]
    fn agrees_with_exact_integer_arithmetic() {
        // Values that are multiples of 2^-20 below 2^40: their sum fits an i128 exactly, and
        // i128 to f64 rounds to nearest, ties to even.
        let v = values(99, 20_000, |x| {
            let units = (x % (1 << 60)) as i64 - (1 << 59);
            units as f64 * pow2(-20)
        });
        let units: i128 = v.iter().map(|&x| (x * 1_048_576.0) as i128).sum();
        assert_eq!(sum(&v), units as f64 * pow2(-20));
        // The same through the wide accumulator: values too small for the fixed point.
        let tiny: Vec<f64> = v.iter().map(|x| x * pow2(-200)).collect();
        assert_eq!(sum(&tiny), units as f64 * pow2(-220));
    }
}
