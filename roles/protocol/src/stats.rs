//! The stats report every role publishes once a second on the stats topic (`layout::stats_topic`), and
//! the names of the metrics the monitor charts.
//!
//! A report is one JSON object: who sent it (the heartbeat: role, instance, host, pid,
//! version, start time), its counters (totals since the process started, so a lost report
//! loses no count), its gauges (current values), and the histograms of the values recorded
//! since the previous report, each an HdrHistogram in the V2 deflate format, base64. Values
//! of metrics whose name ends in `_seconds` are recorded in microseconds.

use std::collections::BTreeMap;

use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2DeflateSerializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Inject → output, per output event, recorded by the processor that commits it.
pub const E2E_LATENCY: &str = "gorgon_e2e_latency_seconds";
/// A processor batch's commit: the one fenced script that applies it.
pub const BATCH_COMMIT: &str = "gorgon_batch_commit_seconds";
/// A REST request, by web_face (labels `method`, `route`).
pub const HTTP_REQUEST: &str = "gorgon_http_request_duration_seconds";
/// One MongoDB write of the archive.
pub const ARCHIVE_WRITE: &str = "gorgon_archive_write_seconds";

/// Messages accepted by web_face's inject.
pub const MESSAGES_INJECTED: &str = "gorgon_messages_injected_total";
/// REST requests answered (labels `method`, `route`, `status`).
pub const HTTP_REQUESTS: &str = "gorgon_http_requests_total";
/// Messages (injected, forwarded, node changes) a processor took from its input queues and committed.
pub const MESSAGES_IN: &str = "gorgon_messages_in_total";
/// Output events a processor committed (label `topology`).
pub const OUTPUTS: &str = "gorgon_outputs_total";
/// Messages a function failed on (label `topology`).
pub const FUNCTION_ERRORS: &str = "gorgon_function_errors_total";
/// Deliveries handed back to the queue to be retried after a failed batch.
pub const RETRIES: &str = "gorgon_retries_total";
/// Messages moved to a dead-letter list.
pub const DEAD_LETTERED: &str = "gorgon_dead_lettered_total";
/// Output events the archive wrote to MongoDB.
pub const ARCHIVED: &str = "gorgon_archived_total";
/// Output events the notifier emitted to sockets (live and replayed).
pub const NOTIFIER_EVENTS: &str = "gorgon_notifier_outputs_sent_total";
/// Sockets connected to a notifier (a gauge).
pub const NOTIFIER_CONNECTIONS: &str = "gorgon_notifier_connections";

/// The histograms' bounds: 1 µs to one hour, three significant digits.
pub const HISTOGRAM_MAX_US: u64 = 3_600_000_000;

/// A new empty histogram as every role records them: 1 µs to [`HISTOGRAM_MAX_US`], three
/// significant digits (values beyond are clamped to the bound).
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HISTOGRAM_MAX_US, 3).expect("static histogram bounds are valid")
}

/// What one role instance publishes once a second.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The role (`protocol::roles`).
    pub role: String,
    /// The instance: its redpill consumer id, which is also the owner named in its leases.
    pub instance: String,
    /// The host name.
    pub host: String,
    /// The process id.
    pub pid: u32,
    /// The role's version.
    pub version: String,
    /// When the process started, unix ms.
    pub started_at_ms: u64,
    /// When this report was made, unix ms (the sender's clock).
    pub at_ms: u64,
    /// The time its histograms cover, in ms.
    pub interval_ms: u64,
    /// True in the last report of an instance stopping gracefully.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stopping: bool,
    /// Totals since the process started.
    #[serde(default)]
    pub counters: Vec<Sample<u64>>,
    /// Current values.
    #[serde(default)]
    pub gauges: Vec<Sample<f64>>,
    /// Values recorded during the interval.
    #[serde(default)]
    pub histograms: Vec<HistogramSample>,
}

/// One counter or gauge.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample<T> {
    /// The metric's name, `gorgon_…`.
    pub name: String,
    /// Its labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Its value.
    pub value: T,
}

/// One histogram of an interval.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistogramSample {
    /// The metric's name, `gorgon_…`.
    pub name: String,
    /// Its labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The histogram, V2 deflate, base64 ([`encode_histogram`]).
    pub hdr: String,
}

/// Why a histogram could not be read.
#[derive(Debug, thiserror::Error)]
#[error("not a base64 V2 HdrHistogram: {0}")]
pub struct HistogramError(String);

/// A histogram in the V2 deflate format, base64 (standard alphabet, padded).
pub fn encode_histogram(histogram: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    V2DeflateSerializer::new()
        .serialize(histogram, &mut bytes)
        .expect("serializing into memory does not fail");
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Reads back what [`encode_histogram`] wrote.
pub fn decode_histogram(text: &str) -> Result<Histogram<u64>, HistogramError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|error| HistogramError(error.to_string()))?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|error| HistogramError(format!("{error:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_round_trips_with_its_histograms() {
        let mut histogram = new_histogram();
        for value in [1, 10, 100, 1_000, 10_000, 1_000_000] {
            histogram.record(value).unwrap();
        }
        histogram.record_n(250, 1_000).unwrap();
        let report = Report {
            role: "processor".into(),
            instance: "processor-1".into(),
            host: "box".into(),
            pid: 7,
            version: "0.1.0".into(),
            started_at_ms: 1,
            at_ms: 2_000,
            interval_ms: 1_000,
            stopping: false,
            counters: vec![Sample {
                name: OUTPUTS.into(),
                labels: BTreeMap::from([("topology".into(), "t".into())]),
                value: 5,
            }],
            gauges: vec![],
            histograms: vec![HistogramSample {
                name: E2E_LATENCY.into(),
                labels: BTreeMap::new(),
                hdr: encode_histogram(&histogram),
            }],
        };
        let json = serde_json::to_string(&report).unwrap();
        assert!(!json.contains("stopping"), "{json}");
        let back: Report = serde_json::from_str(&json).unwrap();
        assert_eq!(back, report);
        let decoded = decode_histogram(&back.histograms[0].hdr).unwrap();
        assert_eq!(decoded, histogram);
        assert_eq!(decoded.len(), 1_006);
        assert_eq!(decoded.max(), histogram.max());
        assert!(decode_histogram("bm90IGEgaGlzdG9ncmFt").is_err());
        assert!(decode_histogram("%%").is_err());
    }
}
