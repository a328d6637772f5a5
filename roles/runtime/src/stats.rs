//! Every role's metrics, kept twice over by one recorder: for the role's own `/metrics`
//! (Prometheus text, when the role serves HTTP) and for the stats report it publishes once a
//! second on the stats topic ([`protocol::stats::Report`]), which the stats monitor charts.
//!
//! Roles record with the `metrics` crate's macros (`metrics::counter!`, `gauge!`,
//! `histogram!`) and call [`install_metrics`] once at start and [`spawn_stats`] once
//! connected. Histograms of `_seconds` metrics are kept in microseconds.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram as Hdr;
use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use protocol::stats::{encode_histogram, new_histogram, HistogramSample, Report, Sample};
use redpill::Client;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The upper bounds of the Prometheus histogram buckets of every `_seconds` metric on a role's
/// own `/metrics`: 1-2-5 steps from 100 µs to 60 s (and `+Inf`).
pub const SECONDS_BUCKETS: [f64; 18] = [
    0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
    10.0, 30.0, 60.0,
];

/// The process's metrics: what the recorder keeps for stats reports, and the Prometheus
/// handle when the role renders its own `/metrics`.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    started_at_ms: u64,
    /// Renders the role's own `/metrics`; `None` unless asked for at install.
    pub prometheus: Option<PrometheusHandle>,
}

/// Installs the process's metrics recorder, once per process; later calls return the first
/// one (roles that share a process in tests share their metrics). With `prometheus`, the
/// recorder also keeps everything for Prometheus text.
pub fn install_metrics(prometheus: bool) -> Metrics {
    static INSTALLED: OnceLock<Metrics> = OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            let (inner, handle) = if prometheus {
                let recorder = prometheus_recorder();
                let handle = recorder.handle();
                (Some(recorder), Some(handle))
            } else {
                (None, None)
            };
            let registry = Registry::default();
            let recorder = StatsRecorder {
                registry: registry.clone(),
                prometheus: inner,
            };
            if let Err(error) = metrics::set_global_recorder(recorder) {
                tracing::warn!(%error, "another metrics recorder is installed; stats reports will carry no metrics");
            }
            Metrics {
                registry,
                started_at_ms: unix_ms(),
                prometheus: handle,
            }
        })
        .clone()
}

/// The recorder behind a role's own `/metrics`. Histograms are Prometheus histograms
/// (cumulative buckets, `_sum`, `_count`), not summaries: a summary's quantiles cover a
/// rolling window and read 0 after an idle minute while its count does not, and summaries
/// cannot be aggregated across instances.
fn prometheus_recorder() -> PrometheusRecorder {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS)
        .expect("the buckets are not empty")
        .build_recorder()
}

impl Metrics {
    /// The report of this instance now: counter totals, gauges, and the histograms recorded
    /// since the previous report (which this resets).
    pub fn report(&self, role: &str, instance: &str, interval: Duration) -> Report {
        let mut report = Report {
            role: role.to_owned(),
            instance: instance.to_owned(),
            host: host_name(),
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            started_at_ms: self.started_at_ms,
            at_ms: unix_ms(),
            interval_ms: interval.as_millis() as u64,
            stopping: false,
            counters: Vec::new(),
            gauges: Vec::new(),
            histograms: Vec::new(),
        };
        // Copy the handles out, so that roles registering metrics never wait on the encoding.
        let metrics: Vec<(Key, Metric)> = {
            let registry = self.registry.0.read().expect("metrics registry");
            registry
                .iter()
                .map(|(key, metric)| (key.clone(), metric.clone()))
                .collect()
        };
        for (key, metric) in metrics {
            let name = key.name().to_owned();
            let labels: BTreeMap<String, String> = key
                .labels()
                .map(|label| (label.key().to_owned(), label.value().to_owned()))
                .collect();
            match metric {
                Metric::Counter(cell, _) => report.counters.push(Sample {
                    name,
                    labels,
                    value: cell.0.load(Ordering::Relaxed),
                }),
                Metric::Gauge(cell, _) => report.gauges.push(Sample {
                    name,
                    labels,
                    value: f64::from_bits(cell.0.load(Ordering::Relaxed)),
                }),
                Metric::Histogram(cell, _) => {
                    let taken = {
                        let mut histogram = cell.histogram.lock().expect("histogram");
                        let taken = histogram.clone();
                        histogram.reset();
                        taken
                    };
                    if !taken.is_empty() {
                        report.histograms.push(HistogramSample {
                            name,
                            labels,
                            hdr: encode_histogram(&taken),
                        });
                    }
                }
            }
        }
        report
    }
}

