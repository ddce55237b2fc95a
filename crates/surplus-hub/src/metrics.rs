//! The hub's Prometheus metrics, served at `/metrics`.

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

/// Counters and histograms, one registry per hub (so tests running several hubs in one process
/// each see their own).
#[derive(Debug)]
pub struct Metrics {
    registry: Mutex<Registry>,
    requests: Family<RequestLabels, Counter>,
    durations: Family<RequestLabels, Histogram>,
    heartbeats: Counter,
    failed_logins: Counter,
    audits: Counter,
    repaired_shards: Counter,
    repaired_bytes: Counter,
    instructions: Family<KindLabels, Counter>,
    allocations: Family<KindLabels, Counter>,
    packs: Family<StateLabels, Gauge>,
    repair_queue: Gauge,
    durability_bytes_24h: Family<KindLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("surplus_hub");
        let requests = Family::<RequestLabels, Counter>::default();
        let durations = Family::<RequestLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        let heartbeats = Counter::default();
        let failed_logins = Counter::default();
        let audits = Counter::default();
        let repaired_shards = Counter::default();
        let repaired_bytes = Counter::default();
        let instructions = Family::<KindLabels, Counter>::default();
        let allocations = Family::<KindLabels, Counter>::default();
        let packs = Family::<StateLabels, Gauge>::default();
        let repair_queue = Gauge::default();
        let durability_bytes_24h = Family::<KindLabels, Gauge>::default();
        registry.register(
            "packs",
            "Packs by health (protected, uploading, repairing, at_risk, lost), as last counted",
            packs.clone(),
        );
        registry.register(
            "repair_queue",
            "Packs waiting for repair or being repaired",
            repair_queue.clone(),
        );
        registry.register(
            "durability_bytes_24h",
            "Bytes moved for repair, audits and hand-overs over the last day, all hub processes",
            durability_bytes_24h.clone(),
        );
        registry.register("http_requests", "HTTP requests answered", requests.clone());
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request",
            durations.clone(),
        );
        registry.register("heartbeats", "Heartbeats recorded", heartbeats.clone());
        registry.register(
            "failed_logins",
            "Log-in attempts refused for a wrong email or password",
            failed_logins.clone(),
        );
        registry.register(
            "audits",
            "Audits of held shards sent on the hub's own schedule",
            audits.clone(),
        );
        registry.register(
            "repaired_shards",
            "Shards of packs rebuilt after their holders were lost",
            repaired_shards.clone(),
        );
        registry.register(
            "repaired_bytes",
            "Bytes of shards rebuilt after their holders were lost",
            repaired_bytes.clone(),
        );
        registry.register(
            "instructions_queued",
            "Instructions queued for devices",
            instructions.clone(),
        );
        registry.register(
            "allocations",
            "Allocations recorded in the ledger",
            allocations.clone(),
        );
        Metrics {
            registry: Mutex::new(registry),
            requests,
            durations,
            heartbeats,
            failed_logins,
            audits,
            repaired_shards,
            repaired_bytes,
            instructions,
            allocations,
            packs,
            repair_queue,
            durability_bytes_24h,
        }
    }
}

impl Metrics {
    pub fn request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let labels = RequestLabels {
            method: method.to_owned(),
            route: route.to_owned(),
            status,
        };
        self.requests.get_or_create(&labels).inc();
        self.durations.get_or_create(&labels).observe(seconds);
    }

    pub fn heartbeat(&self) {
        self.heartbeats.inc();
    }

    pub fn failed_login(&self) {
        self.failed_logins.inc();
    }

    pub fn audit(&self) {
        self.audits.inc();
    }

    /// Sets the durability figures, as [`crate::health::report`] last counted them.
    pub fn durability(&self, report: &crate::health::DurabilityReport) {
        for (state, count) in report.packs.by_state() {
            self.packs
                .get_or_create(&StateLabels {
                    state: state.to_owned(),
                })
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
        self.repair_queue
            .set(i64::try_from(report.repair_queue).unwrap_or(i64::MAX));
        for (kind, bytes) in [
            ("repair", report.repair_bytes_24h),
            ("audit", report.audit_bytes_24h),
            ("handover", report.handover_bytes_24h),
        ] {
            self.durability_bytes_24h
                .get_or_create(&KindLabels {
                    kind: kind.to_owned(),
                })
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
    }

    pub fn repaired(&self, bytes: u64) {
        self.repaired_shards.inc();
        self.repaired_bytes.inc_by(bytes);
    }

    pub fn instructions_queued(&self, kind: &str) {
        self.instructions
            .get_or_create(&KindLabels {
                kind: kind.to_owned(),
            })
            .inc();
    }

    pub fn allocation(&self, kind: &str) {
        self.allocations
            .get_or_create(&KindLabels {
                kind: kind.to_owned(),
            })
            .inc();
    }

    /// The metrics in Prometheus' text format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        let registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &registry) {
            tracing::warn!(%error, "encoding metrics");
        }
        text
    }
}
