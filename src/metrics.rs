//! Metrics in the Prometheus text format, served on `metrics_address` at `/metrics`: requests and
//! errors by RPC and status code, RPC latencies, rows and bytes sent, UNLOADs waiting and running
//! and their durations, staged runs and bytes alive, deletions by reason, and the stream memory
//! budget in use. `deploy/grafana/redshift-flight.json` is a dashboard of them.
//!
//! A leaf: it imports nothing from the crate.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of a finished RPC.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    /// RPC name (`do_get`, ...).
    pub rpc: &'static str,
    /// gRPC status code name (`Ok`, `NotFound`, ...).
    pub code: String,
}

/// Labels of an RPC's latency.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcNameLabels {
    /// RPC name (`do_get`, ...).
    pub rpc: &'static str,
}

/// Why a staged run was deleted.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeletionLabels {
    /// `consumed`, `cancelled`, `expired` or `failed`.
    pub reason: &'static str,
}

/// Which catalog query ran.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CatalogQueryLabels {
    /// `schemas` (the list of schema names) or `tables` (one schema's tables and columns).
    pub query: &'static str,
}

/// Every metric of the server.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Finished RPCs by status code.
    pub requests: Family<RpcLabels, Counter>,
    /// Rows sent by DoGet.
    pub rows_sent: Counter,
    /// Arrow IPC bytes sent by DoGet.
    pub bytes_sent: Counter,
    /// UNLOAD durations in seconds.
    pub unload_seconds: Histogram,
    /// Staged runs believed alive (set by each sweep, adjusted by this process's runs).
    pub runs_alive: Gauge,
    /// Staged runs deleted, by reason.
    pub deletions: Family<DeletionLabels, Counter>,
    /// GetFlightInfo answered with a run staged for an identical request.
    pub snapshot_reuses: Counter,
    /// Catalog reads sent to Redshift (cache misses), by query.
    pub catalog_queries: Family<CatalogQueryLabels, Counter>,
    /// Schemas in the catalog cache (bounded; refreshed whenever a schema is loaded).
    pub catalog_cached_schemas: Gauge,
    /// Seconds from an RPC's arrival to its answer (for DoGet: until the stream starts), by RPC.
    pub rpc_seconds: Family<RpcNameLabels, Histogram>,
    /// UNLOADs waiting for one of the `max_parallel_workers` slots.
    pub unloads_waiting: Gauge,
    /// UNLOADs running.
    pub unloads_running: Gauge,
    /// Bytes of staged runs in S3 (set by each sweep).
    pub staged_bytes_alive: Gauge,
    /// Bytes of row groups DoGet streams hold now, and the budget (`stream_memory_mb`).
    pub stream_memory_in_use: Gauge,
    /// The stream memory budget in bytes, 0: unbounded.
    pub stream_memory_budget: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("redshift_flight");
        let requests = Family::<RpcLabels, Counter>::default();
        registry.register(
            "requests",
            "Finished Flight RPCs by status code",
            requests.clone(),
        );
        let rows_sent = Counter::default();
        registry.register("rows_sent", "Rows sent by DoGet", rows_sent.clone());
        let bytes_sent = Counter::default();
        registry.register(
            "bytes_sent",
            "Arrow IPC bytes sent by DoGet",
            bytes_sent.clone(),
        );
        let unload_seconds = Histogram::new(exponential_buckets(0.05, 2.0, 16));
        registry.register(
            "unload_duration_seconds",
            "Duration of UNLOAD statements",
            unload_seconds.clone(),
        );
        let runs_alive = Gauge::default();
        registry.register(
            "staged_runs_alive",
            "Staged runs in S3 not yet deleted",
            runs_alive.clone(),
        );
        let deletions = Family::<DeletionLabels, Counter>::default();
        registry.register(
            "staged_run_deletions",
            "Staged runs deleted, by reason",
            deletions.clone(),
        );
        let snapshot_reuses = Counter::default();
        registry.register(
            "snapshot_reuses",
            "GetFlightInfo requests answered with a run staged for an identical request",
            snapshot_reuses.clone(),
        );
        let catalog_queries = Family::<CatalogQueryLabels, Counter>::default();
        registry.register(
            "catalog_queries",
            "Catalog reads sent to Redshift (cache misses), by query",
            catalog_queries.clone(),
        );
        let catalog_cached_schemas = Gauge::default();
        registry.register(
            "catalog_cached_schemas",
            "Schemas held in the catalog cache",
            catalog_cached_schemas.clone(),
        );
        let rpc_seconds = Family::<RpcNameLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.5, 14))
        });
        registry.register(
            "rpc_duration_seconds",
            "Seconds from an RPC's arrival to its answer (DoGet: until its stream starts)",
            rpc_seconds.clone(),
        );
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let gauge = Gauge::default();
            registry.register(name, help, gauge.clone());
            gauge
        };
        let unloads_waiting = gauge(
            &mut registry,
            "unloads_waiting",
            "UNLOADs waiting for a max_parallel_workers slot",
        );
        let unloads_running = gauge(&mut registry, "unloads_running", "UNLOADs running");
        let staged_bytes_alive = gauge(
            &mut registry,
            "staged_bytes_alive",
            "Bytes of staged runs in S3 (set by each sweep)",
        );
        let stream_memory_in_use = gauge(
            &mut registry,
            "stream_memory_in_use_bytes",
            "Bytes of row groups DoGet streams hold now",
        );
        let stream_memory_budget = gauge(
            &mut registry,
            "stream_memory_budget_bytes",
            "Bytes of row groups DoGet streams may hold at once (stream_memory_mb; 0: unbounded)",
        );
        Self {
            registry,
            rpc_seconds,
            unloads_waiting,
            unloads_running,
            staged_bytes_alive,
            stream_memory_in_use,
            stream_memory_budget,
            snapshot_reuses,
            catalog_queries,
            catalog_cached_schemas,
            requests,
            rows_sent,
            bytes_sent,
            unload_seconds,
            runs_alive,
            deletions,
        }
    }
}

impl Metrics {
    /// A fresh set of metrics.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Records a finished RPC and how long it took to answer.
    pub fn observe_rpc_took(
        &self,
        rpc: &'static str,
        code: tonic::Code,
        took: std::time::Duration,
    ) {
        self.observe_rpc(rpc, code);
        self.rpc_seconds
            .get_or_create(&RpcNameLabels { rpc })
            .observe(took.as_secs_f64());
    }

    /// Records a finished RPC.
    pub fn observe_rpc(&self, rpc: &'static str, code: tonic::Code) {
        self.requests
            .get_or_create(&RpcLabels {
                rpc,
                code: format!("{code:?}"),
            })
            .inc();
    }

    /// Counts a catalog read sent to Redshift.
    pub fn catalog_query(&self, query: &'static str) {
        self.catalog_queries
            .get_or_create(&CatalogQueryLabels { query })
            .inc();
    }

    /// Records a deletion.
    pub fn deleted(&self, reason: &'static str) {
        self.deletions
            .get_or_create(&DeletionLabels { reason })
            .inc();
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_prometheus_text() {
        let metrics = Metrics::new();
        metrics.observe_rpc("do_get", tonic::Code::NotFound);
        metrics.rows_sent.inc_by(42);
        metrics.deleted("expired");
        let text = metrics.encode();
        assert!(
            text.contains("redshift_flight_requests_total{rpc=\"do_get\",code=\"NotFound\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("redshift_flight_rows_sent_total 42"),
            "{text}"
        );
        assert!(
            text.contains("redshift_flight_staged_run_deletions_total{reason=\"expired\"} 1"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }
}
