//! What the vault's tests share: blob contents, a roomy disk, a vault opened on a fixed gauge,
//! and deterministic property-test runs.

use std::fs;
use std::path::Path;

use proptest::test_runner::{Config as ProptestConfig, RngSeed};

use super::{StoredBlob, Vault, VaultError, VaultLimits};
use crate::disk::{DiskSpace, FixedGauge};

pub(super) const KIB: u64 = 1024;

pub(super) fn hash_of(data: &[u8]) -> String {
    blake3::hash(data).to_hex().to_string()
}

/// Distinct blob contents of `size` bytes.
pub(super) fn blob(seed: u64, size: u64) -> Vec<u8> {
    (0..size)
        .map(|i| (i.wrapping_mul(31).wrapping_add(seed.wrapping_mul(7919)) % 251) as u8)
        .collect()
}

pub(super) fn roomy_disk() -> DiskSpace {
    DiskSpace {
        total_bytes: 1 << 40,
        free_bytes: 1 << 39,
    }
}

pub(super) fn open(dir: &Path, quota: u64, floor: u64, gauge: &FixedGauge) -> Vault {
    Vault::open_with_gauge(
        dir,
        VaultLimits {
            quota_bytes: quota,
            floor_bytes: floor,
        },
        Box::new(gauge.clone()),
    )
    .expect("open vault")
}

pub(super) fn put(vault: &mut Vault, data: &[u8]) -> Result<StoredBlob, VaultError> {
    vault.put(&hash_of(data), data, data.len() as u64)
}

pub(super) fn files_in(dir: &Path) -> usize {
    fs::read_dir(dir)
        .map(|entries| entries.count())
        .unwrap_or(0)
}

pub(super) fn deterministic(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        rng_seed: RngSeed::Fixed(0x5eed_cafe),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}
