//! The one shape of every error the hub returns, with its stable, machine-readable code.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The body of every error response from the hub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// A stable, machine-readable code: scripts and clients match on this, never on the message.
    pub error: ErrorCode,
    /// A sentence for a person, naming what was wrong.
    pub message: String,
    /// Whether sending the same request again later can succeed.
    pub retryable: bool,
}

/// Stable error codes. New codes may be added; existing ones never change meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request is malformed: a bad path parameter, query string or header.
    BadRequest,
    /// The body is not valid JSON or does not have the expected shape.
    InvalidJson,
    /// The body has the wrong content type.
    UnsupportedMediaType,
    /// A field has a value outside what is allowed; the message names it.
    ValidationFailed,
    /// No credentials, or credentials that are not valid.
    Unauthorized,
    /// Valid credentials that do not allow this request.
    Forbidden,
    /// No such route or resource (or not one the caller may see).
    NotFound,
    /// The route exists but not for this method.
    MethodNotAllowed,
    /// The request conflicts with the current state (an email already signed up, say).
    Conflict,
    /// The body is larger than the hub accepts.
    PayloadTooLarge,
    /// An uploaded blob's content does not hash to the name it was uploaded under.
    HashMismatch,
    /// The subscriber is suspended: no new allocations are made for them.
    SubscriberSuspended,
    /// The subscriber has cancelled: no new allocations are made for them.
    SubscriberCancelled,
    /// The device has been revoked by its owner.
    DeviceRevoked,
    /// The request would exceed a plan's limit.
    QuotaExceeded,
    /// The subscriber's compute credit is used up: their devices earn more by running others'
    /// tasks.
    InsufficientCredit,
    /// Too many requests of this kind from this address, account or device: try again after the
    /// time the `Retry-After` header gives.
    RateLimited,
    /// The hub cannot serve the request right now; try again later.
    Unavailable,
    /// A fault inside the hub. The details are in the hub's log, never in the response.
    Internal,
    /// The agent speaks a protocol older than the hub serves: update Surplus.
    AgentTooOld,
    /// A code newer than this client: read the message and the status.
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::InvalidJson => "invalid_json",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::ValidationFailed => "validation_failed",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Conflict => "conflict",
            Self::PayloadTooLarge => "payload_too_large",
            Self::HashMismatch => "hash_mismatch",
            Self::SubscriberSuspended => "subscriber_suspended",
            Self::SubscriberCancelled => "subscriber_cancelled",
            Self::DeviceRevoked => "device_revoked",
            Self::QuotaExceeded => "quota_exceeded",
            Self::InsufficientCredit => "insufficient_credit",
            Self::RateLimited => "rate_limited",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
            Self::AgentTooOld => "agent_too_old",
            Self::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_match_as_str() {
        for code in [
            ErrorCode::BadRequest,
            ErrorCode::InvalidJson,
            ErrorCode::HashMismatch,
            ErrorCode::SubscriberSuspended,
            ErrorCode::Internal,
            ErrorCode::AgentTooOld,
        ] {
            let json = serde_json::to_string(&code).expect("serialises");
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }

    #[test]
    fn a_code_from_a_newer_hub_is_read_as_unknown() {
        let body: ErrorBody = serde_json::from_str(
            r#"{"error": "code_from_the_future", "message": "try later", "retryable": true}"#,
        )
        .expect("an error body with a new code still reads");
        assert_eq!(body.error, ErrorCode::Unknown);
        assert_eq!(body.message, "try later");
    }
}
