//! The `heartbeats` scenario: many devices sending heartbeats to one hub.
//!
//! 1. Registration: `devices / 5` subscribers sign up (random emails), each registers up to five
//!    devices (the standard plan's limit). Subscribers are registered concurrently.
//! 2. Load: `concurrency` workers share the devices round-robin; each sends one heartbeat at a time
//!    on its own keep-alive connection, as fast as the hub answers, each device cycling through its
//!    own reports. Nothing is recorded during the warm-up; after it, every heartbeat's latency goes
//!    into an HDR histogram (microseconds) until `seconds` have passed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use reqwest::{Client, StatusCode};
use surplus_protocol::{Credentials, DeviceCredentials, RegisterDevice, Session};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::reports;

/// Devices per subscriber: the standard plan's limit.
const DEVICES_PER_SUBSCRIBER: usize = 5;
/// Reports each device cycles through.
const REPORTS_PER_DEVICE: usize = 4;
/// The longest one request may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest registration as a whole may take.
const REGISTRATION_DEADLINE: Duration = Duration::from_secs(300);
/// The most latency the histogram tracks: one minute, in microseconds.
const HISTOGRAM_MAX_US: u64 = 60_000_000;

#[derive(Debug, clap::Args)]
pub struct Options {
    /// The hub's base URL, e.g. http://127.0.0.1:7420.
    #[arg(long)]
    hub: String,
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
    /// The password of the throwaway subscribers.
    #[arg(long, default_value = "loadgen-password")]
    password: String,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// One simulated device: its credential and its reports, already encoded.
struct SimDevice {
    authorization: HeaderValue,
    reports: Vec<Vec<u8>>,
}

/// What one worker measured.
struct Tally {
    latency_us: Histogram<u64>,
    ok: u64,
    /// Failures by kind: an HTTP status code, or `transport` for requests that got no answer.
    errors: BTreeMap<String, u64>,
}

impl Tally {
    fn new() -> anyhow::Result<Self> {
        Ok(Tally {
            latency_us: Histogram::new_with_bounds(1, HISTOGRAM_MAX_US, 3)
                .context("creating the latency histogram")?,
            ok: 0,
            errors: BTreeMap::new(),
        })
    }

    fn merge(&mut self, other: Tally) -> anyhow::Result<()> {
        self.latency_us
            .add(&other.latency_us)
            .context("merging latency histograms")?;
        self.ok += other.ok;
        for (kind, count) in other.errors {
            *self.errors.entry(kind).or_default() += count;
        }
        Ok(())
    }

    fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    if options.devices == 0 || options.concurrency == 0 || options.seconds == 0 {
        bail!("--devices, --concurrency and --seconds must be at least 1");
    }
    let base = options.hub.trim_end_matches('/').to_owned();
    let client = Client::builder()
        .http1_only()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(options.concurrency)
        .pool_idle_timeout(Duration::from_secs(90))
        .connect_timeout(Duration::from_secs(5))
        .timeout(REQUEST_TIMEOUT)
        .build()
        .context("building the HTTP client")?;

    let registering = Instant::now();
    let subscribers = options.devices.div_ceil(DEVICES_PER_SUBSCRIBER);
    let credentials = tokio::time::timeout(
        REGISTRATION_DEADLINE,
        register(&client, &base, &options, subscribers),
    )
    .await
    .context("registration took too long")??;
    let registration = registering.elapsed();
    if !options.json {
        println!(
            "registered {} devices under {subscribers} subscribers in {:.1} s",
            credentials.len(),
            registration.as_secs_f64()
        );
    }

    let mut devices = Vec::with_capacity(credentials.len());
    for (index, device) in credentials.iter().enumerate() {
        let token = surplus_protocol::device_token(device.device_id, &device.secret);
        let reports = reports::for_device(index, REPORTS_PER_DEVICE)
            .iter()
            .map(serde_json::to_vec)
            .collect::<Result<_, _>>()
            .context("encoding a report")?;
        devices.push(SimDevice {
            authorization: HeaderValue::from_str(&format!("Bearer {token}"))
                .context("a device token is not a valid header")?,
            reports,
        });
    }
    let devices = Arc::new(devices);

