//! The subscriber's master key, the keys derived from it, and its passphrase-wrapped copy.
//!
//! One random 256-bit master key per subscriber; every other key is derived from it with BLAKE3's
//! key derivation under a fixed context string, so adding a purpose never weakens another. The
//! wrapped copy is the master key sealed with a key derived from a recovery passphrase by Argon2id:
//! the hub can keep it and learns nothing without the passphrase.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The subscriber's root secret.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey([u8; 32]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<secret>)")
    }
}

/// Names chunks: a keyed hash, so that a chunk's id says nothing about its content to anyone
/// without the key (no one can test whether a subscriber holds a known file).
#[derive(Clone)]
pub struct ChunkIdKey([u8; 32]);

/// Seals chunks, packs' indexes and snapshots.
#[derive(Clone)]
pub struct DataKey(pub(crate) [u8; 32]);

impl MasterKey {
    pub fn generate() -> MasterKey {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        MasterKey(bytes)
    }

    pub fn from_bytes(bytes: [u8; 32]) -> MasterKey {
        MasterKey(bytes)
    }

    /// The raw key, for the OS keyring. Handle with care.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0
    }

    pub fn chunk_id_key(&self) -> ChunkIdKey {
        ChunkIdKey(blake3::derive_key("surplus 2026 backup chunk ids", &self.0))
    }

    pub fn data_key(&self) -> DataKey {
        DataKey(blake3::derive_key(
            "surplus 2026 backup data sealing",
            &self.0,
        ))
    }

    /// A copy of this key sealed under `passphrase`, safe to hand to the hub.
    pub fn wrap(&self, passphrase: &str, cost: WrapCost) -> Result<WrappedKey> {
        let mut salt = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        let mut nonce = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let kek = derive_wrapping_key(passphrase, &salt, cost)?;
        let cipher = XChaCha20Poly1305::new((&kek).into());
        let sealed = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &self.0,
                    aad: WRAP_AAD,
                },
            )
            .map_err(|_| Error::Malformed {
                what: "wrapped key",
                detail: "sealing failed".into(),
            })?;
        Ok(WrappedKey {
            version: 1,
            memory_kib: cost.memory_kib,
            iterations: cost.iterations,
            salt: hex(&salt),
            nonce: hex(&nonce),
            sealed: hex(&sealed),
        })
    }
}

impl ChunkIdKey {
    /// The id of a chunk with this plaintext.
    pub fn id(&self, plaintext: &[u8]) -> ChunkId {
        ChunkId(*blake3::keyed_hash(&self.0, plaintext).as_bytes())
    }
}

/// A chunk's name: 32 bytes of keyed hash.
/// Serialised as 64 hex digits (see `tree.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkId(pub [u8; 32]);

impl std::fmt::Display for ChunkId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

/// How hard the passphrase is to guess at: Argon2id's memory and passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WrapCost {
    pub memory_kib: u32,
    pub iterations: u32,
}

impl WrapCost {
    /// OWASP's recommendation for Argon2id: 64 MiB, 3 passes (about a second on a home PC).
    pub const RECOMMENDED: WrapCost = WrapCost {
        memory_kib: 64 * 1024,
        iterations: 3,
    };
    /// For tests only: fast, and no protection worth the name.
    pub const TESTING: WrapCost = WrapCost {
        memory_kib: 64,
        iterations: 1,
    };
    /// The most a wrapped key may ask of the machine that opens it: its cost comes from the hub,
    /// which must not be able to make a device allocate gigabytes or hash for hours.
    pub const MOST: WrapCost = WrapCost {
        memory_kib: 1024 * 1024,
        iterations: 16,
    };
}

/// The master key sealed under a passphrase-derived key; everything in it is public.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrappedKey {
    pub version: u8,
    pub memory_kib: u32,
    pub iterations: u32,
    pub salt: String,
    pub nonce: String,
    pub sealed: String,
}

impl WrappedKey {
    /// The master key, if `passphrase` is the one it was wrapped with.
    pub fn unwrap(&self, passphrase: &str) -> Result<MasterKey> {
        if self.version != 1 {
            return Err(Error::UnsupportedVersion(self.version));
        }
        let salt = unhex(&self.salt, "wrapped key salt")?;
        let nonce: [u8; 24] = unhex(&self.nonce, "wrapped key nonce")?
            .try_into()
            .map_err(|_| Error::Malformed {
                what: "wrapped key nonce",
                detail: "not 24 bytes".into(),
            })?;
        let sealed = unhex(&self.sealed, "wrapped key")?;
        if self.memory_kib > WrapCost::MOST.memory_kib
            || self.iterations > WrapCost::MOST.iterations
        {
            return Err(Error::Malformed {
                what: "wrapped key",
                detail: format!(
                    "its cost ({} KiB, {} passes) is past what this device spends on it",
                    self.memory_kib, self.iterations
                ),
            });
        }
        let cost = WrapCost {
            memory_kib: self.memory_kib,
            iterations: self.iterations,
        };
        let kek = derive_wrapping_key(passphrase, &salt, cost)?;
        let cipher = XChaCha20Poly1305::new((&kek).into());
        let bytes = cipher
            .decrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &sealed,
                    aad: WRAP_AAD,
                },
            )
            .map_err(|_| Error::WrongPassphrase)?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| Error::Malformed {
            what: "wrapped key",
            detail: "not a 32-byte key".into(),
        })?;
        Ok(MasterKey(bytes))
    }
}

