//! The wire types shared by the Surplus hub and its agents.
//!
//! Everything that crosses the network between a device and the hub is defined here, and nothing
//! else: no I/O, no HTTP client, no database. Both sides depend on this crate and on nothing of each
//! other, so a change to the protocol is a change to this crate.
//!
//! Conventions: JSON field names are `snake_case`; times are milliseconds since the Unix epoch
//! ([`UnixMillis`]); sizes are bytes; identifiers are UUIDs except blobs, which are named by the
//! lower-case hex BLAKE3 hash of their content ([`BlobHash`]). Every error the hub returns has the
//! shape of [`ErrorBody`] with a stable [`ErrorCode`].

mod account;
mod backup;
mod blob;
mod compute;
mod device;
mod error;
mod instruction;
mod ledger;
mod report;

pub use account::*;
pub use backup::*;
pub use blob::*;
pub use compute::*;
pub use device::*;
pub use error::*;
pub use instruction::*;
pub use ledger::*;
pub use report::*;

/// The path prefix of every versioned endpoint.
pub const API_PREFIX: &str = "/v1";

/// The version of the messages between agents and the hub. Within a version, either side may
/// add optional fields (the other ignores what it does not know), instructions (answered
/// `unsupported`) and error codes (read as [`ErrorCode::Unknown`]); anything else raises it.
/// Agents send it as the [`PROTOCOL_HEADER`] of every request, and the hub of every answer.
pub const PROTOCOL_VERSION: u32 = 1;

/// The oldest agents' protocol the hub still serves: an older agent is answered
/// `426 agent_too_old` and tells its user to update.
pub const OLDEST_AGENT_PROTOCOL: u32 = 1;

/// The header that carries [`PROTOCOL_VERSION`] both ways.
pub const PROTOCOL_HEADER: &str = "surplus-protocol";

/// Milliseconds since the Unix epoch, UTC.
pub type UnixMillis = i64;

/// The prefix of a subscriber's session token (`Authorization: Bearer ses_...`).
pub const SESSION_TOKEN_PREFIX: &str = "ses_";

/// The prefix of a device credential (`Authorization: Bearer dev_<device id>_<secret>`).
pub const DEVICE_TOKEN_PREFIX: &str = "dev_";

/// The first character of `text` that has no place in a name a person will read: a control
/// character (ESC could drive the operator's terminal), or an invisible one that reorders or
/// hides text (bidirectional overrides and isolates, zero-width marks), which could make one name
/// look like another. Both the hub and the agent refuse names that have one.
pub fn unsafe_char(text: &str) -> Option<char> {
    text.chars().find(|c| {
        c.is_control()
            || matches!(
                c,
                '\u{200B}'..='\u{200F}'
                    | '\u{202A}'..='\u{202E}'
                    | '\u{2060}'..='\u{2069}'
                    | '\u{FEFF}'
            )
    })
}

/// Formats the bearer token a device presents to the hub.
pub fn device_token(device_id: uuid::Uuid, secret: &str) -> String {
    format!("{DEVICE_TOKEN_PREFIX}{}_{secret}", device_id.simple())
}

/// Splits a device bearer token into its device id and secret; `None` if it is not one.
pub fn parse_device_token(token: &str) -> Option<(uuid::Uuid, &str)> {
    let rest = token.strip_prefix(DEVICE_TOKEN_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let id = uuid::Uuid::try_parse(id).ok()?;
    (!secret.is_empty()).then_some((id, secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_invisible_characters_are_found() {
        assert_eq!(unsafe_char("ada@example.org"), None);
        assert_eq!(unsafe_char("café on the Ωmega"), None);
        for bad in [
            "esc\u{1b}[2J",
            "bell\u{7}",
            "nul\0",
            "rtl\u{202E}gpj.exe",
            "zero\u{200B}width",
            "bom\u{FEFF}",
        ] {
            assert!(unsafe_char(bad).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn device_token_round_trips() {
        let id = uuid::Uuid::new_v4();
        let token = device_token(id, "s3cret");
        assert_eq!(parse_device_token(&token), Some((id, "s3cret")));
        assert_eq!(parse_device_token("dev_nonsense_x"), None);
        assert_eq!(parse_device_token(&format!("dev_{}_", id.simple())), None);
        assert_eq!(parse_device_token("ses_abc"), None);
    }
}
