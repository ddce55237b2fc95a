//! Erasure coding of packs: `data` original shards and `parity` recovery shards (Reed-Solomon),
//! each on a different holder, so that any `data` of them rebuild the pack.
//!
//! A shard is self-describing: `version (1) | data (2) | parity (2) | index (2) | pack length (8)`
//! then its payload. Its BLAKE3 hash is its name where it is stored, and the pack's owner keeps the
//! expected hashes: [`rebuild`] leaves out any shard that does not match, so a holder that alters
//! its shard is routed around as if it were offline.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

const VERSION: u8 = 1;
const HEADER: usize = 1 + 2 + 2 + 2 + 8;
/// Shard payloads are padded to a multiple of this (the Reed-Solomon engine's unit).
const ALIGN: usize = 64;

/// How a pack is cut: `data` shards carry it, `parity` more protect it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coding {
    pub data: u16,
    pub parity: u16,
}

impl Coding {
    pub fn new(data: u16, parity: u16) -> Result<Coding> {
        let valid = data >= 1 && usize::from(data) + usize::from(parity) <= 255;
        if valid {
            Ok(Coding { data, parity })
        } else {
            Err(invalid(data, parity))
        }
    }

    /// Shards in all.
    pub fn shards(self) -> usize {
        usize::from(self.data) + usize::from(self.parity)
    }

    /// Bytes stored in all for a pack of `len` bytes.
    pub fn stored_bytes(self, len: usize) -> usize {
        (HEADER + payload_len(len, self.data)) * self.shards()
    }
}

fn invalid(data: u16, parity: u16) -> Error {
    Error::InvalidCoding {
        data: usize::from(data),
        parity: usize::from(parity),
    }
}

fn payload_len(pack_len: usize, data: u16) -> usize {
    let per_shard = pack_len.div_ceil(usize::from(data)).max(1);
    per_shard.div_ceil(ALIGN) * ALIGN
}

/// Cuts a pack into `coding.shards()` shards: the data shards first, then the parity shards.
pub fn encode(pack: &[u8], coding: Coding) -> Result<Vec<Vec<u8>>> {
    let payload = payload_len(pack.len(), coding.data);
    let originals: Vec<Vec<u8>> = (0..usize::from(coding.data))
        .map(|i| {
            let start = (i * payload).min(pack.len());
            let end = ((i + 1) * payload).min(pack.len());
            let mut shard = pack[start..end].to_vec();
            shard.resize(payload, 0);
            shard
        })
        .collect();
    let recovery = if coding.parity == 0 {
        Vec::new()
    } else {
        reed_solomon_simd::encode(
            usize::from(coding.data),
            usize::from(coding.parity),
            &originals,
        )
        .map_err(|e| Error::Malformed {
            what: "erasure coding",
            detail: e.to_string(),
        })?
    };
    let pack_len = pack.len() as u64;
    Ok(originals
        .iter()
        .chain(recovery.iter())
        .enumerate()
        .map(|(index, payload)| {
            let mut shard = Vec::with_capacity(HEADER + payload.len());
            shard.push(VERSION);
            shard.extend_from_slice(&coding.data.to_le_bytes());
            shard.extend_from_slice(&coding.parity.to_le_bytes());
            shard.extend_from_slice(&(index as u16).to_le_bytes());
            shard.extend_from_slice(&pack_len.to_le_bytes());
            shard.extend_from_slice(payload);
            shard
        })
        .collect())
}

/// A shard's name: the BLAKE3 hash of its bytes.
pub fn shard_hash(shard: &[u8]) -> [u8; 32] {
    *blake3::hash(shard).as_bytes()
}

struct Parsed<'a> {
    coding: Coding,
    index: usize,
    pack_len: usize,
    payload: &'a [u8],
}

fn parse(shard: &[u8]) -> Option<Parsed<'_>> {
    if shard.len() < HEADER || shard[0] != VERSION {
        return None;
    }
    let u16_at = |at: usize| u16::from_le_bytes([shard[at], shard[at + 1]]);
    let coding = Coding::new(u16_at(1), u16_at(3)).ok()?;
    let index = usize::from(u16_at(5));
    let pack_len = usize::try_from(u64::from_le_bytes(shard[7..15].try_into().ok()?)).ok()?;
    let payload = &shard[HEADER..];
    (index < coding.shards() && payload.len() == payload_len(pack_len, coding.data)).then_some(
        Parsed {
            coding,
            index,
            pack_len,
            payload,
        },
    )
}

