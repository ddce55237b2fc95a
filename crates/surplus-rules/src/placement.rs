//! Placement: which devices hold a subscriber's blob, and when a placement is done.
//!
//! The shards of one pack go to distinct devices and to distinct other subscribers (losing one
//! subscriber's PCs loses at most one shard of a pack); the owner's own other devices take one
//! each only in household mode. A device holds one copy of a given content at most, whoever it is
//! for, and one that just failed to take a blob is left out for a while. Among the devices left,
//! those with room are chosen by when they are there: for a pack, devices whose usual weeks fill
//! the hours the pack's other holders leave empty, so that night-only PCs do not all hold the
//! same pack; otherwise, online devices first, then those heard from most recently.

use std::collections::HashSet;

use surplus_protocol::AllocationState;
use uuid::Uuid;

use crate::Millis;
use crate::presence::{HOURS_PER_WEEK, Week};

/// A device whose storage may be allocated.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub device_id: Uuid,
    pub subscriber_id: Uuid,
    /// Spare storage left after what is already promised.
    pub free_bytes: u64,
    pub last_heartbeat: Option<Millis>,
    /// Its usual week, when its history is known.
    pub week: Option<Week>,
    /// The network it reaches the hub from ([`network_of`]), when known.
    pub network: Option<String>,
}

/// The network of a public address, as placement spreads a pack over them (a device on a
/// network that already holds a shard of the pack is chosen only when no other will do): its IPv4 /24 or
/// IPv6 /48. Loopback, private, shared (CGNAT), link-local and other non-public addresses say
/// nothing about where a device is, and give `None`.
pub fn network_of(address: std::net::IpAddr) -> Option<String> {
    use std::net::IpAddr;
    match address {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            let shared = a == 100 && (64..128).contains(&b);
            let public = !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_multicast()
                || shared
                || a == 0
                || a >= 240);
            public.then(|| format!("{a}.{b}.{c}.0/24"))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return network_of(IpAddr::V4(v4));
            }
            let s = v6.segments();
            // Global unicast is 2000::/3; the rest (loopback, ULA, link-local, ...) is not.
            ((s[0] & 0xe000) == 0x2000).then(|| format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2]))
        }
    }
}

/// One of the owner's allocations of the blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocation {
    pub id: Uuid,
    pub device: Uuid,
    pub state: AllocationState,
}

/// A placement that wants holders, with what deciding on it needs to know.
#[derive(Debug, Clone, Copy)]
pub struct Want<'a> {
    pub owner: Uuid,
    /// The device that uploaded it: never its holder.
    pub source: Option<Uuid>,
    pub copies: u32,
    pub size: u64,
    /// Whether the hub has it staged, so that a new holder can fetch it.
    pub staged: bool,
    /// Whether the owner's own other devices may hold it.
    pub household: bool,
    /// The owner's allocations of this blob.
    pub allocations: &'a [Allocation],
    /// Devices that hold, or are to hold, this content for anyone.
    pub holding: &'a [Uuid],
    /// Devices that failed to take it lately.
    pub failed_lately: &'a [Uuid],
    /// For a pack's shard: the holders of the pack's shards (device, its subscriber), and how
    /// many shards rebuild the pack when known.
    pub pack: Option<PackHolders<'a>>,
}

#[derive(Debug, Clone, Copy)]
pub struct PackHolders<'a> {
    pub holders: &'a [(Uuid, Uuid)],
    /// The usual weeks of the pack's holders, where known.
    pub weeks: &'a [Week],
    /// The networks of the pack's holders, where known: no two shards on one.
    pub networks: &'a [String],
    pub needed: Option<u32>,
}

/// What to do with a placement now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Every copy is confirmed: the placement is done, and holders that gave the blob up
    /// (`evacuating`) are told to delete it: (allocation, device).
    Done { release: Vec<(Uuid, Uuid)> },
    /// Allocate on these devices.
    Allocate(Vec<Uuid>),
    /// Nothing to do now: enough copies are on their way, no device fits, or the blob is no
    /// longer staged (moving it from a holder is repair's job).
    Wait,
}

