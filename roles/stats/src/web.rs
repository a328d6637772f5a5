//! The monitor's HTTP side: the dashboard's files (embedded from `stats-web/`), the snapshot
//! API, `/metrics` in Prometheus text, and the health probes.
//!
//! With tokens configured, the snapshot and `/metrics` want an `admin` token
//! (`Authorization: Bearer`); the dashboard's files hold no data and load without one, so
//! the page can ask for the token.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use protocol::auth::Refusal;
use protocol::ErrorCode;
use serde::Deserialize;
use serde_json::json;

use crate::window::{unix_ms, Kind, Snapshot};
use crate::Monitor;

/// The page's content security policy: nothing from anywhere but this origin.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The embedded files: path, content type, bytes.
const ASSETS: [(&str, &str, &[u8]); 8] = [
    (
        "/",
        "text/html; charset=utf-8",
        include_bytes!("../../../stats-web/index.html"),
    ),
    (
        "/app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../stats-web/app.js"),
    ),
    (
        "/style.css",
        "text/css; charset=utf-8",
        include_bytes!("../../../stats-web/style.css"),
    ),
    (
        "/vendor/echarts.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../stats-web/vendor/echarts.min.js"),
    ),
    (
        "/vendor/LICENSE-echarts.txt",
        "text/plain; charset=utf-8",
        include_bytes!("../../../stats-web/vendor/LICENSE-echarts.txt"),
    ),
    (
        "/vendor/NOTICE-echarts.txt",
        "text/plain; charset=utf-8",
        include_bytes!("../../../stats-web/vendor/NOTICE-echarts.txt"),
    ),
    (
        "/vendor/LICENSE-zrender.txt",
        "text/plain; charset=utf-8",
        include_bytes!("../../../stats-web/vendor/LICENSE-zrender.txt"),
    ),
    (
        "/vendor/LICENSE-d3.txt",
        "text/plain; charset=utf-8",
        include_bytes!("../../../stats-web/vendor/LICENSE-d3.txt"),
    ),
];

/// Every route.
pub fn router(monitor: Arc<Monitor>) -> Router {
    let mut router = Router::new()
        .route("/api/v1/snapshot", get(snapshot))
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(ready));
    for (path, content_type, bytes) in ASSETS {
        // The files change only with the binary: its version and the file's length tag them,
        // so a browser that has them gets 304 instead of the chart library again.
        let etag = format!("\"{}-{}\"", env!("CARGO_PKG_VERSION"), bytes.len());
        router = router.route(
            path,
            get(move |headers: HeaderMap| async move {
                let fresh = headers
                    .get(header::IF_NONE_MATCH)
                    .is_some_and(|tag| tag.as_bytes() == etag.as_bytes());
                let status = if fresh {
                    StatusCode::NOT_MODIFIED
                } else {
                    StatusCode::OK
                };
                (
                    status,
                    [
                        (header::CONTENT_TYPE, content_type.to_owned()),
                        (header::CACHE_CONTROL, "no-cache".to_owned()),
                        (header::CONTENT_SECURITY_POLICY, CSP.to_owned()),
                        (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
                        (header::ETAG, etag),
                    ],
                    if fresh { &[][..] } else { bytes },
                )
            }),
        );
    }
    router.with_state(monitor)
}

/// `?window=<seconds>`: how much of the window to return (all of it by default).
#[derive(Debug, Deserialize)]
struct SnapshotQuery {
    window: Option<u64>,
}

async fn snapshot(
    State(monitor): State<Arc<Monitor>>,
    headers: HeaderMap,
    query: Result<Query<SnapshotQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if let Some(refused) = refusal(&monitor, &headers) {
        return refused;
    }
    let Ok(Query(query)) = query else {
        return failure(
            ErrorCode::InvalidRequest,
            "window must be a whole number of seconds",
        );
    };
    Json(monitor.snapshot(query.window)).into_response()
}

async fn ready(State(monitor): State<Arc<Monitor>>) -> Response {
    runtime::readyz(&monitor.client).await
}