    // More workers than devices would send one device's heartbeats in parallel: no agent does.
    let workers = options.concurrency.min(devices.len());
    if !options.json {
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
    let ms = |quantile: f64| total.latency_us.value_at_quantile(quantile) as f64 / 1000.0;
    let (p50, p90, p99) = (ms(0.50), ms(0.90), ms(0.99));
    let max = total.latency_us.max() as f64 / 1000.0;
    let mean = total.latency_us.mean() / 1000.0;
    let errors = total.error_count();
    if options.json {
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
        if errors == 0 {
            println!("errors:      0");
        } else {
            let kinds: Vec<String> = total
                .errors
                .iter()
                .map(|(kind, count)| format!("{kind}: {count}"))
                .collect();
            println!("errors:      {errors} ({})", kinds.join(", "));
        }
    }
    if total.ok == 0 {
        bail!("no heartbeat succeeded");
    }
    Ok(())
}

/// Signs up `subscribers` subscribers and registers `options.devices` devices among them.
async fn register(
    client: &Client,
    base: &str,
    options: &Options,
    subscribers: usize,
) -> anyhow::Result<Vec<DeviceCredentials>> {
    let permits = Arc::new(Semaphore::new(options.register_concurrency.max(1)));
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let mut tasks = JoinSet::new();
    let mut remaining = options.devices;
    for subscriber in 0..subscribers {
        let count = remaining.min(DEVICES_PER_SUBSCRIBER);
        remaining -= count;
        let client = client.clone();
        let base = base.to_owned();
        let permits = permits.clone();
        let credentials = Credentials {
            email: format!("loadgen-{}-{subscriber}@bench.example", &run_id[..12]),
            password: options.password.clone(),
        };
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await?;
            let session = signup(&client, &base, &credentials).await?;
            // One subscriber's devices one after another: the hub checks the plan's limit
            // against the devices already registered.
            let mut devices = Vec::with_capacity(count);
            for device in 0..count {
                let name = format!("loadgen-{subscriber}-{device}");
                devices.push(register_device(&client, &base, &session.token, name).await?);
            }
            anyhow::Ok(devices)
        });
    }
    let mut all = Vec::with_capacity(options.devices);
    while let Some(joined) = tasks.join_next().await {
        all.extend(joined.context("a registration task panicked")??);
    }
    Ok(all)
}

/// Signs up (the hub answers 202 either way) and logs in.
async fn signup(client: &Client, base: &str, credentials: &Credentials) -> anyhow::Result<Session> {
    let response = client
        .post(format!("{base}/v1/signup"))
        .json(credentials)
        .send()
        .await
        .with_context(|| format!("signing up {} at {base}", credentials.email))?;
    expect(response, StatusCode::ACCEPTED, "signing up").await?;
    let response = client
        .post(format!("{base}/v1/login"))
        .json(credentials)
        .send()
        .await
        .with_context(|| format!("logging in {} at {base}", credentials.email))?;
    expect(response, StatusCode::OK, "logging in")
        .await?
        .json()
        .await
        .context("reading the session")
}

async fn register_device(
    client: &Client,
    base: &str,
    session: &str,
    name: String,
) -> anyhow::Result<DeviceCredentials> {
    let response = client
        .post(format!("{base}/v1/devices"))
        .bearer_auth(session)
        .json(&RegisterDevice { name })
        .send()
        .await
        .context("registering a device")?;
    expect(response, StatusCode::CREATED, "registering a device")
        .await?
        .json()
        .await
        .context("reading the device credential")
}

/// The response if it has the wanted status, else an error carrying the hub's answer.
async fn expect(
    response: reqwest::Response,
    wanted: StatusCode,
    doing: &str,
) -> anyhow::Result<reqwest::Response> {
    if response.status() == wanted {
        return Ok(response);
    }
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    bail!("{doing}: the hub answered {status}: {}", body.trim())
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
                None => {
                    tally.ok += 1;
                    let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
                    tally.latency_us.saturating_record(micros.max(1));
                }
                Some(kind) => *tally.errors.entry(kind).or_default() += 1,
            }
        }
        if transport_failed {
            // The hub is gone or refusing connections: do not spin.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    Ok(tally)
}
