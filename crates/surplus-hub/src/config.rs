//! Where the hub listens and keeps its data: flags, then environment variables, then a TOML
//! config file, then defaults under the user's data directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::hub::{Replication, Settings};

/// The optional config file (`--config`, `SURPLUS_HUB_CONFIG`, or `<config dir>/surplus-hub/hub.toml`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<SocketAddr>,
    /// The certificate chain (PEM) the hub serves HTTPS with; reloaded on SIGHUP.
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// Serve plain HTTP on a non-loopback address: a proxy in front terminates TLS.
    pub behind_proxy: Option<bool>,
    pub database: Option<String>,
    pub staging: Option<PathBuf>,
    pub heartbeat_interval_seconds: Option<u64>,
    pub instruction_ttl_seconds: Option<u64>,
    pub instruction_lease_seconds: Option<u64>,
    pub max_blob_bytes: Option<u64>,
    pub restore_staging_seconds: Option<u64>,
    /// How long forgotten snapshots stay recoverable (default 30 days).
    pub forget_grace_seconds: Option<u64>,
    /// Every held shard is audited at least this often while its holder is online (default 7
    /// days).
    pub audit_interval_seconds: Option<u64>,
    /// A holder silent this long is counted lost and what it held is rebuilt elsewhere (default
    /// 4 days).
    pub lost_after_seconds: Option<u64>,
    /// A pack is repaired once its spare shards fall to this many (default 14, capped at the
    /// coding's parity - 1).
    pub repair_threshold: Option<u32>,
    /// A holder that gave storage up has this long to hand over what it holds before the rest
    /// is counted lost and rebuilt (default 3 days).
    pub handover_deadline_seconds: Option<u64>,
    /// How long the results of an ended compute job stay staged (default 7 days).
    pub output_retention_seconds: Option<u64>,
    /// Whether a trusted device's result may be accepted alone, without a second donor's
    /// (default true); false has every task agreed on by as many donors as its job asks.
    pub adaptive_replication: Option<bool>,
    /// Rate limits: how many attempts in a burst, refilled over the period the key names.
    pub logins_per_minute_per_address: Option<u32>,
    pub logins_per_minute_per_account: Option<u32>,
    pub signups_per_hour_per_address: Option<u32>,
    pub registrations_per_hour_per_subscriber: Option<u32>,
    pub heartbeats_per_minute_per_device: Option<u32>,
    /// How long a log-in session lasts without being used.
    pub session_seconds: Option<u64>,
    /// The longest a device's long poll for instructions waits (default 60).
    pub max_long_poll_seconds: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading the config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the config file {path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
}

