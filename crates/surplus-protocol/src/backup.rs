//! Backup: the subscriber's settings and escrowed key, their sealed objects, and the challenges
//! that check holders still keep their shards.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{BlobHash, UnixMillis};

/// The passphrase-wrapped master key a subscriber keeps at the hub. Opaque to the hub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WrappedKeyBody {
    /// The wrapped key as its owner's agent encoded it (JSON text); the hub only keeps it.
    pub wrapped: String,
}

/// The kinds of sealed backup objects the hub keeps for a subscriber.
pub const BACKUP_OBJECT_KINDS: [&str; 2] = ["index", "snapshot"];

/// Whether `name` may name a backup object: 1 to 64 lower-case hex digits.
pub fn is_object_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A subscriber's backup settings, as they set them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct BackupSettings {
    /// Whether the subscriber's own other devices may hold their shards. Off, shards go
    /// only to other subscribers' devices, one shard of a pack per subscriber.
    #[serde(default)]
    pub household: bool,
    /// The erasure coding to use; `None` chooses it from the number of eligible holders.
    #[serde(default)]
    pub coding: Option<Coding>,
}

/// An erasure coding: each pack is cut into `data` shards, and `parity` more protect it, so that
/// any `data` of the `data + parity` shards rebuild it. `data = 1` keeps full copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Coding {
    pub data: u16,
    pub parity: u16,
}

impl Coding {
    /// The most shards a pack may be cut into.
    pub const MAX_SHARDS: u16 = 32;

    /// The coding for a number of eligible holders: a full copy on each of up to three, then
    /// wider codes that survive the loss of half the holders or more.
    ///
    /// From 56 holders (twice its 28 shards, so that rebuilt shards still find holders the
    /// pack does not use), 8+20: in `surplus-sim`'s runs on PCs on 40% of the time and
    /// leaving after 180 days on average, 4+6 keeps a pack about two nines a year, since a
    /// repair waits for the lost-after cap while each remaining shard may go too; 8+20 keeps
    /// it beyond eleven, and more than 99.999% of packs restorable within 24 hours, for 3.5
    /// times the data stored (see `scripts/bench-durability`).
    pub fn for_holders(holders: u32) -> Coding {
        let (data, parity) = match holders {
            0 | 1 => (1, 0),
            2 | 3 => (1, holders as u16 - 1),
            4 | 5 => (2, 2),
            6..=9 => (3, 3),
            10..=55 => (4, 6),
            _ => (8, 20),
        };
        Coding { data, parity }
    }

    pub fn shards(self) -> u32 {
        u32::from(self.data) + u32::from(self.parity)
    }

    /// Why the coding cannot be used, if it cannot.
    pub fn problem(self) -> Option<String> {
        if self.data == 0 {
            return Some("data must be at least 1".into());
        }
        if self.data + self.parity > Self::MAX_SHARDS {
            return Some(format!(
                "data + parity may be at most {} shards",
                Self::MAX_SHARDS
            ));
        }
        None
    }
}

/// The coding the next backup uses, and whether there are holders enough for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct BackupPlan {
    pub settings: BackupSettings,
    /// The coding in use: the subscriber's own, or the automatic one.
    pub coding: Coding,
    /// Devices that may hold shards of this subscriber's packs now, counting each other
    /// subscriber once (one shard of a pack per subscriber).
    pub eligible_holders: u32,
    /// Set when holders are too few for the coding: shards then wait at the hub until enough
    /// holders appear, and the backup is not yet protected.
    pub warning: Option<String>,
}

/// A challenge of every shard a subscriber keeps at holders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VerifyRun {
    pub id: Uuid,
    pub created_at: UnixMillis,
    /// Shards challenged.
    pub challenged: u32,
    pub passed: u32,
    pub failed: u32,
    /// Challenges the holder has not answered yet (it may be offline).
    pub waiting: u32,
    pub failures: Vec<ShardFailure>,
}

/// A shard whose holder failed its challenge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ShardFailure {
    pub hash: BlobHash,
    pub device_id: Uuid,
    pub reason: String,
}

/// What the subscriber forgot that is still kept: forgetting is undoable until the grace period
/// ends, and only then are objects deleted and holders told to let their shards go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Forgotten {
    /// How long a forgotten object or let-go shard is kept, in seconds.
    pub grace_seconds: u64,
    /// Forgotten snapshots and indexes, oldest first.
    pub objects: Vec<ForgottenObject>,
    /// Shards let go and still held.
    pub shards: u64,
    /// Their size in bytes.
    pub shard_bytes: u64,
    /// When the first of the shards goes for good, if any are kept.
    pub shards_purged_from: Option<UnixMillis>,
}

/// A forgotten backup object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ForgottenObject {
    /// `snapshot` or `index`.
    pub kind: String,
    pub name: String,
    pub forgotten_at: UnixMillis,
    /// When it goes for good.
    pub purged_at: UnixMillis,
}

/// What a recovery brought back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Recovered {
    pub snapshots: u64,
    pub indexes: u64,
    pub shards: u64,
}

/// Where each of a subscriber's packs stands, as the hub sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BackupHealth {
    /// Each pack whose shards the hub knows, with its state: `uploading`, `protected`,
    /// `repairing`, `at_risk` or `lost`.
    pub packs: Vec<PackStateView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PackStateView {
    pub pack: String,
    pub state: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_automatic_coding_widens_with_the_network() {
        let coding = |holders| {
            let c = Coding::for_holders(holders);
            (c.data, c.parity)
        };
        assert_eq!(coding(0), (1, 0));
        assert_eq!(coding(3), (1, 2));
        assert_eq!(coding(10), (4, 6));
        assert_eq!(coding(55), (4, 6));
        assert_eq!(coding(56), (8, 20));
        assert_eq!(coding(100_000), (8, 20));
        for holders in 0..200 {
            let c = Coding::for_holders(holders);
            assert_eq!(c.problem(), None);
            // Never more shards than holders (a single copy aside), never above 3.5x.
            assert!(c.shards() <= holders.max(1), "{holders}: {c:?}");
            assert!(c.shards() * 2 <= 7 * u32::from(c.data));
        }
    }
}
