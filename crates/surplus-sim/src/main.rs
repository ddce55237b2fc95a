//! `surplus-sim`: runs a churn scenario over the hub's rules and prints what it gave, as a short
//! table or (`--json`) one JSON object.

use clap::Parser;
use surplus_protocol::Coding;
use surplus_rules::DAY_MS;
use surplus_sim::{Report, Scenario, Summary};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Simulates home PCs holding each other's backups under the hub's rules"
)]
struct Args {
    /// The population's mean share of hours on.
    #[arg(long, default_value_t = 0.4)]
    availability: f64,
    /// The PCs' mean time in the network.
    #[arg(long, default_value_t = 180.0)]
    lifetime_days: f64,
    /// The Weibull shape of lifetimes (1: exponential; below 1: many leave early).
    #[arg(long, default_value_t = 1.0)]
    lifetime_shape: f64,
    #[arg(long, default_value_t = 2000)]
    devices: usize,
    /// Days measured, after 28 days of presence history and the warm-up.
    #[arg(long, default_value_t = 365)]
    days: u64,
    #[arg(long, default_value_t = 90)]
    warmup_days: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The hub's lost-after cap: a holder silent this long is counted lost.
    #[arg(long)]
    lost_after_days: Option<f64>,
    /// Spare shards at which a pack is repaired (capped at parity - 1).
    #[arg(long)]
    repair_threshold: Option<u32>,
    /// The coding, `data+parity` (default: `Coding::for_holders` for the network's size).
    #[arg(long, value_parser = parse_coding)]
    coding: Option<Coding>,
    #[arg(long, default_value_t = 4)]
    packs_per_subscriber: u32,
    /// Each subscriber's backup, in GiB.
    #[arg(long, default_value_t = 20.0)]
    data_gib: f64,
    /// The hub's repair budget, in MiB/s (default: 25.6, its 256 MiB per 10-second round, for
    /// every 10 TiB of backups).
    #[arg(long)]
    repair_budget_mib_s: Option<f64>,
    /// The share of PCs whose owners discard what they hold.
    #[arg(long, default_value_t = 0.01)]
    dishonest: f64,
    #[arg(long, default_value_t = 0.03)]
    disk_failures_per_year: f64,
    /// Delete the copies of holders counted lost when they return, instead of taking back those
    /// still wanted.
    #[arg(long)]
    no_readopt: bool,
    /// Leave the Storj-like comparison out.
    #[arg(long)]
    no_storj: bool,
    #[arg(long, default_value_t = 1)]
    storj_packs_per_subscriber: u32,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

fn parse_coding(text: &str) -> Result<Coding, String> {
    let (data, parity) = text
        .split_once('+')
        .ok_or_else(|| "write the coding as data+parity, e.g. 8+16".to_owned())?;
    let coding = Coding {
        data: data.trim().parse().map_err(|_| "data is not a number")?,
        parity: parity
            .trim()
            .parse()
            .map_err(|_| "parity is not a number")?,
    };
    match coding.problem() {
        Some(problem) => Err(problem),
        None => Ok(coding),
    }
}

fn main() {
    let args = Args::parse();
    let mut scenario = Scenario::new(args.availability, args.lifetime_days);
    scenario.lifetime_shape = args.lifetime_shape;
    scenario.devices = args.devices;
    scenario.days = args.days;
    scenario.warmup_days = args.warmup_days;
    scenario.seed = args.seed;
    if let Some(days) = args.lost_after_days {
        scenario.lost_after = (days * DAY_MS as f64) as i64;
    }
    if let Some(threshold) = args.repair_threshold {
        scenario.repair_threshold = threshold;
    }
    if args.coding.is_some() {
        scenario.coding = args.coding;
    }
    scenario.packs_per_subscriber = args.packs_per_subscriber;
    scenario.data_gib = args.data_gib;
    scenario.repair_budget_mib_s = args.repair_budget_mib_s;
    scenario.dishonest = args.dishonest;
    scenario.disk_failures_per_year = args.disk_failures_per_year;
    scenario.storj_like = !args.no_storj;
    scenario.readopt = !args.no_readopt;
    scenario.storj_packs_per_subscriber = args.storj_packs_per_subscriber;
    let report = surplus_sim::run(&scenario);
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(json) => println!("{json}"),
            Err(error) => {
                eprintln!("surplus-sim: {error}");
                std::process::exit(1);
            }
        }
    } else {
        print_table(&report);
    }
}

fn print_table(report: &Report) {
    let p = &report.population;
    println!(
        "{} PCs, availability {:.0}% (reached {:.1}%), lifetime {} days (shape {}), {} days measured, seed {}",
        p.devices,
        p.availability * 100.0,
        p.availability_reached * 100.0,
        p.lifetime_days,
        p.lifetime_shape,
        p.days,
        p.seed
    );
    let columns: Vec<(&str, &Summary)> = std::iter::once(("surplus", &report.surplus))
        .chain(report.storj_like.as_ref().map(|s| ("storj-like", s)))
        .collect();
    let row = |name: &str, value: &dyn Fn(&Summary) -> String| {
        print!("{name:<36}");
        for (_, summary) in &columns {
            print!("{:>16}", value(summary));
        }
        println!();
    };
    row("", &|_| String::new());
    print!("{:<36}", "");
    for (name, _) in &columns {
        print!("{name:>16}");
    }
    println!();
    row("coding", &|s| s.coding.clone());
    row("lost after (hours)", &|s| {
        format!("{:.0}", s.lost_after_hours)
    });
    row("repaired at live shards", &|s| s.repair_at_live.to_string());
    row("annual durability (nines, model)", &|s| {
        format!("{:.1}", s.annual_durability_nines)
    });
    row("restorable within 24 h", &|s| {
        format!("{:.6}", s.restorable_24h)
    });
    row("expansion (measured)", &|s| {
        format!("{:.2} ({:.2})", s.expansion, s.expansion_measured)
    });
    row("repair bytes / stored byte / month", &|s| {
        format!("{:.3}", s.repair_bytes_per_stored_byte_month)
    });
    row("audit bytes / stored byte / month", &|s| {
        format!("{:.1e}", s.audit_bytes_per_stored_byte_month)
    });
    row("shard losses / shard / year", &|s| {
        format!("{:.2}", s.shard_losses_per_shard_year)
    });
    row("repair latency p50/p99 (hours)", &|s| {
        format!(
            "{:.0}/{:.0}",
            s.repair_latency_hours.p50, s.repair_latency_hours.p99
        )
    });
    row("pack losses (observed)", &|s| s.pack_losses.to_string());
    row("losses / pack-year: observed", &|s| {
        format!("{:.2e}", s.observed_losses_per_pack_year)
    });
    row("losses / pack-year: model", &|s| {
        s.model
            .map_or("-".into(), |m| format!("{:.2e}", m.losses_per_pack_year))
    });
    for (name, summary) in &columns {
        for event in summary.loss_events.iter().take(10) {
            println!(
                "{name}: pack {} of subscriber {} lost on day {:.1}",
                event.pack, event.owner, event.day
            );
        }
        if summary.loss_events.len() > 10 {
            println!("{name}: ... {} losses in all", summary.loss_events.len());
        }
    }
}