/// The task publishing an instance's stats; [`StatsTask::stop`] it before closing the client.
pub struct StatsTask {
    token: CancellationToken,
    handle: JoinHandle<()>,
}

impl StatsTask {
    /// Has the task publish its last report, marked `stopping`, and end, without waiting.
    pub fn cancel(&self) {
        self.token.cancel();
    }

    /// Publishes the last report, marked `stopping`, and ends the task.
    pub async fn stop(self) {
        self.token.cancel();
        if let Err(error) = self.handle.await {
            tracing::warn!(%error, "the stats publisher failed");
        }
    }
}

/// Publishes this instance's report every `interval` on the stats topic until stopped (or
/// `token` is cancelled), then a last one marked `stopping`. A failed publish is logged
/// (once per outage) and the report dropped: stats never hold a role back.
pub fn spawn_stats(
    client: &Client,
    role: &'static str,
    metrics: &Metrics,
    interval: Duration,
    token: &CancellationToken,
) -> StatsTask {
    let client = client.clone();
    let metrics = metrics.clone();
    let token = token.child_token();
    let stop = token.clone();
    let handle = tokio::spawn(async move {
        let topic = layout::stats_topic(&client);
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            let stopping = tokio::select! {
                _ = ticks.tick() => false,
                _ = token.cancelled() => true,
            };
            let mut report = metrics.report(role, client.consumer_id(), interval);
            report.stopping = stopping;
            let body = serde_json::to_vec(&report).expect("a report serializes");
            let published = tokio::time::timeout(
                interval.max(Duration::from_secs(1)),
                topic.publish(0, &[body]),
            )
            .await;
            match published {
                Ok(Ok(_)) if failing => {
                    failing = false;
                    tracing::info!("publishing stats again");
                }
                Ok(Ok(_)) => {}
                Ok(Err(error)) if !failing => {
                    failing = true;
                    tracing::warn!(%error, "could not publish stats; dropping reports until Redis answers");
                }
                Err(_) if !failing => {
                    failing = true;
                    tracing::warn!(
                        "publishing stats timed out; dropping reports until Redis answers"
                    );
                }
                _ => {}
            }
            if stopping {
                return;
            }
        }
    });
    StatsTask {
        token: stop,
        handle,
    }
}

/// The host name, from the kernel; `HOSTNAME` or "unknown" where it cannot be read.
/// `HOSTNAME` is not a setting (no flag): it is the machine's name as the shell knows it,
/// read only where `/proc` is missing.
fn host_name() -> String {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|name| name.trim().to_owned())
            .ok()
            .filter(|name| !name.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "unknown".to_owned())
    })
    .clone()
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_millis() as u64)
        .unwrap_or(0)
}

/// Every metric registered, by key; each handle is made once and cloned for later callers.
/// A read lock finds a handle already made, so callers on many threads do not queue.
#[derive(Clone, Default)]
struct Registry(Arc<RwLock<HashMap<Key, Metric>>>);

#[derive(Clone)]
enum Metric {
    Counter(Arc<CounterCell>, Counter),
    Gauge(Arc<GaugeCell>, Gauge),
    Histogram(Arc<HistogramCell>, Histogram),
}

#[derive(Default)]
struct CounterCell(AtomicU64);

#[derive(Default)]
struct GaugeCell(AtomicU64);

struct HistogramCell {
    /// `_seconds` metrics: record microseconds.
    micros: bool,
    histogram: Mutex<Hdr<u64>>,
}

impl CounterFn for CounterCell {
    fn increment(&self, value: u64) {
        self.0.fetch_add(value, Ordering::Relaxed);
    }

    fn absolute(&self, value: u64) {
        self.0.fetch_max(value, Ordering::Relaxed);
    }
}

impl GaugeFn for GaugeCell {
    fn increment(&self, value: f64) {
        self.update(|now| now + value);
    }

    fn decrement(&self, value: f64) {
        self.update(|now| now - value);
    }

    fn set(&self, value: f64) {
        self.0.store(value.to_bits(), Ordering::Relaxed);
    }
}

impl GaugeCell {
    fn update(&self, change: impl Fn(f64) -> f64) {
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some(change(f64::from_bits(bits)).to_bits())
            });
    }
}

