//! Subscribers' accounts: signing up, logging in, sessions, and what the hub says of an account.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::UnixMillis;

/// Sign-up and log-in both take an email and a password.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Credentials {
    pub email: String,
    pub password: String,
}

/// The answer to a sign-up, the same whether or not the email had an account already (so that
/// signing up tells nobody who has one): log in next.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SignupAccepted {
    pub message: String,
}

/// One of a subscriber's log-in sessions, as its owner sees it (never its token).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SessionInfo {
    /// Names the session for `DELETE /v1/sessions/{id}`; not a credential.
    pub id: String,
    pub created_at: UnixMillis,
    pub last_used_at: UnixMillis,
    /// When it ends unless used before: each use renews it, up to a maximum age.
    pub expires_at: UnixMillis,
    /// Whether this is the session the request came with.
    pub current: bool,
}

/// A session, returned by log-in.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Session {
    /// The bearer token for subscriber requests (`Authorization: Bearer ses_...`).
    pub token: String,
    pub expires_at: UnixMillis,
    pub subscriber: Subscriber,
}

/// A subscriber's account as the subscriber and the operator see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Subscriber {
    pub id: Uuid,
    pub email: String,
    pub plan: Plan,
    pub status: SubscriberStatus,
    pub created_at: UnixMillis,
}

/// Whether a subscriber is in good standing. Only active subscribers get new allocations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SubscriberStatus {
    Active,
    Suspended,
    Cancelled,
}

impl SubscriberStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "active" => Some(Self::Active),
            "suspended" => Some(Self::Suspended),
            "cancelled" => Some(Self::Cancelled),
            _ => None,
        }
    }
}

/// The plans a subscriber can be on. The plan bounds what the hub allocates for and from them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Plan {
    /// The plan every sign-up starts on.
    Standard,
    /// A larger plan for households with several PCs.
    Family,
}

impl Plan {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Standard => "standard",
            Self::Family => "family",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "standard" => Some(Self::Standard),
            "family" => Some(Self::Family),
            _ => None,
        }
    }

    /// What the plan allows.
    pub fn limits(self) -> PlanLimits {
        const GIB: u64 = 1 << 30;
        match self {
            Self::Standard => PlanLimits {
                stored_bytes: 200 * GIB,
                devices: 5,
                max_copies: 8,
                starting_credit: 10 * 3600,
                max_job_tasks: 1000,
            },
            Self::Family => PlanLimits {
                stored_bytes: 1024 * GIB,
                devices: 20,
                max_copies: 8,
                starting_credit: 50 * 3600,
                max_job_tasks: 10_000,
            },
        }
    }
}

/// The limits a plan sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PlanLimits {
    /// How many bytes of the subscriber's own data the service keeps for them (each copy counted once).
    pub stored_bytes: u64,
    /// How many devices may be registered at once.
    pub devices: u32,
    /// The most holders one blob may be copied to.
    pub max_copies: u32,
    /// The compute credit a new subscriber starts with, in core-seconds.
    pub starting_credit: u64,
    /// The most tasks one job may have.
    pub max_job_tasks: u32,
}
