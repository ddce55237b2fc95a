//! The `placements` scenario: how fast the hub decides where blobs go.
//!
//! 1. Holders: `holders` devices (five per throwaway subscriber) report storage to lend, and keep
//!    reporting every 20 s so that they stay online.
//! 2. An owner, a subscriber of its own, uploads `blobs` small distinct blobs into staging (not
//!    measured).
//! 3. Load: `concurrency` workers ask for each blob to be placed (`POST /v1/placements`, `copies`
//!    copies). The hub places it before it answers; a placement counts once the answer names
//!    `copies` holders. Every request's latency goes into an HDR histogram.
//!
//! Nothing acknowledges the `store_blob` instructions: the allocations stay pending, which is
//! what placement itself costs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use reqwest::{Client, StatusCode};
use surplus_protocol::{BlobRef, Credentials, PlaceBlobRequest, Placement};
use tokio::task::JoinSet;

use crate::api::{self, Tally};
use crate::reports;

/// The size of each blob placed.
const BLOB_BYTES: usize = 4096;
/// The longest one request may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, clap::Args)]
pub struct Options {
    #[command(flatten)]
    target: api::Target,
    /// Devices lending storage.
    #[arg(long, default_value_t = 60)]
    holders: usize,
    /// Blobs to place.
    #[arg(long, default_value_t = 1000)]
    blobs: usize,
    /// Copies of each blob.
    #[arg(long, default_value_t = 2)]
    copies: u32,
    /// Placement requests in flight at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    if options.holders == 0 || options.blobs == 0 || options.concurrency == 0 {
        bail!("--holders, --blobs and --concurrency must be at least 1");
    }
    let base = options.target.base();
    let client = api::client(options.concurrency, REQUEST_TIMEOUT)?;

    let holders = api::register(
        &client,
        &base,
        &options.target.password,
        options.holders,
        16,
    )
    .await?;
    let tokens: Vec<String> = holders.iter().map(api::device_token).collect();
    report_storage(&client, &base, &tokens).await?;
    let keep_online = tokio::spawn({
        let (client, base, tokens) = (client.clone(), base.clone(), tokens.clone());
        async move {
            loop {
                tokio::time::sleep(Duration::from_secs(20)).await;
                if let Err(error) = report_storage(&client, &base, &tokens).await {
                    eprintln!("surplus-loadgen: a holder's heartbeat failed: {error:#}");
                }
            }
        }
    });

    let owner = Credentials {
        email: format!(
            "loadgen-owner-{}@bench.example",
            uuid::Uuid::new_v4().simple()
        ),
        password: options.target.password.clone(),
    };
    let session = api::signup(&client, &base, &owner).await?;
    let device = api::register_device(&client, &base, &session.token, "owner".into()).await?;
    let token = Arc::<str>::from(api::device_token(&device));
    let hashes = upload_blobs(&client, &base, &token, options.blobs, options.concurrency).await?;
    if !options.target.json {
        println!(
            "{} holders online, {} blobs staged; placing {} copies of each on {} connections",
            holders.len(),
            hashes.len(),
            options.copies,
            options.concurrency
        );
    }

    let hashes = Arc::new(hashes);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = JoinSet::new();
    for _ in 0..options.concurrency.min(hashes.len()) {
        let (client, base, token) = (client.clone(), base.clone(), token.clone());
        let (hashes, next, copies) = (hashes.clone(), next.clone(), options.copies);
        workers.spawn(async move {
            let mut tally = Tally::new()?;
            loop {
                let at = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(hash) = hashes.get(at) else { break };
                let asked = Instant::now();
                match place(&client, &base, &token, hash, copies).await {
                    Ok(()) => tally.success(asked.elapsed()),
                    Err(kind) => tally.failure(kind),
                }
            }
            anyhow::Ok(tally)
        });
    }
    let mut total = Tally::new()?;
    while let Some(joined) = workers.join_next().await {
        total.merge(joined.context("a worker panicked")??)?;
    }
    let seconds = started.elapsed().as_secs_f64();
    keep_online.abort();

    let rate = total.ok as f64 / seconds;
    let (p50, p99, max) = (
        total.ms(0.50),
        total.ms(0.99),
        total.latency_us.max() as f64 / 1000.0,
    );
    if options.target.json {
        let report = serde_json::json!({
            "scenario": "placements",
            "hub": base,
            "holders": holders.len(),
            "blobs": hashes.len(),
            "copies": options.copies,
            "concurrency": options.concurrency,
            "seconds": seconds,
            "placed": total.ok,
            "placements_per_second": rate,
            "p50_ms": p50,
            "p99_ms": p99,
            "max_ms": max,
            "errors": total.error_count(),
            "errors_by_kind": total.errors,
        });
        println!("{report}");
    } else {
        println!("placed:      {} in {seconds:.1} s = {rate:.0} /s", total.ok);
        println!("latency ms:  p50 {p50:.2}  p99 {p99:.2}  max {max:.2}");
        println!("errors:      {}", total.errors_line());
    }
    if total.ok == 0 {
        bail!("no blob was placed");
    }
    Ok(())
}