const WRAP_AAD: &[u8] = b"surplus master key v1";

fn derive_wrapping_key(passphrase: &str, salt: &[u8], cost: WrapCost) -> Result<[u8; 32]> {
    let params =
        argon2::Params::new(cost.memory_kib, cost.iterations, 1, Some(32)).map_err(|e| {
            Error::Malformed {
                what: "key wrapping cost",
                detail: e.to_string(),
            }
        })?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut key = [0u8; 32];
    argon
        .hash_password_into(passphrase.as_bytes(), salt, &mut key)
        .map_err(|e| Error::Malformed {
            what: "key wrapping",
            detail: e.to_string(),
        })?;
    Ok(key)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(DIGITS[usize::from(byte >> 4)] as char);
        text.push(DIGITS[usize::from(byte & 15)] as char);
    }
    text
}

fn unhex(text: &str, what: &'static str) -> Result<Vec<u8>> {
    let malformed = || Error::Malformed {
        what,
        detail: "not hex".into(),
    };
    if !text.len().is_multiple_of(2) {
        return Err(malformed());
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or_else(malformed)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrapped_key_opens_only_with_its_passphrase() {
        let key = MasterKey::generate();
        let wrapped = key
            .wrap("correct horse battery staple", WrapCost::TESTING)
            .expect("wrap");
        assert_eq!(
            wrapped
                .unwrap("correct horse battery staple")
                .expect("unwrap"),
            key
        );
        assert_eq!(
            wrapped.unwrap("wrong").expect_err("a wrong passphrase"),
            Error::WrongPassphrase
        );
        // What the hub keeps does not contain the key.
        let json = serde_json::to_string(&wrapped).expect("json");
        assert!(!json.contains(&hex(&key.to_bytes())));
    }

    #[test]
    fn a_wrapped_key_cannot_ask_for_unbounded_memory_or_time() {
        let mut wrapped = MasterKey::generate()
            .wrap("correct horse battery staple", WrapCost::TESTING)
            .expect("wrap");
        wrapped.memory_kib = u32::MAX;
        assert!(matches!(
            wrapped.unwrap("correct horse battery staple"),
            Err(Error::Malformed { .. })
        ));
        wrapped.memory_kib = 64;
        wrapped.iterations = u32::MAX;
        assert!(matches!(
            wrapped.unwrap("correct horse battery staple"),
            Err(Error::Malformed { .. })
        ));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 300, rng_algorithm: proptest::test_runner::RngAlgorithm::ChaCha, ..proptest::prelude::ProptestConfig::default() })]

        /// Whatever the hub sends as a wrapped key is refused or opened, never a panic; its cost
        /// is bounded before any memory is taken for it.
        #[test]
        fn any_wrapped_key_from_the_hub_is_read_safely(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
            version in 0u8..3,
            memory_kib in proptest::prelude::any::<u32>(),
            iterations in proptest::prelude::any::<u32>(),
            salt in "[0-9a-f]{0,40}",
            nonce in "[0-9a-fA-Fxz]{0,50}",
            sealed in "[0-9a-f]{0,120}",
        ) {
            let _ = serde_json::from_slice::<WrappedKey>(&bytes).map(|w| w.unwrap("p"));
            let wrapped = WrappedKey {
                version,
                memory_kib: memory_kib % (2 * WrapCost::MOST.memory_kib).max(1) % 4096,
                iterations: iterations % 4,
                salt,
                nonce,
                sealed,
            };
            proptest::prop_assert!(wrapped.unwrap("p").is_err());
        }
    }

    #[test]
    fn derived_keys_differ_by_purpose_and_owner() {
        let a = MasterKey::from_bytes([1; 32]);
        let b = MasterKey::from_bytes([2; 32]);
        assert_ne!(a.chunk_id_key().0, a.data_key().0);
        assert_ne!(a.chunk_id_key().id(b"same"), b.chunk_id_key().id(b"same"));
        assert_eq!(a.chunk_id_key().id(b"same"), a.chunk_id_key().id(b"same"));
    }

    #[test]
    fn hex_round_trips() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(unhex(&hex(&bytes), "test").expect("hex"), bytes);
        assert!(unhex("abc", "test").is_err());
        assert!(unhex("zz", "test").is_err());
    }
}
