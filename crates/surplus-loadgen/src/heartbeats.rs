//! The `heartbeats` scenario: many devices sending heartbeats to one hub.
//!
//! 1. Registration: `devices / 5` subscribers sign up (random emails), each registers up to five
//!    devices (the standard plan's limit). Subscribers are registered concurrently.
//! 2. Load: `concurrency` workers share the devices round-robin; each sends one heartbeat at a time
//!    on its own keep-alive connection, as fast as the hub answers, each device cycling through its
//!    own reports. Nothing is recorded during the warm-up; after it, every heartbeat's latency goes
//!    into an HDR histogram (microseconds) until `seconds` have passed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use reqwest::Client;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use tokio::task::JoinSet;

use crate::api::{self, Tally};
use crate::reports;

/// Reports each device cycles through.
const REPORTS_PER_DEVICE: usize = 4;
/// The longest one request may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, clap::Args)]
pub struct Options {
    #[command(flatten)]
    target: api::Target,
    /// Simulated devices (registered under devices/5 subscribers).
    #[arg(long, default_value_t = 1000)]
    devices: usize,
    /// Heartbeats in flight at once (one per keep-alive connection).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Seconds to measure, after the warm-up.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Seconds of load before measuring starts.
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// Subscribers signing up at once during registration.
    #[arg(long, default_value_t = 16)]
    register_concurrency: usize,
    /// Also write every device's credential and first report into this file, one device a line
    /// (`TOKEN<TAB>REPORT`), for another load tool to replay: `scripts/wrk/heartbeats.lua`.
    #[arg(long, value_name = "FILE")]
    save_devices: Option<std::path::PathBuf>,
}

/// One simulated device: its credential and its reports, already encoded.
struct SimDevice {
    authorization: HeaderValue,
    reports: Vec<Vec<u8>>,
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    if options.devices == 0 || options.concurrency == 0 || options.seconds == 0 {
        bail!("--devices, --concurrency and --seconds must be at least 1");
    }
    let base = options.target.base();
    let client = api::client(options.concurrency, REQUEST_TIMEOUT)?;

    let registering = Instant::now();
    let subscribers = options.devices.div_ceil(api::DEVICES_PER_SUBSCRIBER);
    let credentials = tokio::time::timeout(
        api::REGISTRATION_DEADLINE,
        api::register(
            &client,
            &base,
            &options.target.password,
            options.devices,
            options.register_concurrency,
        ),
    )
    .await
    .context("registration took too long")??;
    let registration = registering.elapsed();
    if !options.target.json {
        println!(
            "registered {} devices under {subscribers} subscribers in {:.1} s",
            credentials.len(),
            registration.as_secs_f64()
        );
    }

    let mut devices = Vec::with_capacity(credentials.len());
    let mut saved = String::new();
    for (index, device) in credentials.iter().enumerate() {
        let token = api::device_token(device);
        let reports: Vec<Vec<u8>> = reports::for_device(index, REPORTS_PER_DEVICE)
            .iter()
            .map(serde_json::to_vec)
            .collect::<Result<_, _>>()
            .context("encoding a report")?;
        if options.save_devices.is_some() {
            let report = std::str::from_utf8(&reports[0]).context("a report is not UTF-8")?;
            saved.push_str(&format!("{token}\t{report}\n"));
        }
        devices.push(SimDevice {
            authorization: HeaderValue::from_str(&format!("Bearer {token}"))
                .context("a device token is not a valid header")?,
            reports,
        });
    }
    let devices = Arc::new(devices);
    if let Some(path) = &options.save_devices {
        std::fs::write(path, saved)
            .with_context(|| format!("writing the devices into {}", path.display()))?;
    }