impl HistogramFn for HistogramCell {
    fn record(&self, value: f64) {
        self.record_many(value, 1);
    }

    fn record_many(&self, value: f64, count: usize) {
        let scaled = if self.micros { value * 1e6 } else { value };
        let value = if scaled.is_finite() && scaled > 0.0 {
            scaled.round() as u64
        } else {
            0
        };
        self.histogram
            .lock()
            .expect("histogram")
            .saturating_record_n(value, count as u64);
    }
}

/// Both halves at once: our cell, and Prometheus's handle when there is one.
struct Fanned<O, P> {
    ours: Arc<O>,
    prometheus: Option<P>,
}

impl CounterFn for Fanned<CounterCell, Counter> {
    fn increment(&self, value: u64) {
        self.ours.increment(value);
        if let Some(prometheus) = &self.prometheus {
            prometheus.increment(value);
        }
    }

    fn absolute(&self, value: u64) {
        self.ours.absolute(value);
        if let Some(prometheus) = &self.prometheus {
            prometheus.absolute(value);
        }
    }
}

impl GaugeFn for Fanned<GaugeCell, Gauge> {
    fn increment(&self, value: f64) {
        self.ours.increment(value);
        if let Some(prometheus) = &self.prometheus {
            prometheus.increment(value);
        }
    }

    fn decrement(&self, value: f64) {
        self.ours.decrement(value);
        if let Some(prometheus) = &self.prometheus {
            prometheus.decrement(value);
        }
    }

    fn set(&self, value: f64) {
        self.ours.set(value);
        if let Some(prometheus) = &self.prometheus {
            prometheus.set(value);
        }
    }
}

impl HistogramFn for Fanned<HistogramCell, Histogram> {
    fn record(&self, value: f64) {
        self.ours.record(value);
        if let Some(prometheus) = &self.prometheus {
            prometheus.record(value);
        }
    }

    fn record_many(&self, value: f64, count: usize) {
        self.ours.record_many(value, count);
        if let Some(prometheus) = &self.prometheus {
            prometheus.record_many(value, count);
        }
    }
}

struct StatsRecorder {
    registry: Registry,
    prometheus: Option<PrometheusRecorder>,
}

