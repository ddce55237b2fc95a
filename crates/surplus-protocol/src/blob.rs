//! Blobs: content-addressed bytes in transit through the hub's staging area, and where their
//! copies are placed.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::UnixMillis;

/// A blob's name: the lower-case hex BLAKE3 hash of its content (64 characters).
pub type BlobHash = String;

/// Whether `text` has the form of a [`BlobHash`].
pub fn is_blob_hash(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A blob held in the hub's staging store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BlobRef {
    pub hash: BlobHash,
    pub size: u64,
}

/// Asks the hub to keep a staged blob on `copies` holders' vaults.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PlaceBlobRequest {
    pub hash: BlobHash,
    pub copies: u32,
    /// The pack this blob is a shard of: the shards of one pack are kept on distinct devices of
    /// distinct subscribers, never on the owner's own.
    #[serde(default)]
    pub pack: Option<String>,
}

/// Where a blob is, or is going to be, kept.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Placement {
    pub hash: BlobHash,
    pub size: u64,
    pub copies: u32,
    pub created_at: UnixMillis,
    /// One entry per allocation made for this blob, in the order they were made.
    pub holders: Vec<Holder>,
    /// Whether the hub still has the blob in staging (it is dropped once every copy is confirmed).
    pub staged: bool,
}

/// One holder of a placed blob.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Holder {
    pub device_id: Uuid,
    pub allocation_id: Uuid,
    pub state: crate::AllocationState,
}

/// What asking for a blob back started.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Retrieval {
    pub hash: BlobHash,
    /// Whether the blob is in staging now, ready to download.
    pub staged: bool,
    /// The holders asked to upload it (none when it is staged already).
    pub requested_from: Vec<Uuid>,
}