/// One heartbeat from each holder, lending storage.
async fn report_storage(client: &Client, base: &str, tokens: &[String]) -> anyhow::Result<()> {
    for (index, token) in tokens.iter().enumerate() {
        let report = reports::lending_storage(index);
        let response = client
            .post(format!("{base}/v1/device/heartbeat"))
            .bearer_auth(token)
            .json(&report)
            .send()
            .await
            .context("a holder's heartbeat")?;
        api::expect(response, StatusCode::OK, "a holder's heartbeat").await?;
    }
    Ok(())
}

/// Uploads `count` distinct blobs of `BLOB_BYTES` and returns their hashes.
async fn upload_blobs(
    client: &Client,
    base: &str,
    token: &Arc<str>,
    count: usize,
    concurrency: usize,
) -> anyhow::Result<Vec<String>> {
    let salt = uuid::Uuid::new_v4();
    let mut uploads = JoinSet::new();
    let mut hashes = Vec::with_capacity(count);
    for index in 0..count {
        if uploads.len() >= concurrency {
            hashes.push(uploads.join_next().await.context("an upload")???);
        }
        let mut body = vec![0u8; BLOB_BYTES];
        for (at, chunk) in body.chunks_mut(32).enumerate() {
            let seed = format!("{salt} {index} {at}");
            chunk.copy_from_slice(&blake3::hash(seed.as_bytes()).as_bytes()[..chunk.len()]);
        }
        let hash = blake3::hash(&body).to_hex().to_string();
        let (client, base, token) = (client.clone(), base.to_owned(), token.clone());
        uploads.spawn(async move {
            let response = client
                .put(format!("{base}/v1/blobs/{hash}"))
                .bearer_auth(&*token)
                .body(body)
                .send()
                .await
                .context("uploading a blob")?;
            let stored: BlobRef = api::expect(response, StatusCode::CREATED, "uploading a blob")
                .await?
                .json()
                .await
                .context("reading the upload's answer")?;
            anyhow::Ok(stored.hash)
        });
    }
    while let Some(joined) = uploads.join_next().await {
        hashes.push(joined.context("an upload")??);
    }
    Ok(hashes)
}

/// Asks for one blob's placement; an error names what went wrong (a status, `transport`, or
/// `short` when fewer holders than asked were found).
async fn place(
    client: &Client,
    base: &str,
    token: &str,
    hash: &str,
    copies: u32,
) -> Result<(), String> {
    let request = PlaceBlobRequest {
        hash: hash.to_owned(),
        copies,
        pack: None,
    };
    let response = client
        .post(format!("{base}/v1/placements"))
        .bearer_auth(token)
        .json(&request)
        .send()
        .await
        .map_err(|_| "transport".to_owned())?;
    let status = response.status();
    if !status.is_success() {
        let _ = response.bytes().await;
        return Err(status.as_u16().to_string());
    }
    let placement: Placement = response.json().await.map_err(|_| "transport".to_owned())?;
    if placement.holders.len() < copies as usize {
        return Err("short".to_owned());
    }
    Ok(())
}
