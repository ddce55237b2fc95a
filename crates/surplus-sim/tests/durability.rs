//! The simulator's promises, checked on populations small enough for `cargo test`.

use surplus_sim::{Report, Scenario};

/// A small population under the defaults, Storj-like alongside.
fn check(availability: f64, lifetime_days: f64, change: impl FnOnce(&mut Scenario)) -> Report {
    let mut scenario = Scenario::new(availability, lifetime_days);
    scenario.devices = 300;
    scenario.days = 60;
    scenario.warmup_days = 30;
    change(&mut scenario);
    surplus_sim::run(&scenario)
}

/// Where packs are lost often enough to count them, the model's loss rate, from the measured
/// shard loss rate and repair latencies, is within a factor of 2 of the losses counted.
#[test]
fn the_model_agrees_with_the_losses_it_can_see() {
    let report = check(0.4, 15.0, |s| s.storj_like = false);
    let surplus = &report.surplus;
    assert!(
        surplus.pack_losses >= 30,
        "too few losses to compare: {}",
        surplus.pack_losses
    );
    let model = surplus.model.expect("the model has repairs to go by");
    let ratio = model.losses_per_pack_year / surplus.observed_losses_per_pack_year;
    assert!(
        (0.5..=2.0).contains(&ratio),
        "model {:.3} against {:.3} losses per pack-year observed ({} losses)",
        model.losses_per_pack_year,
        surplus.observed_losses_per_pack_year,
        surplus.pack_losses
    );
}

/// The acceptance numbers, on a population a hundredth of a real one's pack-years: at 40%
/// availability and 180-day lifetimes, eleven nines, 99.999% restorable within a day, at most
/// 3.5 times the data stored, and less repair traffic than Storj-like rules on the same PCs.
#[test]
fn a_small_network_keeps_its_promises() {
    let report = check(0.4, 180.0, |s| s.days = 90);
    let surplus = &report.surplus;
    let storj = report.storj_like.as_ref().expect("the Storj-like run");
    assert!(
        (report.population.availability_reached - 0.4).abs() < 0.03,
        "availability {}",
        report.population.availability_reached
    );
    assert_eq!(surplus.coding, "8+20");
    assert!(surplus.expansion <= 3.5);
    assert!(
        surplus.annual_durability_nines >= 11.0,
        "{} nines",
        surplus.annual_durability_nines
    );
    assert!(
        surplus.restorable_24h >= 0.99999,
        "{}",
        surplus.restorable_24h
    );
    assert!(
        surplus.repair_bytes_per_stored_byte_month < storj.repair_bytes_per_stored_byte_month,
        "repair traffic {} against Storj-like {}",
        surplus.repair_bytes_per_stored_byte_month,
        storj.repair_bytes_per_stored_byte_month
    );
    // Something happened: PCs left, packs were repaired and audited.
    assert!(surplus.repairs_per_pack_year > 0.0);
    assert!(surplus.audits_per_shard_month > 3.0);
    let json = serde_json::to_value(&report).expect("the report as JSON");
    for key in [
        "annual_durability_nines",
        "restorable_24h",
        "expansion",
        "repair_bytes_per_stored_byte_month",
    ] {
        assert!(json[key].is_number(), "{key}");
        assert!(json["storj_like"][key].is_number(), "storj_like.{key}");
    }
}