/// Decides what one placement needs.
/// Whether a placement with `active` confirmed copies and `live` copies confirmed or on their
/// way (of `copies` wanted) can only wait: it is not done, and either enough copies are on their
/// way or there is nothing staged to place from. [`decide`] answers `Wait` exactly then; the hub
/// asks this first, from counts alone, to skip loading what deciding needs.
pub fn waits(active: u32, live: u32, copies: u32, staged: bool) -> bool {
    active < copies && (live >= copies || !staged)
}

pub fn decide(want: &Want<'_>, candidates: &[Candidate], online_since: Millis) -> Decision {
    let count = |states: &[AllocationState]| {
        want.allocations
            .iter()
            .filter(|a| states.contains(&a.state))
            .count() as u32
    };
    use AllocationState::{Active, Evacuating, Pending};
    if count(&[Active]) >= want.copies {
        return Decision::Done {
            release: want
                .allocations
                .iter()
                .filter(|a| a.state == Evacuating)
                .map(|a| (a.id, a.device))
                .collect(),
        };
    }
    let live = count(&[Pending, Active]);
    if waits(count(&[Active]), live, want.copies, want.staged) {
        return Decision::Wait;
    }
    let mut excluded: HashSet<Uuid> = want
        .allocations
        .iter()
        .filter(|a| matches!(a.state, Pending | Active | Evacuating))
        .map(|a| a.device)
        .collect();
    excluded.extend(want.holding);
    excluded.extend(want.failed_lately);
    excluded.extend(want.source);
    let mut weeks: &[Week] = &[];
    let mut needed = None;
    // Subscribers who hold a shard of the pack already (and the owner, unless in household
    // mode) take no other. A handful: a list, looked through, costs less than hashing every
    // candidate's subscriber.
    let mut barred: Vec<Uuid> = Vec::new();
    // Networks that already hold a shard of the pack: their devices are taken only when no
    // other device will do (a small network, or many devices behind one address).
    let mut networks: &[String] = &[];
    if let Some(pack) = want.pack {
        excluded.extend(pack.holders.iter().map(|(device, _)| *device));
        barred.extend(
            pack.holders
                .iter()
                .map(|(_, subscriber)| *subscriber)
                .filter(|subscriber| *subscriber != want.owner),
        );
        if !want.household {
            barred.push(want.owner);
        }
        networks = pack.networks;
        weeks = pack.weeks;
        needed = pack.needed;
    }
    let left_out =
        |c: &Candidate| excluded.contains(&c.device_id) || barred.contains(&c.subscriber_id);
    let same_network = |c: &Candidate| c.network.as_ref().is_some_and(|n| networks.contains(n));
    let wanted = want.copies - live;
    let mut chosen = choose_holders(
        candidates,
        want.size,
        wanted,
        &|c| left_out(c) || same_network(c),
        online_since,
        weeks,
        needed,
    );
    if (chosen.len() as u32) < wanted && !networks.is_empty() {
        let first = chosen.clone();
        chosen.extend(choose_holders(
            candidates,
            want.size,
            wanted - chosen.len() as u32,
            &|c| left_out(c) || first.contains(&c.device_id),
            online_since,
            weeks,
            needed,
        ));
    }
    if chosen.is_empty() {
        Decision::Wait
    } else {
        Decision::Allocate(chosen)
    }
}

/// The most devices one choice weighs by their weeks: the first this many with room, in presence
/// order. Beyond a few hundred a better week is rarely found, and weighing each costs a pass over
/// the 168 hours of its week; with this bound a decision costs the same on a hub of a hundred
/// devices and on one of a hundred thousand.
pub const SHORTLIST: usize = 256;

/// The order devices are considered in: online devices first, then those heard from most
/// recently. [`decide`] and [`choose_holders`] take candidates fastest in this order (a
/// scheduler sorts them once a pass with [`by_presence`]), and sort them themselves otherwise.
fn presence_key(
    c: &Candidate,
    online_since: Millis,
) -> (bool, std::cmp::Reverse<Option<Millis>>, Uuid) {
    let online = c.last_heartbeat.is_some_and(|t| t >= online_since);
    (!online, std::cmp::Reverse(c.last_heartbeat), c.device_id)
}

/// Sorts candidates in the order placement considers them (see [`presence_key`]).
pub fn by_presence(candidates: &mut [Candidate], online_since: Millis) {
    candidates.sort_by_cached_key(|c| presence_key(c, online_since));
}

