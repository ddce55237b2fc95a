//! `surplus`: the subscriber's command line and the headless agent.
//!
//! A thin shell over `surplus-agent`: each command parses its arguments, calls the agent core,
//! and prints the outcome for a person (or as JSON with `--json`). No business logic lives here.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::{Args, Parser, Subcommand};
use surplus_agent::backup::HubStore;
use surplus_agent::client::{HubClient, HubTrust};
use surplus_agent::control::Control;
use surplus_agent::credentials::{CredentialStore, DeviceCredential, SessionCredential};
use surplus_agent::passphrase::Request;
use surplus_agent::probe::{OverrideProbe, SystemProbe};
use surplus_agent::settings::{self, Settings, Size, format_size, format_window};
use surplus_agent::worker::{AgentState, Worker, WorkerOptions};
use surplus_backup::repo::Repository;
use surplus_protocol::{Credentials, PauseState, UnixMillis};

mod compute;
mod progress;

#[derive(Debug, Parser)]
#[command(
    name = "surplus",
    version,
    about = "Donate spare disk and idle CPU to Surplus, and use what it gives back."
)]
struct Cli {
    /// The hub's URL (remembered after signup or login).
    #[arg(long, global = true, env = "SURPLUS_HUB")]
    hub: Option<String>,
    /// Where this agent keeps its settings, vault and state (default: ~/.local/share/surplus).
    #[arg(long, global = true, env = "SURPLUS_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Trust this private CA (PEM) for the hub's certificate (remembered after signup or login).
    #[arg(long, global = true, value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// Accept a plain http:// hub that is not on this machine: passwords and device secrets
    /// then cross the network readable (remembered after signup or login).
    #[arg(long, global = true)]
    insecure_http: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create an account (the password comes from SURPLUS_PASSWORD or a prompt) and log in.
    Signup {
        #[arg(long)]
        email: String,
    },
    /// Log in to an existing account.
    Login {
        #[arg(long)]
        email: String,
    },
    /// Log out: end this computer's session at the hub and forget it here (the device keeps its
    /// own credential). With --everywhere, every session of your account ends.
    Logout {
        #[arg(long)]
        everywhere: bool,
    },
    /// Register this device, list your devices, or revoke one.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Opt in or out of donating storage and compute.
    Consent {
        #[arg(long, value_parser = on_off)]
        storage: Option<bool>,
        #[arg(long, value_parser = on_off)]
        compute: Option<bool>,
    },
    /// Set how much disk the vault may use, the free space it never crosses, and where it lives.
    Quota {
        /// The most the vault may hold, e.g. 20GiB.
        #[arg(long, value_parser = settings::parse_size)]
        storage: Option<u64>,
        /// Free space the vault never pushes the disk below, e.g. 10GiB.
        #[arg(long, value_parser = settings::parse_size)]
        floor: Option<u64>,
        /// The folder for the vault (a hidden folder is created inside it).
        #[arg(long)]
        path: Option<PathBuf>,
    },
    /// Set when donated compute may run.
    Limits(LimitsArgs),
    /// Pause donation, for a duration (e.g. 1h, 30m) or until `surplus resume`.
    Pause {
        #[arg(value_parser = settings::parse_duration)]
        duration: Option<Duration>,
    },
    /// Resume donation.
    Resume,
    /// Show this device's settings, connection and what it donates.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Check what this computer needs to do its part, and say what is wrong: the hub and its
    /// certificate, the clock, credentials and keyring, the vault, the agent, the last backup.
    /// Exits 1 when something does not work.
    Doctor {
        #[arg(long)]
        json: bool,
    },
    /// Show the allocations serving you and those of your devices' resources.
    Ledger {
        #[arg(long)]
        json: bool,
    },
    /// Keep a file, as it is and unencrypted, on other devices' vaults: a tool for tests and
    /// diagnostics, left out of the help. Back up with `surplus backup`, which encrypts.
    #[command(subcommand, hide = true)]
    Blob(BlobCommand),
    /// Choose the folders to back up, or back them up now.
    #[command(subcommand)]
    Backup(BackupCommand),
    /// Run WebAssembly jobs on other subscribers' idle machines.
    #[command(subcommand)]
    Compute(compute::ComputeCommand),
    /// List the snapshots: when, what, and whether every shard is on its holders.
    Snapshots {
        #[arg(long)]
        json: bool,
    },
    /// List what a snapshot (or `latest`) holds at PATH (<folder name>/sub/dir), or its folders.
    Ls {
        snapshot: String,
        path: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Restore a snapshot (or `latest`) under DIR, as DIR/<folder name>/...
    Restore {
        snapshot: String,
        /// Only this path of the snapshot, as <folder name>/sub/path.
        #[arg(long)]
        path: Option<PathBuf>,
        #[arg(long)]
        target: PathBuf,
    },
    /// Forget snapshots beyond what the --keep rules keep, and let go of what only they needed.
    /// The hub keeps what was forgotten for a grace period (30 days unless its operator says
    /// otherwise): `surplus unforget` brings it back until then.
    Forget {
        #[arg(long, default_value_t = 0)]
        keep_last: usize,
        #[arg(long, default_value_t = 0)]
        keep_daily: usize,
        #[arg(long, default_value_t = 0)]
        keep_weekly: usize,
        #[arg(long, default_value_t = 0)]
        keep_monthly: usize,
    },
    /// List the snapshots forgotten that the hub still keeps, and when they go for good.
    Forgotten {
        #[arg(long)]
        json: bool,
    },
    /// Bring back every snapshot forgotten within the grace period, with what it needs.
    Unforget,
    /// Challenge every shard of your backups at its holder, and say which failed.
    Verify {
        /// How long to wait for holders to answer (offline holders answer when back).
        #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
        wait: Duration,
        #[arg(long)]
        json: bool,
    },
    /// Run the agent in the foreground: heartbeats and the hub's instructions.
    Agent,
    /// Run one compute task, sent by the agent on standard input, in this process of its own.
    #[command(hide = true)]
    RunTask {
        /// The agent that started this process: the task ends if the agent is gone.
        #[arg(long)]
        parent: Option<u32>,
    },
    /// Stop donating for good: hand everything this device holds for others over to other
    /// holders (nothing is deleted before its new copy is confirmed), then deregister the device.
    /// Exits 0 once nothing of anyone else's is left on it.
    Leave {
        /// How long to wait for the hand-over; what is left then stays, and leaving again
        /// carries on.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        wait: Duration,
    },
}

#[derive(Debug, Subcommand)]
enum BackupCommand {
    /// Back this folder up from now on.
    Add { path: PathBuf },
    /// Stop backing this folder up (its snapshots stay).
    Remove { path: PathBuf },
    /// The folders backed up.
    List,
    /// Back the folders up now: encrypted here, erasure-coded, stored on other devices.
    Now {
        #[arg(long)]
        json: bool,
    },
    /// Change the recovery passphrase that locks the copy of your backup key kept at the hub
    /// (the new one from SURPLUS_NEW_PASSPHRASE, or typed at a prompt).
    Passphrase,
    /// Show or change how backups are spread: household mode and the erasure coding.
    Settings {
        /// Let your own other devices hold your shards (on) or only other subscribers' (off).
        #[arg(long, value_parser = on_off)]
        household: Option<bool>,
        /// `auto` (chosen from the holders there are), or DATA+PARITY such as 2+2: any DATA of
        /// the DATA+PARITY shards of a pack rebuild it.
        #[arg(long, value_parser = parse_coding)]
        coding: Option<CodingChoice>,
        #[arg(long)]
        json: bool,
    },
}

/// The coding asked for: the automatic one, or one chosen by hand.
#[derive(Debug, Clone, Copy)]
struct CodingChoice(Option<surplus_protocol::Coding>);

/// `auto`, or `DATA+PARITY`.
fn parse_coding(text: &str) -> Result<CodingChoice, String> {
    if text == "auto" {
        return Ok(CodingChoice(None));
    }
    let parsed = text
        .split_once('+')
        .and_then(|(data, parity)| Some((data.trim().parse().ok()?, parity.trim().parse().ok()?)));
    let Some((data, parity)) = parsed else {
        return Err(format!(
            "{text:?} is neither auto nor DATA+PARITY (such as 2+2)"
        ));
    };
    let coding = surplus_protocol::Coding { data, parity };
    match coding.problem() {
        Some(problem) => Err(format!("{text}: {problem}")),
        None => Ok(CodingChoice(Some(coding))),
    }
}

#[derive(Debug, Subcommand)]
enum DeviceCommand {
    /// Register this machine as a device of the logged-in subscriber.
    Register {
        #[arg(long)]
        name: String,
        /// Register again even if this data directory already has a device.
        #[arg(long)]
        force: bool,
    },
    /// List your devices.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a device: its credential stops working at once.
    Revoke { id: uuid::Uuid },
}

#[derive(Debug, Subcommand)]
enum BlobCommand {
    /// Upload a file and ask the hub to keep it on COPIES other devices.
    Put {
        file: PathBuf,
        #[arg(long, default_value_t = 1)]
        copies: u32,
        #[arg(long)]
        json: bool,
    },
    /// Get a blob back into a file (its holders send it to the hub if the hub has no copy).
    Get {
        hash: String,
        #[arg(long)]
        out: PathBuf,
        /// Seconds to wait for a holder to send it.
        #[arg(long, default_value_t = 120)]
        wait: u64,
    },
    /// Where a blob is kept.
    Status {
        hash: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
struct LimitsArgs {
    /// The share of cores donated work may use (0-100, a trailing % accepted).
    #[arg(long, value_parser = settings::parse_percent)]
    cores: Option<u8>,
    /// Minutes without input before compute starts.
    #[arg(long)]
    idle_minutes: Option<u32>,
    /// Stop when other programs use more than this share of the CPU (0-100).
    #[arg(long, value_parser = settings::parse_percent)]
    busy_cpu: Option<u8>,
    /// Whether compute may run on battery.
    #[arg(long, value_parser = on_off)]
    on_battery: Option<bool>,
    /// A daily window in local time, HH:MM-HH:MM, or `none`.
    #[arg(long)]
    window: Option<String>,
    /// The most bytes per second to move, e.g. 5MiB/s, or `none`.
    #[arg(long)]
    bandwidth: Option<String>,
}

fn on_off(text: &str) -> Result<bool, String> {
    match text.to_ascii_lowercase().as_str() {
        "on" | "yes" | "true" => Ok(true),
        "off" | "no" | "false" => Ok(false),
        _ => Err(format!("{text:?} is neither on nor off")),
    }
}

fn main() -> ExitCode {
    quiet_on_broken_pipe();
    let cli = Cli::parse();
    // A task's own process: nothing of the CLI's set-up, no logging, no data folder.
    #[cfg(unix)]
    if let Command::RunTask { .. } = cli.command {
        return surplus_agent::compute::serve_task();
    }
    let default_level = if matches!(cli.command, Command::Agent) {
        "info"
    } else {
        "warn"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SURPLUS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("surplus: starting the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("surplus: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// This machine's side: the data directory, its settings and credentials.
struct Local {
    data_dir: PathBuf,
    hub: Option<String>,
    /// What --ca-file and --insecure-http say, when given.
    trust: Option<HubTrust>,
}

impl Local {
    fn settings(&self) -> anyhow::Result<Settings> {
        Ok(Settings::load(&self.data_dir)?)
    }

    fn save(&self, settings: &Settings) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.data_dir)
            .with_context(|| format!("creating {}", self.data_dir.display()))?;
        Ok(settings.save(&self.data_dir)?)
    }

    fn credentials(&self) -> anyhow::Result<CredentialStore> {
        std::fs::create_dir_all(&self.data_dir)
            .with_context(|| format!("creating {}", self.data_dir.display()))?;
        Ok(CredentialStore::open(&self.data_dir)?)
    }

    fn hub_url(&self) -> anyhow::Result<String> {
        match &self.hub {
            Some(url) => Ok(url.clone()),
            None => self
                .settings()?
                .hub_url
                .ok_or_else(|| anyhow!("no hub set: pass --hub URL (or set SURPLUS_HUB)")),
        }
    }

    fn client(&self) -> anyhow::Result<HubClient> {
        Ok(HubClient::new(&self.hub_url()?, &self.control().trust()?)?)
    }

    fn session(&self) -> anyhow::Result<SessionCredential> {
        self.credentials()?
            .session()?
            .ok_or_else(|| anyhow!("not logged in: run `surplus login --email EMAIL` first"))
    }

    /// The device credential if this machine is registered, else the session: for requests
    /// either may make.
    fn any_token(&self) -> anyhow::Result<String> {
        let credentials = self.credentials()?;
        if let Some(device) = credentials.device()? {
            return Ok(device.bearer_token());
        }
        Ok(self.session()?.token)
    }

    fn control(&self) -> Control {
        Control::new(&self.data_dir)
            .with_hub(self.hub.clone())
            .with_trust(self.trust.clone())
            .with_passphrase(passphrase)
    }

    fn update(&self, change: impl FnOnce(&mut Settings)) -> anyhow::Result<Settings> {
        let mut settings = self.settings()?;
        change(&mut settings);
        settings.validate()?;
        self.save(&settings)?;
        Ok(settings)
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let data_dir = cli
        .data_dir
        .or_else(settings::default_data_dir)
        .ok_or_else(|| anyhow!("no data directory: pass --data-dir DIR"))?;
    // The path is remembered, and the agent may run from another folder: make it absolute.
    let ca_file = cli
        .ca_file
        .map(|path| std::path::absolute(&path).unwrap_or(path));
    let trust = (ca_file.is_some() || cli.insecure_http).then_some(HubTrust {
        ca_file,
        insecure_http: cli.insecure_http,
    });
    let context = Local {
        data_dir,
        hub: cli.hub,
        trust,
    };
    match cli.command {
        Command::Signup { email } => account(&context, email, true).await,
        Command::Login { email } => account(&context, email, false).await,
        Command::Logout { everywhere } => {
            context.control().logout(everywhere).await?;
            println!("logged out{}", if everywhere { " everywhere" } else { "" });
            Ok(())
        }
        Command::Device(command) => device(&context, command).await,
        Command::Consent { storage, compute } => {
            if storage.is_none() && compute.is_none() {
                bail!("say what to change: --storage on|off and/or --compute on|off");
            }
            let settings = context.update(|s| {
                if let Some(storage) = storage {
                    s.consent.storage = storage;
                }
                if let Some(compute) = compute {
                    s.consent.compute = compute;
                }
            })?;
            println!("storage donation: {}", on(settings.consent.storage));
            println!("compute donation: {}", on(settings.consent.compute));
            if storage == Some(false) {
                println!(
                    "the hub is told: what this vault holds for others moves elsewhere, then it is deleted here"
                );
            }
            Ok(())
        }
        Command::Quota {
            storage,
            floor,
            path,
        } => {
            if storage.is_none() && floor.is_none() && path.is_none() {
                bail!("say what to change: --storage SIZE, --floor SIZE and/or --path DIR");
            }
            let path = path.map(|p| std::path::absolute(&p).unwrap_or(p));
            if let Some(path) = &path {
                let current = context.settings()?.vault_dir(&context.data_dir);
                let held = surplus_agent::vault::held_bytes(&current)?;
                if held > 0 && current != path.join(settings::VAULT_DIR_NAME) {
                    bail!(
                        "the vault in {} holds {} for others: withdraw storage consent (`surplus consent --storage off`), \
                         wait until it is empty, then move it",
                        current.display(),
                        Size(held)
                    );
                }
            }
            let settings = context.update(|s| {
                if storage.is_some() {
                    s.storage.quota_bytes = storage;
                }
                if floor.is_some() {
                    s.storage.floor_bytes = floor;
                }
                if let Some(path) = path {
                    s.storage.vault_path = Some(path.join(settings::VAULT_DIR_NAME));
                }
            })?;
            let vault_dir = settings.vault_dir(&context.data_dir);
            let disk = surplus_agent::probe::disk_space(&vault_dir)?;
            println!("vault: {}", vault_dir.display());
            println!("quota: {}", Size(settings.effective_quota(disk)));
            println!(
                "floor: {} (the disk has {} free)",
                Size(settings.effective_floor(disk)),
                Size(disk.free_bytes)
            );
            Ok(())
        }
        Command::Limits(args) => limits(&context, args),
        Command::Pause { duration } => {
            let pause = match duration {
                Some(duration) => PauseState::Until {
                    until: surplus_agent::worker::now_ms()
                        + i64::try_from(duration.as_millis()).unwrap_or(i64::MAX / 2),
                },
                None => PauseState::Indefinitely,
            };
            context.update(|s| s.pause = pause)?;
            println!("{}", describe_pause(pause));
            Ok(())
        }
        Command::Resume => {
            context.update(|s| s.pause = PauseState::Running)?;
            println!("donation resumed");
            Ok(())
        }
        Command::Status { json } => status(&context, json).await,
        Command::Doctor { json } => doctor(&context, json).await,
        Command::Ledger { json } => {
            let ledger = context
                .client()?
                .allocations(&context.session()?.token)
                .await?;
            if json {
                return print_json(&ledger);
            }
            println!(
                "{:<20} {:<24} {:<16} {:<8} {:>10} {:<10} PURPOSE",
                "CREATED", "FOR", "ON DEVICE", "KIND", "AMOUNT", "STATE"
            );
            for a in ledger {
                println!(
                    "{:<20} {:<24} {:<16} {:<8} {:>10} {:<10} {}",
                    time(Some(a.created_at)),
                    a.subscriber,
                    a.device_name,
                    a.kind.as_str(),
                    match a.kind {
                        surplus_protocol::ResourceKind::Storage => format_size(a.amount),
                        surplus_protocol::ResourceKind::Compute => {
                            format!("{:.3} core-s", a.amount as f64 / 1000.0)
                        }
                    },
                    a.state.as_str(),
                    a.purpose
                );
            }
            Ok(())
        }
        Command::Blob(command) => blob(&context, command).await,
        Command::Backup(command) => backup(&context, command).await,
        Command::Compute(command) => compute::compute(&context, command).await,
        Command::Snapshots { json } => snapshots(&context, json).await,
        Command::Ls {
            snapshot,
            path,
            json,
        } => ls(&context, &snapshot, path, json).await,
        Command::Restore {
            snapshot,
            path,
            target,
        } => restore(&context, &snapshot, path, &target).await,
        Command::Forget {
            keep_last,
            keep_daily,
            keep_weekly,
            keep_monthly,
        } => {
            let retention = surplus_backup::forget::Retention {
                last: keep_last,
                daily: keep_daily,
                weekly: keep_weekly,
                monthly: keep_monthly,
            };
            if retention.keeps_nothing() {
                bail!(
                    "say what to keep: --keep-last, --keep-daily, --keep-weekly and/or --keep-monthly"
                );
            }
            let offset = surplus_agent::worker::utc_offset_minutes();
            let (forgotten, packs) = context.control().forget(retention, offset).await?;
            for id in &forgotten {
                println!("forgot snapshot {id}");
            }
            println!(
                "{} snapshot(s) forgotten; {packs} pack(s) no longer needed, let go",
                forgotten.len()
            );
            if !forgotten.is_empty() || packs > 0 {
                let kept = context.control().forgotten().await?;
                println!(
                    "The hub keeps them for {}, until {}: `surplus unforget` brings them back.",
                    humantime::format_duration(Duration::from_secs(kept.grace_seconds)),
                    when(surplus_agent::worker::now_ms().saturating_add(
                        i64::try_from(kept.grace_seconds.saturating_mul(1000)).unwrap_or(i64::MAX)
                    )),
                );
            }
            Ok(())
        }
        Command::Forgotten { json } => {
            let kept = context.control().forgotten().await?;
            if json {
                return print_json(&kept);
            }
            let snapshots: Vec<_> = kept
                .objects
                .iter()
                .filter(|o| o.kind == "snapshot")
                .collect();
            if snapshots.is_empty() && kept.shards == 0 {
                println!("nothing forgotten is kept");
                return Ok(());
            }
            println!("{:<18} {:<21} GONE FOR GOOD", "SNAPSHOT", "FORGOTTEN");
            for object in &snapshots {
                println!(
                    "{:<18} {:<21} {}",
                    object.name,
                    when(object.forgotten_at),
                    when(object.purged_at)
                );
            }
            if let Some(from) = kept.shards_purged_from {
                println!(
                    "{} shard(s) ({}) still held, deleted from {}",
                    kept.shards,
                    settings::format_size(kept.shard_bytes),
                    when(from)
                );
            }
            println!("`surplus unforget` brings them all back");
            Ok(())
        }
        Command::Unforget => {
            let back = context.control().unforget().await?;
            println!(
                "{} snapshot(s) and {} shard(s) brought back",
                back.snapshots, back.shards
            );
            Ok(())
        }
        Command::Verify { wait, json } => verify(&context, wait, json).await,
        Command::Agent => agent(&context).await,
        // Served before anything else in `main` where tasks run in processes of their own.
        Command::RunTask { .. } => {
            anyhow::bail!("tasks run in processes of their own on Unix only")
        }
        Command::Leave { wait } => leave(&context, wait).await,
    }
}

async fn leave(context: &Local, wait: Duration) -> anyhow::Result<()> {
    let probe = Box::new(OverrideProbe::from_env(SystemProbe::new()));
    let mut last = None;
    let left = context
        .control()
        .leave(wait, probe, |holdings| {
            let line = match &holdings.handover {
                Some(handover) => format!(
                    "handing over {}: {}% ({} left in {} blob(s))",
                    settings::format_size(handover.remaining_bytes + handover.moved_bytes),
                    handover.percent(),
                    settings::format_size(handover.remaining_bytes),
                    handover.remaining_blobs
                ),
                None if holdings.held_blobs > 0 => format!(
                    "{} in {} blob(s) to hand over",
                    settings::format_size(holdings.held_bytes),
                    holdings.held_blobs
                ),
                None => "nothing of anyone else's is left here".to_owned(),
            };
            if last.as_ref() != Some(&line) {
                println!("{line}");
                last = Some(line);
            }
        })
        .await?;
    println!("this device left: it donates nothing and is no longer registered");
    if left.leftover_bytes > 0 {
        println!(
            "{} in {} belongs to nobody now: delete the folder when you like",
            settings::format_size(left.leftover_bytes),
            left.vault_dir.display()
        );
    }
    Ok(())
}

fn on(value: bool) -> &'static str {
    if value { "on" } else { "off" }
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A time for a listing: RFC 3339 to the second.
fn when(at: UnixMillis) -> String {
    time(Some(at))
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

fn describe_pause(pause: PauseState) -> String {
    match pause {
        PauseState::Running => "donating (not paused)".to_owned(),
        PauseState::Indefinitely => "paused until you run `surplus resume`".to_owned(),
        PauseState::Until { until } => format!("paused until {}", time(Some(until))),
    }
}

/// The password from `SURPLUS_PASSWORD`, or typed at a prompt (twice when choosing one).
fn password(confirm: bool) -> anyhow::Result<String> {
    if let Ok(password) = std::env::var("SURPLUS_PASSWORD") {
        return Ok(password);
    }
    if !std::io::stdin().is_terminal() {
        bail!("no password: set SURPLUS_PASSWORD or run in a terminal to be asked");
    }
    let password = rpassword::prompt_password("Password: ")?;
    if confirm && rpassword::prompt_password("Password again: ")? != password {
        bail!("the passwords differ");
    }
    Ok(password)
}

async fn account(context: &Local, email: String, signup: bool) -> anyhow::Result<()> {
    let client = context.client()?;
    let credentials = Credentials {
        email,
        password: password(signup)?,
    };
    let session = if signup {
        client.signup(&credentials).await?
    } else {
        client.login(&credentials).await?
    };
    context.credentials()?.set_session(&SessionCredential {
        token: session.token.clone(),
        email: session.subscriber.email.clone(),
    })?;
    let hub = client.base().to_owned();
    let trust = context.control().trust()?;
    context.update(|s| {
        s.hub_url = Some(hub);
        s.hub_trust = trust;
    })?;
    let verb = if signup {
        "signed up and logged in"
    } else {
        "logged in"
    };
    println!(
        "{verb} as {} ({} plan) at {}",
        session.subscriber.email,
        session.subscriber.plan.as_str(),
        client.base()
    );
    Ok(())
}

async fn device(context: &Local, command: DeviceCommand) -> anyhow::Result<()> {
    let client = context.client()?;
    let session = context.session()?;
    match command {
        DeviceCommand::Register { name, force } => {
            let credentials = context.credentials()?;
            if let Some(existing) = credentials.device()?
                && !force
            {
                bail!(
                    "this data directory is already registered as device {}; pass --force to register it again",
                    existing.device_id
                );
            }
            let registered = client.register_device(&session.token, &name).await?;
            credentials.set_device(&DeviceCredential {
                device_id: registered.device_id,
                secret: registered.secret,
            })?;
            context.update(|s| s.device_name = Some(name.clone()))?;
            println!("registered {name} as device {}", registered.device_id);
            println!("its credential is kept in the {}", credentials.backend());
            Ok(())
        }
        DeviceCommand::List { json } => {
            let devices = client.devices(&session.token).await?;
            if json {
                return print_json(&devices);
            }
            println!(
                "{:<36} {:<16} {:<8} {:>10} {:>5}  LAST HEARTBEAT",
                "ID", "NAME", "ONLINE", "SPARE", "SLOTS"
            );
            for d in devices {
                let online = if d.revoked_at.is_some() {
                    "revoked"
                } else if d.online {
                    "yes"
                } else {
                    "no"
                };
                println!(
                    "{:<36} {:<16} {:<8} {:>10} {:>5}  {}",
                    d.id,
                    d.name,
                    online,
                    format_size(d.spare_storage_bytes),
                    d.compute_slots,
                    time(d.last_heartbeat)
                );
            }
            Ok(())
        }
        DeviceCommand::Revoke { id } => {
            client.revoke_device(&session.token, id).await?;
            let credentials = context.credentials()?;
            if credentials.device()?.is_some_and(|d| d.device_id == id) {
                credentials.clear_device()?;
                println!("revoked device {id} (this machine); register it again to donate");
            } else {
                println!("revoked device {id}");
            }
            Ok(())
        }
    }
}

fn limits(context: &Local, args: LimitsArgs) -> anyhow::Result<()> {
    let window = match args.window.as_deref() {
        None => None,
        Some("none") => Some(None),
        Some(text) => Some(Some(settings::parse_window(text)?)),
    };
    let bandwidth = match args.bandwidth.as_deref() {
        None => None,
        Some("none") => Some(None),
        Some(text) => Some(Some(settings::parse_rate(text)?)),
    };
    let settings = context.update(|s| {
        if let Some(cores) = args.cores {
            s.compute.cores_percent = cores;
        }
        if let Some(minutes) = args.idle_minutes {
            s.compute.idle_minutes = minutes;
        }
        if let Some(busy) = args.busy_cpu {
            s.compute.busy_cpu_percent = busy;
        }
        if let Some(on_battery) = args.on_battery {
            s.compute.on_battery = on_battery;
        }
        if let Some(window) = window {
            s.compute.window = window;
        }
        if let Some(bandwidth) = bandwidth {
            s.bandwidth_bytes_per_second = bandwidth;
        }
    })?;
    print_limits(&settings);
    Ok(())
}

fn print_limits(settings: &Settings) {
    let c = &settings.compute;
    println!(
        "compute: up to {}% of the cores, after {} idle minutes, while other programs use at most {}% CPU",
        c.cores_percent, c.idle_minutes, c.busy_cpu_percent
    );
    println!(
        "on battery: {}",
        if c.on_battery { "allowed" } else { "never" }
    );
    println!(
        "window: {}",
        c.window
            .map_or_else(|| "any time".to_owned(), format_window)
    );
    println!(
        "bandwidth: {}",
        settings.bandwidth_bytes_per_second.map_or_else(
            || "unlimited".to_owned(),
            |rate| format!("{}/s", Size(rate))
        )
    );
}

#[derive(Debug, serde::Serialize)]
struct StatusView {
    data_dir: PathBuf,
    hub: Option<String>,
    email: Option<String>,
    device_id: Option<uuid::Uuid>,
    device_name: Option<String>,
    credentials_backend: String,
    consent: surplus_protocol::Consent,
    pause: PauseState,
    paused: bool,
    vault_dir: PathBuf,
    quota_bytes: u64,
    floor_bytes: u64,
    limits: surplus_protocol::ComputeLimits,
    bandwidth_bytes_per_second: Option<u64>,
    agent: Option<AgentState>,
    /// Whether an agent is running on this data directory now.
    agent_running: bool,
    /// How backups are spread, as the hub sees it (absent when it cannot be asked).
    backup: Option<surplus_protocol::BackupPlan>,
    /// Compute credit, earned and spent (absent when the hub cannot be asked).
    credits: Option<surplus_protocol::Credits>,
    /// Snapshots per state (`protected`, `uploading`, `repairing`, `at_risk`, `lost`); absent
    /// when the hub cannot be asked or this device has no backup key.
    snapshots: Option<std::collections::BTreeMap<&'static str, u64>>,
}

async fn doctor(context: &Local, json: bool) -> anyhow::Result<()> {
    use surplus_agent::doctor::Verdict;
    let checks = surplus_agent::doctor::examine(&context.control()).await;
    if json {
        print_json(&checks)?;
    } else {
        for check in &checks {
            let mark = match check.verdict {
                Verdict::Ok => "ok     ",
                Verdict::Warning => "WARNING",
                Verdict::Problem => "PROBLEM",
            };
            println!("{mark}  {:<12} {}", check.name, check.detail);
        }
    }
    let problems = checks
        .iter()
        .filter(|check| check.verdict == Verdict::Problem)
        .count();
    if problems > 0 {
        bail!("{problems} problem(s) found");
    }
    Ok(())
}

async fn status(context: &Local, json: bool) -> anyhow::Result<()> {
    let settings = context.settings()?;
    let credentials = context.credentials()?;
    let device = credentials.device()?;
    let session = credentials.session()?;
    let vault_dir = settings.vault_dir(&context.data_dir);
    let disk = surplus_agent::probe::disk_space(&vault_dir)?;
    let agent_running = std::fs::create_dir_all(&context.data_dir).is_ok()
        && matches!(
            surplus_agent::worker::lock_data_dir(&context.data_dir),
            Err(surplus_agent::worker::WorkerError::AlreadyRunning(_))
        );
    let agent = AgentState::load(&context.data_dir);
    let (backup, credits, snapshots) = match (context.client(), context.any_token()) {
        (Ok(client), Ok(token)) => {
            // Without the passphrase callback: status never asks for it.
            let control = Control::new(&context.data_dir).with_hub(context.hub.clone());
            let ask = async {
                tokio::join!(
                    client.backup_plan(&token),
                    client.credits(&token),
                    control.snapshots()
                )
            };
            match tokio::time::timeout(Duration::from_secs(5), ask).await {
                Ok((backup, credits, snapshots)) => (
                    backup.ok(),
                    credits.ok(),
                    snapshots.ok().map(|snapshots| {
                        let mut counts = std::collections::BTreeMap::new();
                        for snapshot in snapshots {
                            *counts.entry(snapshot.state).or_insert(0) += 1;
                        }
                        counts
                    }),
                ),
                Err(_) => (None, None, None),
            }
        }
        _ => (None, None, None),
    };
    let view = StatusView {
        data_dir: context.data_dir.clone(),
        hub: context.hub.clone().or(settings.hub_url.clone()),
        email: session.map(|s| s.email),
        device_id: device.map(|d| d.device_id),
        device_name: settings.device_name.clone(),
        credentials_backend: credentials.backend().to_string(),
        consent: settings.consent,
        pause: settings.pause,
        paused: settings.pause.is_paused(surplus_agent::worker::now_ms()),
        quota_bytes: if settings.consent.storage {
            settings.effective_quota(disk)
        } else {
            0
        },
        floor_bytes: settings.effective_floor(disk),
        vault_dir,
        limits: settings.compute_limits(),
        bandwidth_bytes_per_second: settings.bandwidth_bytes_per_second,
        agent,
        agent_running,
        backup,
        credits,
        snapshots,
    };
    if json {
        return print_json(&view);
    }
    println!("hub:          {}", view.hub.as_deref().unwrap_or("not set"));
    println!(
        "account:      {}",
        view.email.as_deref().unwrap_or("not logged in")
    );
    match (view.device_id, &view.device_name) {
        (Some(id), name) => println!(
            "device:       {} ({id})",
            name.as_deref().unwrap_or("unnamed")
        ),
        (None, _) => println!("device:       not registered"),
    }
    println!("credentials:  {}", view.credentials_backend);
    println!(
        "storage:      {}",
        if view.consent.storage {
            format!(
                "donating up to {} in {}",
                Size(view.quota_bytes),
                view.vault_dir.display()
            )
        } else {
            "not donating (no consent)".to_owned()
        }
    );
    println!(
        "compute:      {}",
        if view.consent.compute {
            "donating when idle"
        } else {
            "not donating (no consent)"
        }
    );
    println!("free floor:   {}", Size(view.floor_bytes));
    println!(
        "state:        {}",
        describe_pause(if view.paused {
            view.pause
        } else {
            PauseState::Running
        })
    );
    let agent_line = match (&view.agent, view.agent_running) {
        (_, false) => "not running (start it with `surplus agent`)".to_owned(),
        (Some(state), true) if state.update_needed => {
            "running, UPDATE NEEDED: the hub no longer serves this version of Surplus; install \
             the new one"
                .to_owned()
        }
        (Some(state), true) if state.connected => format!(
            "running, connected (last heartbeat {})",
            time(state.last_heartbeat)
        ),
        (Some(state), true) => format!(
            "running, hub unreachable: {}",
            state.last_error.as_deref().unwrap_or("connecting")
        ),
        (None, true) => "running, connecting".to_owned(),
    };
    println!("agent:        {agent_line}");
    if let Some(counts) = view.snapshots.as_ref().filter(|c| !c.is_empty()) {
        let parts: Vec<String> = counts
            .iter()
            .map(|(state, n)| format!("{n} {}", state.replace('_', " ")))
            .collect();
        println!("snapshots:    {}", parts.join(", "));
    }
    if let Some(handover) = view.agent.as_ref().and_then(|a| a.handover) {
        println!(
            "handing over: {} to other PCs, {}% done",
            Size(handover.remaining_bytes + handover.moved_bytes),
            handover.percent()
        );
    }
    if let Some(state) = &view.agent {
        if let Some(vault) = &state.vault {
            println!(
                "vault:        {} held for others, {} reserved",
                Size(vault.used_bytes),
                Size(vault.reserved_bytes)
            );
        }
        if let Some(spare) = &state.spare {
            let storage = spare.storage_reason.map_or_else(
                || format!("{} spare", Size(spare.storage_bytes)),
                |r| r.describe().to_owned(),
            );
            let compute = spare.compute_reason.map_or_else(
                || format!("{} slot(s) spare", spare.compute_slots),
                |r| r.describe().to_owned(),
            );
            println!("hub sees:     storage {storage}; compute {compute}");
        }
        println!("instructions: {} carried out", state.instructions_done);
        let held = state
            .compute_held
            .as_deref()
            .map(|reason| format!(", paused: {reason}"))
            .unwrap_or_default();
        println!(
            "tasks:        {} run here, {} running now{held}",
            state.tasks_done, state.tasks_running
        );
        if let Some((at, snapshot)) = &state.last_backup {
            println!("last backup:  snapshot {snapshot} at {}", time(Some(*at)));
        }
        if let Some(error) = &state.last_backup_error {
            println!("backup error: {error}");
        }
    }
    match &view.backup {
        Some(plan) => {
            println!(
                "backups:      coded {}+{} ({}) over {} eligible holder(s), household mode {}",
                plan.coding.data,
                plan.coding.parity,
                coding_origin(plan),
                plan.eligible_holders,
                on(plan.settings.household)
            );
            if let Some(warning) = &plan.warning {
                println!("warning:      {warning}");
            }
        }
        None if view.email.is_some() || view.device_id.is_some() => {
            println!("backups:      the hub cannot be asked now")
        }
        None => {}
    }
    if let Some(credits) = &view.credits {
        println!(
            "credit:       {:.2} core-seconds ({:.2} earned by {} validated run(s), {:.2} spent, {:.1} granted)",
            credits.balance, credits.earned, credits.runs_done, credits.spent, credits.granted
        );
    }
    Ok(())
}

async fn blob(context: &Local, command: BlobCommand) -> anyhow::Result<()> {
    let client = context.client()?;
    let token = context.any_token()?;
    let placement = match command {
        BlobCommand::Put { file, copies, json } => {
            let rate = context.settings()?.bandwidth_bytes_per_second;
            let blob = client.upload_file(&token, &file, rate).await?;
            let placement = client.place_blob(&token, &blob.hash, copies).await?;
            if json {
                return print_json(&placement);
            }
            println!(
                "uploaded {} ({}) as {}",
                file.display(),
                Size(blob.size),
                blob.hash
            );
            placement
        }
        BlobCommand::Get { hash, out, wait } => {
            let size = client
                .fetch_blob_to(&token, &hash, &out, Duration::from_secs(wait))
                .await?;
            println!("got {hash} back into {} ({})", out.display(), Size(size));
            return Ok(());
        }
        BlobCommand::Status { hash, json } => {
            let placement = client.placement(&token, &hash).await?;
            if json {
                return print_json(&placement);
            }
            placement
        }
    };
    println!(
        "wanted on {} holder(s); staged at the hub: {}",
        placement.copies,
        if placement.staged { "yes" } else { "no" }
    );
    if placement.holders.is_empty() {
        println!(
            "no holder yet: no other device has spare storage right now; the hub keeps trying"
        );
    }
    for holder in placement.holders {
        println!("  {} on device {}", holder.state.as_str(), holder.device_id);
    }
    Ok(())
}

/// The recovery passphrase, from the environment or typed at a prompt: `SURPLUS_PASSPHRASE` to
/// unlock the key or to choose one, `SURPLUS_NEW_PASSPHRASE` to replace one that is too weak.
fn passphrase(request: Request<'_>) -> Option<String> {
    let variable = match request {
        Request::Replace { .. } => NEW_PASSPHRASE_VARIABLE,
        Request::Unlock | Request::Choose => "SURPLUS_PASSPHRASE",
    };
    if let Ok(passphrase) = std::env::var(variable) {
        return Some(passphrase);
    }
    if !std::io::stdin().is_terminal() {
        if let Request::Replace { problem } = request {
            eprintln!(
                "surplus: warning: {problem}. Set {NEW_PASSPHRASE_VARIABLE}, or run `surplus \
                 backup passphrase` in a terminal, to choose a better one"
            );
        }
        return None;
    }
    match request {
        Request::Unlock => rpassword::prompt_password("Recovery passphrase: ").ok(),
        Request::Choose => choose_passphrase("Choose a recovery passphrase"),
        Request::Replace { problem } => {
            eprintln!("surplus: {problem}.");
            choose_passphrase("Choose a new recovery passphrase")
        }
    }
}

/// Where `surplus backup passphrase` and a replacement of a weak passphrase read the new one.
const NEW_PASSPHRASE_VARIABLE: &str = "SURPLUS_NEW_PASSPHRASE";

/// A new recovery passphrase typed at the terminal (twice), asked again until it is strong
/// enough; an empty answer makes one, shown once and typed back.
fn choose_passphrase(what: &str) -> Option<String> {
    loop {
        let typed =
            rpassword::prompt_password(format!("{what} (press Enter to have one made for you): "))
                .ok()?;
        if typed.is_empty() {
            let made = surplus_agent::passphrase::generate();
            eprintln!(
                "\nYour recovery passphrase:\n\n    {made}\n\nWrite it down and keep it safe: \
                 without it nobody, not even Surplus, can restore your backups on a new PC.\n"
            );
            if rpassword::prompt_password("Type it to confirm you have it: ").ok()? == made {
                return Some(made);
            }
            eprintln!("surplus: that is not the passphrase shown; try again");
            continue;
        }
        if let Some(problem) = surplus_agent::passphrase::problem(&typed, &[]) {
            eprintln!("surplus: {problem}");
            continue;
        }
        if rpassword::prompt_password("The passphrase again: ").ok()? != typed {
            eprintln!("surplus: the passphrases differ; try again");
            continue;
        }
        return Some(typed);
    }
}

/// A repository over the hub for this subscriber, opened off the async runtime by `work`.
/// With `warn`, the hub's warning about too few holders for the coding is shown.
async fn with_repository<T: Send + 'static>(
    context: &Local,
    warn: bool,
    work: impl FnOnce(&mut Repository<HubStore>) -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    let show = |warning: &str| {
        if warn {
            eprintln!("surplus: warning: {warning}");
        }
    };
    context
        .control()
        .with_repository(passphrase, show, move |repository, _, _| work(repository))
        .await
}

/// Takes the data directory's backup lock, saying so when a running agent's backup holds it.
fn backup_lock(data_dir: &std::path::Path) -> anyhow::Result<surplus_agent::backup::BackupLock> {
    surplus_agent::backup::BackupLock::acquire(data_dir, || {
        eprintln!("surplus: the agent is backing up this device; waiting for it to finish");
    })
    .with_context(|| format!("taking the backup lock in {}", data_dir.display()))
}

async fn backup(context: &Local, command: BackupCommand) -> anyhow::Result<()> {
    match command {
        BackupCommand::Add { path } => {
            let path = std::path::absolute(&path)?;
            if !path.is_dir() {
                bail!("{} is not a folder", path.display());
            }
            let settings = context.update(|s| {
                if !s.backup.folders.contains(&path) {
                    s.backup.folders.push(path.clone());
                }
            })?;
            println!("backing up {} folder(s)", settings.backup.folders.len());
        }
        BackupCommand::Remove { path } => {
            let path = std::path::absolute(&path)?;
            let before = context.settings()?.backup.folders.len();
            let settings = context.update(|s| s.backup.folders.retain(|f| *f != path))?;
            if settings.backup.folders.len() == before {
                bail!(
                    "{} is not among the folders backed up (see `surplus backup list`)",
                    path.display()
                );
            }
            println!("no longer backing up {}", path.display());
        }
        BackupCommand::List => {
            for folder in context.settings()?.backup.folders {
                println!("{}", folder.display());
            }
        }
        BackupCommand::Now { json } => {
            let folders = context.settings()?.backup.folders;
            if folders.is_empty() {
                bail!("no folders to back up: add one with `surplus backup add PATH`");
            }
            let host = context
                .settings()?
                .device_name
                .unwrap_or_else(|| "this device".to_owned());
            let started = std::time::Instant::now();
            let data_dir = context.data_dir.clone();
            let report = with_repository(context, true, move |repository| {
                let _lock = backup_lock(&data_dir)?;
                let (files, bytes) = surplus_backup::repo::scan_totals(&folders);
                let bar = std::sync::Arc::new(progress::Bar::new("backing up", files, bytes));
                repository.set_progress(bar.clone());
                let parent = repository.snapshots()?.pop().map(|(_, s)| s);
                let now = surplus_agent::worker::now_ms();
                let report = repository.backup(&folders, &host, now, parent.as_ref());
                bar.finish();
                Ok(report?)
            })
            .await?;
            let summary = report.snapshot.map(|s| s.summary).unwrap_or_default();
            let seconds = started.elapsed().as_secs_f64();
            if json {
                print_json(&serde_json::json!({
                    "snapshot": report.snapshot_id,
                    "files": summary.files,
                    "bytes": summary.bytes,
                    "new_bytes": summary.new_bytes,
                    "unchanged_files": summary.unchanged_files,
                    "seconds": seconds,
                    "skipped": report.skipped.len(),
                }))?;
            } else {
                println!(
                    "snapshot {}: {} files, {} ({} new, {} files unchanged) in {seconds:.1}s",
                    report.snapshot_id,
                    summary.files,
                    Size(summary.bytes),
                    Size(summary.new_bytes),
                    summary.unchanged_files
                );
            }
            for (path, reason) in &report.skipped {
                eprintln!("surplus: not backed up: {}: {reason}", path.display());
            }
            if !report.skipped.is_empty() {
                bail!("{} path(s) could not be backed up", report.skipped.len());
            }
        }
        BackupCommand::Passphrase => {
            let new = match std::env::var(NEW_PASSPHRASE_VARIABLE) {
                Ok(new) => new,
                Err(_) if std::io::stdin().is_terminal() => {
                    choose_passphrase("Choose a new recovery passphrase")
                        .ok_or_else(|| anyhow!("no new passphrase was chosen"))?
                }
                Err(_) => bail!(
                    "no new passphrase: set {NEW_PASSPHRASE_VARIABLE} or run this in a terminal"
                ),
            };
            context.control().change_recovery_passphrase(&new).await?;
            println!(
                "the recovery passphrase is changed: the key kept at the hub opens with the new one only"
            );
        }
        BackupCommand::Settings {
            household,
            coding,
            json,
        } => {
            let client = context.client()?;
            let token = context.any_token()?;
            let mut plan = client.backup_plan(&token).await?;
            if household.is_some() || coding.is_some() {
                let mut settings = plan.settings;
                if let Some(household) = household {
                    settings.household = household;
                }
                if let Some(CodingChoice(coding)) = coding {
                    settings.coding = coding;
                }
                plan = client.set_backup_settings(&token, &settings).await?;
            }
            if json {
                return print_json(&plan);
            }
            print_backup_plan(&plan);
        }
    }
    Ok(())
}

/// Whether the coding in use was chosen by the subscriber or follows the holders.
fn coding_origin(plan: &surplus_protocol::BackupPlan) -> &'static str {
    if plan.settings.coding.is_some() {
        "chosen"
    } else {
        "automatic"
    }
}

fn print_backup_plan(plan: &surplus_protocol::BackupPlan) {
    println!(
        "household:    {} ({})",
        on(plan.settings.household),
        if plan.settings.household {
            "your own other devices may hold your shards"
        } else {
            "only other subscribers' devices hold your shards"
        }
    );
    println!(
        "coding:       {}+{} ({}; any {} of {} shards rebuild a pack)",
        plan.coding.data,
        plan.coding.parity,
        coding_origin(plan),
        plan.coding.data,
        plan.coding.shards()
    );
    println!(
        "holders:      {} can take shards now",
        plan.eligible_holders
    );
    if let Some(warning) = &plan.warning {
        println!("warning:      {warning}");
    }
}

async fn snapshots(context: &Local, json: bool) -> anyhow::Result<()> {
    let views = context.control().snapshots().await?;
    if json {
        return print_json(&views);
    }
    println!(
        "{:<16} {:<20} {:<16} {:>7} {:>10}  STATE",
        "ID", "TIME", "HOST", "FILES", "SIZE"
    );
    for v in views {
        println!(
            "{:<16} {:<20} {:<16} {:>7} {:>10}  {}",
            v.id,
            time(Some(v.time)),
            v.hostname,
            v.files,
            Size(v.bytes).to_string(),
            v.state
        );
    }
    Ok(())
}

async fn ls(
    context: &Local,
    snapshot: &str,
    path: Option<PathBuf>,
    json: bool,
) -> anyhow::Result<()> {
    let entries = context.control().list(snapshot, path).await?;
    if json {
        return print_json(&entries);
    }
    for e in entries {
        println!(
            "{:<8} {:>5} {:>10} {}  {}",
            e.kind,
            e.mode,
            Size(e.size).to_string(),
            time(Some(e.mtime)),
            e.name
        );
    }
    Ok(())
}

async fn restore(
    context: &Local,
    snapshot: &str,
    path: Option<PathBuf>,
    target: &std::path::Path,
) -> anyhow::Result<()> {
    let target = std::path::absolute(target)?;
    let bar = std::sync::Arc::new(progress::RestoreBar::default());
    let report = context
        .control()
        .restore(snapshot, path, &target, bar.clone())
        .await;
    bar.finish();
    let report = report?;
    println!(
        "restored {} files, {} under {}",
        report.files,
        Size(report.bytes),
        target.display()
    );
    if report.in_place > 0 {
        println!(
            "{} files were in place already (an earlier restore) and were kept",
            report.in_place
        );
    }
    Ok(())
}

async fn verify(context: &Local, wait: Duration, json: bool) -> anyhow::Result<()> {
    let client = context.client()?;
    let token = context.any_token()?;
    let mut run = client.start_verify(&token).await?;
    let deadline = tokio::time::Instant::now() + wait;
    let mut pause = Duration::from_millis(100);
    while run.challenged > 0 && run.waiting > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(pause.min(deadline - tokio::time::Instant::now())).await;
        pause = (pause * 2).min(Duration::from_secs(2));
        run = client.verify_run(&token, run.id).await?;
    }
    if json {
        print_json(&run)?;
    } else if run.challenged == 0 {
        println!("no shard of yours is on a holder yet: nothing to verify");
    } else {
        println!(
            "challenged {} shards: {} passed, {} failed, {} not answered yet",
            run.challenged, run.passed, run.failed, run.waiting
        );
        for failure in &run.failures {
            println!(
                "  shard {} on device {}: {}",
                &failure.hash[..16],
                failure.device_id,
                failure.reason
            );
        }
        if run.failed > 0 {
            println!("failed shards are routed around on restore; their placements reopen");
        }
        if run.waiting > 0 {
            println!(
                "holders that are offline answer when back: `surplus verify` again later to see"
            );
        }
    }
    if run.failed > 0 {
        bail!("{} shard(s) failed their challenge", run.failed);
    }
    if run.waiting > 0 {
        bail!(
            "{} shard(s) not answered within {}",
            run.waiting,
            humantime::format_duration(wait)
        );
    }
    Ok(())
}

async fn agent(context: &Local) -> anyhow::Result<()> {
    let probe = Box::new(OverrideProbe::from_env(SystemProbe::new()));
    let mut options = WorkerOptions {
        // Each compute task runs in a process of its own: this program, run as `run-task`.
        task_runner: std::env::current_exe()
            .ok()
            .filter(|_| cfg!(unix))
            .map(|program| surplus_agent::compute::Runner {
                program,
                args: vec!["run-task".to_owned()],
            }),
        ..WorkerOptions::default()
    };
    // How long the agent waits after a change in a backed-up folder before backing it up.
    if let Some(seconds) = std::env::var("SURPLUS_BACKUP_DEBOUNCE_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        options.backup_debounce = Duration::from_secs(seconds);
    }
    let worker = Worker::new(&context.data_dir, context.hub.as_deref(), probe, options)?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    worker.run(stopped).await?;
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        if let Ok(mut terminate) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Ends quietly when whoever reads the output stops reading (`surplus ledger --json | head`):
/// printing then fails with a broken pipe, which is the reader's choice, not a fault to report
/// with a panic.
fn quiet_on_broken_pipe() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        report(info);
    }));
}