/// The answer to a request the monitor does not let in: `None` when it is open or the
/// request carries an `admin` token.
fn refusal(monitor: &Monitor, headers: &HeaderMap) -> Option<Response> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    match monitor.tokens.caller(authorization, "") {
        Ok(caller) if caller.grants.admin => None,
        Ok(_) => Some(failure(
            ErrorCode::Forbidden,
            "the stats monitor needs an admin token",
        )),
        Err(refusal) => {
            let message = match refusal {
                Refusal::Missing => {
                    "send an admin token in an Authorization: Bearer <token> header"
                }
                Refusal::Unknown => "the token is not one this monitor knows; check it",
            };
            let mut response = failure(ErrorCode::Unauthorized, message);
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            Some(response)
        }
    }
}

fn failure(code: ErrorCode, message: &str) -> Response {
    let status = StatusCode::from_u16(code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

async fn metrics_text(State(monitor): State<Arc<Monitor>>, headers: HeaderMap) -> Response {
    if let Some(refused) = refusal(&monitor, &headers) {
        return refused;
    }
    let snapshot = monitor.snapshot(Some(1));
    let now_s = unix_ms() / 1_000;
    let recent: Vec<(Kind, hdrhistogram::Histogram<u64>)> = {
        let window = monitor.window.lock().expect("stats window");
        Kind::ALL
            .iter()
            .map(|kind| (*kind, window.recent(*kind, now_s, 60)))
            .collect()
    };
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(&snapshot, &recent),
    )
        .into_response()
}

/// Prometheus text of a snapshot: instance health, every counter total and gauge the roles
/// report, partitions, queues, the archive, and latency quantiles over the last minute.
pub fn render(snapshot: &Snapshot, recent: &[(Kind, hdrhistogram::Histogram<u64>)]) -> String {
    let mut out = String::new();
    let mut typed = std::collections::BTreeSet::new();
    let mut line =
        |out: &mut String, name: &str, kind: &str, labels: &[(&str, &str)], value: f64| {
            if typed.insert(name.to_owned()) {
                let _ = writeln!(out, "# TYPE {name} {kind}");
            }
            let _ = write!(out, "{name}");
            if !labels.is_empty() {
                out.push('{');
                for (index, (key, value)) in labels.iter().enumerate() {
                    if index > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{key}=\"{}\"", escape(value));
                }
                out.push('}');
            }
            let _ = writeln!(out, " {value}");
        };
    for instance in &snapshot.instances {
        let labels = [
            ("role", instance.role.as_str()),
            ("instance", instance.instance.as_str()),
            ("host", instance.host.as_str()),
        ];
        line(
            &mut out,
            "gorgon_instance_up",
            "gauge",
            &labels,
            f64::from(u8::from(instance.healthy)),
        );
        line(
            &mut out,
            "gorgon_instance_last_seen_age_seconds",
            "gauge",
            &labels,
            instance.age_ms as f64 / 1e3,
        );
        line(
            &mut out,
            "gorgon_instance_uptime_seconds",
            "gauge",
            &labels,
            instance.uptime_s,
        );
    }
    // Every counter, as the roles name them, by role; the monitor's own names never start
    // like theirs (`gorgon_instance_`, `gorgon_partition`, `gorgon_queue_`, `gorgon_stats_`).
    // A metric's lines go together, whichever roles report it.
    let mut counters: Vec<_> = snapshot.counters.iter().collect();
    counters.sort_by(|a, b| (&a.name, &a.role, &a.labels).cmp(&(&b.name, &b.role, &b.labels)));
    let mut gauges: Vec<_> = snapshot.gauges.iter().collect();
    gauges
        .sort_by(|a, b| (&a.name, &a.instance, &a.labels).cmp(&(&b.name, &b.instance, &b.labels)));
    for counter in counters {
        let mut labels: Vec<(&str, &str)> = vec![("role", counter.role.as_str())];
        labels.extend(counter.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        line(
            &mut out,
            &counter.name,
            "counter",
            &labels,
            counter.value as f64,
        );
    }
    for gauge in gauges {
        let mut labels: Vec<(&str, &str)> = vec![
            ("role", gauge.role.as_str()),
            ("instance", gauge.instance.as_str()),
        ];
        labels.extend(gauge.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        line(&mut out, &gauge.name, "gauge", &labels, gauge.value);
    }
    let unowned = snapshot
        .partitions
        .iter()
        .filter(|p| p.owner.is_none())
        .count();
    line(
        &mut out,
        "gorgon_partitions",
        "gauge",
        &[],
        snapshot.partitions.len() as f64,
    );
    line(
        &mut out,
        "gorgon_partitions_unowned",
        "gauge",
        &[],
        unowned as f64,
    );
    for partition in &snapshot.partitions {
        let number = partition.partition.to_string();
        let labels = [
            ("partition", number.as_str()),
            ("owner", partition.owner.as_deref().unwrap_or("")),
        ];
        line(
            &mut out,
            "gorgon_partition_owned",
            "gauge",
            &labels,
            f64::from(u8::from(partition.owner.is_some())),
        );
        let labels = [("partition", number.as_str())];
        line(
            &mut out,
            "gorgon_queue_waiting",
            "gauge",
            &labels,
            partition.waiting as f64,
        );
        line(
            &mut out,
            "gorgon_queue_in_flight",
            "gauge",
            &labels,
            partition.in_flight as f64,
        );
        line(
            &mut out,
            "gorgon_queue_delayed",
            "gauge",
            &labels,
            partition.delayed as f64,
        );
        line(
            &mut out,
            "gorgon_queue_dead_letters",
            "gauge",
            &labels,
            partition.dead as f64,
        );
        line(
            &mut out,
            "gorgon_queue_oldest_age_seconds",
            "gauge",
            &labels,
            partition.oldest_age_ms.unwrap_or(0) as f64 / 1e3,
        );
        line(
            &mut out,
            "gorgon_queue_outbox",
            "gauge",
            &labels,
            partition.outbox as f64,
        );
    }
    line(
        &mut out,
        "gorgon_queue_dead_letters_all",
        "gauge",
        &[],
        snapshot.dead_letters as f64,
    );
    if let Some(archive) = &snapshot.archive {
        line(
            &mut out,
            "gorgon_stats_archive_backlog_entries",
            "gauge",
            &[],
            archive.backlog as f64,
        );
        line(
            &mut out,
            "gorgon_stats_output_topic_entries",
            "gauge",
            &[],
            archive.topic_entries as f64,
        );
        line(
            &mut out,
            "gorgon_stats_output_topic_bound",
            "gauge",
            &[],
            archive.topic_bound as f64,
        );
        for (name, value) in [
            (
                "gorgon_stats_archive_added_entries_per_second",
                archive.added_per_s,
            ),
            (
                "gorgon_stats_archive_written_entries_per_second",
                archive.written_per_s,
            ),
            ("gorgon_stats_archive_drain_seconds", archive.drain_s),
        ] {
            if let Some(value) = value {
                line(&mut out, name, "gauge", &[], value);
            }
        }
    }
    for (kind, histogram) in recent {
        for (quantile, name) in [
            (0.5, "0.5"),
            (0.9, "0.9"),
            (0.99, "0.99"),
            (0.999, "0.999"),
            (1.0, "1"),
        ] {
            let value = if histogram.is_empty() {
                0
            } else {
                histogram.value_at_quantile(quantile)
            };
            line(
                &mut out,
                "gorgon_stats_latency_seconds",
                "summary",
                &[("kind", kind.name()), ("quantile", name)],
                value as f64 / 1e6,
            );
        }
        let _ = writeln!(
            out,
            "gorgon_stats_latency_seconds_count{{kind=\"{}\"}} {}",
            kind.name(),
            histogram.len()
        );
    }
    line(
        &mut out,
        "gorgon_stats_rejected_reports_total",
        "counter",
        &[],
        snapshot.rejected_reports as f64,
    );
    line(
        &mut out,
        "gorgon_stats_redis_ok",
        "gauge",
        &[],
        f64::from(u8::from(snapshot.redis_error.is_none())),
    );
    out
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Monitor {
    /// The snapshot of the last `window` seconds (the whole window by default).
    pub fn snapshot(&self, window: Option<u64>) -> Snapshot {
        let now = Instant::now();
        let now_s = unix_ms() / 1_000;
        let mut snapshot = {
            let window_state = self.window.lock().expect("stats window");
            window_state.snapshot(now_s, window.unwrap_or(u64::MAX), now)
        };
        let redis = self.redis.lock().expect("redis view");
        snapshot.partitions = redis.partitions.clone();
        snapshot.archive = redis.archive.clone();
        snapshot.dead_letters = redis.partitions.iter().map(|p| p.dead).sum();
        snapshot.redis_error = redis.error.clone();
        snapshot
    }
}
