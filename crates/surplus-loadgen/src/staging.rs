//! The `staging` scenario: how fast blobs stream through the hub's staging, both ways.
//!
//! A throwaway subscriber's device uploads `blobs` distinct blobs of `mib` MiB each
//! (`PUT /v1/blobs/HASH`, `concurrency` at a time), then downloads each back
//! (`GET /v1/blobs/HASH`) and checks its hash. Throughput is the bytes over the wall time of each
//! phase, so that a hub on a local folder and one on S3 compare directly.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use reqwest::{Client, StatusCode};
use surplus_protocol::Credentials;
use tokio::task::JoinSet;

use crate::api;

const MIB: usize = 1 << 20;

#[derive(Debug, clap::Args)]
pub struct Options {
    #[command(flatten)]
    target: api::Target,
    /// Blobs to upload and download.
    #[arg(long, default_value_t = 8)]
    blobs: usize,
    /// The size of each blob, in MiB.
    #[arg(long, default_value_t = 16)]
    mib: usize,
    /// Transfers at once.
    #[arg(long, default_value_t = 2)]
    concurrency: usize,
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    if options.blobs == 0 || options.mib == 0 || options.concurrency == 0 {
        bail!("--blobs, --mib and --concurrency must be at least 1");
    }
    let base = options.target.base();
    let client = api::client(options.concurrency, Duration::from_secs(600))?;
    let owner = Credentials {
        email: format!(
            "loadgen-staging-{}@bench.example",
            uuid::Uuid::new_v4().simple()
        ),
        password: options.target.password.clone(),
    };
    let session = api::signup(&client, &base, &owner).await?;
    let device = api::register_device(&client, &base, &session.token, "staging".into()).await?;
    let token = api::device_token(&device);

    let salt = uuid::Uuid::new_v4();
    let blobs: Vec<(String, bytes::Bytes)> = (0..options.blobs)
        .map(|index| {
            let mut body = vec![0u8; options.mib * MIB];
            blake3::Hasher::new()
                .update(format!("{salt} {index}").as_bytes())
                .finalize_xof()
                .fill(&mut body);
            (blake3::hash(&body).to_hex().to_string(), body.into())
        })
        .collect();
    let total_mib = (options.blobs * options.mib) as f64;

    let started = Instant::now();
    let mut transfers = JoinSet::new();
    for (hash, body) in blobs.iter().cloned() {
        if transfers.len() >= options.concurrency {
            transfers.join_next().await.context("an upload")???;
        }
        let (client, base, token) = (client.clone(), base.clone(), token.clone());
        transfers.spawn(async move { upload(&client, &base, &token, &hash, body).await });
    }
    while let Some(joined) = transfers.join_next().await {
        joined.context("an upload")??;
    }
    let upload_seconds = started.elapsed().as_secs_f64();

    let started = Instant::now();
    for (hash, _) in blobs {
        if transfers.len() >= options.concurrency {
            transfers.join_next().await.context("a download")???;
        }
        let (client, base, token) = (client.clone(), base.clone(), token.clone());
        transfers.spawn(async move { download(&client, &base, &token, &hash).await });
    }
    while let Some(joined) = transfers.join_next().await {
        joined.context("a download")??;
    }
    let download_seconds = started.elapsed().as_secs_f64();

    let (up, down) = (total_mib / upload_seconds, total_mib / download_seconds);
    if options.target.json {
        let report = serde_json::json!({
            "scenario": "staging",
            "hub": base,
            "blobs": options.blobs,
            "blob_mib": options.mib,
            "concurrency": options.concurrency,
            "upload_seconds": upload_seconds,
            "download_seconds": download_seconds,
            "upload_mib_per_second": up,
            "download_mib_per_second": down,
        });
        println!("{report}");
    } else {
        println!("upload:      {total_mib:.0} MiB in {upload_seconds:.2} s = {up:.0} MiB/s");
        println!("download:    {total_mib:.0} MiB in {download_seconds:.2} s = {down:.0} MiB/s");
    }
    Ok(())
}

async fn upload(
    client: &Client,
    base: &str,
    token: &str,
    hash: &str,
    body: bytes::Bytes,
) -> anyhow::Result<()> {
    let response = client
        .put(format!("{base}/v1/blobs/{hash}"))
        .bearer_auth(token)
        .body(body)
        .send()
        .await
        .context("uploading a blob")?;
    api::expect(response, StatusCode::CREATED, "uploading a blob").await?;
    Ok(())
}

/// Downloads a blob as it streams, and checks that it is what was uploaded.
async fn download(client: &Client, base: &str, token: &str, hash: &str) -> anyhow::Result<()> {
    let response = client
        .get(format!("{base}/v1/blobs/{hash}"))
        .bearer_auth(token)
        .send()
        .await
        .context("downloading a blob")?;
    let response = api::expect(response, StatusCode::OK, "downloading a blob").await?;
    let mut hasher = blake3::Hasher::new();
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        hasher.update(&chunk.context("downloading a blob")?);
    }
    if hasher.finalize().to_hex().as_str() != hash {
        bail!("the hub sent back another blob than {hash}");
    }
    Ok(())
}
