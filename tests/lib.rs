//! Support for the end-to-end tests: start a real `surplus-hub` and real `surplus` agents as
//! processes on loopback, drive them with the real command lines, and look at what they did.
//!
//! The binaries are taken from the target directory next to the test executable (build them
//! first: `cargo build -p surplus-hub -p surplus-cli`; `scripts/test` does), or from
//! `SURPLUS_BIN_DIR`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Where the binaries under test are.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SURPLUS_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    // target/debug/deps/it-HASH -> target/debug
    exe.parent()
        .and_then(Path::parent)
        .expect("target directory")
        .to_owned()
}

pub fn binary(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build -p surplus-hub -p surplus-cli` first",
        path.display()
    );
    path
}

/// Runs `work` to its end on a runtime of its own: for the test's own calls into the hub's
/// library and database, beside the processes under test.
pub fn block_on<T>(work: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(work)
}

/// Polls `condition` every 50 ms until it holds; panics with `what` after `limit`.
pub fn wait_for(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The databases to run against: SQLite always, PostgreSQL when the test script started one.
pub fn databases(dir: &Path) -> Vec<String> {
    let mut urls = vec![format!("sqlite://{}", dir.join("hub.db").display())];
    match std::env::var("SURPLUS_TEST_POSTGRES") {
        Ok(base) if !base.is_empty() => urls.push(fresh_postgres(&base)),
        _ => assert!(
            std::env::var_os("CI").is_none(),
            "CI runs the end-to-end tests on PostgreSQL too: set SURPLUS_TEST_POSTGRES"
        ),
    }
    urls
}

/// A database of its own on the shared test server.
pub fn fresh_postgres(base: &str) -> String {
    use sqlx::Connection;
    let name = format!("e{}", uuid::Uuid::new_v4().simple());
    block_on(async {
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect(base)
            .await
            .expect("connect to the test PostgreSQL");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create database");
    });
    let (head, _) = base.rsplit_once('/').expect("URL has a database path");
    format!("{head}/{name}")
}

/// One test's world: a temporary directory, a hub and its agents.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub database: String,
    /// The hub, or the first of its replicas.
    pub hub: Hub,
    /// The other replicas, when the hub is replicated ([`Cluster::replicated`]).
    pub replicas: Vec<Hub>,
    /// The load balancer in front of the replicas, which devices talk to.
    pub balancer: Option<Balancer>,
    pub agents: Vec<Agent>,
}

/// A private certificate authority and the certificate it signed for the hub on loopback, made
/// for one test: what an operator with an internal CA would give the hub and its devices.
#[derive(Debug, Clone)]
pub struct TestCa {
    /// The CA's certificate (PEM): what devices are told to trust.
    pub ca: PathBuf,
    /// The hub's certificate (PEM) and its key.
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestCa {
    /// A new CA named `name` in `dir`, and a hub certificate for 127.0.0.1 and localhost.
    pub fn make(dir: &Path, name: &str) -> TestCa {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let mut params = CertificateParams::new(Vec::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("Surplus test CA {name}"));
        let ca_key = KeyPair::generate().expect("CA key");
        let ca_cert = params.self_signed(&ca_key).expect("CA certificate");
        let issuer = Issuer::new(params, ca_key);
        let hub_params = CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
            .expect("hub certificate parameters");
        let hub_key = KeyPair::generate().expect("hub key");
        let hub_cert = hub_params
            .signed_by(&hub_key, &issuer)
            .expect("hub certificate");
        let tls = TestCa {
            ca: dir.join(format!("{name}-ca.pem")),
            cert: dir.join(format!("{name}-hub.pem")),
            key: dir.join(format!("{name}-hub-key.pem")),
        };
        std::fs::write(&tls.ca, ca_cert.pem()).expect("write the CA");
        std::fs::write(&tls.cert, hub_cert.pem()).expect("write the hub's certificate");
        std::fs::write(&tls.key, hub_key.serialize_pem()).expect("write the hub's key");
        tls
    }
}

/// Whether an HTTPS GET of `url`, trusting only `ca`, is answered 200.
pub fn https_get_ok(url: &str, ca: &Path) -> bool {
    get_text(url, Some(ca)).is_some()
}

/// The body of a GET of `url` answered 200 (over HTTPS trusting only `ca`, when given).
pub fn get_text(url: &str, ca: Option<&Path>) -> Option<String> {
    let mut client = reqwest::Client::builder().timeout(Duration::from_secs(5));
    if let Some(ca) = ca {
        let certificate = reqwest::Certificate::from_pem(&std::fs::read(ca).ok()?).ok()?;
        client = client
            .tls_built_in_root_certs(false)
            .add_root_certificate(certificate);
    }
    let client = client.build().ok()?;
    block_on(async {
        let response = client.get(url).send().await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        response.text().await.ok()
    })
}

/// Where a test hub stages blobs: a folder beside its database for SQLite, and, when the test
/// script started an S3 server (scripts/s3.sh), a prefix of its bucket for PostgreSQL: the
/// embedded default, and what a hub that scales out runs on.
#[derive(Debug, Clone)]
struct Staging {
    /// What `--staging` is given.
    address: String,
    /// Where the blobs land on disk.
    on_disk: PathBuf,
}

impl Staging {
    fn for_database(dir: &Path, database: &str) -> Staging {
        let s3_root = std::env::var_os("SURPLUS_TEST_S3_ROOT").filter(|root| !root.is_empty());
        match s3_root {
            Some(root) if database.starts_with("postgres") => {
                let prefix = uuid::Uuid::new_v4().simple().to_string();
                Staging {
                    address: format!("s3://surplus-test/{prefix}"),
                    on_disk: Path::new(&root).join("surplus-test").join(prefix),
                }
            }
            _ => {
                assert!(
                    std::env::var_os("CI").is_none() || !database.starts_with("postgres"),
                    "CI runs the end-to-end tests on S3 staging too: set SURPLUS_TEST_S3_ROOT"
                );
                let folder = dir.join("staging");
                Staging {
                    address: folder.to_str().expect("utf-8").to_owned(),
                    on_disk: folder,
                }
            }
        }
    }
}

pub struct Hub {
    pub url: String,
    /// The hub serves HTTPS with a certificate from this test CA (unless it is a replica behind
    /// the balancer, which serves plain HTTP on loopback).
    pub tls: TestCa,
    /// A replica behind the load balancer: plain HTTP, `--behind-proxy`.
    behind_proxy: bool,
    pub port: u16,
    database: String,
    staging: Staging,
    log: PathBuf,
    config: PathBuf,
    process: Option<Child>,
}

impl Hub {
    fn start(dir: &Path, database: &str) -> Hub {
        Hub::launch(
            dir,
            "hub",
            database,
            Staging::for_database(dir, database),
            false,
        )
    }

    /// Starts a hub named `name` (its log and config file are named after it).
    fn launch(dir: &Path, name: &str, database: &str, staging: Staging, behind_proxy: bool) -> Hub {
        let port = free_port();
        let scheme = if behind_proxy { "http" } else { "https" };
        let mut hub = Hub {
            url: format!("{scheme}://127.0.0.1:{port}"),
            tls: TestCa::make(dir, name),
            behind_proxy,
            port,
            database: database.to_owned(),
            staging,
            log: dir.join(format!("{name}.log")),
            config: dir.join(format!("{name}.toml")),
            process: None,
        };
        // An instruction whose acknowledgement does not come within 3 s is delivered again, so
        // that redelivery after an agent dies shows within a test's patience; copies staged for
        // a restore are dropped 5 s after they came.
        std::fs::write(
            &hub.config,
            "instruction_lease_seconds = 3\nrestore_staging_seconds = 5\n",
        )
        .expect("write the hub's config");
        hub.spawn();
        hub
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("hub log");
        let child = Command::new(binary("surplus-hub"))
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{}", self.port),
                "--database",
                &self.database,
            ])
            .arg("--staging")
            .arg(&self.staging.address)
            .args(if self.behind_proxy {
                vec!["--behind-proxy".as_ref()]
            } else {
                vec![
                    "--tls-cert".as_ref(),
                    self.tls.cert.as_os_str(),
                    "--tls-key".as_ref(),
                    self.tls.key.as_os_str(),
                ]
            })
            .args(["--heartbeat-interval", "1"])
            .arg("--config")
            .arg(&self.config)
            .env("SURPLUS_LOG", "info,sqlx=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start surplus-hub");
        self.process = Some(child);
        wait_for(
            "the hub to answer /healthz",
            Duration::from_secs(30),
            || self.get("/healthz").is_some(),
        );
    }

    /// The body of a GET of `path` from this hub itself (not through a balancer), if answered.
    pub fn get(&self, path: &str) -> Option<String> {
        let ca = (!self.behind_proxy).then_some(self.tls.ca.as_path());
        get_text(&format!("{}{path}", self.url), ca)
    }

    /// A counter or gauge of this hub's `/metrics` (summed over its labels).
    pub fn metric(&self, name: &str) -> f64 {
        let text = self.get("/metrics").unwrap_or_default();
        text.lines()
            .filter(|line| {
                line.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
            })
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Kills the hub without warning (SIGKILL), as a crash or an OOM kill would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The database the hub serves from.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// Starts the hub again on `database`, as an operator does after restoring a backup into a
    /// new one. The hub must be stopped.
    pub fn start_on(&mut self, database: &str) {
        assert!(self.process.is_none(), "stop the hub first");
        self.database = database.to_owned();
        self.spawn();
    }

    /// Sends the hub SIGHUP, as an operator does after renewing its certificate.
    pub fn hang_up(&self) {
        let child = self.process.as_ref().expect("the hub is running");
        let status = Command::new("kill")
            .args(["-HUP", &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -HUP failed");
    }

    /// Stops the hub as an operator would (SIGTERM) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.process.take() {
            terminate(&mut child);
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Adds `lines` to the hub's config file (TOML) and restarts it, as an operator would.
    pub fn configure(&mut self, lines: &str) {
        let mut config = std::fs::read_to_string(&self.config).expect("the hub's config");
        config.push_str(lines);
        config.push('\n');
        std::fs::write(&self.config, config).expect("write the hub's config");
        self.restart();
    }

    /// Runs `surplus-hub admin ARGS --json` and parses its output.
    pub fn admin_json(&self, args: &[&str]) -> Value {
        let output = self.admin(&[args, &["--json"]].concat());
        assert!(
            output.status.success(),
            "admin {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).expect("admin --json prints JSON")
    }

    /// The folder where the hub's staged blobs land: its staging folder, or the S3 test
    /// server's folder for its prefix.
    pub fn staging_dir(&self) -> &Path {
        &self.staging.on_disk
    }

    pub fn admin(&self, args: &[&str]) -> Output {
        // With the hub's config file, as an operator runs it: the same settings.
        Command::new(binary("surplus-hub"))
            .arg("--config")
            .arg(&self.config)
            .arg("admin")
            .args(["--database", &self.database])
            .arg("--staging")
            .arg(&self.staging.address)
            .args(args)
            .env("SURPLUS_LOG", "warn")
            .output()
            .expect("run surplus-hub admin")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.kill();
    }
}

/// HAProxy in front of hub replicas, as an operator runs it: it terminates TLS with a
/// certificate from its own test CA, balances requests round robin, checks `/healthz` every
/// quarter second, and adds `X-Forwarded-For`.
pub struct Balancer {
    pub url: String,
    pub tls: TestCa,
    process: Child,
}

impl Balancer {
    fn start(dir: &Path, replicas: &[&Hub]) -> Balancer {
        let haproxy = [
            "/usr/sbin/haproxy",
            "/usr/bin/haproxy",
            "/usr/local/sbin/haproxy",
        ]
        .into_iter()
        .map(PathBuf::from)
        .find(|path| path.exists())
        .expect("HAProxy is missing: apt-get install haproxy (scripts/test does)");
        let tls = TestCa::make(dir, "balancer");
        // HAProxy takes the certificate and its key in one file.
        let pem = dir.join("balancer.pem");
        let both = [
            std::fs::read(&tls.cert).expect("certificate"),
            std::fs::read(&tls.key).expect("key"),
        ]
        .concat();
        std::fs::write(&pem, both).expect("write the balancer's PEM");
        let port = free_port();
        let servers: String = replicas
            .iter()
            .enumerate()
            .map(|(at, hub)| format!("    server replica{at} 127.0.0.1:{}\n", hub.port))
            .collect();
        let config = format!(
            "defaults\n\
             \x20   mode http\n\
             \x20   timeout connect 2s\n\
             \x20   timeout client 120s\n\
             \x20   timeout server 120s\n\
             \x20   retries 3\n\
             \x20   option redispatch\n\
             \x20   option forwardfor\n\
             \x20   option httpchk GET /healthz\n\
             \x20   default-server check inter 250ms fall 1 rise 1\n\
             frontend hub\n\
             \x20   bind 127.0.0.1:{port} ssl crt {pem}\n\
             \x20   default_backend replicas\n\
             backend replicas\n\
             \x20   balance roundrobin\n\
             {servers}",
            pem = pem.display(),
        );
        let config_path = dir.join("haproxy.cfg");
        std::fs::write(&config_path, config).expect("write haproxy.cfg");
        let log = std::fs::File::create(dir.join("haproxy.log")).expect("haproxy log");
        let process = Command::new(haproxy)
            .arg("-db")
            .arg("-f")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start haproxy");
        let balancer = Balancer {
            url: format!("https://127.0.0.1:{port}"),
            tls,
            process,
        };
        wait_for(
            "the balancer to answer /healthz",
            Duration::from_secs(30),
            || https_get_ok(&format!("{}/healthz", balancer.url), &balancer.tls.ca),
        );
        balancer
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// A device: a data directory, the CLI run against it, and an agent process when started.
pub struct Agent {
    pub name: String,
    pub email: String,
    pub data_dir: PathBuf,
    hub_url: String,
    log: PathBuf,
    process: Option<Child>,
    env: Vec<(String, String)>,
}

pub const PASSWORD: &str = "a long enough password";

impl Agent {
    /// Sets an environment variable for this device's commands and agent.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.push((key.to_owned(), value.to_owned()));
    }

    /// `surplus --hub URL --data-dir DIR ARGS`, with this device's environment.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(binary("surplus"));
        command
            .args(["--hub", &self.hub_url, "--data-dir"])
            .arg(&self.data_dir)
            .args(args)
            .env("SURPLUS_CREDENTIALS", "file")
            .env("SURPLUS_PASSWORD", PASSWORD)
            .env("SURPLUS_LOG", "warn")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null());
        command
    }

    /// Runs `surplus --data-dir DIR ARGS`.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run surplus")
    }

    /// Starts `surplus --data-dir DIR ARGS` without waiting for it (to interrupt it).
    pub fn spawn_cli(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run surplus")
    }

    /// Runs a command that must succeed, returning its standard output.
    pub fn ok(&self, args: &[&str]) -> String {
        let output = self.cli(args);
        assert!(
            output.status.success(),
            "surplus {args:?} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    pub fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.ok(&[args, &["--json"]].concat())).expect("--json prints JSON")
    }

    /// Starts `surplus agent` in the background.
    pub fn start(&mut self) {
        assert!(self.process.is_none(), "{} is already running", self.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("agent log");
        let child = Command::new(binary("surplus"))
            .args(["--data-dir"])
            .arg(&self.data_dir)
            .arg("agent")
            .env("SURPLUS_CREDENTIALS", "file")
            .env("SURPLUS_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start surplus agent");
        self.process = Some(child);
    }

    /// Kills the agent without warning (SIGKILL), as a power cut would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the agent as a user would (SIGTERM).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.process.take() {
            terminate(&mut child);
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.process
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub fn status(&self) -> Value {
        self.json(&["status"])
    }

    /// Waits until the agent has had a heartbeat answered after `after` (ms since the epoch).
    pub fn wait_connected_after(&self, after: i64) {
        wait_for(
            &format!("{} to report to the hub", self.name),
            Duration::from_secs(30),
            || {
                let status = self.status();
                status["agent"]["connected"] == Value::Bool(true)
                    && status["agent"]["last_heartbeat"]
                        .as_i64()
                        .is_some_and(|t| t > after)
            },
        );
    }

    pub fn device_id(&self) -> String {
        self.status()["device_id"]
            .as_str()
            .expect("registered")
            .to_owned()
    }

    /// The blobs in this device's vault: (hash, bytes).
    pub fn vault_blobs(&self) -> Vec<(String, Vec<u8>)> {
        let blobs = self.data_dir.join(".vault").join("blobs");
        let mut found = Vec::new();
        for shard in std::fs::read_dir(&blobs).into_iter().flatten().flatten() {
            for file in std::fs::read_dir(shard.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let bytes = std::fs::read(file.path()).expect("read a vault blob");
                found.push((file.file_name().to_string_lossy().into_owned(), bytes));
            }
        }
        found.sort();
        found
    }

    /// Polls `surplus blob status HASH --json` until `done` holds, and returns the last answer.
    pub fn wait_placement(&self, hash: &str, done: impl Fn(&Value) -> bool) -> Value {
        let mut last = Value::Null;
        wait_for(
            &format!("the placement of {hash} to settle"),
            Duration::from_secs(30),
            || {
                last = self.json(&["blob", "status", hash]);
                done(&last)
            },
        );
        last
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

fn terminate(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Cluster {
    /// A hub on `database` and no agents yet.
    pub fn new(dir: tempfile::TempDir, database: String) -> Cluster {
        let hub = Hub::start(dir.path(), &database);
        Cluster {
            dir,
            database,
            hub,
            replicas: Vec::new(),
            balancer: None,
            agents: Vec::new(),
        }
    }

    /// `count` hub replicas on one PostgreSQL `database` and one staging, behind HAProxy, and
    /// no agents yet: a hub that scales out.
    pub fn replicated(dir: tempfile::TempDir, database: String, count: usize) -> Cluster {
        assert!(
            database.starts_with("postgres"),
            "replicas share PostgreSQL"
        );
        let staging = Staging::for_database(dir.path(), &database);
        let mut replicas: Vec<Hub> = (0..count)
            .map(|at| {
                let name = format!("replica{at}");
                Hub::launch(dir.path(), &name, &database, staging.clone(), true)
            })
            .collect();
        let balancer = Balancer::start(dir.path(), &replicas.iter().collect::<Vec<_>>());
        let hub = replicas.remove(0);
        Cluster {
            dir,
            database,
            hub,
            replicas,
            balancer: Some(balancer),
            agents: Vec::new(),
        }
    }

    /// Where devices reach the hub, and the CA they trust for it: the balancer's when there is
    /// one.
    fn front(&self) -> (&str, &Path) {
        match &self.balancer {
            Some(balancer) => (&balancer.url, &balancer.tls.ca),
            None => (&self.hub.url, &self.hub.tls.ca),
        }
    }

    /// Every hub process: the hub and its other replicas.
    pub fn hubs(&self) -> impl Iterator<Item = &Hub> {
        std::iter::once(&self.hub).chain(&self.replicas)
    }

    /// A hub on SQLite and no agents yet, in a temporary directory of its own: for tests of
    /// what does not depend on the database engine.
    pub fn on_sqlite() -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let database = format!("sqlite://{}", dir.path().join("hub.db").display());
        Cluster::new(dir, database)
    }

    /// Signs up `email`, registers a device `name` in its own data directory, and applies the
    /// given consent and quota. The agent is not started.
    pub fn add_agent(&mut self, name: &str, email: &str, storage: bool, quota: &str) -> usize {
        let mut agent = self.new_agent(name, email);
        // Every device of the cluster trusts the hub's private CA.
        let ca = self.front().1.to_str().expect("utf-8").to_owned();
        agent.set_env("SURPLUS_CA_FILE", &ca);
        if agent.cli(&["login", "--email", email]).status.success() {
            // Another device of an existing subscriber.
        } else {
            agent.ok(&["signup", "--email", email]);
        }
        agent.ok(&["device", "register", "--name", name]);
        agent.ok(&["consent", "--storage", if storage { "on" } else { "off" }]);
        agent.ok(&["quota", "--storage", quota, "--floor", "1MiB"]);
        self.agents.push(agent);
        self.agents.len() - 1
    }

    /// A device `name` of `email` with its own data directory, told nothing yet: not signed
    /// up, not registered, trusting no private CA.
    pub fn new_agent(&self, name: &str, email: &str) -> Agent {
        Agent {
            name: name.to_owned(),
            email: email.to_owned(),
            data_dir: self.dir.path().join(name),
            hub_url: self.front().0.to_owned(),
            log: self.dir.path().join(format!("{name}.log")),
            process: None,
            env: Vec::new(),
        }
    }

    pub fn agent(&mut self, index: usize) -> &mut Agent {
        &mut self.agents[index]
    }

    /// Prints every log, for a failing test.
    pub fn dump_logs(&self) {
        for (at, hub) in self.hubs().enumerate() {
            eprintln!("---- hub {at} log ----\n{}", tail(&hub.log(), 60));
        }
        for agent in &self.agents {
            eprintln!("---- {} log ----\n{}", agent.name, tail(&agent.log(), 40));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
        }
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Writes `size` bytes of deterministic, incompressible content to a file and returns its
/// path and BLAKE3 hash.
pub fn make_file(dir: &Path, name: &str, size: usize, seed: u64) -> (PathBuf, String) {
    let mut bytes = Vec::with_capacity(size);
    let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    while bytes.len() < size {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(size);
    let path = dir.join(name);
    std::fs::write(&path, &bytes).expect("write a test file");
    (path, blake3::hash(&bytes).to_hex().to_string())
}

/// Runs one query that counts something in the hub's database (SQLite or PostgreSQL).
pub fn count_in_database(database: &str, sql: &str) -> i64 {
    block_on(async {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(database).await.expect("database");
        let count: i64 = sqlx::query_scalar(sql)
            .fetch_one(&pool)
            .await
            .expect("count");
        pool.close().await;
        count
    })
}

/// Runs one query against the hub's database and returns its rows; every column must be TEXT
/// (cast the others).
pub fn rows_in_database(database: &str, sql: &str) -> Vec<Vec<String>> {
    use sqlx::Row;
    block_on(async {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(database).await.expect("database");
        let rows = sqlx::query(sql).fetch_all(&pool).await.expect("query");
        pool.close().await;
        rows.iter()
            .map(|row| {
                (0..row.len())
                    .map(|at| row.try_get::<String, _>(at).expect("a TEXT column"))
                    .collect()
            })
            .collect()
    })
}

/// Runs one statement against the hub's database (SQLite or PostgreSQL), as a compromised hub
/// could; returns the rows it changed.
pub fn execute_in_database(database: &str, sql: &str) -> u64 {
    block_on(async {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(database).await.expect("database");
        let done = sqlx::query(sql).execute(&pool).await.expect("execute");
        pool.close().await;
        done.rows_affected()
    })
}

/// The regular files under `dir`, at any depth.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

/// Queues an instruction through the database, as another hub process would, and waits for the
/// device's acknowledged result.
pub fn run_instruction(
    database: &str,
    device: uuid::Uuid,
    allocation: Option<uuid::Uuid>,
    kind: surplus_protocol::InstructionKind,
) -> surplus_protocol::InstructionResult {
    block_on(async {
        let store = surplus_hub::store::Store::connect(database)
            .await
            .expect("store");
        let now = surplus_hub::now_ms();
        let instruction = store
            .enqueue(device, allocation, &kind, now, now + 600_000)
            .await
            .expect("queue");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let result = loop {
            let row = store
                .instruction(instruction.id)
                .await
                .expect("instruction");
            if let Some(result) = row.result {
                break result;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the device did not answer {}",
                kind.name()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        store.close().await;
        serde_json::from_str(&result).expect("a result")
    })
}
