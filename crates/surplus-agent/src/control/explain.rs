//! Errors for people: what went wrong in a sentence a subscriber understands, with what to do
//! next, and the technical text kept apart for "Details".
//!
//! The sentence is chosen from the hub's stable error code or the kind of failure, never from
//! the wording of a message, so that a reworded message never changes what the window says.

use std::io::ErrorKind;

use serde::Serialize;
use surplus_protocol::ErrorCode;

use super::ControlError;
use crate::backup::KeyError;
use crate::client::ClientError;

/// An error as a window shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Problem {
    /// What happened and what to do, in plain words.
    pub message: String,
    /// The technical text, behind "Details"; empty when the message already says it all.
    pub details: String,
}

/// What the user was doing, where that changes what an error means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Doing {
    /// Creating an account.
    SigningUp,
    /// Logging in to an account.
    LoggingIn,
    /// Anything else.
    Other,
}

impl Problem {
    pub fn new(message: impl Into<String>, details: impl Into<String>) -> Problem {
        Problem {
            message: message.into(),
            details: details.into(),
        }
    }
}

/// A message that is already plain words (the shell's own, such as "the tray is not running").
impl From<String> for Problem {
    fn from(message: String) -> Problem {
        Problem::new(message, "")
    }
}

const OFFLINE: &str =
    "Surplus can't reach its server. Check your internet connection; it will retry on its own.";
const SERVER_TROUBLE: &str =
    "Surplus's server has a problem right now. Try again in a few minutes.";

impl ControlError {
    /// This error as a window shows it.
    pub fn explain(&self, doing: Doing) -> Problem {
        let details = self.to_string();
        let message = match self {
            ControlError::NoHub | ControlError::NotLoggedIn => {
                "This PC is not signed in to Surplus yet. Sign up or log in first.".to_owned()
            }
            ControlError::NoFolders => "Choose at least one folder to back up.".to_owned(),
            ControlError::NoSnapshot(_) => {
                "That backup no longer exists. Choose another one from the list.".to_owned()
            }
            // Already a sentence about what the user typed (a size, a time, a name).
            ControlError::Input(message) => return Problem::new(capitalised(message), ""),
            ControlError::Settings(error) => {
                format!("That setting can't be used: {error}.")
            }
            ControlError::Credentials(_) => {
                "Surplus can't read its sign-in from this PC's keyring. Unlock the keyring (or \
                 log in to the desktop again) and retry."
                    .to_owned()
            }
            ControlError::Client(error) | ControlError::Upload { source: error, .. } => {
                client(error, doing)
            }
            ControlError::Key(error) => key(error, doing),
            ControlError::Backup(_) => {
                "The backup could not be read or written. See Details; Surplus will try again at \
                 the next backup."
                    .to_owned()
            }
            ControlError::Io { path, source } => io(&path.display().to_string(), source.kind()),
            ControlError::Worker(_) => {
                "Surplus's background service stopped with an error. Restart Surplus; if it \
                 happens again, see Details."
                    .to_owned()
            }
        };
        Problem::new(message, details)
    }
}

fn client(error: &ClientError, doing: Doing) -> String {
    match error {
        ClientError::Transport { .. } => OFFLINE.to_owned(),
        ClientError::Hub { body, .. } => match (body.error, doing) {
            (ErrorCode::Unauthorized, Doing::LoggingIn) => {
                "That email and password don't match. Check them and try again, or choose \"I am \
                 new\" to create an account."
                    .to_owned()
            }
            (ErrorCode::Unauthorized, _) => {
                "This PC is no longer signed in to Surplus. Log in again.".to_owned()
            }
            (ErrorCode::Conflict, Doing::SigningUp) => {
                "There is already an account with this email. Choose \"I have an account\" to \
                 log in."
                    .to_owned()
            }
            // The hub names the field and the rule ("password must be at least 8 characters").
            (ErrorCode::ValidationFailed, _) => capitalised(&body.message),
            (ErrorCode::RateLimited, _) => {
                "Too many tries in a short time. Wait a minute, then try again.".to_owned()
            }
            (ErrorCode::AgentTooOld, _) => {
                "This version of Surplus is too old for its server. Install the latest version."
                    .to_owned()
            }
            (ErrorCode::SubscriberSuspended, _) => {
                "Your Surplus subscription is suspended. Check your account with the service."
                    .to_owned()
            }
            (ErrorCode::SubscriberCancelled, _) => {
                "Your Surplus subscription has ended. Renew it to back up and lend again."
                    .to_owned()
            }
            (ErrorCode::DeviceRevoked, _) => {
                "This PC was removed from your account. Log in again to add it back.".to_owned()
            }
            (ErrorCode::QuotaExceeded, _) => {
                "This is more than your plan allows. Remove something, or choose a larger plan."
                    .to_owned()
            }
            (ErrorCode::InsufficientCredit, _) => {
                "You have used up your hours of computer time. Lending this PC's idle time \
                 earns more."
                    .to_owned()
            }
            (ErrorCode::Unavailable | ErrorCode::Internal, _) => SERVER_TROUBLE.to_owned(),
            _ => "Surplus's server refused this. See Details.".to_owned(),
        },
        ClientError::Unexpected { status, .. } if status.is_server_error() => {
            SERVER_TROUBLE.to_owned()
        }
        ClientError::Unexpected { .. } => {
            "The server at this address does not answer like a Surplus server. Check the \
             address."
                .to_owned()
        }
        ClientError::BadUrl(_) => {
            "That is not a server address. Write it like https://hub.example.com.".to_owned()
        }
        ClientError::InsecureUrl(_) => {
            "This server address starts with http://, which would send your password \
             unencrypted. Use its https:// address."
                .to_owned()
        }
        ClientError::CaFile { .. } => {
            "The certificate Surplus was told to trust can't be used. See Details.".to_owned()
        }
        ClientError::File { path, source } => io(&path.display().to_string(), source.kind()),
    }
}

