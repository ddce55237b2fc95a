//! Reading blobs back, always verified against their hash first (whole, streamed or a range),
//! and the Bao proofs that the vault holds a blob, which the hub checks.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::PathBuf;

use super::{Vault, VaultError, check_hash, io_at};

impl Vault {
    /// The bytes of a blob, verified against its hash.
    pub fn get(&self, hash: &str) -> Result<Vec<u8>, VaultError> {
        let (mut file, path) = self.open_blob(hash)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io_at(&path))?;
        let actual = blake3::hash(&bytes).to_hex().to_string();
        if actual != hash {
            return Err(corrupt(hash, actual));
        }
        Ok(bytes)
    }

    /// The blob's file, positioned at its start, after its whole content was verified against its
    /// hash; for streaming a large blob without holding it in memory.
    pub fn open_verified(&self, hash: &str) -> Result<File, VaultError> {
        let (mut file, path) = self.open_blob(hash)?;
        let mut hasher = blake3::Hasher::new();
        io::copy(&mut file, &mut hasher).map_err(io_at(&path))?;
        let actual = hasher.finalize().to_hex().to_string();
        if actual != hash {
            return Err(corrupt(hash, actual));
        }
        file.seek(SeekFrom::Start(0)).map_err(io_at(&path))?;
        Ok(file)
    }

    /// Up to `len` bytes of a blob from `offset` (fewer at its end, none past it). The whole blob
    /// is verified first: a range of a corrupt blob is never handed out.
    pub fn read_range(&self, hash: &str, offset: u64, len: u64) -> Result<Vec<u8>, VaultError> {
        let mut file = self.open_verified(hash)?;
        let path = self.blob_path(hash);
        file.seek(SeekFrom::Start(offset)).map_err(io_at(&path))?;
        let mut bytes = Vec::new();
        file.take(len)
            .read_to_end(&mut bytes)
            .map_err(io_at(&path))?;
        Ok(bytes)
    }

    /// Proves the vault holds a blob: the BLAKE3 (Bao) slice of its bytes in
    /// `offset..offset + length`, which anyone who knows the blob's hash can check.
    ///
    /// Making the slice reads the whole blob (its tree is not kept), and the blob is deliberately
    /// not verified first: the hub checks the slice against the hash, so an altered blob fails
    /// there. A range past the end yields the slice of the last chunk, as Bao defines.
    pub fn prove(&self, hash: &str, offset: u64, length: u64) -> Result<Vec<u8>, VaultError> {
        let (mut file, path) = self.open_blob(hash)?;
        let mut encoder = bao::encode::Encoder::new_outboard(io::Cursor::new(Vec::new()));
        io::copy(&mut file, &mut encoder).map_err(io_at(&path))?;
        encoder.finalize().map_err(io_at(&path))?;
        let outboard = encoder.into_inner().into_inner();
        file.seek(SeekFrom::Start(0)).map_err(io_at(&path))?;
        let mut extractor = bao::encode::SliceExtractor::new_outboard(
            file,
            io::Cursor::new(outboard),
            offset,
            length,
        );
        let mut slice = Vec::new();
        extractor.read_to_end(&mut slice).map_err(io_at(&path))?;
        Ok(slice)
    }

    pub(super) fn open_blob(&self, hash: &str) -> Result<(File, PathBuf), VaultError> {
        check_hash(hash)?;
        let path = self.blob_path(hash);
        self.untrash(hash)?;
        match File::open(&path) {
            Ok(file) => Ok((file, path)),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Err(VaultError::NotFound {
                hash: hash.to_owned(),
            }),
            Err(source) => Err(VaultError::Io { path, source }),
        }
    }
}

