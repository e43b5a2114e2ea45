//! Prometheus metrics: requests by route and status, latency by route, runtime call errors by
//! kind, requests and connections refused by reason, open connections. Served as text at
//! `GET /metrics`.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::error::RuntimeFailure;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuntimeLabels {
    runtime: String,
    version: String,
    endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: &'static str,
}

type HistogramFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: HistogramFamily,
    runtime_errors: Family<ErrorLabels, Counter>,
    runtime: Family<RuntimeLabels, Gauge>,
    refused: Family<ReasonLabels, Counter>,
    connections: Gauge,
    docker_lookups: Family<SourceLabels, Counter>,
    event_index_fallbacks: Family<ReasonLabels, Counter>,
    event_index_rebuilds: Family<ReasonLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("pod_detail_collector");
        let requests = Family::<RequestLabels, Counter>::default();
        // 1 ms to ~16 s: a pod answer is milliseconds, a sick daemon is the runtime timeout.
        let latency: HistogramFamily =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.001, 2.0, 15)));
        let runtime_errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route and status code",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by route",
            latency.clone(),
        );
        registry.register(
            "runtime_errors",
            "Runtime calls that failed, by kind (timeout, unreachable, api, bad_answer, unsupported)",
            runtime_errors.clone(),
        );
        let runtime = Family::<RuntimeLabels, Gauge>::default();
        registry.register(
            "runtime_info",
            "The runtime the collector reads pods from (1), with its name, version and endpoint",
            runtime.clone(),
        );
        let refused = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "refused",
            "Requests and connections refused before any runtime call, by reason (address, \
             token_missing, token_wrong, body_timeout, header_timeout: a new connection without \
             complete request headers in time, tls_handshake, write_timeout)",
            refused.clone(),
        );
        let connections = Gauge::default();
        registry.register(
            "http_connections",
            "HTTP connections open now",
            connections.clone(),
        );
        let docker_lookups = Family::<SourceLabels, Counter>::default();
        registry.register(
            "docker_lookups",
            "How Docker pod lookups found the pod's containers: event_index (Docker's event log, \
             kept current) or list (a container list call)",
            docker_lookups.clone(),
        );
        let event_index_fallbacks = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "event_index_fallbacks",
            "Docker lookups answered from a container list although the event index is on, by \
             reason (clock_unknown: the daemon's clock is being read; clock_step: it moved; \
             events_failed, events_lag: the events API failed or was slow; paused: after such a \
             failure)",
            event_index_fallbacks.clone(),
        );
        let event_index_rebuilds = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "event_index_rebuilds",
            "Event index (re)builds from a node-wide container list, by reason (list: the first \
             or after a failure, overflow: more events than Docker keeps, reconnect: the \
             connection to the daemon closed, clock_step)",
            event_index_rebuilds.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            runtime_errors,
            runtime,
            refused,
            connections,
            docker_lookups,
            event_index_fallbacks,
            event_index_rebuilds,
        }
    }

    /// `route` is one of a fixed set of labels, so that scanning for paths cannot grow the
    /// metrics.
    pub fn request(&self, route: &'static str, code: u16, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels { route, code })
            .inc();
        self.latency
            .get_or_create(&RouteLabels { route })
            .observe(elapsed.as_secs_f64());
    }

    pub fn runtime_error(&self, failure: &RuntimeFailure) {
        let kind = match failure {
            RuntimeFailure::Timeout { .. } => "timeout",
            RuntimeFailure::Unreachable { .. } => "unreachable",
            RuntimeFailure::Api { .. } => "api",
            RuntimeFailure::BadAnswer { .. } => "bad_answer",
            RuntimeFailure::Unsupported { .. } => "unsupported",
        };
        self.runtime_errors
            .get_or_create(&ErrorLabels { kind })
            .inc();
    }

    /// The runtime that answered last; a node has one, so the family keeps one series.
    pub fn runtime(&self, runtime: &str, version: &str, endpoint: &str) {
        let labels = RuntimeLabels {
            runtime: runtime.to_string(),
            version: version.to_string(),
            endpoint: endpoint.to_string(),
        };
        if self.runtime.get(&labels).is_none() {
            self.runtime.clear();
        }
        self.runtime.get_or_create(&labels).set(1);
    }

    /// A request or connection refused before any runtime call. `reason` is one of a fixed
    /// set, never the caller's input (no addresses, no tokens).
    pub fn refused(&self, reason: &'static str) {
        self.refused.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// A Docker pod lookup, by where the membership came from (`event_index` or `list`).
    pub fn docker_lookup(&self, source: &'static str) {
        self.docker_lookups
            .get_or_create(&SourceLabels { source })
            .inc();
    }

    pub fn event_index_fallback(&self, reason: &'static str) {
        self.event_index_fallbacks
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    pub fn event_index_rebuild(&self, reason: &'static str) {
        self.event_index_rebuilds
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    pub fn connection_opened(&self) {
        self.connections.inc();
    }

    pub fn connection_closed(&self) {
        self.connections.dec();
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut text = String::new();
        if let Err(err) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            log::error!("could not encode metrics: {err}");
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_requests_latency_and_errors() {
        let metrics = Metrics::new();
        metrics.request(
            "/processor/podDetailCollector",
            200,
            Duration::from_millis(3),
        );
        metrics.request("other", 404, Duration::from_millis(1));
        metrics.refused("address");
        metrics.connection_opened();
        metrics.runtime_error(&RuntimeFailure::Timeout {
            runtime: "docker daemon at unix:///x".into(),
            timeout: Duration::from_secs(1),
        });
        metrics.runtime("containerd", "1.6.20", "CRI runtime at unix:///x");
        let text = metrics.render();
        assert!(
            text.contains(r#"pod_detail_collector_runtime_info{runtime="containerd",version="1.6.20",endpoint="CRI runtime at unix:///x"} 1"#),
            "{text}"
        );
        assert!(text.contains(
            r#"pod_detail_collector_http_requests_total{route="/processor/podDetailCollector",code="200"} 1"#
        ), "{text}");
        assert!(text.contains(r#"route="other",code="404""#), "{text}");
        assert!(
            text.contains("pod_detail_collector_http_request_duration_seconds_bucket"),
            "{text}"
        );
        assert!(
            text.contains(r#"pod_detail_collector_runtime_errors_total{kind="timeout"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"pod_detail_collector_refused_total{reason="address"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("pod_detail_collector_http_connections 1"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }
}