fn key(error: &KeyError, doing: Doing) -> String {
    match error {
        KeyError::WrongPassphrase => {
            "That passphrase doesn't open your backups. Check it (capitals and spaces count) and \
             try again."
                .to_owned()
        }
        KeyError::NoPassphrase => "Enter your recovery passphrase first.".to_owned(),
        KeyError::WeakPassphrase(problem) => capitalised(problem),
        KeyError::Malformed(_) => {
            "The copy of your backup key on the server is damaged. Use a PC that still holds \
             the key, or see Details."
                .to_owned()
        }
        KeyError::Credentials(_) => {
            "Surplus can't reach this PC's keyring, where your backup key is kept. Unlock the \
             keyring and retry."
                .to_owned()
        }
        KeyError::Client(error) => client(error, doing),
    }
}

fn io(path: &str, kind: ErrorKind) -> String {
    match kind {
        ErrorKind::NotFound => format!("{path} doesn't exist. Choose another folder or file."),
        ErrorKind::PermissionDenied => {
            format!(
                "Surplus isn't allowed to use {path}. Choose another place, or change its permissions."
            )
        }
        ErrorKind::StorageFull => {
            format!("The disk holding {path} is full. Free some space and try again.")
        }
        ErrorKind::ReadOnlyFilesystem => {
            format!("{path} is on a disk that can't be written to. Choose another place.")
        }
        _ => format!("Surplus can't use {path}. See Details."),
    }
}

/// `text` with its first letter a capital and a full stop at the end.
fn capitalised(text: &str) -> String {
    let mut chars = text.trim().chars();
    let Some(first) = chars.next() else {
        return String::new();
    };
    let mut sentence: String = first.to_uppercase().chain(chars).collect();
    if !sentence.ends_with(['.', '!', '?']) {
        sentence.push('.');
    }
    sentence
}

#[cfg(test)]
mod tests {
    use surplus_protocol::ErrorBody;

    use super::*;

    fn refused(code: ErrorCode, message: &str) -> ControlError {
        ControlError::Client(ClientError::Hub {
            status: reqwest::StatusCode::BAD_REQUEST,
            body: ErrorBody {
                error: code,
                message: message.into(),
                retryable: false,
            },
        })
    }

    #[test]
    fn a_wrong_password_is_said_plainly_with_the_hubs_text_behind_details() {
        let problem =
            refused(ErrorCode::Unauthorized, "wrong email or password").explain(Doing::LoggingIn);
        assert!(
            problem
                .message
                .starts_with("That email and password don't match."),
            "{problem:?}"
        );
        assert_eq!(
            problem.details,
            "the hub refused: wrong email or password (unauthorized)"
        );
        // The same code elsewhere means the sign-in ran out.
        assert_eq!(
            refused(ErrorCode::Unauthorized, "expired")
                .explain(Doing::Other)
                .message,
            "This PC is no longer signed in to Surplus. Log in again."
        );
    }

    #[test]
    fn the_sentence_follows_the_code_not_the_wording() {
        let taken = refused(ErrorCode::Conflict, "whatever the hub says").explain(Doing::SigningUp);
        assert!(taken.message.contains("already an account"), "{taken:?}");
        let rule = refused(
            ErrorCode::ValidationFailed,
            "password must be at least 8 characters",
        )
        .explain(Doing::SigningUp);
        assert_eq!(rule.message, "Password must be at least 8 characters.");
        for code in [ErrorCode::Unavailable, ErrorCode::Internal] {
            assert_eq!(
                refused(code, "x").explain(Doing::Other).message,
                SERVER_TROUBLE
            );
        }
    }

    #[test]
    fn an_unreachable_server_says_it_will_retry() {
        let url = "http://127.0.0.1:9".to_owned();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let error = runtime
            .block_on(reqwest::Client::new().get(&url).send())
            .expect_err("nothing listens on the discard port");
        let problem =
            ControlError::Client(ClientError::Transport { url, error }).explain(Doing::LoggingIn);
        assert_eq!(problem.message, OFFLINE);
        assert!(problem.details.contains("127.0.0.1:9"), "{problem:?}");
    }

    #[test]
    fn files_and_folders_are_named_with_what_to_do() {
        let missing = ControlError::Io {
            path: "/home/ann/Photos".into(),
            source: std::io::Error::from(ErrorKind::NotFound),
        };
        assert_eq!(
            missing.explain(Doing::Other).message,
            "/home/ann/Photos doesn't exist. Choose another folder or file."
        );
        let wrong = ControlError::Key(KeyError::WrongPassphrase).explain(Doing::Other);
        assert!(wrong.message.starts_with("That passphrase doesn't open"));
        assert_eq!(
            ControlError::Input("a quota of 0 bytes is too small".into()).explain(Doing::Other),
            Problem::new("A quota of 0 bytes is too small.", "")
        );
    }
}