impl FileConfig {
    /// Loads `path`, or the default location if it exists, or nothing.
    pub fn load(path: Option<&Path>) -> Result<FileConfig, ConfigError> {
        let path = match path {
            Some(path) => path.to_owned(),
            None => match dirs::config_dir().map(|d| d.join("surplus-hub").join("hub.toml")) {
                Some(default) if default.exists() => default,
                _ => return Ok(FileConfig::default()),
            },
        };
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse { path, source })
    }

    /// The hub's tunables, from the file where it sets them.
    pub fn settings(&self) -> Settings {
        let mut settings = Settings::default();
        if let Some(seconds) = self.heartbeat_interval_seconds {
            settings.heartbeat_interval = Duration::from_secs(seconds.max(1));
        }
        if let Some(seconds) = self.instruction_ttl_seconds {
            settings.instruction_ttl = Duration::from_secs(seconds.max(1));
        }
        if let Some(seconds) = self.instruction_lease_seconds {
            settings.instruction_lease = Duration::from_secs(seconds.max(1));
        }
        if let Some(bytes) = self.max_blob_bytes {
            settings.max_blob_bytes = bytes;
        }
        if let Some(seconds) = self.restore_staging_seconds {
            settings.restore_staging = Duration::from_secs(seconds);
        }
        if let Some(seconds) = self.forget_grace_seconds {
            settings.forget_grace = Duration::from_secs(seconds);
        }
        if let Some(seconds) = self.audit_interval_seconds {
            settings.audit_interval = Duration::from_secs(seconds.max(1));
        }
        if let Some(seconds) = self.lost_after_seconds {
            settings.lost_after = Duration::from_secs(seconds.max(1));
        }
        if let Some(threshold) = self.repair_threshold {
            settings.repair_threshold = threshold;
        }
        if let Some(adaptive) = self.adaptive_replication {
            settings.replication = if adaptive {
                Replication::Adaptive
            } else {
                Replication::Always
            };
        }
        if let Some(seconds) = self.output_retention_seconds {
            settings.output_retention = Duration::from_secs(seconds);
        }
        if let Some(seconds) = self.handover_deadline_seconds {
            settings.handover_deadline = Duration::from_secs(seconds.max(1));
        }
        const MINUTE: Duration = Duration::from_secs(60);
        const HOUR: Duration = Duration::from_secs(3600);
        let limits = &mut settings.rate_limits;
        for (value, rate, period) in [
            (
                self.logins_per_minute_per_address,
                &mut limits.login_per_address,
                MINUTE,
            ),
            (
                self.logins_per_minute_per_account,
                &mut limits.login_per_account,
                MINUTE,
            ),
            (
                self.signups_per_hour_per_address,
                &mut limits.signup_per_address,
                HOUR,
            ),
            (
                self.registrations_per_hour_per_subscriber,
                &mut limits.registration_per_subscriber,
                HOUR,
            ),
            (
                self.heartbeats_per_minute_per_device,
                &mut limits.heartbeat_per_device,
                MINUTE,
            ),
        ] {
            if let Some(burst) = value {
                *rate = crate::limits::Rate::new(burst.max(1), period);
            }
        }
        if let Some(seconds) = self.session_seconds {
            settings.session_ttl = Duration::from_secs(seconds.max(60));
        }
        if let Some(seconds) = self.max_long_poll_seconds {
            settings.max_long_poll = Duration::from_secs(seconds.max(1));
        }
        settings
    }
}

/// `<data dir>/surplus-hub`: `~/.local/share/surplus-hub` on Linux.
pub fn default_data_dir() -> PathBuf {
    dirs::data_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("surplus-hub")
}

pub fn default_database() -> String {
    format!("sqlite://{}", default_data_dir().join("hub.db").display())
}

pub fn default_staging() -> PathBuf {
    default_data_dir().join("staging")
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:7420";

#[cfg(test)]
mod tests {
    use super::*;

    /// The configuration the hub's package installs as /etc/surplus-hub/hub.toml.
    const SHIPPED: &str = include_str!("../../../installers/linux/hub/hub.toml");

    #[test]
    fn the_shipped_configuration_parses_and_its_commented_defaults_are_the_defaults() {
        let shipped: FileConfig = toml::from_str(SHIPPED).expect("hub.toml parses");
        assert_eq!(
            shipped.database.as_deref(),
            Some("sqlite:///var/lib/surplus-hub/hub.db")
        );
        // Every commented-out key, uncommented, is a known key with the default value.
        let uncommented: String = SHIPPED
            .lines()
            .filter_map(|line| line.strip_prefix("# "))
            .filter(|line| line.contains(" = ") && !line.starts_with(' '))
            .map(|line| line.split(" #").next().unwrap_or(line))
            .map(|line| format!("{line}\n"))
            .collect();
        let defaults: FileConfig =
            toml::from_str(&uncommented).unwrap_or_else(|error| panic!("{error}\n{uncommented}"));
        assert_eq!(
            format!("{:?}", defaults.settings()),
            format!("{:?}", Settings::default())
        );
        assert_eq!(defaults.listen, DEFAULT_LISTEN.parse().ok());
    }

    #[test]
    fn adaptive_replication_can_be_turned_off() {
        assert_eq!(
            FileConfig::default().settings().replication,
            Replication::Adaptive
        );
        let always: FileConfig = toml::from_str("adaptive_replication = false").expect("parses");
        assert_eq!(always.settings().replication, Replication::Always);
        // However trusted the device, its result is never accepted alone.
        assert!(!Replication::Always.accept_alone(u32::MAX));
    }
}
