//! Why the worker stops, and which of the hub's refusals end it.

use std::path::PathBuf;

use crate::client::ClientError;
use crate::vault::VaultError;

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("no hub is set: log in with `surplus --hub URL login` first")]
    NoHub,
    #[error("this device is not registered: run `surplus device register --name NAME` first")]
    NotRegistered,
    #[error("the hub no longer accepts this device's credential ({0}): register the device again")]
    CredentialRejected(String),
    #[error("another agent is already running on {0}")]
    AlreadyRunning(PathBuf),
    #[error(transparent)]
    Settings(#[from] crate::settings::SettingsError),
    #[error(transparent)]
    Credentials(#[from] crate::credentials::CredentialError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A credential the hub no longer accepts ends the worker: retrying cannot help.
pub(super) fn fatal(error: &ClientError) -> Option<WorkerError> {
    use surplus_protocol::ErrorCode;
    match error.code() {
        Some(code @ (ErrorCode::Unauthorized | ErrorCode::DeviceRevoked)) => {
            Some(WorkerError::CredentialRejected(code.to_string()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use surplus_protocol::{ErrorBody, ErrorCode};

    use super::*;

    fn refused(status: reqwest::StatusCode, error: ErrorCode) -> ClientError {
        ClientError::Hub {
            status,
            body: ErrorBody {
                error,
                message: "refused".to_owned(),
                retryable: false,
            },
        }
    }

    #[test]
    fn a_revoked_or_unknown_device_stops_the_worker_and_nothing_else_does() {
        use reqwest::StatusCode;
        for code in [ErrorCode::DeviceRevoked, ErrorCode::Unauthorized] {
            let ended = fatal(&refused(StatusCode::UNAUTHORIZED, code));
            assert!(
                matches!(&ended, Some(WorkerError::CredentialRejected(why)) if *why == code.to_string()),
                "{ended:?}"
            );
        }
        for code in [
            ErrorCode::NotFound,
            ErrorCode::AgentTooOld,
            ErrorCode::Internal,
        ] {
            assert!(fatal(&refused(StatusCode::BAD_REQUEST, code)).is_none());
        }
        assert!(fatal(&ClientError::BadUrl("hub".to_owned())).is_none());
    }
}