impl Recorder for StatsRecorder {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        if let Some(prometheus) = &self.prometheus {
            prometheus.describe_counter(key, unit, description);
        }
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        if let Some(prometheus) = &self.prometheus {
            prometheus.describe_gauge(key, unit, description);
        }
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        if let Some(prometheus) = &self.prometheus {
            prometheus.describe_histogram(key, unit, description);
        }
    }

    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        if let Some(Metric::Counter(_, handle)) =
            self.registry.0.read().expect("metrics registry").get(key)
        {
            return handle.clone();
        }
        let mut metrics = self.registry.0.write().expect("metrics registry");
        if let Some(Metric::Counter(_, handle)) = metrics.get(key) {
            return handle.clone();
        }
        let ours = Arc::new(CounterCell::default());
        let prometheus = self
            .prometheus
            .as_ref()
            .map(|recorder| recorder.register_counter(key, metadata));
        let handle = Counter::from_arc(Arc::new(Fanned {
            ours: ours.clone(),
            prometheus,
        }));
        metrics.insert(key.clone(), Metric::Counter(ours, handle.clone()));
        handle
    }

    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        if let Some(Metric::Gauge(_, handle)) =
            self.registry.0.read().expect("metrics registry").get(key)
        {
            return handle.clone();
        }
        let mut metrics = self.registry.0.write().expect("metrics registry");
        if let Some(Metric::Gauge(_, handle)) = metrics.get(key) {
            return handle.clone();
        }
        let ours = Arc::new(GaugeCell::default());
        let prometheus = self
            .prometheus
            .as_ref()
            .map(|recorder| recorder.register_gauge(key, metadata));
        let handle = Gauge::from_arc(Arc::new(Fanned {
            ours: ours.clone(),
            prometheus,
        }));
        metrics.insert(key.clone(), Metric::Gauge(ours, handle.clone()));
        handle
    }

    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        if let Some(Metric::Histogram(_, handle)) =
            self.registry.0.read().expect("metrics registry").get(key)
        {
            return handle.clone();
        }
        let mut metrics = self.registry.0.write().expect("metrics registry");
        if let Some(Metric::Histogram(_, handle)) = metrics.get(key) {
            return handle.clone();
        }
        let ours = Arc::new(HistogramCell {
            micros: key.name().ends_with("_seconds"),
            histogram: Mutex::new(new_histogram()),
        });
        let prometheus = self
            .prometheus
            .as_ref()
            .map(|recorder| recorder.register_histogram(key, metadata));
        let handle = Histogram::from_arc(Arc::new(Fanned {
            ours: ours.clone(),
            prometheus,
        }));
        metrics.insert(key.clone(), Metric::Histogram(ours, handle.clone()));
        handle
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::stats::decode_histogram;

    /// A role's own `/metrics` renders `_seconds` metrics as histograms with cumulative
    /// buckets, which keep their figures however long the role stays idle.
    #[test]
    fn seconds_are_prometheus_histograms() {
        let recorder = prometheus_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            let latency = metrics::histogram!("gorgon_e2e_latency_seconds");
            latency.record(0.003);
            latency.record(0.004);
            latency.record(1.5);
        });
        let text = handle.render();
        assert!(
            text.contains("# TYPE gorgon_e2e_latency_seconds histogram"),
            "{text}"
        );
        assert!(
            text.contains("gorgon_e2e_latency_seconds_bucket{le=\"0.002\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("gorgon_e2e_latency_seconds_bucket{le=\"0.005\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("gorgon_e2e_latency_seconds_bucket{le=\"2\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("gorgon_e2e_latency_seconds_bucket{le=\"+Inf\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("gorgon_e2e_latency_seconds_count 3"),
            "{text}"
        );
        assert!(!text.contains("quantile"), "{text}");
    }

    /// What the role records is what its report carries: counter totals by labels, gauges
    /// after increments, and histograms of `_seconds` metrics in microseconds, reset by each
    /// report.
    #[test]
    fn a_report_carries_what_was_recorded() {
        let registry = Registry::default();
        let recorder = StatsRecorder {
            registry: registry.clone(),
            prometheus: None,
        };
        let metrics = Metrics {
            registry,
            started_at_ms: 5,
            prometheus: None,
        };
        metrics::with_local_recorder(&recorder, || {
            metrics::counter!("gorgon_outputs_total", "topology" => "a").increment(3);
            metrics::counter!("gorgon_outputs_total", "topology" => "a").increment(4);
            metrics::counter!("gorgon_outputs_total", "topology" => "b").increment(1);
            metrics::gauge!("gorgon_notifier_connections").increment(3.0);
            metrics::gauge!("gorgon_notifier_connections").decrement(1.0);
            let latency = metrics::histogram!("gorgon_e2e_latency_seconds");
            latency.record(0.002);
            latency.record(0.002);
            latency.record(1.5);
            metrics::histogram!("gorgon_batch_size").record(17.0);
        });
        let report = metrics.report("processor", "processor-1", Duration::from_secs(1));
        assert_eq!(
            (report.role.as_str(), report.instance.as_str()),
            ("processor", "processor-1")
        );
        assert_eq!(
            (report.pid, report.started_at_ms, report.interval_ms),
            (std::process::id(), 5, 1_000)
        );
        let mut counters: Vec<(String, u64)> = report
            .counters
            .iter()
            .map(|c| (format!("{}{:?}", c.name, c.labels), c.value))
            .collect();
        counters.sort();
        assert_eq!(
            counters,
            [
                (r#"gorgon_outputs_total{"topology": "a"}"#.to_owned(), 7),
                (r#"gorgon_outputs_total{"topology": "b"}"#.to_owned(), 1),
            ]
        );
        assert_eq!(report.gauges.len(), 1);
        assert_eq!(report.gauges[0].value, 2.0);
        let e2e = report
            .histograms
            .iter()
            .find(|h| h.name == "gorgon_e2e_latency_seconds")
            .unwrap();
        let e2e = decode_histogram(&e2e.hdr).unwrap();
        assert_eq!(e2e.len(), 3);
        assert_eq!(e2e.count_at(2_000), 2);
        assert!(e2e.equivalent(e2e.max(), 1_500_000));
        let size = report
            .histograms
            .iter()
            .find(|h| h.name == "gorgon_batch_size")
            .unwrap();
        assert_eq!(decode_histogram(&size.hdr).unwrap().count_at(17), 1);

        // The next report has the same totals and no histograms: nothing was recorded since.
        let next = metrics.report("processor", "processor-1", Duration::from_secs(1));
        assert_eq!(next.counters.iter().map(|c| c.value).sum::<u64>(), 8);
        assert!(next.histograms.is_empty());
    }
}