/// Rebuilds a pack from whatever shards came back, keeping only those whose hash is one of
/// `expected` (the owner's record of the pack's shards, in index order).
pub fn rebuild<'a>(
    expected: &[[u8; 32]],
    candidates: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Vec<u8>> {
    let mut intact: Vec<Parsed<'_>> = Vec::new();
    for shard in candidates {
        let hash = shard_hash(shard);
        let Some(parsed) = parse(shard) else { continue };
        if expected.get(parsed.index) == Some(&hash)
            && !intact.iter().any(|p| p.index == parsed.index)
        {
            intact.push(parsed);
        }
    }
    let Some(first) = intact.first() else {
        return Err(Error::TooFewShards {
            available: 0,
            needed: 1,
        });
    };
    let (coding, pack_len) = (first.coding, first.pack_len);
    intact.retain(|p| p.coding == coding && p.pack_len == pack_len);
    let data = usize::from(coding.data);
    if intact.len() < data {
        return Err(Error::TooFewShards {
            available: intact.len(),
            needed: data,
        });
    }
    let mut originals: Vec<Option<Vec<u8>>> = vec![None; data];
    for shard in intact.iter().filter(|p| p.index < data) {
        originals[shard.index] = Some(shard.payload.to_vec());
    }
    if originals.iter().any(Option::is_none) {
        let restored = reed_solomon_simd::decode(
            data,
            usize::from(coding.parity),
            intact
                .iter()
                .filter(|p| p.index < data)
                .map(|p| (p.index, p.payload)),
            intact
                .iter()
                .filter(|p| p.index >= data)
                .map(|p| (p.index - data, p.payload)),
        )
        .map_err(|e| Error::Malformed {
            what: "erasure decoding",
            detail: e.to_string(),
        })?;
        for (index, payload) in restored {
            if let Some(slot) = originals.get_mut(index) {
                *slot = Some(payload);
            }
        }
    }
    let mut pack = Vec::with_capacity(pack_len);
    for payload in originals.into_iter().flatten() {
        pack.extend_from_slice(&payload);
    }
    if pack.len() < pack_len {
        return Err(Error::TooFewShards {
            available: intact.len(),
            needed: data,
        });
    }
    pack.truncate(pack_len);
    Ok(pack)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hashes(shards: &[Vec<u8>]) -> Vec<[u8; 32]> {
        shards.iter().map(|s| shard_hash(s)).collect()
    }

    #[test]
    fn a_coding_needs_a_data_shard_and_at_most_255_shards() {
        assert!(Coding::new(0, 3).is_err());
        assert!(Coding::new(200, 56).is_err());
        assert!(Coding::new(1, 0).is_ok());
    }

    #[test]
    fn a_tampered_shard_is_routed_around() {
        let pack: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let coding = Coding::new(2, 2).expect("coding");
        let shards = encode(&pack, coding).expect("encode");
        let expected = hashes(&shards);
        let mut tampered = shards.clone();
        tampered[0][HEADER + 10] ^= 1;
        tampered[1][HEADER] ^= 1;
        // Two altered data shards are left out; the two parity shards rebuild the pack.
        let rebuilt = rebuild(&expected, tampered.iter().map(Vec::as_slice)).expect("rebuild");
        assert_eq!(rebuilt, pack);
        // With a third shard gone too, there is not enough left.
        let err = rebuild(&expected, tampered[..3].iter().map(Vec::as_slice))
            .expect_err("too few shards");
        assert_eq!(
            err,
            Error::TooFewShards {
                available: 1,
                needed: 2
            }
        );
    }

    #[test]
    fn an_empty_pack_survives() {
        let coding = Coding::new(3, 3).expect("coding");
        let shards = encode(&[], coding).expect("encode");
        assert_eq!(
            rebuild(&hashes(&shards), shards[3..].iter().map(Vec::as_slice)).expect("rebuild"),
            Vec::<u8>::new()
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, rng_algorithm: proptest::test_runner::RngAlgorithm::ChaCha, ..ProptestConfig::default() })]

        /// Shards from holders, whatever their bytes, even when the owner's record names them
        /// (the worst case: their hashes match), rebuild a pack or are refused: never a panic,
        /// and never a pack larger than the shards that came back could hold.
        #[test]
        fn any_shards_are_rebuilt_or_refused_safely(
            shards in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..6),
            headers in proptest::collection::vec((1u16..5, 0u16..5, 0u16..9, 0u64..2_000), 0..6),
        ) {
            let mut shards = shards;
            for (shard, (data, parity, index, pack_len)) in shards.iter_mut().zip(&headers) {
                // Some of them with a plausible header, to get past the first checks.
                let mut header = vec![VERSION];
                header.extend_from_slice(&data.to_le_bytes());
                header.extend_from_slice(&parity.to_le_bytes());
                header.extend_from_slice(&index.to_le_bytes());
                header.extend_from_slice(&pack_len.to_le_bytes());
                header.extend_from_slice(shard);
                *shard = header;
            }
            let expected: Vec<[u8; 32]> = shards.iter().map(|s| shard_hash(s)).collect();
            let total: usize = shards.iter().map(Vec::len).sum();
            if let Ok(pack) = rebuild(&expected, shards.iter().map(Vec::as_slice)) {
                prop_assert!(pack.len() <= total.saturating_mul(16));
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 120, rng_algorithm: proptest::test_runner::RngAlgorithm::ChaCha, ..ProptestConfig::default() })]

        /// Whatever the pack and the coding, losing any `parity` shards loses nothing.
        #[test]
        fn any_data_count_of_shards_rebuilds_the_pack(
            pack in proptest::collection::vec(any::<u8>(), 0..50_000),
            data in 1u16..6, parity in 0u16..7, seed in any::<u64>(),
        ) {
            let coding = Coding::new(data, parity).expect("coding");
            let shards = encode(&pack, coding).expect("encode");
            prop_assert_eq!(shards.len(), coding.shards());
            // Keep a pseudo-random `data` of them, in a shuffled order.
            let mut order: Vec<usize> = (0..shards.len()).collect();
            let mut state = seed | 1;
            for i in (1..order.len()).rev() {
                state ^= state << 13; state ^= state >> 7; state ^= state << 17;
                order.swap(i, (state % (i as u64 + 1)) as usize);
            }
            let kept: Vec<&[u8]> = order[..usize::from(data)].iter().map(|&i| shards[i].as_slice()).collect();
            prop_assert_eq!(rebuild(&hashes(&shards), kept).expect("rebuild"), pack);
        }
    }
}
