//! The user's two limits on donated storage and the pure arithmetic that keeps both promises:
//! whether a blob is admitted ([`admit`]) and how large the reservation should be
//! ([`plan_reservation`]), property-tested against a simulated disk.

use std::fmt;

use crate::units::Size;

/// The two limits the user set on donated storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VaultLimits {
    /// The most the vault may ever hold.
    pub quota_bytes: u64,
    /// The free space the vault never pushes the disk below.
    pub floor_bytes: u64,
}

/// Why a blob was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The blob would take the vault past its quota.
    Quota { size: u64, used: u64, quota: u64 },
    /// Writing the blob would push the disk's free space below the floor; `available` counts the
    /// reservation as free, since the vault releases it for the blob.
    Floor {
        size: u64,
        available: u64,
        floor: u64,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Refusal::Quota { size, used, quota } => write!(
                f,
                "{size} bytes more would take the vault from {} past its quota of {}",
                Size(used),
                Size(quota)
            ),
            Refusal::Floor {
                size,
                available,
                floor,
            } => write!(
                f,
                "{size} bytes more would leave the disk below its free-space floor of {} \
                 ({} free to the vault)",
                Size(floor),
                Size(available)
            ),
        }
    }
}

/// How large the reservation should be: all the quota not yet used, but never more than the disk
/// can give without crossing the floor.
///
/// `disk_free` is measured with the current reservation already allocated, so the space the
/// reservation may occupy is `disk_free + current_reserve - floor`. When other programs push free
/// space below the floor this shrinks the reservation (down to nothing), and it grows back as they
/// free space again.
pub fn plan_reservation(
    quota: u64,
    used: u64,
    current_reserve: u64,
    disk_free: u64,
    floor: u64,
) -> u64 {
    let room_in_quota = quota.saturating_sub(used);
    // In u128 so that no sum of two u64 figures can overflow.
    let room_on_disk =
        (u128::from(disk_free) + u128::from(current_reserve)).saturating_sub(u128::from(floor));
    u64::try_from(room_on_disk).map_or(room_in_quota, |room| room.min(room_in_quota))
}

