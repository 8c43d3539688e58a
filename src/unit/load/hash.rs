//! The project's one hash: FNV-1a, defined by its constants rather than by a Rust version
//! (std's hashers may change between releases), so a value written to disk or into a name
//! today compares equal tomorrow.
//!
//! [`Fnv128`] is the unit content hash ([`LoadedUnit::content_hash`](super::LoadedUnit)),
//! stored in `state.json` and compared across daemon versions; [`fnv1a_64`] is the short
//! form for a name derived from a path (a state directory's cgroup, `runtime::cgroup`),
//! where 16 hex digits are enough. Same algorithm, two widths.

/// A stable 128-bit FNV-1a hash over length-framed parts.
pub(crate) struct Fnv128(u128);

impl Fnv128 {
    const OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
    const PRIME: u128 = 0x0000000001000000000000000000013B;

    pub(crate) fn new() -> Self {
        Fnv128(Self::OFFSET)
    }

    fn bytes(&mut self, b: &[u8]) {
        let mut h = self.0;
        for &x in b {
            h ^= u128::from(x);
            h = h.wrapping_mul(Self::PRIME);
        }
        self.0 = h;
    }

    /// Length-framed, so `("ab","c")` and `("a","bc")` differ.
    pub(crate) fn part(&mut self, b: &[u8]) {
        self.bytes(&(b.len() as u64).to_le_bytes());
        self.bytes(b);
    }

    /// 32 lowercase hex digits.
    pub(crate) fn hex(&self) -> String {
        format!("{:032x}", self.0)
    }
}

/// 64-bit FNV-1a of `data` (unframed): for short stable names, not for unit content.
pub(crate) fn fnv1a_64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_64_matches_the_published_test_vectors() {
        assert_eq!(fnv1a_64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a_64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a_64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn parts_are_length_framed() {
        let h = |parts: &[&[u8]]| {
            let mut f = Fnv128::new();
            for p in parts {
                f.part(p);
            }
            f.hex()
        };
        assert_ne!(h(&[b"ab", b"c"]), h(&[b"a", b"bc"]));
        assert_eq!(h(&[]).len(), 32);
    }
}