/// Chooses up to `wanted` distinct holders with room for `size` bytes, none of them
/// `left_out`.
///
/// With `needed` known and weeks to go by, each choice is the device that adds most to the
/// hours of the week in which fewer than `needed` of the holders (`weeks` already, and those
/// chosen) are expected to be there. Ties, and devices with no history, go by presence: online
/// devices first, then those heard from most recently (a device that is off now fetches its
/// blob when it comes back). Only the first [`SHORTLIST`] devices with room, by presence, are
/// weighed.
pub fn choose_holders(
    candidates: &[Candidate],
    size: u64,
    wanted: u32,
    left_out: &dyn Fn(&Candidate) -> bool,
    online_since: Millis,
    weeks: &[Week],
    needed: Option<u32>,
) -> Vec<Uuid> {
    let room = |c: &&Candidate| c.free_bytes >= size && !left_out(c);
    let shortlist = SHORTLIST.max(wanted as usize);
    let mut eligible: Vec<&Candidate> =
        if candidates.is_sorted_by_key(|c| presence_key(c, online_since)) {
            candidates.iter().filter(room).take(shortlist).collect()
        } else {
            let mut all: Vec<&Candidate> = candidates.iter().filter(room).collect();
            all.sort_by_key(|c| presence_key(c, online_since));
            all.truncate(shortlist);
            all
        };
    let mut expected = [0f32; HOURS_PER_WEEK];
    for week in weeks {
        for (hour, sum) in expected.iter_mut().enumerate() {
            *sum += week.at(hour);
        }
    }
    let goal = needed.unwrap_or(0) as f32;
    let mut chosen = Vec::new();
    while chosen.len() < wanted as usize {
        // The first best by gain keeps presence order among equals.
        let best = eligible
            .iter()
            .enumerate()
            .map(|(at, c)| (at, gain(&expected, c.week.as_ref(), goal)))
            .fold(None, |best: Option<(usize, f32)>, (at, g)| match best {
                Some((_, top)) if g <= top => best,
                _ => Some((at, g)),
            });
        let Some((at, _)) = best else { break };
        let candidate = eligible.remove(at);
        if let Some(week) = &candidate.week {
            for (hour, sum) in expected.iter_mut().enumerate() {
                *sum += week.at(hour);
            }
        }
        chosen.push(candidate.device_id);
    }
    chosen
}

