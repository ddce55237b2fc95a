//! The Surplus backup engine: what turns a subscriber's files into pieces that other devices
//! can hold without being able to read them, and back.
//!
//! Files are cut into content-defined chunks ([`chunker`]) named by a keyed hash so that names
//! leak nothing ([`keys::ChunkIdKey`]); each chunk is compressed where that pays and sealed with
//! authenticated encryption ([`seal`]); sealed chunks are gathered into packs, and each pack is cut
//! into `k` data and `m` parity shards with Reed-Solomon ([`erasure`]), every shard hashed, so that
//! any `k` shards rebuild the pack and a tampered shard is recognised and left out. The master key
//! never leaves its owner in the clear: a copy wrapped with a passphrase (Argon2id) may be kept by
//! the hub for a new device to restore with ([`keys`]).
//!
//! The engine has no sockets and no clocks of its own, and knows nothing of the hub or the agent.
//! Its file I/O is the user's side of the work: [`repo`] reads the folders being backed up and
//! writes the files being restored, and [`store::LocalStore`] keeps a repository in a local
//! folder. Where the rest of a backup goes is the caller's [`store::Store`].

pub mod chunker;
pub mod erasure;
pub mod forget;
pub mod keys;
pub mod repo;
pub mod seal;
pub mod store;
pub mod tree;

/// What can go wrong in the engine. None of these is retryable: they describe the data.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// Sealed bytes that do not open with this key: tampered, truncated, or another owner's.
    #[error(
        "the data does not authenticate: it was altered, truncated, or sealed with another key"
    )]
    Unauthentic,
    /// The passphrase does not unwrap the master key.
    #[error("wrong recovery passphrase")]
    WrongPassphrase,
    /// A format this version does not read.
    #[error("unsupported format version {0}")]
    UnsupportedVersion(u8),
    /// Bytes too short or malformed to be what they claim.
    #[error("malformed {what}: {detail}")]
    Malformed { what: &'static str, detail: String },
    /// Fewer intact shards than needed to rebuild a pack.
    #[error("only {available} intact shards of the {needed} needed")]
    TooFewShards { available: usize, needed: usize },
    /// An erasure-coding parameter out of range.
    #[error("invalid coding {data} data + {parity} parity shards")]
    InvalidCoding { data: usize, parity: usize },
}

pub type Result<T> = std::result::Result<T, Error>;
