//! The agent's client of the hub's API.
//!
//! One method per endpoint the agent and the CLI use. Errors say whether they came from the hub
//! (with its stable code and message) or from the way there (retryable: the hub may be away).

use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt, TryStreamExt};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use surplus_protocol::{
    Acknowledgement, Allocation, BlobRef, Credentials, Device, DeviceCredentials, ErrorBody,
    HeartbeatResponse, Instruction, InstructionBatch, PlaceBlobRequest, Placement, ProbeRequested,
    RegisterDevice, Session, StatusReport, Subscriber,
};
use uuid::Uuid;

mod accounts;
mod backup;
mod blobs;
mod compute;
mod devices;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The hub answered with an error.
    #[error("the hub refused: {} ({})", .body.message, .body.error)]
    Hub { status: StatusCode, body: ErrorBody },
    /// The hub could not be reached, or the connection broke.
    /// (`error` is not a `source`: the message already names every cause, once.)
    #[error("cannot reach the hub at {url}: {}", causes(.error))]
    Transport { url: String, error: reqwest::Error },
    /// The hub answered something this agent does not understand.
    #[error("unexpected answer from the hub ({status}): {detail}")]
    Unexpected { status: StatusCode, detail: String },
    #[error("the hub URL {0:?} is not valid: use http://HOST:PORT or https://HOST")]
    BadUrl(String),
    #[error(
        "the hub at {0} speaks plain http:// across the network, where passwords and device \
         secrets would travel readable: use its https:// address (or pass --insecure-http, or \
         set SURPLUS_INSECURE_HTTP=1, to accept clear text)"
    )]
    InsecureUrl(String),
    /// The private CA to trust could not be read or holds no certificate.
    #[error("the CA file {} cannot be used: {detail}", .path.display())]
    CaFile {
        path: std::path::PathBuf,
        detail: String,
    },
    /// A local file to send could not be read.
    #[error("reading {}: {source}", .path.display())]
    File {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

impl ClientError {
    /// Whether trying again later can help.
    pub fn retryable(&self) -> bool {
        match self {
            ClientError::Hub { body, .. } => body.retryable,
            ClientError::Transport { .. } => true,
            ClientError::Unexpected { status, .. } => status.is_server_error(),
            ClientError::BadUrl(_)
            | ClientError::InsecureUrl(_)
            | ClientError::CaFile { .. }
            | ClientError::File { .. } => false,
        }
    }

    /// The hub's error code, when the hub answered with one.
    pub fn code(&self) -> Option<surplus_protocol::ErrorCode> {
        match self {
            ClientError::Hub { body, .. } => Some(body.error),
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, ClientError>;

/// Set to `1` to let the agent speak plain `http://` to a hub that is not on this machine.
pub const INSECURE_HTTP_VARIABLE: &str = "SURPLUS_INSECURE_HTTP";
/// A PEM file of certificate authorities to trust for the hub, besides the built-in roots.
pub const CA_FILE_VARIABLE: &str = "SURPLUS_CA_FILE";

/// What the agent trusts on the way to its hub, beyond a certificate from a public CA.
/// Remembered in the settings with the hub's address, so the background agent connects the
/// way `surplus login` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(default, deny_unknown_fields)]
pub struct HubTrust {
    /// A private CA (PEM, one or more certificates) that signed the hub's certificate.
    pub ca_file: Option<std::path::PathBuf>,
    /// Accept a plain `http://` hub that is not on loopback: everything travels readable.
    pub insecure_http: bool,
}

impl HubTrust {
    pub fn is_default(&self) -> bool {
        *self == HubTrust::default()
    }

    /// This trust with what the environment adds: `SURPLUS_CA_FILE`, `SURPLUS_INSECURE_HTTP=1`.
    pub fn with_environment(mut self) -> HubTrust {
        if let Some(path) = std::env::var_os(CA_FILE_VARIABLE).filter(|p| !p.is_empty()) {
            self.ca_file = Some(path.into());
        }
        if std::env::var(INSECURE_HTTP_VARIABLE).is_ok_and(|v| v == "1") {
            self.insecure_http = true;
        }
        self
    }

    /// The certificates of `ca_file`, read and parsed.
    fn certificates(&self) -> Result<Vec<reqwest::Certificate>> {
        let Some(path) = &self.ca_file else {
            return Ok(Vec::new());
        };
        let failed = |detail: String| ClientError::CaFile {
            path: path.clone(),
            detail,
        };
        let pem = std::fs::read(path).map_err(|e| failed(e.to_string()))?;
        let certificates =
            reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| failed(causes(&e)))?;
        if certificates.is_empty() {
            return Err(failed("it holds no PEM certificate".into()));
        }
        Ok(certificates)
    }
}

/// An error with every cause after it: reqwest's own message rarely says what went wrong (an
/// unknown certificate issuer, a refused connection), its sources do.
fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let words = cause.to_string();
        if !text.contains(&words) {
            text.push_str(": ");
            text.push_str(&words);
        }
        source = cause.source();
    }
    if text.contains("certificate") || text.contains("UnknownIssuer") {
        text.push_str(
            " (a hub with a certificate from a private CA needs --ca-file FILE or SURPLUS_CA_FILE)",
        );
    }
    text
}

/// What `/healthz` told about the hub.
#[derive(Debug, Clone, PartialEq)]
pub struct HubProbe {
    pub round_trip: Duration,
    /// The hub's protocol version, when it names one.
    pub protocol: Option<u32>,
    /// The hub's clock (its `Date` header, to the second).
    pub clock: Option<surplus_protocol::UnixMillis>,
    /// Whether the way there is TLS, its certificate verified (else plain HTTP).
    pub encrypted: bool,
}

/// The protocol this agent speaks: [`surplus_protocol::PROTOCOL_VERSION`], or, in a build with
/// the `test-hooks` feature only, `SURPLUS_TEST_PROTOCOL` (to play an agent too old for the hub).
fn protocol_version() -> u32 {
    // Compiled out of a build without the feature: a shipped binary never reads the variable.
    #[cfg(feature = "test-hooks")]
    if let Some(version) = std::env::var("SURPLUS_TEST_PROTOCOL")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return version;
    }
    surplus_protocol::PROTOCOL_VERSION
}

