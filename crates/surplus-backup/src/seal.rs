//! Sealing: compression where it pays, then authenticated encryption.
//!
//! A sealed blob is `version (1) | flags (1) | nonce (24) | ciphertext + tag (16)`. The nonce is
//! random (XChaCha20's 192 bits make collisions a non-issue); the associated data binds the blob
//! to the name it is stored under, so a holder cannot pass one chunk off as another.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;

use crate::keys::DataKey;
use crate::{Error, Result};

const VERSION: u8 = 1;
const COMPRESSED: u8 = 1;
const HEADER: usize = 2 + 24;
const TAG: usize = 16;

/// zstd's level: 3 is its default and the best speed for the size on home PCs.
pub const COMPRESSION_LEVEL: i32 = 3;

/// The bytes sealing adds to a blob.
pub const OVERHEAD: usize = HEADER + TAG;

/// Compresses (when that saves at least 1/32) and encrypts `plaintext`, bound to `name`.
pub fn seal(key: &DataKey, name: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let compressed = worth_compressing(plaintext)
        .then(|| zstd::bulk::compress(plaintext, COMPRESSION_LEVEL).ok())
        .flatten()
        .filter(|c| c.len() < plaintext.len() - plaintext.len() / 32);
    let (flags, body) = match &compressed {
        Some(compressed) => (COMPRESSED, compressed.as_slice()),
        None => (0, plaintext),
    };
    let mut nonce = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let cipher = XChaCha20Poly1305::new((&key.0).into());
    let aad = associated_data(flags, name);
    let ciphertext = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: body,
                aad: &aad,
            },
        )
        // Encryption fails only for messages beyond 256 GiB, which no chunk comes near.
        .unwrap_or_default();
    let mut sealed = Vec::with_capacity(HEADER + ciphertext.len());
    sealed.push(VERSION);
    sealed.push(flags);
    sealed.extend_from_slice(&nonce);
    sealed.extend_from_slice(&ciphertext);
    sealed
}

/// Opens what [`seal`] made under the same key and name. `max_size` bounds the plaintext, so
/// that a malicious blob cannot decompress into an exhausted memory.
pub fn open(key: &DataKey, name: &[u8], sealed: &[u8], max_size: usize) -> Result<Vec<u8>> {
    if sealed.len() < HEADER + TAG {
        return Err(Error::Malformed {
            what: "sealed blob",
            detail: format!("only {} bytes", sealed.len()),
        });
    }
    if sealed[0] != VERSION {
        return Err(Error::UnsupportedVersion(sealed[0]));
    }
    let flags = sealed[1];
    let nonce = XNonce::from_slice(&sealed[2..HEADER]);
    let cipher = XChaCha20Poly1305::new((&key.0).into());
    let aad = associated_data(flags, name);
    let body = cipher
        .decrypt(
            nonce,
            Payload {
                msg: &sealed[HEADER..],
                aad: &aad,
            },
        )
        .map_err(|_| Error::Unauthentic)?;
    if flags & COMPRESSED == 0 {
        return Ok(body);
    }
    zstd::bulk::decompress(&body, max_size).map_err(|e| Error::Malformed {
        what: "compressed blob",
        detail: e.to_string(),
    })
}

/// Whether compressing looks worth trying: for a large blob, a sample of its start must shrink.
/// Compressed or encrypted data (photos, videos, archives) is then stored as it is at once,
/// without spending a compression pass on it.
fn worth_compressing(plaintext: &[u8]) -> bool {
    const SAMPLE: usize = 64 * 1024;
    if plaintext.len() <= 2 * SAMPLE {
        return true;
    }
    let sample = &plaintext[..SAMPLE];
    zstd::bulk::compress(sample, 1).is_ok_and(|c| c.len() < SAMPLE - SAMPLE / 16)
}

fn associated_data(flags: u8, name: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(2 + name.len());
    aad.push(VERSION);
    aad.push(flags);
    aad.extend_from_slice(name);
    aad
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::MasterKey;
    use proptest::prelude::*;

    fn key() -> DataKey {
        MasterKey::from_bytes([7; 32]).data_key()
    }

    #[test]
    fn compressible_data_shrinks_and_random_data_is_stored_as_is() {
        let text = b"the same words again and again ".repeat(1000);
        let sealed = seal(&key(), b"a", &text);
        assert!(sealed.len() < text.len() / 10);
        assert_eq!(open(&key(), b"a", &sealed, text.len()).expect("open"), text);

        let mut noise = vec![0u8; 10_000];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut noise);
        let sealed = seal(&key(), b"b", &noise);
        assert_eq!(sealed.len(), noise.len() + OVERHEAD);
        assert_eq!(sealed[1], 0, "not worth compressing");
    }

    #[test]
    fn another_key_another_name_or_a_flipped_bit_does_not_open() {
        let sealed = seal(&key(), b"name", b"secret words");
        let other = MasterKey::from_bytes([8; 32]).data_key();
        assert_eq!(open(&other, b"name", &sealed, 100), Err(Error::Unauthentic));
        assert_eq!(
            open(&key(), b"other name", &sealed, 100),
            Err(Error::Unauthentic)
        );
        for index in 0..sealed.len() {
            let mut tampered = sealed.clone();
            tampered[index] ^= 0x10;
            assert!(
                open(&key(), b"name", &tampered, 100).is_err(),
                "byte {index} flipped went unnoticed"
            );
        }
        assert!(matches!(
            open(&key(), b"name", &sealed[..10], 100),
            Err(Error::Malformed { .. })
        ));
    }

    #[test]
    fn a_decompression_bomb_is_refused() {
        let zeros = vec![0u8; 1 << 20];
        let sealed = seal(&key(), b"bomb", &zeros);
        assert!(open(&key(), b"bomb", &sealed, 1024).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, rng_algorithm: proptest::test_runner::RngAlgorithm::ChaCha, ..ProptestConfig::default() })]

        /// Bytes from a holder or the hub, whatever they are, are refused or opened: never a
        /// panic, never more than `max_size` out.
        #[test]
        fn any_bytes_are_opened_safely(
            mut bytes in proptest::collection::vec(any::<u8>(), 0..2_000),
            version in any::<bool>(),
            flags in any::<u8>(),
        ) {
            if version && bytes.len() > 1 {
                bytes[0] = VERSION;
                bytes[1] = flags;
            }
            if let Ok(plain) = open(&key(), b"x", &bytes, 1024) {
                prop_assert!(plain.len() <= 1024);
            }
        }

        #[test]
        fn whatever_is_sealed_opens_to_itself(data in proptest::collection::vec(any::<u8>(), 0..20_000), repeat in 1usize..4) {
            let data = data.repeat(repeat);
            let sealed = seal(&key(), b"p", &data);
            prop_assert_eq!(open(&key(), b"p", &sealed, data.len()).expect("open"), data);
        }
    }
}
