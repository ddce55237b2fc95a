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

    /// Signs up and logs in. The hub answers a sign-up the same way whether or not the email
    /// had an account (so that it reveals nobody's), so a log-in refused after it means the email
    /// has an account with another password.
    pub async fn signup(&self, credentials: &Credentials) -> Result<Session> {
        let _: surplus_protocol::SignupAccepted =
            self.post("/v1/signup", None, credentials).await?;
        match self.login(credentials).await {
            Err(ClientError::Hub { status, mut body })
                if body.error == surplus_protocol::ErrorCode::Unauthorized =>
            {
                body.message = "this email could not sign up with that password: if it has an \
                                account already, log in with its password"
                    .into();
                Err(ClientError::Hub { status, body })
            }
            other => other,
        }
    }

    pub async fn login(&self, credentials: &Credentials) -> Result<Session> {
        self.post("/v1/login", None, credentials).await
    }

    /// Ends this session at the hub (`everywhere`: every session of the subscriber's).
    pub async fn logout(&self, session: &str, everywhere: bool) -> Result<()> {
        let path = if everywhere {
            "/v1/sessions"
        } else {
            "/v1/sessions/current"
        };
        self.send(self.request(Method::DELETE, path, Some(session)))
            .await?;
        Ok(())
    }

    pub async fn me(&self, session: &str) -> Result<Subscriber> {
        self.json(self.request(Method::GET, "/v1/me", Some(session)))
            .await
    }

    pub async fn register_device(&self, session: &str, name: &str) -> Result<DeviceCredentials> {
        self.post(
            "/v1/devices",
            Some(session),
            &RegisterDevice {
                name: name.to_owned(),
            },
        )
        .await
    }

    pub async fn devices(&self, session: &str) -> Result<Vec<Device>> {
        self.json(self.request(Method::GET, "/v1/devices", Some(session)))
            .await
    }

    pub async fn revoke_device(&self, session: &str, device_id: Uuid) -> Result<()> {
        self.send(self.request(
            Method::DELETE,
            &format!("/v1/devices/{device_id}"),
            Some(session),
        ))
        .await?;
        Ok(())
    }

    /// Deregisters the calling device (it leaves for good): its credential stops working.
    pub async fn leave(&self, device: &str) -> Result<()> {
        self.send(self.request(Method::DELETE, "/v1/device", Some(device)))
            .await?;
        Ok(())
    }

    /// What the calling device holds for others, and how far its hand-over is.
    pub async fn holdings(&self, device: &str) -> Result<surplus_protocol::Holdings> {
        self.json(self.request(Method::GET, "/v1/device/holdings", Some(device)))
            .await
    }

    /// Every blob the hub records the calling device holding for someone.
    pub async fn retain(&self, device: &str) -> Result<surplus_protocol::RetainList> {
        self.json(self.request(Method::GET, "/v1/device/retain", Some(device)))
            .await
    }

    pub async fn probe_devices(&self, session: &str) -> Result<ProbeRequested> {
        self.json(self.request(Method::POST, "/v1/devices/probe", Some(session)))
            .await
    }

    pub async fn allocations(&self, session: &str) -> Result<Vec<Allocation>> {
        self.json(self.request(Method::GET, "/v1/allocations", Some(session)))
            .await
    }

    pub async fn heartbeat(
        &self,
        device: &str,
        report: &StatusReport,
    ) -> Result<HeartbeatResponse> {
        self.post("/v1/device/heartbeat", Some(device), report)
            .await
    }

    /// Waits up to `wait` for instructions (a long poll).
    pub async fn poll(&self, device: &str, wait: Duration) -> Result<Vec<Instruction>> {
        let request = self
            .request(
                Method::GET,
                &format!("/v1/device/instructions?wait={}", wait.as_secs()),
                Some(device),
            )
            .timeout(wait + Duration::from_secs(30));
        Ok(self.json::<InstructionBatch>(request).await?.instructions)
    }

    pub async fn acknowledge(
        &self,
        device: &str,
        instruction: Uuid,
        ack: &Acknowledgement,
    ) -> Result<()> {
        let path = format!("/v1/device/instructions/{instruction}/ack");
        self.send(self.request(Method::POST, &path, Some(device)).json(ack))
            .await?;
        Ok(())
    }

    /// Streams a blob out of the hub's staging store.
    pub async fn download_blob(
        &self,
        token: &str,
        hash: &str,
    ) -> Result<impl Stream<Item = std::io::Result<Bytes>> + use<>> {
        let response = self
            .send(self.request(Method::GET, &format!("/v1/blobs/{hash}"), Some(token)))
            .await?;
        Ok(response.bytes_stream().map_err(std::io::Error::other))
    }

    /// Uploads a blob into the hub's staging store, streaming it from `body`.
    pub async fn upload_blob(
        &self,
        token: &str,
        hash: &str,
        size: u64,
        body: reqwest::Body,
    ) -> Result<BlobRef> {
        let request = self
            .request(Method::PUT, &format!("/v1/blobs/{hash}"), Some(token))
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .header(reqwest::header::CONTENT_LENGTH, size)
            .body(body);
        self.json(request).await
    }

    /// Uploads a file into the hub's staging store, streaming it within `rate` bytes per
    /// second (unlimited without one). The file is read twice: once to name it by its hash,
    /// once to send it.
    pub async fn upload_file(
        &self,
        token: &str,
        path: &std::path::Path,
        rate: Option<u64>,
    ) -> Result<BlobRef> {
        let io = |error: std::io::Error| ClientError::File {
            path: path.to_owned(),
            source: error,
        };
        let hashing = path.to_owned();
        let (hash, size) = tokio::task::spawn_blocking(move || {
            let file = std::fs::File::open(&hashing)?;
            let mut hasher = blake3::Hasher::new();
            let size = std::io::copy(&mut std::io::BufReader::new(file), &mut hasher)?;
            Ok::<_, std::io::Error>((hasher.finalize().to_hex().to_string(), size))
        })
        .await
        .map_err(|e| io(std::io::Error::other(e)))?
        .map_err(io)?;
        let file = tokio::fs::File::open(path).await.map_err(io)?;
        let stream = throttle(tokio_util::io::ReaderStream::new(file), rate);
        self.upload_blob(token, &hash, size, reqwest::Body::wrap_stream(stream))
            .await
    }

    /// A whole blob from staging, in memory (for shards, a few MiB each).
    /// A staged blob of `size` bytes, whole, in memory. A hub that sends more is cut off with an
    /// error at the first byte past `size`, so it cannot make this device hold more than it
    /// asked for.
    pub async fn download_bytes(&self, token: &str, hash: &str, size: u64) -> Result<Vec<u8>> {
        self.get_bytes(&format!("/v1/blobs/{hash}"), token, size)
            .await
    }

    /// A whole response body of a GET, of at most `max` bytes: a longer one is an error.
    async fn get_bytes(&self, path: &str, token: &str, max: u64) -> Result<Vec<u8>> {
        let response = self
            .send(self.request(Method::GET, path, Some(token)))
            .await?;
        let mut stream = response.bytes_stream();
        let mut bytes = Vec::with_capacity(usize::try_from(max.min(1 << 20)).unwrap_or(0));
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|source| ClientError::Transport {
                url: self.base.clone(),
                error: source,
            })?;
            if bytes.len() as u64 + chunk.len() as u64 > max {
                return Err(ClientError::Unexpected {
                    status: StatusCode::OK,
                    detail: format!("the hub sent more than the {max} bytes expected from {path}"),
                });
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }

    pub async fn put_wrapped_key(&self, token: &str, wrapped: &str) -> Result<()> {
        let body = surplus_protocol::WrappedKeyBody {
            wrapped: wrapped.to_owned(),
        };
        self.send(
            self.request(Method::PUT, "/v1/backup/key", Some(token))
                .json(&body),
        )
        .await?;
        Ok(())
    }

    /// The escrowed wrapped key, or `None` if there is none yet.
    pub async fn wrapped_key(&self, token: &str) -> Result<Option<String>> {
        match self
            .json::<surplus_protocol::WrappedKeyBody>(self.request(
                Method::GET,
                "/v1/backup/key",
                Some(token),
            ))
            .await
        {
            Ok(body) => Ok(Some(body.wrapped)),
            Err(error) if error.code() == Some(surplus_protocol::ErrorCode::NotFound) => Ok(None),
            Err(error) => Err(error),
        }
    }

    pub async fn put_object(
        &self,
        token: &str,
        kind: &str,
        name: &str,
        bytes: Vec<u8>,
    ) -> Result<()> {
        let path = format!("/v1/backup/objects/{kind}/{name}");
        self.send(self.request(Method::PUT, &path, Some(token)).body(bytes))
            .await?;
        Ok(())
    }

    pub async fn get_object(&self, token: &str, kind: &str, name: &str) -> Result<Vec<u8>> {
        self.get_bytes(
            &format!("/v1/backup/objects/{kind}/{name}"),
            token,
            MAX_OBJECT_BYTES,
        )
        .await
    }

    pub async fn list_objects(&self, token: &str, kind: &str) -> Result<Vec<String>> {
        self.json(self.request(
            Method::GET,
            &format!("/v1/backup/objects/{kind}"),
            Some(token),
        ))
        .await
    }

    /// Lets a blob go: when the hub's grace period ends, holders delete it and allocations are
    /// released (until then [`HubClient::recover_forgotten`] brings it back).
    pub async fn drop_placement(&self, token: &str, hash: &str) -> Result<()> {
        self.send(self.request(
            Method::DELETE,
            &format!("/v1/placements/{hash}"),
            Some(token),
        ))
        .await?;
        Ok(())
    }

    /// Where each of the subscriber's packs stands.
    pub async fn backup_health(&self, token: &str) -> Result<surplus_protocol::BackupHealth> {
        self.json(self.request(Method::GET, "/v1/backup/health", Some(token)))
            .await
    }

    /// What the subscriber forgot that the hub still keeps, recoverable.
    pub async fn forgotten(&self, token: &str) -> Result<surplus_protocol::Forgotten> {
        self.json(self.request(Method::GET, "/v1/backup/forgotten", Some(token)))
            .await
    }

    /// Brings back everything forgotten that the hub still keeps.
    pub async fn recover_forgotten(&self, token: &str) -> Result<surplus_protocol::Recovered> {
        self.json(self.request(Method::POST, "/v1/backup/forgotten/recover", Some(token)))
            .await
    }

    /// Forgets a backup object: hidden at once, deleted when the hub's grace period ends.
    pub async fn delete_object(&self, token: &str, kind: &str, name: &str) -> Result<()> {
        self.send(self.request(
            Method::DELETE,
            &format!("/v1/backup/objects/{kind}/{name}"),
            Some(token),
        ))
        .await?;
        Ok(())
    }

    /// Asks for a blob back (its holders upload it when the hub no longer has it).
    pub async fn retrieve_blob(
        &self,
        token: &str,
        hash: &str,
        wait: Duration,
    ) -> Result<surplus_protocol::Retrieval> {
        let path = match wait.as_secs() {
            0 => format!("/v1/blobs/{hash}/retrieve"),
            seconds => format!("/v1/blobs/{hash}/retrieve?wait={seconds}"),
        };
        self.json(self.request(Method::POST, &path, Some(token)))
            .await
    }

    /// Asks for a blob back and waits until a holder has sent it to the hub (long polls of up
    /// to [`RETRIEVE_POLL`]), or until `deadline`. Whether it is staged. A hub that answers at
    /// once (one from before long polls) is asked again after a growing pause.
    pub async fn until_staged(
        &self,
        token: &str,
        hash: &str,
        deadline: tokio::time::Instant,
    ) -> Result<bool> {
        let mut pause = Duration::from_millis(200);
        loop {
            let asked = tokio::time::Instant::now();
            let wait = deadline.saturating_duration_since(asked).min(RETRIEVE_POLL);
            if self.retrieve_blob(token, hash, wait).await?.staged {
                return Ok(true);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            if now - asked < wait / 2 {
                tokio::time::sleep(pause.min(deadline - now)).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
        }
    }

    /// Gets a blob back into `path`: asks for it, waits up to `wait` for a holder to send it to
    /// the hub, downloads it and checks its hash. The file appears only once it is whole.
    pub async fn fetch_blob_to(
        &self,
        token: &str,
        hash: &str,
        path: &std::path::Path,
        wait: Duration,
    ) -> Result<u64> {
        use tokio::io::AsyncWriteExt;
        let deadline = tokio::time::Instant::now() + wait;
        if !self.until_staged(token, hash, deadline).await? {
            return Err(ClientError::Unexpected {
                status: StatusCode::GATEWAY_TIMEOUT,
                detail: format!(
                    "no holder of {hash} sent it back within {}s; its holders may be offline",
                    wait.as_secs()
                ),
            });
        }
        let io = |error: std::io::Error| ClientError::File {
            path: path.to_owned(),
            source: error,
        };
        let temp = path.with_extension("surplus-part");
        let mut stream = self.download_blob(token, hash).await?;
        // Written anew, never through a link left under the temporary name; then renamed over
        // `path`, which replaces a link there rather than writing where it points.
        let _ = std::fs::remove_file(&temp);
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .await
            .map_err(io)?;
        let mut hasher = blake3::Hasher::new();
        let mut size = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(io)?;
            hasher.update(&chunk);
            size += chunk.len() as u64;
            file.write_all(&chunk).await.map_err(io)?;
        }
        file.sync_all().await.map_err(io)?;
        if hasher.finalize().to_hex().as_str() != hash {
            let _ = tokio::fs::remove_file(&temp).await;
            return Err(ClientError::Unexpected {
                status: StatusCode::OK,
                detail: format!("what came back does not hash to {hash}"),
            });
        }
        tokio::fs::rename(&temp, path).await.map_err(io)?;
        Ok(size)
    }

    pub async fn place_blob(&self, token: &str, hash: &str, copies: u32) -> Result<Placement> {
        self.place(token, hash, copies, None).await
    }

    /// Places a blob as a shard of `pack`: on another subscriber's device than any other shard.
    pub async fn place_shard(&self, token: &str, hash: &str, pack: &str) -> Result<Placement> {
        self.place(token, hash, 1, Some(pack)).await
    }

    async fn place(
        &self,
        token: &str,
        hash: &str,
        copies: u32,
        pack: Option<&str>,
    ) -> Result<Placement> {
        self.post(
            "/v1/placements",
            Some(token),
            &PlaceBlobRequest {
                hash: hash.to_owned(),
                copies,
                pack: pack.map(str::to_owned),
            },
        )
        .await
    }

    pub async fn placement(&self, token: &str, hash: &str) -> Result<Placement> {
        self.json(self.request(Method::GET, &format!("/v1/placements/{hash}"), Some(token)))
            .await
    }

    /// The subscriber's backup settings and the coding the next backup uses.
    pub async fn backup_plan(&self, token: &str) -> Result<surplus_protocol::BackupPlan> {
        self.json(self.request(Method::GET, "/v1/backup/settings", Some(token)))
            .await
    }

    pub async fn set_backup_settings(
        &self,
        token: &str,
        settings: &surplus_protocol::BackupSettings,
    ) -> Result<surplus_protocol::BackupPlan> {
        self.json(
            self.request(Method::PUT, "/v1/backup/settings", Some(token))
                .json(settings),
        )
        .await
    }

    /// Challenges every shard of the subscriber's at its holder.
    pub async fn start_verify(&self, token: &str) -> Result<surplus_protocol::VerifyRun> {
        self.json(self.request(Method::POST, "/v1/backup/verify", Some(token)))
            .await
    }

    /// Submits a compute job whose module and inputs are staged.
    pub async fn submit_job(
        &self,
        token: &str,
        request: &surplus_protocol::JobRequest,
    ) -> Result<surplus_protocol::Job> {
        let request = self
            .request(Method::POST, "/v1/compute/jobs", Some(token))
            .json(request);
        self.json(request).await
    }

    /// A job of the caller's, with its tasks.
    pub async fn job(&self, token: &str, id: Uuid) -> Result<surplus_protocol::Job> {
        let request = self.request(Method::GET, &format!("/v1/compute/jobs/{id}"), Some(token));
        self.json(request).await
    }

    /// The caller's jobs, newest first.
    pub async fn jobs(&self, token: &str) -> Result<Vec<surplus_protocol::Job>> {
        let request = self.request(Method::GET, "/v1/compute/jobs", Some(token));
        self.json(request).await
    }

    pub async fn cancel_job(&self, token: &str, id: Uuid) -> Result<surplus_protocol::Job> {
        let request = self.request(
            Method::POST,
            &format!("/v1/compute/jobs/{id}/cancel"),
            Some(token),
        );
        self.json(request).await
    }

    /// The caller's compute credit.
    pub async fn credits(&self, token: &str) -> Result<surplus_protocol::Credits> {
        let request = self.request(Method::GET, "/v1/credits", Some(token));
        self.json(request).await
    }

    /// Uploads the output of a run this device ran.
    pub async fn upload_output(&self, device: &str, run: Uuid, output: Vec<u8>) -> Result<BlobRef> {
        let hash = blake3::hash(&output).to_hex().to_string();
        let request = self
            .request(
                Method::PUT,
                &format!("/v1/device/runs/{run}/outputs/{hash}"),
                Some(device),
            )
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .header(reqwest::header::CONTENT_LENGTH, output.len())
            .body(output);
        self.json(request).await
    }

    pub async fn verify_run(&self, token: &str, id: Uuid) -> Result<surplus_protocol::VerifyRun> {
        self.json(self.request(Method::GET, &format!("/v1/backup/verify/{id}"), Some(token)))
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
