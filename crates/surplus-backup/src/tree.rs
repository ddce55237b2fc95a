//! Snapshots and the trees they point at: what a backed-up folder looked like.
//!
//! A tree lists one directory's entries, sorted by name; a directory entry points at its own tree
//! by chunk id, so trees are stored (sealed, in packs) like file contents and an unchanged
//! directory shares its tree with the previous snapshot.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::keys::ChunkId;

/// File names and link targets as the OS gives them: any bytes on Unix, not only UTF-8.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RawName(pub Vec<u8>);

impl RawName {
    /// For people: invalid UTF-8 shown as U+FFFD.
    pub fn display(&self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }
}

impl Serialize for RawName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(&self.0) {
            Ok(text) => serializer.serialize_str(&format!("s:{text}")),
            Err(_) => serializer.serialize_str(&format!("x:{}", crate::keys::hex(&self.0))),
        }
    }
}

impl<'de> Deserialize<'de> for RawName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        if let Some(plain) = text.strip_prefix("s:") {
            return Ok(RawName(plain.as_bytes().to_vec()));
        }
        let hex = text
            .strip_prefix("x:")
            .ok_or_else(|| serde::de::Error::custom("a name starts with s: or x:"))?;
        (0..hex.len())
            .step_by(2)
            .map(|i| {
                hex.get(i..i + 2)
                    .and_then(|pair| u8::from_str_radix(pair, 16).ok())
            })
            .collect::<Option<Vec<u8>>>()
            .map(RawName)
            .ok_or_else(|| serde::de::Error::custom("a bad hex name"))
    }
}

impl Serialize for ChunkId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for ChunkId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let bytes: Option<Vec<u8>> = (0..text.len())
            .step_by(2)
            .map(|i| {
                text.get(i..i + 2)
                    .and_then(|pair| u8::from_str_radix(pair, 16).ok())
            })
            .collect();
        bytes
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .map(ChunkId)
            .ok_or_else(|| serde::de::Error::custom("a chunk id is 64 hex digits"))
    }
}

/// One directory's entries, sorted by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    pub nodes: Vec<Node>,
}

/// One entry of a directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub name: RawName,
    pub kind: NodeKind,
    /// Permission bits (Unix mode & 0o7777).
    pub mode: u32,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// Change time and inode: with size and mtime, how an unchanged file is recognised without
    /// reading it.
    pub ctime_ns: i64,
    pub inode: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NodeKind {
    File { size: u64, chunks: Vec<ChunkId> },
    Dir { tree: ChunkId },
    Symlink { target: RawName },
}

/// A snapshot: the folders backed up at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Milliseconds since the epoch.
    pub time: i64,
    pub hostname: String,
    pub roots: Vec<Root>,
    pub summary: Summary,
}

/// One backed-up folder: its name (restored as `TARGET/<name>`), where it was, and its tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Root {
    pub name: RawName,
    pub path: String,
    pub node: Node,
}

/// What a backup did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub files: u64,
    pub dirs: u64,
    pub bytes: u64,
    /// Bytes of chunks that were new (not already in the repository).
    pub new_bytes: u64,
    /// Files recognised as unchanged by their metadata and not read.
    pub unchanged_files: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 500, rng_algorithm: proptest::test_runner::RngAlgorithm::ChaCha, ..ProptestConfig::default() })]

        /// A tree or snapshot that opened (so its owner sealed it) but whose JSON is damaged,
        /// or any name, is read or refused: never a panic.
        #[test]
        fn any_tree_snapshot_or_name_is_read_safely(
            bytes in proptest::collection::vec(any::<u8>(), 0..600),
            name in "[sx]:[0-9a-zA-Z%]{0,20}|.{0,20}",
        ) {
            let _ = serde_json::from_slice::<Tree>(&bytes);
            let _ = serde_json::from_slice::<Snapshot>(&bytes);
            let _ = serde_json::from_value::<RawName>(serde_json::Value::String(name));
        }

        /// The same from JSON that is nearly right: a real tree with one byte changed.
        #[test]
        fn a_tree_with_a_byte_changed_is_read_safely(at in any::<prop::sample::Index>(), byte in any::<u8>()) {
            let json = br#"{"nodes":[{"name":"s:a.txt","mode":420,"mtime_ns":1,"type":"file","size":3,"chunks":["00"]},{"name":"x:ff00","mode":493,"mtime_ns":2,"type":"dir","tree":"11"}]}"#;
            let mut bytes = json.to_vec();
            let at = at.index(bytes.len());
            bytes[at] = byte;
            let _ = serde_json::from_slice::<Tree>(&bytes);
        }
    }

    #[test]
    fn names_round_trip_whatever_their_bytes() {
        for name in [
            b"plain.txt".to_vec(),
            "ünïcode".as_bytes().to_vec(),
            vec![0xff, 0xfe, b'a'],
            vec![],
        ] {
            let json = serde_json::to_string(&RawName(name.clone())).expect("json");
            assert_eq!(
                serde_json::from_str::<RawName>(&json).expect("parse"),
                RawName(name)
            );
        }
    }
}
