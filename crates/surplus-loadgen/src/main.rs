//! `surplus-loadgen`: a load generator for the Surplus hub.
//!
//! It plays many devices at once against a running hub, through the hub's public HTTP API only
//! (it shares nothing with the hub but the wire types of `surplus-protocol`), and reports how fast
//! and how steadily the hub answered. It is a benchmarking tool: point it at a hub you own, never
//! at one serving real subscribers, because it signs up throwaway accounts.
//!
//! Scenarios:
//!
//! * `heartbeats`: signs up `devices / 5` subscribers (the standard plan's device limit), registers
//!   their devices, then keeps `--concurrency` keep-alive connections busy sending
//!   `POST /v1/device/heartbeat`, each simulated device cycling through its own realistic status
//!   reports. After a warm-up it measures for `--seconds` and prints heartbeats per second, the
//!   latency distribution (p50/p90/p99/max) and the errors (non-2xx answers and failed requests).
//! * `placements`: devices lend storage, an owner stages small blobs, then asks for each to be
//!   placed; prints placements per second and their latency.
//! * `staging`: uploads large blobs into staging and downloads them back; prints MiB/s each way.

mod api;
mod heartbeats;
mod placements;
mod reports;
mod staging;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "surplus-loadgen",
    version,
    about = "Load generator for the Surplus hub: many simulated devices over the public API."
)]
struct Cli {
    /// Tokio worker threads for the load generator. On a machine shared with the hub under test,
    /// one thread leaves the most CPU to the hub.
    #[arg(long, global = true, default_value_t = 1)]
    threads: usize,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Register devices, then send heartbeats as fast as the hub answers and measure latency.
    Heartbeats(heartbeats::Options),
    /// Stage small blobs, then ask for each to be placed on holders and measure how fast the hub
    /// decides.
    Placements(placements::Options),
    /// Upload large blobs into staging and download them back, and measure the throughput.
    Staging(staging::Options),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.threads.max(1))
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("surplus-loadgen: starting the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = match cli.command {
        Command::Heartbeats(options) => runtime.block_on(heartbeats::run(options)),
        Command::Placements(options) => runtime.block_on(placements::run(options)),
        Command::Staging(options) => runtime.block_on(staging::run(options)),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("surplus-loadgen: {error:#}");
            ExitCode::FAILURE
        }
    }
}
