//! Deterministic randomness: every value the generator draws is a pure function of the seed and
//! of the indices of the thing being generated (DAG, run, task, map index, try).
//!
//! That is what lets each table be written in its own pass, in any order, without keeping the
//! history in memory: the task instance that `xcom` needs is recomputed, bit for bit, from the
//! same indices the `task_instance` pass used. The mixer is SplitMix64's finaliser (Steele,
//! Lea, Flood 2014), the stream generator SplitMix64 itself: small, fast, and good enough for
//! synthetic data (not for anything secret).

/// SplitMix64's increment (the golden ratio in 64 bits).
const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// SplitMix64's output function: a bijective, well-mixing map of 64-bit words.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Hashes a seed and a path of indices (e.g. `[TAG_TI, dag, run, task, map]`) to 64 bits.
pub(crate) fn hash(seed: u64, path: &[u64]) -> u64 {
    path.iter().fold(mix(seed ^ GAMMA), |h, &x| {
        mix(h.wrapping_add(GAMMA) ^ mix(x))
    })
}

/// A SplitMix64 stream, started from [`hash`] of a path.
#[derive(Debug, Clone)]
pub(crate) struct Rng {
    state: u64,
}

impl Rng {
    /// The stream for `path` under `seed`.
    pub(crate) fn new(seed: u64, path: &[u64]) -> Rng {
        Rng {
            state: hash(seed, path),
        }
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GAMMA);
        mix(self.state)
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Uniform in `[low, high)`; `low` when the range is empty.
    pub(crate) fn range(&mut self, low: i64, high: i64) -> i64 {
        if high <= low {
            return low;
        }
        let span = (high - low) as u64;
        low + ((u128::from(self.next_u64()) * u128::from(span)) >> 64) as i64
    }

    /// One element of a non-empty slice.
    pub(crate) fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.range(0, items.len() as i64) as usize]
    }

    /// Log-normal with median `median` and shape `sigma`: durations, sizes.
    pub(crate) fn lognormal(&mut self, median: f64, sigma: f64) -> f64 {
        // Box-Muller; `1 - unit` keeps the logarithm finite.
        let (u1, u2) = (1.0 - self.unit(), self.unit());
        let normal = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        median * (sigma * normal).exp()
    }

    /// Pareto-distributed integer `>= minimum`, capped at `cap`: few large, many small.
    pub(crate) fn pareto(&mut self, minimum: f64, alpha: f64, cap: u32) -> u32 {
        let value = minimum / (1.0 - self.unit()).powf(1.0 / alpha);
        (value.floor() as u32).clamp(1, cap)
    }
}

/// A UUIDv7 (RFC 9562) whose 48-bit time is `unix_ms` and whose 74 random bits come from `bits`.
pub(crate) fn uuid7(unix_ms: i64, bits: u64, more: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..6].copy_from_slice(&(unix_ms.max(0) as u64).to_be_bytes()[2..]);
    out[6..8].copy_from_slice(&((bits & 0x0fff) as u16 | 0x7000).to_be_bytes());
    out[8..16]
        .copy_from_slice(&((more & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000).to_be_bytes());
    out
}

/// Formats a UUID the usual way: `0190c0c5-...`.
pub(crate) fn uuid_text(uuid: &[u8; 16]) -> String {
    let hex: String = uuid.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_depend_on_seed_and_path_only() {
        let a: Vec<u64> = (0..4)
            .map(|_| 0)
            .scan(Rng::new(42, &[1, 2]), |r, _| Some(r.next_u64()))
            .collect();
        let b: Vec<u64> = (0..4)
            .map(|_| 0)
            .scan(Rng::new(42, &[1, 2]), |r, _| Some(r.next_u64()))
            .collect();
        assert_eq!(a, b);
        assert_ne!(hash(42, &[1, 2]), hash(43, &[1, 2]));
        assert_ne!(hash(42, &[1, 2]), hash(42, &[2, 1]));
        // Pinned so a change to the mixer, which would silently change every generated
        // database, shows up here.
        assert_eq!(mix(0), 0);
        assert_eq!(mix(1), 0x5692_161d_100b_05e5);
    }

    #[test]
    fn draws_stay_in_their_ranges() {
        let mut rng = Rng::new(7, &[]);
        for _ in 0..10_000 {
            let r = rng.range(-3, 5);
            assert!((-3..5).contains(&r));
            let u = rng.unit();
            assert!((0.0..1.0).contains(&u));
            assert!((1..=300).contains(&rng.pareto(2.0, 1.2, 300)));
            assert!(rng.lognormal(10.0, 1.0) > 0.0);
        }
        assert_eq!(rng.range(4, 4), 4);
    }

    #[test]
    fn uuid7_carries_version_variant_and_time() {
        let id = uuid7(0x0190_c0c5_1234, 0xffff, u64::MAX);
        let text = uuid_text(&id);
        assert_eq!(&text[..13], "0190c0c5-1234");
        assert_eq!(&text[14..15], "7");
        assert!(matches!(&text[19..20], "8" | "9" | "a" | "b"), "{text}");
        assert!(uuid7(1, 0, 0) < uuid7(2, u64::MAX, u64::MAX));
    }
}
