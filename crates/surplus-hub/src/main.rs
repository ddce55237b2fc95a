//! `surplus-hub`: serve the hub, or act on its database as the operator.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use surplus_hub::config::{self, FileConfig};
use surplus_hub::staging::Staging;
use surplus_hub::store::{ServingClaim, Store};
use surplus_hub::transport::{self, Transport};
use surplus_hub::{Hub, admin, api};
use surplus_protocol::{Plan, SubscriberStatus, UnixMillis};

#[derive(Debug, Parser)]
#[command(
    name = "surplus-hub",
    version,
    about = "The Surplus hub: devices, spare resources, allocations, instructions."
)]
struct Cli {
    /// A TOML config file (default: <config dir>/surplus-hub/hub.toml, if it exists).
    #[arg(long, global = true, env = "SURPLUS_HUB_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API.
    Serve {
        /// Address to listen on (default 127.0.0.1:7420).
        #[arg(long, env = "SURPLUS_HUB_LISTEN")]
        listen: Option<SocketAddr>,
        #[command(flatten)]
        tls: TlsArgs,
        #[command(flatten)]
        data: DataArgs,
        /// Seconds between device heartbeats (default 30).
        #[arg(long, env = "SURPLUS_HUB_HEARTBEAT_INTERVAL")]
        heartbeat_interval: Option<u64>,
        #[command(flatten)]
        durability: DurabilityArgs,
    },
    /// Operator commands on the hub's database.
    Admin {
        #[command(flatten)]
        data: DataArgs,
        /// Print one JSON document instead of text.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Print the OpenAPI document of the API.
    Openapi,
}

#[derive(Debug, clap::Args)]
struct DataArgs {
    /// sqlite://PATH (default: <data dir>/surplus-hub/hub.db) or postgres://...
    #[arg(long, env = "SURPLUS_HUB_DATABASE")]
    database: Option<String>,
    /// Where blobs in transit wait: a folder (default: <data dir>/surplus-hub/staging), or
    /// s3://BUCKET[/PREFIX] on S3-compatible storage (AWS_ENDPOINT_URL, AWS_REGION,
    /// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY).
    #[arg(long, env = "SURPLUS_HUB_STAGING")]
    staging: Option<PathBuf>,
}

/// HTTPS, or why plain HTTP is safe here.
#[derive(Debug, clap::Args)]
struct TlsArgs {
    /// Serve HTTPS with this certificate chain (PEM); SIGHUP reloads it.
    #[arg(long, env = "SURPLUS_HUB_TLS_CERT", value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, env = "SURPLUS_HUB_TLS_KEY", value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// Serve plain HTTP on a non-loopback address: a proxy in front terminates TLS and names
    /// the client in X-Forwarded-For.
    #[arg(long)]
    behind_proxy: bool,
}

/// What keeps backups alive; each is also a key of the config file, which these override.
#[derive(Debug, clap::Args)]
struct DurabilityArgs {
    /// Audit every held shard at least this often while its holder is online (default 7 days).
    #[arg(long, value_name = "SECONDS")]
    audit_interval_seconds: Option<u64>,
    /// Count a holder silent this long lost, and rebuild what it held (default 4 days).
    #[arg(long, value_name = "SECONDS")]
    lost_after_seconds: Option<u64>,
    /// Repair a pack once its spare shards fall to this many (default 14, at most parity - 1).
    #[arg(long, value_name = "SHARDS")]
    repair_threshold: Option<u32>,
    /// Give a holder that gave storage up this long to hand it over (default 3 days).
    #[arg(long, value_name = "SECONDS")]
    handover_deadline_seconds: Option<u64>,
}

impl DurabilityArgs {
    fn apply(&self, settings: &mut surplus_hub::Settings) {
        let seconds = |value: u64| Duration::from_secs(value.max(1));
        if let Some(value) = self.audit_interval_seconds {
            settings.audit_interval = seconds(value);
        }
        if let Some(value) = self.lost_after_seconds {
            settings.lost_after = seconds(value);
        }
        if let Some(value) = self.repair_threshold {
            settings.repair_threshold = value;
        }
        if let Some(value) = self.handover_deadline_seconds {
            settings.handover_deadline = seconds(value);
        }
    }
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// List subscribers.
    Subscribers,
    /// Suspend a subscriber: no new allocations for them.
    Suspend { email: String },
    /// Resume a suspended (or cancelled) subscriber.
    Resume { email: String },
    /// Cancel a subscription: no new allocations, as for a suspension, until resumed.
    Cancel { email: String },
    /// Move a subscriber to another plan (standard or family).
    Plan {
        email: String,
        #[arg(value_parser = parse_plan)]
        plan: Plan,
    },
    /// List every device with its spare resources.
    Devices,
    /// Show the allocation ledger, newest first.
    Ledger {
        /// Only allocations serving, or donated by, this subscriber.
        #[arg(long)]
        subscriber: Option<String>,
        #[arg(long, default_value_t = 1000)]
        limit: u32,
    },
    /// Durability: packs by health, the repair queue, bytes moved for repair, audits and
    /// hand-overs over the last day, and each holder's presence and integrity.
    Health,
    /// Write a consistent copy of the database to FILE while the hub serves (SQLite: VACUUM
    /// INTO; PostgreSQL: pg_dump's custom format). See the README for restoring it.
    BackupDb { file: PathBuf },
    /// Start the service for a subscriber: ask their devices for fresh reports, then allocate.
    Start {
        email: String,
        /// Seconds to wait for devices to answer.
        #[arg(long, default_value_t = 10)]
        wait: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SURPLUS_LOG").unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("info,sqlx=warn,tower_http=warn")
            }),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("surplus-hub: starting the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("surplus-hub: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn database_url(file: &FileConfig, data: &DataArgs) -> String {
    data.database
        .clone()
        .or_else(|| file.database.clone())
        .unwrap_or_else(config::default_database)
}

async fn open(
    file: &FileConfig,
    data: DataArgs,
    settings: surplus_hub::Settings,
    background: bool,
) -> anyhow::Result<(std::sync::Arc<Hub>, Option<ServingClaim>)> {
    let database = database_url(file, &data);
    let staging_dir = data
        .staging
        .or_else(|| file.staging.clone())
        .unwrap_or_else(config::default_staging);
    let store = Store::connect(&database)
        .await
        .with_context(|| format!("opening the database {}", redact_password(&database)))?;
    let staging = Staging::at(&staging_dir).await?;
    Ok(if background {
        // SQLite is served by one process (replicas share PostgreSQL): claimed before any
        // background work starts.
        let serving = store.claim_serving()?;
        (Hub::start(store, staging, settings), serving)
    } else {
        (Hub::without_background(store, staging, settings), None)
    })
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let file = FileConfig::load(cli.config.as_deref())?;
    match cli.command {
        Command::Openapi => {
            println!("{}", surplus_hub::openapi::document());
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve {
            listen,
            tls,
            data,
            heartbeat_interval,
            durability,
        } => {
            let mut settings = file.settings();
            if let Some(seconds) = heartbeat_interval {
                settings.heartbeat_interval = Duration::from_secs(seconds.max(1));
            }
            durability.apply(&mut settings);
            let listen = listen
                .or(file.listen)
                .unwrap_or_else(|| config::DEFAULT_LISTEN.parse().expect("valid default"));
            let transport = Transport::choose(
                listen,
                tls.tls_cert.or_else(|| file.tls_cert.clone()),
                tls.tls_key.or_else(|| file.tls_key.clone()),
                tls.behind_proxy || file.behind_proxy.unwrap_or(false),
            )?;
            let (hub, _serving) = open(&file, data, settings, true).await?;
            let listener = std::net::TcpListener::bind(listen)
                .with_context(|| format!("listening on {listen}"))?;
            tracing::info!(
                address = %listener.local_addr()?,
                scheme = transport.scheme(),
                "hub listening"
            );
            let draining = hub.clone();
            let shutdown = async move {
                shutdown_signal().await;
                // Long polls answer at once, so in-flight requests drain in moments.
                draining.shutdown.cancel();
            };
            transport::serve(listener, api::router(hub.clone()), &transport, shutdown).await?;
            hub.store.close().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Admin {
            data,
            json,
            command,
        } => {
            let database = database_url(&file, &data);
            let (hub, _) = open(&file, data, file.settings(), false).await?;
            let outcome = run_admin(&hub, &database, command, json).await;
            hub.store.close().await;
            match outcome {
                Ok(()) => Ok(ExitCode::SUCCESS),
                Err(error) => {
                    eprintln!("surplus-hub admin: {error}");
                    Ok(ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(1)))
                }
            }
        }
    }
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    tracing::info!("shutting down");
}

fn parse_plan(text: &str) -> Result<Plan, String> {
    Plan::parse(text).ok_or_else(|| format!("{text:?} is not a plan: use standard or family"))
}

/// The URL with any password replaced, for messages: `postgres://user:***@host/db`.
fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

fn print_json(value: &impl serde::Serialize) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(error) => eprintln!("surplus-hub admin: encoding JSON: {error}"),
    }
}

async fn run_admin(
    hub: &Hub,
    database: &str,
    command: AdminCommand,
    json: bool,
) -> Result<(), admin::AdminError> {
    match command {
        AdminCommand::Subscribers => {
            let subscribers = admin::subscribers(hub).await?;
            if json {
                print_json(&subscribers);
            } else {
                println!("{:<32} {:<10} {:<10} SINCE", "EMAIL", "PLAN", "STATUS");
                for s in subscribers {
                    println!(
                        "{:<32} {:<10} {:<10} {}",
                        shown(&s.email),
                        s.plan.as_str(),
                        s.status.as_str(),
                        time(Some(s.created_at))
                    );
                }
            }
        }
        AdminCommand::Suspend { email } => {
            status_change(hub, &email, SubscriberStatus::Suspended, json).await?
        }
        AdminCommand::Cancel { email } => {
            status_change(hub, &email, SubscriberStatus::Cancelled, json).await?
        }
        AdminCommand::Plan { email, plan } => {
            let subscriber = admin::set_plan(hub, &email, plan).await?;
            if json {
                print_json(&subscriber);
            } else {
                println!(
                    "{} is now on the {} plan",
                    shown(&subscriber.email),
                    subscriber.plan.as_str()
                );
            }
        }
        AdminCommand::Resume { email } => {
            status_change(hub, &email, SubscriberStatus::Active, json).await?
        }
        AdminCommand::Devices => {
            let devices = admin::devices(hub).await?;
            if json {
                print_json(&devices);
            } else {
                println!(
                    "{:<36} {:<16} {:<24} {:<8} {:>10} {:>5} {:>6}  LAST HEARTBEAT",
                    "ID", "NAME", "SUBSCRIBER", "ONLINE", "SPARE", "SLOTS", "AVAIL7"
                );
                for d in devices {
                    println!(
                        "{:<36} {:<16} {:<24} {:<8} {:>10} {:>5} {:>5.0}%  {}",
                        d.id,
                        shown(&d.name),
                        shown(&d.subscriber),
                        if d.revoked_at.is_some() {
                            "revoked"
                        } else if d.online {
                            "yes"
                        } else {
                            "no"
                        },
                        size(d.spare_storage_bytes),
                        d.compute_slots,
                        d.availability_7d * 100.0,
                        time(d.last_heartbeat)
                    );
                }
            }
        }
        AdminCommand::Ledger { subscriber, limit } => {
            let ledger = admin::ledger(hub, subscriber.as_deref(), i64::from(limit)).await?;
            if json {
                print_json(&ledger);
            } else {
                println!(
                    "{:<20} {:<24} {:<16} {:<8} {:>10} {:<10} PURPOSE",
                    "CREATED", "FOR", "ON DEVICE", "KIND", "AMOUNT", "STATE"
                );
                for a in ledger {
                    let amount = if a.kind == surplus_protocol::ResourceKind::Storage {
                        size(a.amount)
                    } else {
                        format!("{:.3} core-s", a.amount as f64 / 1000.0)
                    };
                    println!(
                        "{:<20} {:<24} {:<16} {:<8} {:>10} {:<10} {}",
                        time(Some(a.created_at)),
                        shown(&a.subscriber),
                        shown(&a.device_name),
                        a.kind.as_str(),
                        amount,
                        a.state.as_str(),
                        a.purpose
                    );
                }
            }
        }
        AdminCommand::BackupDb { file } => {
            surplus_hub::backup_db::backup(&hub.store, database, &file).await?;
            println!("wrote a copy of the database to {}", file.display());
        }
        AdminCommand::Health => {
            let report = surplus_hub::health::report(hub, surplus_hub::now_ms()).await?;
            if json {
                print_json(&report);
                return Ok(());
            }
            let packs = report.packs;
            println!(
                "packs: {} protected, {} uploading, {} repairing, {} at risk, {} lost",
                packs.protected, packs.uploading, packs.repairing, packs.at_risk, packs.lost
            );
            println!("repair queue: {} pack(s)", report.repair_queue);
            println!(
                "last 24 h: {} repaired, {} audited, {} handed over",
                size(report.repair_bytes_24h),
                size(report.audit_bytes_24h),
                size(report.handover_bytes_24h)
            );
            println!();
            println!(
                "{:<36} {:<16} {:<24} {:<9} {:>6} {:>9}",
                "DEVICE", "NAME", "SUBSCRIBER", "STANDING", "AVAIL7", "INTEGRITY"
            );
            for d in report.devices {
                println!(
                    "{:<36} {:<16} {:<24} {:<9} {:>5.0}% {:>4}/{:<4}",
                    d.id,
                    shown(&d.name),
                    shown(&d.subscriber),
                    d.standing,
                    d.presence_7d * 100.0,
                    d.integrity.passed,
                    d.integrity.passed + d.integrity.failed
                );
            }
        }
        AdminCommand::Start { email, wait } => {
            let started = admin::start(hub, &email, Duration::from_secs(wait)).await?;
            if json {
                print_json(&started);
            } else {
                println!("service started for {}", started.subscriber);
                for d in &started.devices {
                    let reached = if d.reached {
                        "reached"
                    } else {
                        "not reached (offline: the request stays queued)"
                    };
                    let storage = d
                        .storage_reason
                        .clone()
                        .unwrap_or_else(|| size(d.spare_storage_bytes));
                    let compute = d
                        .compute_reason
                        .clone()
                        .unwrap_or_else(|| format!("{} slot(s)", d.compute_slots));
                    println!(
                        "  {} {}: {reached}; spare storage {storage}; compute {compute}",
                        d.id, d.name
                    );
                }
                if started.allocations.is_empty() {
                    println!("  nothing waiting for storage: no allocations made");
                }
                for a in &started.allocations {
                    println!(
                        "  allocated {} on {} for {} (instruction {})",
                        size(a.bytes),
                        a.device_id,
                        a.purpose,
                        a.instruction_id
                    );
                }
            }
        }
    }
    Ok(())
}

async fn status_change(
    hub: &Hub,
    email: &str,
    status: SubscriberStatus,
    json: bool,
) -> Result<(), admin::AdminError> {
    let subscriber = admin::set_status(hub, email, status).await?;
    if json {
        print_json(&subscriber);
    } else {
        println!(
            "{} is now {}",
            shown(&subscriber.email),
            subscriber.status.as_str()
        );
    }
    Ok(())
}

fn time(at: Option<UnixMillis>) -> String {
    match at.and_then(|ms| u64::try_from(ms).ok()) {
        Some(ms) => {
            humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_millis(ms))
                .to_string()
        }
        None => "never".to_owned(),
    }
}

fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Text from subscribers (emails, device names) as the operator's terminal may safely show it:
/// control and invisible characters escaped, never sent as they are.
fn shown(text: &str) -> String {
    if surplus_protocol::unsafe_char(text).is_none() {
        return text.to_owned();
    }
    text.chars()
        .map(|c| {
            if surplus_protocol::unsafe_char(c.encode_utf8(&mut [0; 4])).is_some() {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::shown;

    #[test]
    fn the_operators_terminal_sees_escapes_not_control_characters() {
        assert_eq!(shown("ada@example.org"), "ada@example.org");
        assert_eq!(shown("a\u{1b}[2Jb@x.org"), "a\\u{1b}[2Jb@x.org");
        assert_eq!(shown("pc\u{202e}gpj"), "pc\\u{202e}gpj");
    }
}