/// Whether the URL names this machine (`localhost`, 127.0.0.0/8, `::1`): nothing sent there
/// crosses a network.
pub fn on_loopback(base: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(base) else {
        return false;
    };
    let host = url.host_str().unwrap_or_default();
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The hub's base URL, checked: `https://`, or `http://` on loopback or when `insecure` allows.
fn check_url(base: &str, insecure: bool) -> Result<String> {
    let base = base.trim_end_matches('/').to_owned();
    let Ok(url) = reqwest::Url::parse(&base) else {
        return Err(ClientError::BadUrl(base));
    };
    match url.scheme() {
        "https" => Ok(base),
        "http" => {
            if on_loopback(&base) || insecure {
                Ok(base)
            } else {
                Err(ClientError::InsecureUrl(base))
            }
        }
        _ => Err(ClientError::BadUrl(base)),
    }
}

/// The largest backup object (an index or a snapshot) or shard this agent takes from the hub:
/// the hub's own largest blob by default. A hub that sends more is cut off.
pub const MAX_OBJECT_BYTES: u64 = 256 << 20;

/// The longest one request waits for a holder to send a blob back (the hub may cut it shorter).
pub const RETRIEVE_POLL: Duration = Duration::from_secs(20);

/// A client of one hub.
#[derive(Debug, Clone)]
pub struct HubClient {
    http: reqwest::Client,
    base: String,
}

impl HubClient {
    /// A client of the hub at `base`, trusting what `trust` says besides public CAs. A plain
    /// `http://` hub is refused unless it is on this machine (loopback) or the trust accepts
    /// clear text: passwords, session tokens and device secrets would otherwise cross the
    /// network readable.
    pub fn new(base: &str, trust: &HubTrust) -> Result<HubClient> {
        let base = check_url(base, trust.insecure_http)?;
        let mut http = reqwest::Client::builder();
        for certificate in trust.certificates()? {
            http = http.add_root_certificate(certificate);
        }
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            surplus_protocol::PROTOCOL_HEADER,
            reqwest::header::HeaderValue::from(protocol_version()),
        );
        let http = http
            .default_headers(headers)
            .connect_timeout(Duration::from_secs(10))
            // A connection that goes quiet this long is dead (long polls answer within their
            // wait, which is shorter): give up on it rather than wait for ever.
            .read_timeout(Duration::from_secs(90))
            .user_agent(concat!("surplus-agent/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| ClientError::Transport {
                url: base.clone(),
                error: source,
            })?;
        Ok(HubClient { http, base })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Asks `/healthz`: whether the hub and its database answer, how fast, its protocol and its
    /// clock.
    pub async fn probe(&self) -> Result<HubProbe> {
        let started = std::time::Instant::now();
        let response = self
            .send(self.request(Method::GET, "/healthz", None))
            .await?;
        let round_trip = started.elapsed();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        };
        Ok(HubProbe {
            round_trip,
            protocol: header(surplus_protocol::PROTOCOL_HEADER).and_then(|v| v.parse().ok()),
            clock: header("date")
                .and_then(|date| chrono::DateTime::parse_from_rfc2822(&date).ok())
                .map(|date| date.timestamp_millis()),
            encrypted: self.base.starts_with("https://"),
        })
    }

    fn request(&self, method: Method, path: &str, token: Option<&str>) -> RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    async fn send(&self, request: RequestBuilder) -> Result<reqwest::Response> {
        let response = request
            .send()
            .await
            .map_err(|source| ClientError::Transport {
                url: self.base.clone(),
                error: source,
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = response.text().await.unwrap_or_default();
        match serde_json::from_str::<ErrorBody>(&text) {
            Ok(body) => Err(ClientError::Hub { status, body }),
            Err(_) => Err(ClientError::Unexpected {
                status,
                detail: text.chars().take(200).collect(),
            }),
        }
    }

    async fn json<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<T> {
        let response = self.send(request).await?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|source| ClientError::Transport {
                url: self.base.clone(),
                error: source,
            })?;
        serde_json::from_slice(&bytes).map_err(|error| ClientError::Unexpected {
            status,
            detail: error.to_string(),
        })
    }

    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        token: Option<&str>,
        body: &B,
    ) -> Result<T> {
        self.json(self.request(Method::POST, path, token).json(body))
            .await
    }
}