    // More workers than devices would send one device's heartbeats in parallel: no agent does.
    let workers = options.concurrency.min(devices.len());
    if !options.target.json {
        println!(
            "sending heartbeats on {workers} connections: {} s warm-up, then {} s measured",
            options.warmup, options.seconds
        );
    }
    let url = Arc::<str>::from(format!("{base}/v1/device/heartbeat"));
    let start = Instant::now();
    let measure_from = start + Duration::from_secs(options.warmup);
    let until = measure_from + Duration::from_secs(options.seconds);
    let mut tasks = JoinSet::new();
    for worker in 0..workers {
        // Worker w plays devices w, w + workers, w + 2 * workers, ...
        let mine: Vec<usize> = (worker..devices.len()).step_by(workers).collect();
        tasks.spawn(send_heartbeats(
            client.clone(),
            url.clone(),
            devices.clone(),
            mine,
            measure_from,
            until,
        ));
    }
    let mut total = Tally::new()?;
    while let Some(joined) = tasks.join_next().await {
        total.merge(joined.context("a worker panicked")??)?;
    }
    let measured = measure_from.elapsed().as_secs_f64();

    let rate = total.ok as f64 / measured;
    let (p50, p90, p99) = (total.ms(0.50), total.ms(0.90), total.ms(0.99));
    let max = total.latency_us.max() as f64 / 1000.0;
    let mean = total.latency_us.mean() / 1000.0;
    let errors = total.error_count();
    if options.target.json {
        let report = serde_json::json!({
            "scenario": "heartbeats",
            "hub": base,
            "devices": devices.len(),
            "subscribers": subscribers,
            "concurrency": workers,
            "warmup_seconds": options.warmup,
            "seconds": measured,
            "registration_seconds": registration.as_secs_f64(),
            "heartbeats": total.ok,
            "heartbeats_per_second": rate,
            "p50_ms": p50,
            "p90_ms": p90,
            "p99_ms": p99,
            "max_ms": max,
            "mean_ms": mean,
            "errors": errors,
            "errors_by_kind": total.errors,
        });
        println!("{report}");
    } else {
        println!(
            "heartbeats:  {} in {measured:.1} s = {rate:.0} /s",
            total.ok
        );
        println!(
            "latency ms:  p50 {p50:.2}  p90 {p90:.2}  p99 {p99:.2}  max {max:.2}  (mean {mean:.2})"
        );
        println!("errors:      {}", total.errors_line());
    }
    if total.ok == 0 {
        bail!("no heartbeat succeeded");
    }
    Ok(())
}

/// One worker: sends its devices' heartbeats one at a time until `until`, recording those that
/// start at or after `measure_from`.
async fn send_heartbeats(
    client: Client,
    url: Arc<str>,
    devices: Arc<Vec<SimDevice>>,
    mine: Vec<usize>,
    measure_from: Instant,
    until: Instant,
) -> anyhow::Result<Tally> {
    let mut tally = Tally::new()?;
    let json = HeaderValue::from_static("application/json");
    let mut sent: usize = 0;
    loop {
        let started = Instant::now();
        if started >= until {
            break;
        }
        // Round-robin over this worker's devices; each device moves on to its next report.
        let device = &devices[mine[sent % mine.len()]];
        let report = &device.reports[(sent / mine.len()) % device.reports.len()];
        sent += 1;
        let outcome = client
            .post(&*url)
            .header(AUTHORIZATION, device.authorization.clone())
            .header(CONTENT_TYPE, json.clone())
            .body(report.clone())
            .send()
            .await;
        // Read the whole answer so that the connection goes back to the pool.
        let failure = match outcome {
            Ok(response) => {
                let status = response.status();
                match response.bytes().await {
                    Ok(_) if status.is_success() => None,
                    Ok(_) => Some(status.as_u16().to_string()),
                    Err(_) => Some("transport".to_owned()),
                }
            }
            Err(_) => Some("transport".to_owned()),
        };
        let latency = started.elapsed();
        let transport_failed = failure.as_deref() == Some("transport");
        if started >= measure_from {
            match failure {
                None => tally.success(latency),
                Some(kind) => tally.failure(kind),
            }
        }
        if transport_failed {
            // The hub is gone or refusing connections: do not spin.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    Ok(tally)
}