fn corrupt(hash: &str, actual: String) -> VaultError {
    tracing::warn!(hash, actual, "corrupt blob in the vault");
    VaultError::Corrupt {
        hash: hash.to_owned(),
        actual,
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use surplus_protocol::FailureCode;

    use super::super::testing::{KIB, blob, hash_of, open, put, roomy_disk};
    use super::*;
    use crate::disk::FixedGauge;

    #[test]
    fn ranges_and_proofs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let gauge = FixedGauge::new(roomy_disk());
        let mut vault = open(dir.path(), 64 * KIB, 0, &gauge);
        let data = blob(2, 1000);
        let hash = hash_of(&data);
        put(&mut vault, &data).expect("put");

        assert_eq!(
            vault.read_range(&hash, 10, 20).expect("range"),
            data[10..30].to_vec()
        );
        assert_eq!(
            vault.read_range(&hash, 990, 100).expect("range"),
            data[990..].to_vec()
        );
        assert!(vault.read_range(&hash, 5000, 10).expect("range").is_empty());
        let mut file = vault.open_verified(&hash).expect("open");
        let mut all = Vec::new();
        file.read_to_end(&mut all).expect("read");
        assert_eq!(all, data);

        // Proofs over a blob of several BLAKE3 chunks (1 KiB each).
        let data = blob(4, 8000);
        let hash = hash_of(&data);
        put(&mut vault, &data).expect("put");
        let check = |slice: &[u8], offset: u64, length: u64| {
            let hash = bao::Hash::from_hex(&hash).expect("hash");
            let mut decoder = bao::decode::SliceDecoder::new(slice, &hash, offset, length);
            let mut out = Vec::new();
            decoder.read_to_end(&mut out).map(|_| out)
        };
        let slice = vault.prove(&hash, 100, 50).expect("prove");
        assert_eq!(check(&slice, 100, 50).expect("valid"), data[100..150]);
        let slice = vault.prove(&hash, 7900, 500).expect("prove");
        assert_eq!(check(&slice, 7900, 500).expect("valid"), data[7900..]);
        let slice = vault.prove(&hash, 4096, 1024).expect("prove");
        assert_eq!(check(&slice, 4096, 1024).expect("valid"), data[4096..5120]);
        assert!(
            check(&slice, 0, 1024).is_err(),
            "a slice proves only its own range"
        );
        assert!(matches!(
            vault.prove(&hash_of(b"absent"), 0, 1),
            Err(VaultError::NotFound { .. })
        ));
    }

    #[test]
    fn corruption_is_detected_on_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let gauge = FixedGauge::new(roomy_disk());
        let mut vault = open(dir.path(), 64 * KIB, 0, &gauge);
        let data = blob(3, 4096);
        let hash = hash_of(&data);
        put(&mut vault, &data).expect("put");
        let honest_proof = vault.prove(&hash, 0, 4096).expect("prove");

        let path = dir.path().join("blobs").join(&hash[..2]).join(&hash);
        let mut bytes = fs::read(&path).expect("read");
        bytes[1234] ^= 0x01;
        fs::write(&path, &bytes).expect("write");

        let error = vault.get(&hash).expect_err("corrupt");
        assert!(matches!(error, VaultError::Corrupt { .. }), "{error}");
        assert_eq!(error.failure_code(), FailureCode::Corrupt);
        assert!(error.to_string().contains(&hash));
        assert!(matches!(
            vault.open_verified(&hash),
            Err(VaultError::Corrupt { .. })
        ));
        assert!(matches!(
            vault.read_range(&hash, 0, 10),
            Err(VaultError::Corrupt { .. })
        ));
        let tampered_proof = vault.prove(&hash, 0, 4096).expect("prove");
        assert_ne!(tampered_proof, honest_proof);
        let root = bao::Hash::from_hex(&hash).expect("hash");
        let mut decoder = bao::decode::SliceDecoder::new(&tampered_proof[..], &root, 0, 4096);
        assert!(
            decoder.read_to_end(&mut Vec::new()).is_err(),
            "a tampered slice fails"
        );

        // Storing it again replaces the corrupt copy.
        put(&mut vault, &data).expect("heal");
        assert_eq!(vault.get(&hash).expect("get"), data);
        assert_eq!(vault.used_bytes(), 4096);
    }
}