/// Paces a byte stream to at most `rate` bytes per second (no pacing without a rate).
pub fn throttle<S>(
    stream: S,
    rate: Option<u64>,
) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + Unpin + 'static
where
    S: futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + Unpin + 'static,
{
    let started = tokio::time::Instant::now();
    let mut sent = 0u64;
    Box::pin(stream.then(move |chunk| {
        let delay = match (&chunk, rate) {
            (Ok(bytes), Some(rate)) if rate > 0 => {
                sent += bytes.len() as u64;
                let due = started + Duration::from_secs_f64(sent as f64 / rate as f64);
                Some(due)
            }
            _ => None,
        };
        async move {
            if let Some(due) = delay {
                tokio::time::sleep_until(due).await;
            }
            chunk
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_on_this_machine_unless_accepted() {
        for local in [
            "http://127.0.0.1:7420",
            "http://127.8.9.10/",
            "http://localhost:7420",
            "http://[::1]:7420",
            "https://hub.example.org",
        ] {
            assert!(check_url(local, false).is_ok(), "{local}");
        }
        for remote in [
            "http://hub.example.org",
            "http://192.0.2.7:7420",
            "http://[2001:db8::1]",
        ] {
            assert!(
                matches!(check_url(remote, false), Err(ClientError::InsecureUrl(_))),
                "{remote}"
            );
            assert!(check_url(remote, true).is_ok(), "{remote}");
        }
        for bad in ["ftp://hub.example.org", "hub.example.org", "http://"] {
            assert!(
                matches!(check_url(bad, true), Err(ClientError::BadUrl(_))),
                "{bad}"
            );
        }
    }
}
