//! Sealing: compression where it pays, then authenticated encryption.
//!
//! A sealed blob is `version (1) | flags (1) | nonce (24) | ciphertext + tag (16)`. The nonce is
//! random (XChaCha20's 192 bits make collisions a non-issue); the associated data binds the blob
//! to the name it is stored under, so a holder cannot pass one chunk off as another.

use std::cell::RefCell;

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};
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
///
/// Compression runs in a buffer and a context kept per thread, so that sealing many small
/// chunks sets up neither for each; the blob is then built at its exact size and encrypted where
/// it lies.
pub fn seal(key: &DataKey, name: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let (flags, mut sealed) = COMPRESSION.with_borrow_mut(|compression| {
        let compressed = worth_compressing(compression, plaintext)
            .then(|| compression.compress(plaintext, plaintext.len() / 32))
            .flatten();
        let body = compressed.unwrap_or(plaintext);
        let mut sealed = Vec::with_capacity(HEADER + body.len() + TAG);
        sealed.push(VERSION);
        sealed.push(if compressed.is_some() { COMPRESSED } else { 0 });
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(body);
        (sealed[1], sealed)
    });
    let cipher = XChaCha20Poly1305::new((&key.0).into());
    let aad = associated_data(flags, name);
    let tag = cipher
        .encrypt_in_place_detached(XNonce::from_slice(&nonce), &aad, &mut sealed[HEADER..])
        // Encryption fails only for messages beyond 256 GiB, which no chunk comes near.
        .unwrap_or_default();
    sealed.extend_from_slice(&tag);
    sealed
}

thread_local! {
    static COMPRESSION: RefCell<Compression> = const { RefCell::new(Compression::new()) };
}

/// A thread's zstd context and the buffer it compresses into.
struct Compression {
    context: Option<zstd::bulk::Compressor<'static>>,
    out: Vec<u8>,
}

impl Compression {
    const fn new() -> Compression {
        Compression {
            context: None,
            out: Vec::new(),
        }
    }

    /// `plaintext` compressed, if that saves more than `saving` bytes.
    fn compress(&mut self, plaintext: &[u8], saving: usize) -> Option<&[u8]> {
        if self.context.is_none() {
            self.context = zstd::bulk::Compressor::new(COMPRESSION_LEVEL).ok();
        }
        let room = plaintext.len().checked_sub(saving + 1)?;
        self.out.clear();
        self.out.reserve(room);
        // zstd stops with an error when the output would not fit the room.
        let len = self
            .context
            .as_mut()?
            .compress_to_buffer(plaintext, &mut self.out)
            .ok()?;
        (len <= room).then_some(&self.out[..len])
    }
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
    let (ciphertext, tag) = sealed[HEADER..].split_at(sealed.len() - HEADER - TAG);
    let cipher = XChaCha20Poly1305::new((&key.0).into());
    let aad = associated_data(flags, name);
    let mut body = ciphertext.to_vec();
    cipher
        .decrypt_in_place_detached(nonce, &aad, &mut body, Tag::from_slice(tag))
        .map_err(|_| Error::Unauthentic)?;
    if flags & COMPRESSED == 0 {
        return Ok(body);
    }
    decompress(&body, max_size)
}

