//! What every scenario needs from the hub's public API: an HTTP client, throwaway subscribers and
//! their devices, and a tally of answers and latencies.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use reqwest::{Client, StatusCode};
use surplus_protocol::{Credentials, DeviceCredentials, RegisterDevice, Session};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Devices per subscriber: the standard plan's limit.
pub const DEVICES_PER_SUBSCRIBER: usize = 5;
/// The longest registration as a whole may take.
pub const REGISTRATION_DEADLINE: Duration = Duration::from_secs(300);
/// The most latency the histogram tracks: one minute, in microseconds.
const HISTOGRAM_MAX_US: u64 = 60_000_000;

/// Where every scenario sends its load, and how it reports.
#[derive(Debug, clap::Args)]
pub struct Target {
    /// The hub's base URL, e.g. http://127.0.0.1:7420.
    #[arg(long)]
    pub hub: String,
    /// The password of the throwaway subscribers.
    #[arg(long, default_value = "loadgen-password")]
    pub password: String,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

impl Target {
    /// The hub's base URL without a trailing slash.
    pub fn base(&self) -> String {
        self.hub.trim_end_matches('/').to_owned()
    }
}

/// A client with `connections` keep-alive connections, each request failing after `timeout`.
pub fn client(connections: usize, timeout: Duration) -> anyhow::Result<Client> {
    Client::builder()
        .http1_only()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(connections)
        .pool_idle_timeout(Duration::from_secs(90))
        .connect_timeout(Duration::from_secs(5))
        .timeout(timeout)
        .build()
        .context("building the HTTP client")
}

/// What one worker measured.
pub struct Tally {
    pub latency_us: Histogram<u64>,
    pub ok: u64,
    /// Failures by kind: an HTTP status code, or `transport` for requests that got no answer.
    pub errors: BTreeMap<String, u64>,
}

impl Tally {
    pub fn new() -> anyhow::Result<Self> {
        Ok(Tally {
            latency_us: Histogram::new_with_bounds(1, HISTOGRAM_MAX_US, 3)
                .context("creating the latency histogram")?,
            ok: 0,
            errors: BTreeMap::new(),
        })
    }

    pub fn merge(&mut self, other: Tally) -> anyhow::Result<()> {
        self.latency_us
            .add(&other.latency_us)
            .context("merging latency histograms")?;
        self.ok += other.ok;
        for (kind, count) in other.errors {
            *self.errors.entry(kind).or_default() += count;
        }
        Ok(())
    }

    /// Records one success that took `latency`.
    pub fn success(&mut self, latency: Duration) {
        self.ok += 1;
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latency_us.saturating_record(micros.max(1));
    }

    pub fn failure(&mut self, kind: String) {
        *self.errors.entry(kind).or_default() += 1;
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// The latency at `quantile`, in milliseconds.
    pub fn ms(&self, quantile: f64) -> f64 {
        self.latency_us.value_at_quantile(quantile) as f64 / 1000.0
    }

    /// The errors as one line: "0", or "3 (503: 2, transport: 1)".
    pub fn errors_line(&self) -> String {
        let errors = self.error_count();
        if errors == 0 {
            return "0".to_owned();
        }
        let kinds: Vec<String> = self
            .errors
            .iter()
            .map(|(kind, count)| format!("{kind}: {count}"))
            .collect();
        format!("{errors} ({})", kinds.join(", "))
    }
}

/// Signs up enough throwaway subscribers (`DEVICES_PER_SUBSCRIBER` devices each) to register
/// `devices` devices, `concurrency` subscribers at a time, and returns the devices' credentials.
pub async fn register(
    client: &Client,
    base: &str,
    password: &str,
    devices: usize,
    concurrency: usize,
) -> anyhow::Result<Vec<DeviceCredentials>> {
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let mut tasks = JoinSet::new();
    let mut remaining = devices;
    for subscriber in 0..devices.div_ceil(DEVICES_PER_SUBSCRIBER) {
        let count = remaining.min(DEVICES_PER_SUBSCRIBER);
        remaining -= count;
        let client = client.clone();
        let base = base.to_owned();
        let permits = permits.clone();
        let credentials = Credentials {
            email: format!("loadgen-{}-{subscriber}@bench.example", &run_id[..12]),
            password: password.to_owned(),
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
    let mut all = Vec::with_capacity(devices);
    while let Some(joined) = tasks.join_next().await {
        all.extend(joined.context("a registration task panicked")??);
    }
    Ok(all)
}

/// Signs up (the hub answers 202 either way) and logs in.
pub async fn signup(
    client: &Client,
    base: &str,
    credentials: &Credentials,
) -> anyhow::Result<Session> {
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

pub async fn register_device(
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

/// The bearer token of a device.
pub fn device_token(device: &DeviceCredentials) -> String {
    surplus_protocol::device_token(device.device_id, &device.secret)
}

/// The response if it has the wanted status, else an error carrying the hub's answer.
pub async fn expect(
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
