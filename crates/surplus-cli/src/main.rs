//! `surplus`: the subscriber's command line and the headless agent.
//!
//! A thin shell over `surplus-agent`: each command parses its arguments, calls the agent core,
//! and prints the outcome for a person (or as JSON with `--json`). No business logic lives here.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::anyhow;
use clap::{Args, Parser, Subcommand};
use surplus_agent::client::HubTrust;
use surplus_agent::control::{Control, ControlError};
use surplus_agent::{settings, units};

mod commands;
mod print;
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
        #[arg(long, value_parser = units::parse_size)]
        storage: Option<u64>,
        /// Free space the vault never pushes the disk below, e.g. 10GiB.
        #[arg(long, value_parser = units::parse_size)]
        floor: Option<u64>,
        /// The folder for the vault: a hidden folder inside it, or inside the data directory
        /// when it is the top of the data directory's disk (as the tray app does).
        #[arg(long)]
        path: Option<PathBuf>,
    },
    /// Set when donated compute may run.
    Limits(LimitsArgs),
    /// Pause donation, for a duration (e.g. 1h, 30m) or until `surplus resume`.
    Pause {
        #[arg(value_parser = units::parse_duration)]
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
    Compute(commands::compute::ComputeCommand),
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
    /// Restore a snapshot (or `latest`) under DIR, as DIR/<folder name>/..., or with
    /// --where-it-was back where each folder was, keeping files that changed since (the
    /// snapshot's copies go beside them) unless --replace.
    Restore {
        snapshot: String,
        /// Only this path of the snapshot, as <folder name>/sub/path.
        #[arg(long)]
        path: Option<PathBuf>,
        #[arg(long, value_name = "DIR", required_unless_present = "where_it_was")]
        target: Option<PathBuf>,
        /// Restore back where the folders were when the snapshot was taken.
        #[arg(long, conflicts_with = "target")]
        where_it_was: bool,
        /// With --where-it-was: replace files that changed since the snapshot rather than keep
        /// both copies.
        #[arg(long, requires = "where_it_was")]
        replace: bool,
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
    /// Pause backups, for a duration (e.g. 1h, 30m) or until `surplus backup resume`; lending
    /// goes on. `surplus backup now` still backs up when asked.
    Pause {
        #[arg(value_parser = units::parse_duration)]
        duration: Option<Duration>,
    },
    /// Resume backups.
    Resume,
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
    #[arg(long, value_parser = units::parse_percent)]
    cores: Option<u8>,
    /// Minutes without input before compute starts.
    #[arg(long)]
    idle_minutes: Option<u32>,
    /// Stop when other programs use more than this share of the CPU (0-100).
    #[arg(long, value_parser = units::parse_percent)]
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
    /// Whether compute waits while a full-screen window has the focus (a game, a film, a call).
    #[arg(long, value_parser = on_off)]
    pause_in_full_screen: Option<bool>,
    /// Compute waits while the CPU is hotter than this many degrees Celsius, or `none`.
    #[arg(long)]
    max_cpu_temperature: Option<String>,
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
            eprintln!("surplus: {error:#}{}", next_step(&error));
            ExitCode::FAILURE
        }
    }
}

/// What to run next, for the errors a command line can mend.
fn next_step(error: &anyhow::Error) -> &'static str {
    match error.downcast_ref::<ControlError>() {
        Some(ControlError::NoHub) => " (pass --hub URL, or set SURPLUS_HUB)",
        Some(ControlError::NotLoggedIn) => " (run `surplus login --email EMAIL`)",
        Some(ControlError::NoFolders) => " (add one with `surplus backup add PATH`)",
        _ => "",
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    use commands::{account, agent, backup, blob, compute, device, donation, status};

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
    let context = Control::new(&data_dir)
        .with_hub(cli.hub)
        .with_trust(trust)
        .with_passphrase(backup::passphrase);
    match cli.command {
        Command::Signup { email } => account::account(&context, email, true).await,
        Command::Login { email } => account::account(&context, email, false).await,
        Command::Logout { everywhere } => account::logout(&context, everywhere).await,
        Command::Device(command) => device::device(&context, command).await,
        Command::Consent { storage, compute } => donation::consent(&context, storage, compute),
        Command::Quota {
            storage,
            floor,
            path,
        } => donation::quota(&context, storage, floor, path),
        Command::Limits(args) => donation::limits(&context, args),
        Command::Pause { duration } => donation::pause(&context, duration),
        Command::Resume => donation::resume(&context),
        Command::Status { json } => status::status(&context, json).await,
        Command::Doctor { json } => status::doctor(&context, json).await,
        Command::Ledger { json } => account::ledger(&context, json).await,
        Command::Blob(command) => blob::blob(&context, command).await,
        Command::Backup(command) => backup::backup(&context, command).await,
        Command::Compute(command) => compute::compute(&context, command).await,
        Command::Snapshots { json } => backup::snapshots(&context, json).await,
        Command::Ls {
            snapshot,
            path,
            json,
        } => backup::ls(&context, &snapshot, path, json).await,
        Command::Restore {
            snapshot,
            path,
            target,
            where_it_was: _,
            replace,
        } => backup::restore(&context, &snapshot, path, target.as_deref(), replace).await,
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
            backup::forget(&context, retention).await
        }
        Command::Forgotten { json } => backup::forgotten(&context, json).await,
        Command::Unforget => backup::unforget(&context).await,
        Command::Verify { wait, json } => backup::verify(&context, wait, json).await,
        Command::Agent => agent::agent(&context).await,
        // Served before anything else in `main` where tasks run in processes of their own.
        Command::RunTask { .. } => {
            anyhow::bail!("tasks run in processes of their own on Unix only")
        }
        Command::Leave { wait } => device::leave(&context, wait).await,
    }
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
