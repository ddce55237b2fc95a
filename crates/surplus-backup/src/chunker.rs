//! Content-defined chunking (FastCDC): cut points depend on the content, so an insertion early in
//! a file moves only the chunks around it and the rest deduplicate.

/// The smallest chunk, except a file's last.
pub const MIN_SIZE: u32 = 512 * 1024;
/// The size chunks average.
pub const AVERAGE_SIZE: u32 = 1024 * 1024;
/// The largest chunk.
pub const MAX_SIZE: u32 = 8 * 1024 * 1024;

/// Where the chunks of `data` begin and end, in order, covering it exactly.
pub fn cut(data: &[u8]) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
    fastcdc::v2020::FastCDC::new(data, MIN_SIZE, AVERAGE_SIZE, MAX_SIZE)
        .map(|chunk| chunk.offset..chunk.offset + chunk.length)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Deterministic pseudo-random bytes (xorshift), so cut points are the same every run.
    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut state = seed | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    }

    #[test]
    fn chunks_respect_the_bounds() {
        let data = noise(20 << 20, 1);
        let chunks: Vec<_> = cut(&data).collect();
        assert!(chunks.len() > 5);
        for chunk in &chunks[..chunks.len() - 1] {
            assert!(
                (MIN_SIZE as usize..=MAX_SIZE as usize).contains(&chunk.len()),
                "{chunk:?}"
            );
        }
    }

    #[test]
    fn an_insertion_moves_only_nearby_cut_points() {
        let data = noise(16 << 20, 2);
        let mut edited = data.clone();
        edited.splice(3 << 20..3 << 20, b"a few inserted bytes".iter().copied());
        let ids = |bytes: &[u8]| -> std::collections::HashSet<blake3::Hash> {
            cut(bytes)
                .map(|range| blake3::hash(&bytes[range]))
                .collect()
        };
        let (before, after) = (ids(&data), ids(&edited));
        let shared = before.intersection(&after).count();
        assert!(
            shared + 3 >= before.len(),
            "{shared} of {} chunks survive an insertion",
            before.len()
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 40, rng_algorithm: proptest::test_runner::RngAlgorithm::ChaCha, ..ProptestConfig::default() })]

        #[test]
        fn chunks_cover_the_input_exactly_in_order(len in 0usize..(6 << 20), seed in any::<u64>()) {
            let data = noise(len, seed);
            let mut next = 0;
            for range in cut(&data) {
                prop_assert_eq!(range.start, next);
                prop_assert!(!range.is_empty());
                next = range.end;
            }
            prop_assert_eq!(next, data.len());
        }
    }
}