/// How much a device's week adds to the hours still short of `goal` expected holders.
fn gain(expected: &[f32; HOURS_PER_WEEK], week: Option<&Week>, goal: f32) -> f32 {
    let Some(week) = week else { return 0.0 };
    expected
        .iter()
        .enumerate()
        .map(|(hour, have)| (goal - have).clamp(0.0, week.at(hour)))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_placement_waits_while_its_copies_are_on_their_way_or_nothing_is_staged() {
        // (active, live, copies, staged) -> waits
        for (active, live, staged, waits_) in [
            (2, 2, true, false),  // done: not waiting, finishing
            (1, 2, true, true),   // the second copy is on its way
            (1, 1, true, false),  // one more to place, and it is staged
            (1, 1, false, true),  // one more to place, but nothing to place it from
            (0, 3, false, true),  // more on their way than wanted
            (3, 3, false, false), // done even without staging
        ] {
            assert_eq!(
                waits(active, live, 2, staged),
                waits_,
                "{active} active, {live} live, staged {staged}"
            );
        }
    }

    fn candidate(n: u128, free: u64, heard: Option<i64>) -> Candidate {
        Candidate {
            device_id: Uuid::from_u128(n),
            subscriber_id: Uuid::from_u128(100 + n),
            free_bytes: free,
            last_heartbeat: heard,
            week: None,
            network: None,
        }
    }

    fn allocation(n: u128, device: u128, state: AllocationState) -> Allocation {
        Allocation {
            id: Uuid::from_u128(n),
            device: Uuid::from_u128(device),
            state,
        }
    }

    fn want<'a>(copies: u32, allocations: &'a [Allocation]) -> Want<'a> {
        Want {
            owner: Uuid::from_u128(999),
            source: None,
            copies,
            size: 100,
            staged: true,
            household: false,
            allocations,
            holding: &[],
            failed_lately: &[],
            pack: None,
        }
    }

    #[test]
    fn prefers_online_devices_with_room() {
        let candidates = [
            candidate(1, 10, Some(1_000)),
            candidate(2, 1_000, Some(50)),
            candidate(3, 1_000, Some(900)),
            candidate(4, 1_000, None),
            candidate(5, 1_000, Some(950)),
        ];
        let chosen = choose_holders(&candidates, 100, 3, &|_| false, 800, &[], None);
        assert_eq!(
            chosen,
            vec![Uuid::from_u128(5), Uuid::from_u128(3), Uuid::from_u128(2)]
        );
    }

    #[test]
    fn never_chooses_an_excluded_device_or_one_twice() {
        let candidates = [candidate(1, 1_000, Some(1)), candidate(2, 1_000, Some(2))];
        let excluded = Uuid::from_u128(2);
        assert_eq!(
            choose_holders(
                &candidates,
                1,
                5,
                &|c| c.device_id == excluded,
                0,
                &[],
                None
            ),
            vec![Uuid::from_u128(1)]
        );
        assert!(choose_holders(&candidates, 2_000, 1, &|_| false, 0, &[], None).is_empty());
    }

    #[test]
    fn night_owls_do_not_all_hold_one_pack() {
        let nights = Week::from_hours(std::array::from_fn(
            |h| if h % 24 >= 20 { 1.0 } else { 0.0 },
        ));
        let days = Week::from_hours(std::array::from_fn(|h| {
            if (8..18).contains(&(h % 24)) {
                1.0
            } else {
                0.0
            }
        }));
        // Three night owls, heard most recently, and two day workers.
        let mut candidates: Vec<Candidate> = (1..=5)
            .map(|n| candidate(n, 1_000, Some(1_000 - n as i64)))
            .collect();
        for (c, week) in candidates
            .iter_mut()
            .zip([&nights, &nights, &nights, &days, &days])
        {
            c.week = Some(week.clone());
        }
        // The pack's first shard is on a night owl already; one more holder wanted, one shard
        // rebuilds the pack: a day worker fills the empty hours.
        let chosen = choose_holders(
            &candidates,
            1,
            1,
            &|_| false,
            0,
            std::slice::from_ref(&nights),
            Some(1),
        );
        assert_eq!(chosen, vec![Uuid::from_u128(4)]);
        // Without weeks, presence order alone would have taken another night owl.
        let plain = choose_holders(&candidates, 1, 1, &|_| false, 0, &[], None);
        assert_eq!(plain, vec![Uuid::from_u128(1)]);
    }

    #[test]
    fn only_the_shortlist_of_the_most_present_devices_is_weighed_in_any_order() {
        let days = Week::from_hours(std::array::from_fn(|h| {
            if (8..18).contains(&(h % 24)) {
                1.0
            } else {
                0.0
            }
        }));
        // Devices heard from in order of their number; none has a week but two: one inside the
        // shortlist, one just past it.
        let mut candidates: Vec<Candidate> = (1..=SHORTLIST as u128 + 10)
            .map(|n| candidate(n, 1_000, Some(10_000 - n as i64)))
            .collect();
        candidates[SHORTLIST - 1].week = Some(days.clone());
        candidates[SHORTLIST + 5].week = Some(days.clone());
        let inside = candidates[SHORTLIST - 1].device_id;
        let choose = |candidates: &[Candidate]| {
            choose_holders(candidates, 1, 2, &|_| false, 0, &[], Some(1))
        };
        // The week inside the shortlist wins; the one past it is never weighed, and presence
        // order takes the next holder.
        assert_eq!(choose(&candidates), vec![inside, Uuid::from_u128(1)]);
        // The same choice however the candidates come.
        candidates.reverse();
        assert_eq!(choose(&candidates), vec![inside, Uuid::from_u128(1)]);
        by_presence(&mut candidates, 0);
        assert_eq!(candidates[0].device_id, Uuid::from_u128(1));
        assert_eq!(choose(&candidates), vec![inside, Uuid::from_u128(1)]);
    }

    #[test]
    fn a_placement_is_done_once_every_copy_is_confirmed() {
        use AllocationState::{Active, Evacuating, Pending};
        let candidates = [candidate(1, 1_000, Some(5)), candidate(2, 1_000, Some(5))];
        let confirmed = [
            allocation(10, 7, Active),
            allocation(11, 8, Active),
            allocation(12, 9, Evacuating),
        ];
        assert_eq!(
            decide(&want(2, &confirmed), &candidates, 0),
            Decision::Done {
                release: vec![(Uuid::from_u128(12), Uuid::from_u128(9))]
            }
        );
        // One on its way, one more wanted: only a device not already involved.
        let on_the_way = [allocation(10, 1, Pending)];
        assert_eq!(
            decide(&want(2, &on_the_way), &candidates, 0),
            Decision::Allocate(vec![Uuid::from_u128(2)])
        );
        // Not staged: no new holder could fetch it.
        let unstaged = Want {
            staged: false,
            ..want(2, &on_the_way)
        };
        assert_eq!(decide(&unstaged, &candidates, 0), Decision::Wait);
    }

    #[test]
    fn shards_of_a_pack_go_to_distinct_other_subscribers() {
        let owner = Uuid::from_u128(999);
        let mut candidates = vec![
            candidate(1, 1_000, Some(9)),
            candidate(2, 1_000, Some(8)),
            candidate(3, 1_000, Some(7)),
        ];
        // Device 3 is the owner's own.
        candidates[2].subscriber_id = owner;
        // Device 1's subscriber holds another shard of the pack on a different device.
        let holders = [(Uuid::from_u128(50), Uuid::from_u128(101))];
        let pack = PackHolders {
            holders: &holders,
            weeks: &[],
            networks: &[],
            needed: None,
        };
        let plain = Want {
            pack: Some(pack),
            ..want(3, &[])
        };
        assert_eq!(
            decide(&plain, &candidates, 0),
            Decision::Allocate(vec![Uuid::from_u128(2)])
        );
        let household = Want {
            household: true,
            ..plain
        };
        assert_eq!(
            decide(&household, &candidates, 0),
            Decision::Allocate(vec![Uuid::from_u128(2), Uuid::from_u128(3)])
        );
    }

    #[test]
    fn a_shared_network_is_used_only_when_nothing_else_will_do() {
        let mut candidates = vec![candidate(1, 1_000, Some(9))];
        candidates[0].network = Some("203.0.113.0/24".into());
        let holders = [(Uuid::from_u128(50), Uuid::from_u128(150))];
        let networks = ["203.0.113.0/24".to_owned()];
        let want = Want {
            pack: Some(PackHolders {
                holders: &holders,
                weeks: &[],
                networks: &networks,
                needed: None,
            }),
            ..want(1, &[])
        };
        assert_eq!(
            decide(&want, &candidates, 0),
            Decision::Allocate(vec![Uuid::from_u128(1)])
        );
    }

    #[test]
    fn shards_of_a_pack_go_to_distinct_networks_where_known() {
        let mut candidates = vec![
            candidate(1, 1_000, Some(9)),
            candidate(2, 1_000, Some(8)),
            candidate(3, 1_000, Some(7)),
        ];
        candidates[0].network = Some("203.0.113.0/24".into());
        candidates[1].network = Some("198.51.100.0/24".into());
        // Device 3's network is unknown: it is not held against it.
        let holders = [(Uuid::from_u128(50), Uuid::from_u128(150))];
        let networks = ["203.0.113.0/24".to_owned()];
        let want = Want {
            pack: Some(PackHolders {
                holders: &holders,
                weeks: &[],
                networks: &networks,
                needed: None,
            }),
            ..want(2, &[])
        };
        assert_eq!(
            decide(&want, &candidates, 0),
            Decision::Allocate(vec![Uuid::from_u128(2), Uuid::from_u128(3)])
        );
    }

    #[test]
    fn only_public_addresses_name_a_network() {
        let network = |text: &str| network_of(text.parse().expect("an address"));
        assert_eq!(network("81.2.69.142").as_deref(), Some("81.2.69.0/24"));
        assert_eq!(
            network("2a01:4f8:c17:1b2::1").as_deref(),
            Some("2a01:4f8:c17::/48")
        );
        assert_eq!(
            network("::ffff:81.2.69.142").as_deref(),
            Some("81.2.69.0/24")
        );
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.5.4",
            "192.168.1.20",
            "100.64.0.1",
            "169.254.1.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
        ] {
            assert_eq!(network(private), None, "{private}");
        }
    }
}