/// Whether a blob of `size` bytes may be stored: only if the vault stays within its quota and
/// writing it leaves at least `floor` bytes free, counting the reservation (which the vault
/// releases for the blob) as available. A disk already below its floor admits nothing, not even
/// an empty blob.
pub fn admit(
    size: u64,
    quota: u64,
    used: u64,
    reserve: u64,
    disk_free: u64,
    floor: u64,
) -> Result<(), Refusal> {
    if used.checked_add(size).is_none_or(|total| total > quota) {
        return Err(Refusal::Quota { size, used, quota });
    }
    // In u128 so that no sum of two u64 figures can overflow.
    let available = u128::from(disk_free) + u128::from(reserve);
    if available < u128::from(floor) + u128::from(size) {
        let available = u64::try_from(available).unwrap_or(u64::MAX);
        return Err(Refusal::Floor {
            size,
            available,
            floor,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::vault::testing::deterministic;

    /// What the world looks like to the vault's arithmetic: a disk shared with other programs.
    #[derive(Debug, Clone)]
    struct World {
        total: u64,
        others: u64,
        blobs: Vec<u64>,
        used: u64,
        reserve: u64,
        quota: u64,
        floor: u64,
    }

    impl World {
        fn free(&self) -> u64 {
            self.total
                .saturating_sub(self.others + self.used + self.reserve)
        }

        /// What the vault does after every change: re-plan, then allocate.
        fn replan(&mut self) {
            let target =
                plan_reservation(self.quota, self.used, self.reserve, self.free(), self.floor);
            assert!(
                target <= self.quota.saturating_sub(self.used),
                "reserve beyond quota"
            );
            if target > self.reserve {
                assert!(
                    self.free() >= target - self.reserve,
                    "reserving space the disk lacks"
                );
                assert!(
                    self.free() - (target - self.reserve) >= self.floor,
                    "reserve crosses floor"
                );
            }
            self.reserve = target;
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Put(u64),
        Delete(usize),
        SetQuota(u64),
        SetFloor(u64),
        OthersWrite(u64),
        OthersFree(u64),
        Reconcile,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u64..400).prop_map(Op::Put),
            2 => any::<usize>().prop_map(Op::Delete),
            1 => (0u64..2000).prop_map(Op::SetQuota),
            1 => (0u64..2000).prop_map(Op::SetFloor),
            1 => (0u64..1500).prop_map(Op::OthersWrite),
            1 => (0u64..1500).prop_map(Op::OthersFree),
            1 => Just(Op::Reconcile),
        ]
    }

    proptest! {
        #![proptest_config(deterministic(512))]

        #[test]
        fn admit_is_exactly_quota_and_floor(
            size in any::<u64>(), quota in any::<u64>(), used in any::<u64>(),
            reserve in any::<u64>(), free in any::<u64>(), floor in any::<u64>(),
        ) {
            let fits_quota = u128::from(used) + u128::from(size) <= u128::from(quota);
            let fits_floor =
                u128::from(free) + u128::from(reserve) >= u128::from(floor) + u128::from(size);
            prop_assert_eq!(admit(size, quota, used, reserve, free, floor).is_ok(), fits_quota && fits_floor);
        }

        #[test]
        fn admit_small_numbers(
            size in 0u64..100, quota in 0u64..300, used in 0u64..300,
            reserve in 0u64..300, free in 0u64..300, floor in 0u64..300,
        ) {
            let admitted = admit(size, quota, used, reserve, free, floor).is_ok();
            prop_assert_eq!(admitted, used + size <= quota && free + reserve >= floor + size);
        }

        #[test]
        fn the_reservation_respects_quota_and_floor(
            quota in any::<u64>(), used in any::<u64>(), current in any::<u64>(),
            free in any::<u64>(), floor in any::<u64>(),
        ) {
            let target = plan_reservation(quota, used, current, free, floor);
            prop_assert!(target <= quota.saturating_sub(used));
            // After resizing from `current` to `target`, free space is free + current - target.
            let free_after = u128::from(free) + u128::from(current) - u128::from(target).min(u128::from(free) + u128::from(current));
            if target > 0 {
                prop_assert!(free_after >= u128::from(floor));
            }
            // It takes everything it may: either the whole unused quota or down to the floor.
            prop_assert!(target == quota.saturating_sub(used) || target == 0 || free_after == u128::from(floor));
        }

        #[test]
        fn no_sequence_of_events_breaks_the_promises(
            total in 1000u64..5000,
            quota in 0u64..2000,
            floor in 0u64..2000,
            ops in proptest::collection::vec(op(), 1..60),
        ) {
            let mut world = World { total, others: 0, blobs: Vec::new(), used: 0, reserve: 0, quota, floor };
            world.replan();
            for op in ops {
                match op {
                    Op::Put(size) => {
                        let free = world.free();
                        match admit(size, world.quota, world.used, world.reserve, free, world.floor) {
                            Ok(()) => {
                                world.replan();
                                world.reserve -= size.min(world.reserve);
                                prop_assert!(world.free() >= size, "no room to write");
                                world.used += size;
                                world.blobs.push(size);
                                prop_assert!(world.used <= world.quota, "quota exceeded");
                                prop_assert!(world.free() >= world.floor, "floor crossed");
                                world.replan();
                            }
                            Err(Refusal::Quota { .. }) => prop_assert!(world.used + size > world.quota),
                            Err(Refusal::Floor { .. }) => prop_assert!(free + world.reserve < world.floor + size),
                        }
                    }
                    Op::Delete(index) => {
                        if !world.blobs.is_empty() {
                            let size = world.blobs.swap_remove(index % world.blobs.len());
                            world.used -= size;
                            world.replan();
                        }
                    }
                    Op::SetQuota(quota) => {
                        world.quota = quota;
                        world.replan();
                    }
                    Op::SetFloor(floor) => {
                        world.floor = floor;
                        world.replan();
                    }
                    Op::OthersWrite(bytes) => world.others += bytes.min(world.free()),
                    Op::OthersFree(bytes) => world.others -= bytes.min(world.others),
                    Op::Reconcile => world.replan(),
                }
                prop_assert!(world.reserve <= world.quota.saturating_sub(world.used));
                prop_assert_eq!(world.used, world.blobs.iter().sum::<u64>());
            }
        }
    }
}