/// Decompresses a zstd frame into a buffer of exactly its size (which [`seal`] records in the
/// frame), refused when that is above `max_size` or missing.
fn decompress(body: &[u8], max_size: usize) -> Result<Vec<u8>> {
    let malformed = |detail: String| Error::Malformed {
        what: "compressed blob",
        detail,
    };
    let size = match zstd::zstd_safe::get_frame_content_size(body) {
        Ok(Some(size)) => usize::try_from(size).unwrap_or(usize::MAX),
        Ok(None) => return Err(malformed("the frame does not say its size".into())),
        Err(_) => return Err(malformed("not a zstd frame".into())),
    };
    if size > max_size {
        return Err(malformed(format!(
            "it opens to {size} bytes, more than the {max_size} allowed"
        )));
    }
    thread_local! {
        static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
            const { RefCell::new(None) };
    }
    DECOMPRESSOR.with_borrow_mut(|slot| {
        if slot.is_none() {
            *slot = Some(zstd::bulk::Decompressor::new().map_err(|e| malformed(e.to_string()))?);
        }
        let decompressor = slot
            .as_mut()
            .ok_or_else(|| malformed("no context".into()))?;
        let mut plain = Vec::with_capacity(size);
        decompressor
            .decompress_to_buffer(body, &mut plain)
            .map_err(|e| malformed(e.to_string()))?;
        if plain.len() != size {
            return Err(malformed(format!(
                "it opened to {} bytes, not the {size} its frame says",
                plain.len()
            )));
        }
        Ok(plain)
    })
}

/// Whether compressing looks worth trying: unless the blob is tiny, a sample of its start (a
/// sixteenth of it, 4 to 64 KiB) must shrink by a sixteenth. Compressed or encrypted data
/// (photos, videos, archives) is then stored as it is at once, without spending a compression
/// pass on it.
fn worth_compressing(compression: &mut Compression, plaintext: &[u8]) -> bool {
    let sample = (plaintext.len() / 16).clamp(4 << 10, 64 << 10);
    plaintext.len() <= 2 * sample
        || compression
            .compress(&plaintext[..sample], sample / 16)
            .is_some()
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

    /// Seals `body` as it is, with `flags`: what a repository written by another program (or a
    /// holder that has the key) could hold.
    fn seal_raw(flags: u8, name: &[u8], body: &[u8]) -> Vec<u8> {
        let nonce = [3u8; 24];
        let mut sealed = vec![VERSION, flags];
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(body);
        let tag = XChaCha20Poly1305::new((&key().0).into())
            .encrypt_in_place_detached(
                XNonce::from_slice(&nonce),
                &associated_data(flags, name),
                &mut sealed[HEADER..],
            )
            .expect("encrypt");
        sealed.extend_from_slice(&tag);
        sealed
    }

    #[test]
    fn a_compressed_blob_opens_only_to_the_size_its_frame_says() {
        let text = b"words and more words ".repeat(500);
        let framed = zstd::bulk::compress(&text, 3).expect("compress");
        let sealed = seal_raw(COMPRESSED, b"f", &framed);
        assert_eq!(open(&key(), b"f", &sealed, text.len()).expect("open"), text);
        assert!(open(&key(), b"f", &sealed, text.len() - 1).is_err());

        // A stream without its size up front is not opened: its size cannot be bounded first.
        let mut encoder = zstd::stream::Encoder::new(Vec::new(), 3).expect("encoder");
        encoder.include_contentsize(false).expect("no size");
        std::io::Write::write_all(&mut encoder, &text).expect("write");
        let unsized_frame = encoder.finish().expect("finish");
        let sealed = seal_raw(COMPRESSED, b"g", &unsized_frame);
        assert!(matches!(
            open(&key(), b"g", &sealed, 1 << 20),
            Err(Error::Malformed { .. })
        ));
        assert!(matches!(
            open(
                &key(),
                b"h",
                &seal_raw(COMPRESSED, b"h", b"not zstd at all"),
                1 << 20
            ),
            Err(Error::Malformed { .. })
        ));
    }

    #[test]
    fn a_large_blob_is_compressed_by_its_sample() {
        let mut noise = vec![0u8; 1 << 20];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut noise);
        assert_eq!(
            seal(&key(), b"n", &noise)[1],
            0,
            "random bytes stored as they are"
        );
        let text = b"the same words again and again ".repeat(40_000);
        let sealed = seal(&key(), b"t", &text);
        assert_eq!(sealed[1], COMPRESSED);
        assert_eq!(open(&key(), b"t", &sealed, text.len()).expect("open"), text);
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
