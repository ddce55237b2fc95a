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
/// Each shard is built once, header and payload in one buffer.
pub fn encode(pack: &[u8], coding: Coding) -> Result<Vec<Vec<u8>>> {
    let payload = payload_len(pack.len(), coding.data);
    let pack_len = pack.len() as u64;
    let header = |index: usize| {
        let mut shard = Vec::with_capacity(HEADER + payload);
        shard.push(VERSION);
        shard.extend_from_slice(&coding.data.to_le_bytes());
        shard.extend_from_slice(&coding.parity.to_le_bytes());
        shard.extend_from_slice(&(index as u16).to_le_bytes());
        shard.extend_from_slice(&pack_len.to_le_bytes());
        shard
    };
    let mut shards: Vec<Vec<u8>> = (0..usize::from(coding.data))
        .map(|i| {
            let start = (i * payload).min(pack.len());
            let end = ((i + 1) * payload).min(pack.len());
            let mut shard = header(i);
            shard.extend_from_slice(&pack[start..end]);
            shard.resize(HEADER + payload, 0);
            shard
        })
        .collect();
    if coding.parity > 0 {
        let recovery = reed_solomon_simd::encode(
            usize::from(coding.data),
            usize::from(coding.parity),
            shards.iter().map(|shard| &shard[HEADER..]),
        )
        .map_err(|e| Error::Malformed {
            what: "erasure coding",
            detail: e.to_string(),
        })?;
        for (i, parity) in recovery.iter().enumerate() {
            let mut shard = header(usize::from(coding.data) + i);
            shard.extend_from_slice(parity);
            shards.push(shard);
        }
    }
    Ok(shards)
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
    let info = shard_info(shard)?;
    let pack_len = usize::try_from(info.pack_len).ok()?;
    let payload = &shard[HEADER..];
    (payload.len() == payload_len(pack_len, info.coding.data)).then_some(Parsed {
        coding: info.coding,
        index: info.index,
        pack_len,
        payload,
    })
}

/// What a shard's header says: its pack's coding, its index among the pack's shards, and the
/// pack's length. Readable from the first [`HEADER_LEN`] bytes alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardInfo {
    pub coding: Coding,
    pub index: usize,
    pub pack_len: u64,
}

/// The bytes of a shard's header.
pub const HEADER_LEN: usize = HEADER;

/// Reads a shard's header from its first bytes; `None` when they are not a shard's.
pub fn shard_info(prefix: &[u8]) -> Option<ShardInfo> {
    if prefix.len() < HEADER || prefix[0] != VERSION {
        return None;
    }
    let u16_at = |at: usize| u16::from_le_bytes([prefix[at], prefix[at + 1]]);
    let coding = Coding::new(u16_at(1), u16_at(3)).ok()?;
    let index = usize::from(u16_at(5));
    let pack_len = u64::from_le_bytes(prefix[7..15].try_into().ok()?);
    (index < coding.shards()).then_some(ShardInfo {
        coding,
        index,
        pack_len,
    })
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
    decode(intact)
}

/// Every shard of a pack, made again from any `data` of them. This is Reed-Solomon over
/// ciphertext: no key is needed and no plaintext is seen. The shards come out byte for byte as
/// their owner made them, so their names are the same and the owner's index stays true. The
/// caller vouches for the shards given (a holder's upload is checked against its name); any
/// that do not belong with the first are left out.
pub fn reshard<'a>(shards: impl IntoIterator<Item = &'a [u8]>) -> Result<Vec<Vec<u8>>> {
    let mut intact: Vec<Parsed<'_>> = Vec::new();
    for shard in shards {
        let Some(parsed) = parse(shard) else { continue };
        if !intact.iter().any(|p| p.index == parsed.index) {
            intact.push(parsed);
        }
    }
    let coding = intact.first().map(|p| p.coding);
    let pack = decode(intact)?;
    encode(&pack, coding.unwrap_or(Coding { data: 1, parity: 0 }))
}

/// The pack from intact shards of it (of one coding and length: others are left out).
fn decode(mut intact: Vec<Parsed<'_>>) -> Result<Vec<u8>> {
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
    fn lost_shards_are_made_again_byte_for_byte_from_any_data_of_them() {
        let pack: Vec<u8> = (0..50_000u32).map(|i| (i * 31 % 253) as u8).collect();
        for (data, parity) in [(1, 2), (2, 2), (4, 6), (3, 0)] {
            let coding = Coding::new(data, parity).expect("coding");
            let shards = encode(&pack, coding).expect("encode");
            let info = shard_info(&shards[1.min(shards.len() - 1)][..HEADER_LEN]).expect("info");
            assert_eq!((info.coding, info.pack_len), (coding, pack.len() as u64));
            // Keep the last `data` shards only (parity ones where there are any).
            let kept: Vec<&[u8]> = shards[shards.len() - usize::from(data)..]
                .iter()
                .map(Vec::as_slice)
                .collect();
            let made = reshard(kept).expect("reshard");
            assert_eq!(made, shards, "{data}+{parity}");
        }
        // Fewer than `data` shards make nothing.
        let shards = encode(&pack, Coding::new(4, 6).expect("coding")).expect("encode");
        let three: Vec<&[u8]> = shards[..3].iter().map(Vec::as_slice).collect();
        assert!(matches!(reshard(three), Err(Error::TooFewShards { .. })));
        assert_eq!(shard_info(b"not a shard at all"), None);
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
            if let Ok(made) = reshard(shards.iter().map(Vec::as_slice)) {
                let made_bytes: usize = made.iter().map(Vec::len).sum();
                prop_assert!(made_bytes <= total.saturating_mul(64) + 64 * 255);
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
            prop_assert_eq!(rebuild(&hashes(&shards), kept.clone()).expect("rebuild"), pack);
            // And every shard is made again as it was, so its name stays the same.
            prop_assert_eq!(reshard(kept).expect("reshard"), shards);
        }
    }
}
