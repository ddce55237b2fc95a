//! Durability as owners and the operator see it: where each pack stands (protected, uploading,
//! repairing, at risk, lost), the repair queue, the bytes moved to keep backups alive over the
//! last day, and each holder's integrity and presence. The rules are
//! [`surplus_rules::health`] and [`surplus_rules::presence`]; this loads what they need.

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use surplus_rules::health::{PackState, PlacedShard, placed_pack_state};
use surplus_rules::presence::{self, SLOT_MS, Standing};
use uuid::Uuid;

use crate::hub::Hub;
use crate::store::{PlacedShardRow, StoreError, Traffic};

/// Packs per state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PackCounts {
    pub protected: u64,
    pub uploading: u64,
    pub repairing: u64,
    pub at_risk: u64,
    pub lost: u64,
}

impl PackCounts {
    fn add(&mut self, state: PackState) {
        *match state {
            PackState::Protected => &mut self.protected,
            PackState::Uploading => &mut self.uploading,
            PackState::Repairing => &mut self.repairing,
            PackState::AtRisk => &mut self.at_risk,
            PackState::Lost => &mut self.lost,
        } += 1;
    }

    pub fn by_state(&self) -> [(&'static str, u64); 5] {
        [
            (PackState::Protected.as_str(), self.protected),
            (PackState::Uploading.as_str(), self.uploading),
            (PackState::Repairing.as_str(), self.repairing),
            (PackState::AtRisk.as_str(), self.at_risk),
            (PackState::Lost.as_str(), self.lost),
        ]
    }
}

/// What `surplus-hub admin health` shows.
#[derive(Debug, Clone, Serialize)]
pub struct DurabilityReport {
    pub packs: PackCounts,
    /// Packs waiting for repair or being repaired.
    pub repair_queue: u64,
    pub repair_bytes_24h: u64,
    pub audit_bytes_24h: u64,
    pub handover_bytes_24h: u64,
    /// Devices that hold data for others or were audited in the last 30 days.
    pub devices: Vec<HolderScore>,
}

/// A holder's two scores.
#[derive(Debug, Clone, Serialize)]
pub struct HolderScore {
    pub id: Uuid,
    pub name: String,
    pub subscriber: String,
    /// `online`, `away`, `at_risk` (away longer than usual) or `lost`.
    pub standing: &'static str,
    /// The share of the last 7 days it was online.
    pub presence_7d: f64,
    pub integrity: Integrity,
}

/// Audits answered in the last 30 days.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Integrity {
    pub passed: u64,
    pub failed: u64,
    /// The share that passed; 1 with none answered.
    pub score: f64,
}

fn standing_name(standing: Standing) -> &'static str {
    match standing {
        Standing::Online => "online",
        Standing::Away => "away",
        Standing::AtRisk => "at_risk",
        Standing::Lost => "lost",
    }
}

/// Where each of `devices` stands at `now`, by the hub's presence policy.
pub async fn standings(
    hub: &Hub,
    devices: Vec<Uuid>,
    now: i64,
) -> Result<HashMap<Uuid, Standing>, StoreError> {
    let policy = hub.settings.presence_policy();
    let mut standings = HashMap::new();
    for device in devices {
        if standings.contains_key(&device) {
            continue;
        }
        let row = hub.store.device(device).await?;
        let away = now.saturating_sub(row.last_heartbeat.unwrap_or(row.created_at));
        // Only a device away for a while has its history read.
        let usual = if away > policy.online_window {
            let since = (now - 30 * surplus_rules::DAY_MS).div_euclid(SLOT_MS);
            presence::usual_absence(&hub.store.presence_slot_list(device, since).await?)
        } else {
            0
        };
        let standing = if row.revoked_at.is_some() {
            Standing::Lost
        } else {
            policy.standing(row.last_heartbeat, row.created_at, usual, now)
        };
        standings.insert(device, standing);
    }
    Ok(standings)
}

/// Each pack's state, for one subscriber or all: (owner, pack, state), by owner and pack.
pub async fn pack_states(
    hub: &Hub,
    subscriber: Option<Uuid>,
    now: i64,
) -> Result<Vec<(Uuid, String, PackState)>, StoreError> {
    let rows = hub.store.placed_shards(subscriber).await?;
    let holders: HashSet<Uuid> = rows
        .iter()
        .flat_map(|row| row.held_by.iter().copied())
        .collect();
    let standings = standings(hub, holders.into_iter().collect(), now).await?;
    // Held, but by nobody online or away as usual: at risk (a holder past the cap that the
    // next sweep will count lost is no better).
    let at_risk = |row: &PlacedShardRow| {
        !row.held_by.is_empty()
            && !row.held_by.iter().any(|device| {
                matches!(
                    standings.get(device),
                    Some(Standing::Online | Standing::Away)
                )
            })
    };
    let mut packs = Vec::new();
    for group in rows.chunk_by(|a, b| a.owner == b.owner && a.pack == b.pack) {
        let shards: Vec<PlacedShard> = group
            .iter()
            .map(|row| PlacedShard {
                held: !row.held_by.is_empty(),
                at_risk: at_risk(row),
                staged: row.staged,
                replaced: row.replaced,
            })
            .collect();
        let state = placed_pack_state(
            group[0].data,
            group[0].parity,
            &shards,
            hub.settings.repair_threshold,
        );
        packs.push((group[0].owner, group[0].pack.clone(), state));
    }
    Ok(packs)
}

/// The whole hub's durability at `now`.
pub async fn report(hub: &Hub, now: i64) -> Result<DurabilityReport, StoreError> {
    let mut packs = PackCounts::default();
    for (.., state) in pack_states(hub, None, now).await? {
        packs.add(state);
    }
    let traffic = hub.store.traffic_since(now - surplus_rules::DAY_MS).await?;
    let bytes = |kind: Traffic| traffic.get(kind.as_str()).copied().unwrap_or(0);
    let scores = hub
        .store
        .audit_scores(now - surplus_rules::audit::AuditPolicy::DEFAULT.failure_window)
        .await?;
    let holding: HashSet<Uuid> = hub
        .store
        .storage_holders()
        .await?
        .into_iter()
        .map(|holder| holder.device)
        .collect();
    let rows: Vec<_> = hub
        .store
        .devices(None)
        .await?
        .into_iter()
        .filter(|row| {
            row.revoked_at.is_none() && (holding.contains(&row.id) || scores.contains_key(&row.id))
        })
        .collect();
    let ids: Vec<Uuid> = rows.iter().map(|row| row.id).collect();
    let standings = standings(hub, ids, now).await?;
    let mut devices = Vec::with_capacity(rows.len());
    for row in rows {
        let crate::store::AuditScore { passed, failed } =
            scores.get(&row.id).copied().unwrap_or_default();
        let answered = passed + failed;
        let standing = standings.get(&row.id).copied().unwrap_or(Standing::Lost);
        let view = hub.device_view(row).await?;
        devices.push(HolderScore {
            id: view.id,
            name: view.name,
            subscriber: view.subscriber,
            standing: standing_name(standing),
            presence_7d: view.availability_7d,
            integrity: Integrity {
                passed,
                failed,
                score: if answered == 0 {
                    1.0
                } else {
                    passed as f64 / answered as f64
                },
            },
        });
    }
    Ok(DurabilityReport {
        packs,
        repair_queue: packs.repairing,
        repair_bytes_24h: bytes(Traffic::Repair),
        audit_bytes_24h: bytes(Traffic::Audit),
        handover_bytes_24h: bytes(Traffic::Handover),
        devices,
    })
}
