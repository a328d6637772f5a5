//! What the monitor knows: the role instances it hears from, and per second of the window
//! the throughput, HTTP answers and merged latency histograms of all of them.
//!
//! Reports are placed in time by their stream entry id, which Redis stamps with its own
//! clock, so instances on different machines line up. Counters arrive as totals; the
//! difference from the instance's previous report is what it did in between, spread over
//! the seconds between the two entries. An instance's
//! first report is only a baseline (its totals are not charted as one second's burst),
//! unless the instance started within the last two report intervals.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use protocol::roles;
use protocol::stats::{self, decode_histogram, new_histogram, Report, Sample};
use serde::Serialize;

use crate::heatmap::{Column, Heatmap};

/// The latency histograms the monitor charts, by the metric they come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// Inject → output.
    E2e,
    /// REST requests.
    Rest,
    /// Processor batch commits.
    BatchCommit,
    /// Archive writes.
    ArchiveWrite,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 4] = [Kind::E2e, Kind::Rest, Kind::BatchCommit, Kind::ArchiveWrite];

    fn of(metric: &str) -> Option<Kind> {
        match metric {
            stats::E2E_LATENCY => Some(Kind::E2e),
            stats::HTTP_REQUEST => Some(Kind::Rest),
            stats::BATCH_COMMIT => Some(Kind::BatchCommit),
            stats::ARCHIVE_WRITE => Some(Kind::ArchiveWrite),
            _ => None,
        }
    }

    /// Its name in the snapshot and in `/metrics`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::E2e => "e2e",
            Kind::Rest => "rest",
            Kind::BatchCommit => "batch_commit",
            Kind::ArchiveWrite => "archive_write",
        }
    }
}

/// The counter charted as each role's throughput.
const THROUGHPUT: [(&str, &str); 4] = [
    (roles::WEB_FACE, stats::MESSAGES_INJECTED),
    (roles::PROCESSOR, stats::OUTPUTS),
    (roles::STORE, stats::ARCHIVED),
    (roles::NOTIFIER, stats::NOTIFIER_EVENTS),
];

/// HTTP status classes charted.
const STATUS_CLASSES: [&str; 4] = ["2xx", "3xx", "4xx", "5xx"];

/// A metric's name and labels.
type Series = (String, BTreeMap<String, String>);

/// Seconds this far behind the newest one reported are sealed: their histograms become
/// heatmap columns. Reports land within about a second of their span, so none is expected
/// for them any more.
const SEAL_AFTER_S: u64 = 5;

/// The latency quantiles of `/metrics` come from blocks of this many seconds.
const BLOCK_S: u64 = 10;

/// One second, all instances together.
#[derive(Default)]
struct Second {
    roles: BTreeMap<&'static str, u64>,
    topologies: BTreeMap<String, u64>,
    http: [u64; 4],
    /// Merged histograms, while the second is open.
    histograms: BTreeMap<Kind, Histogram<u64>>,
    /// What is kept once it is sealed.
    columns: BTreeMap<Kind, Column>,
    sealed: bool,
}

impl Second {
    fn column(&self, kind: Kind) -> Option<Column> {
        if self.sealed {
            self.columns.get(&kind).cloned()
        } else {
            self.histograms.get(&kind).and_then(Column::of)
        }
    }

    fn seal(&mut self) {
        self.columns = std::mem::take(&mut self.histograms)
            .into_iter()
            .filter_map(|(kind, histogram)| Column::of(&histogram).map(|column| (kind, column)))
            .collect();
        self.sealed = true;
    }

    fn add(&mut self, kind: Kind, histogram: &Histogram<u64>) -> bool {
        if self.sealed {
            match self.columns.get_mut(&kind) {
                Some(column) => column.add_late(histogram),
                None => {
                    if let Some(column) = Column::of(histogram) {
                        self.columns.insert(kind, column);
                    }
                }
            }
            return true;
        }
        let merged = self.histograms.entry(kind).or_insert_with(new_histogram);
        merged.add(histogram).is_ok()
    }
}

/// `delta` counted over the milliseconds `(start_ms, end_ms]`, split by unix second in
/// proportion to each second's share, in whole counts that add up to `delta`.
pub fn spread(delta: u64, start_ms: u64, end_ms: u64) -> Vec<(u64, u64)> {
    let span = end_ms.saturating_sub(start_ms);
    if span == 0 {
        return vec![(end_ms / 1_000, delta)];
    }
    let mut parts = Vec::new();
    let (mut covered, mut given) = (0u64, 0u64);
    let mut second = (start_ms + 1) / 1_000;
    while second * 1_000 <= end_ms {
        let from = (second * 1_000).max(start_ms + 1);
        let to = (second * 1_000 + 999).min(end_ms);
        covered += to + 1 - from;
        let upto = (u128::from(delta) * u128::from(covered) / u128::from(span)) as u64;
        if upto > given {
            parts.push((second, upto - given));
            given = upto;
        }
        second += 1;
    }
    parts
}

impl Second {
    /// Counts `count` of counter `series` of a `role` instance in this second.
    fn count(&mut self, role: &str, (name, labels): &Series, count: u64) {
        if let Some((role_name, _)) = THROUGHPUT
            .iter()
            .find(|(throughput_role, counter)| counter == name && *throughput_role == role)
        {
            *self.roles.entry(role_name).or_default() += count;
        }
        if name == stats::OUTPUTS {
            if let Some(topology) = labels.get("topology") {
                *self.topologies.entry(topology.clone()).or_default() += count;
            }
        }
        if name == stats::HTTP_REQUESTS {
            let class = labels
                .get("status")
                .and_then(|status| status.chars().next())
                .and_then(|digit| digit.to_digit(10))
                .and_then(|digit| digit.checked_sub(2));
            if let Some(class) = class.filter(|class| *class < 4) {
                self.http[class as usize] += count;
            }
        }
    }
}

/// One role instance, as its latest report tells it.
struct Instance {
    role: String,
    host: String,
    pid: u32,
    version: String,
    started_at_ms: u64,
    /// When the monitor last heard from it (its own clock: liveness never compares clocks).
    seen: Instant,
    /// When Redis stamped its latest report's entry, unix ms.
    entry_ms: u64,
    stopping: bool,
    counters: HashMap<Series, u64>,
    gauges: Vec<Sample<f64>>,
}

/// The monitor's settings that shape the window.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Seconds kept.
    pub window_s: u64,
    /// An instance not heard from for this long is unhealthy.
    pub health_timeout: Duration,
    /// An instance not heard from for this long is forgotten (its counts stay in the totals).
    pub forget_after: Duration,
}

/// Everything the monitor aggregated.
pub struct Window {
    limits: Limits,
    seconds: BTreeMap<u64, Second>,
    /// Histograms by block of [`BLOCK_S`] seconds (unix second / `BLOCK_S`), for `/metrics`.
    blocks: BTreeMap<u64, BTreeMap<Kind, Histogram<u64>>>,
    instances: BTreeMap<String, Instance>,
    /// Totals of forgotten instances, by role and series, so totals never go down.
    retired: HashMap<(String, Series), u64>,
    /// Reports that could not be read.
    pub rejected: u64,
    /// The second the monitor started in.
    started_s: u64,
}

impl Window {
    /// An empty window.
    pub fn new(limits: Limits) -> Window {
        Window {
            limits,
            seconds: BTreeMap::new(),
            blocks: BTreeMap::new(),
            instances: BTreeMap::new(),
            retired: HashMap::new(),
            rejected: 0,
            started_s: unix_ms() / 1_000,
        }
    }

    /// Takes in one report, whose stream entry Redis stamped at `entry_ms`, heard of at
    /// `seen`.
    ///
    /// The report covers the time since the instance's previous entry (or one interval, for
    /// its first): each counter's difference is spread over the seconds of that span in
    /// proportion to their share of it, in whole counts that add up exactly, and its
    /// histograms go to the second of the span's middle. So an instance reporting at the turn
    /// of a second does not make one second show nothing and the next twice as much.
    pub fn ingest(&mut self, report: Report, entry_ms: u64, seen: Instant) {
        let fresh_start =
            report.at_ms.saturating_sub(report.started_at_ms) <= 2 * report.interval_ms.max(1_000);
        let role = report.role.clone();
        let previous = self.instances.remove(&report.instance);
        let baseline_only = previous.is_none() && !fresh_start;
        let oldest_ms = self.newest_second().map_or(0, |newest| {
            (newest + 1).saturating_sub(self.limits.window_s) * 1_000
        });
        let span_start = previous
            .as_ref()
            .map(|instance| instance.entry_ms)
            .filter(|&previous_ms| previous_ms < entry_ms)
            .unwrap_or_else(|| entry_ms.saturating_sub(report.interval_ms.max(1)))
            .max(oldest_ms.saturating_sub(1));
        let mut counters = HashMap::with_capacity(report.counters.len());
        for sample in report.counters {
            let series = (sample.name, sample.labels);
            let before = previous
                .as_ref()
                .and_then(|instance| instance.counters.get(&series).copied())
                .unwrap_or(0);
            // A total below the last one means the counter restarted from zero.
            let delta = if sample.value >= before {
                sample.value - before
            } else {
                sample.value
            };
            if delta > 0 && !baseline_only && entry_ms >= oldest_ms {
                for (second, part) in spread(delta, span_start, entry_ms) {
                    self.seconds
                        .entry(second)
                        .or_default()
                        .count(&role, &series, part);
                }
            }
            counters.insert(series, sample.value);
        }
        let middle_s = (span_start + entry_ms).div_ceil(2) / 1_000;
        if entry_ms >= oldest_ms {
            for sample in &report.histograms {
                let Some(kind) = Kind::of(&sample.name) else {
                    continue;
                };
                match decode_histogram(&sample.hdr) {
                    Ok(histogram) => {
                        let block = self.blocks.entry(middle_s / BLOCK_S).or_default();
                        let merged = block.entry(kind).or_insert_with(new_histogram);
                        let into_block = merged.add(&histogram).is_ok();
                        let slot = self.seconds.entry(middle_s).or_default();
                        if !(slot.add(kind, &histogram) && into_block) {
                            self.rejected += 1;
                        }
                    }
                    Err(error) => {
                        self.rejected += 1;
                        tracing::debug!(instance = %report.instance, %error, "a histogram could not be read");
                    }
                }
            }
        }
        self.instances.insert(
            report.instance,
            Instance {
                role,
                host: report.host,
                pid: report.pid,
                version: report.version,
                started_at_ms: report.started_at_ms,
                seen,
                entry_ms,
                stopping: report.stopping,
                counters,
                gauges: report.gauges,
            },
        );
    }

    fn newest_second(&self) -> Option<u64> {
        self.seconds.keys().next_back().copied()
    }

    /// Drops seconds older than the window before `now_s`, seals the seconds
    /// [`SEAL_AFTER_S`] behind the newest one reported, and forgets instances silent for
    /// longer than `forget_after`, keeping their counts in the totals.
    pub fn prune(&mut self, now_s: u64, now: Instant) {
        let oldest = now_s.saturating_sub(self.limits.window_s);
        self.seconds = self.seconds.split_off(&oldest);
        if let Some(newest) = self.newest_second() {
            let open_from = newest.saturating_sub(SEAL_AFTER_S);
            for (_, second) in self.seconds.range_mut(..open_from) {
                if !second.sealed {
                    second.seal();
                }
            }
        }
        self.blocks = self
            .blocks
            .split_off(&(now_s.saturating_sub(60 + BLOCK_S) / BLOCK_S));
        let forget: Vec<String> = self
            .instances
            .iter()
            .filter(|(_, instance)| now.duration_since(instance.seen) > self.limits.forget_after)
            .map(|(id, _)| id.clone())
            .collect();
        for id in forget {
            if let Some(instance) = self.instances.remove(&id) {
                tracing::info!(instance = %id, role = %instance.role, "forgetting an instance not heard from");
                for (series, value) in instance.counters {
                    *self
                        .retired
                        .entry((instance.role.clone(), series))
                        .or_default() += value;
                }
            }
        }
    }

    /// The snapshot of the last `window_s` seconds before `now_s` (the current second left
    /// out, as it is still filling), from no earlier than the oldest second the monitor
    /// knows of: the oldest it holds data for, or the one it started in.
    pub fn snapshot(&self, now_s: u64, window_s: u64, now: Instant) -> Snapshot {
        let window_s = window_s.clamp(1, self.limits.window_s);
        let known = self
            .seconds
            .keys()
            .next()
            .map_or(self.started_s, |&oldest| oldest.min(self.started_s));
        let first = now_s
            .saturating_sub(window_s)
            .max(known.min(now_s.saturating_sub(1)));
        let range: Vec<u64> = (first..now_s).collect();
        let slots: Vec<Option<&Second>> = range.iter().map(|s| self.seconds.get(s)).collect();

        let mut roles: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for (role, _) in THROUGHPUT {
            if self
                .instances
                .values()
                .any(|instance| instance.role == role)
                || slots
                    .iter()
                    .flatten()
                    .any(|slot| slot.roles.contains_key(role))
            {
                roles.insert(
                    role.to_owned(),
                    slots
                        .iter()
                        .map(|slot| {
                            slot.and_then(|slot| slot.roles.get(role))
                                .copied()
                                .unwrap_or(0)
                        })
                        .collect(),
                );
            }
        }
        let mut topologies: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for (index, slot) in slots.iter().enumerate() {
            for (topology, count) in slot.iter().flat_map(|slot| &slot.topologies) {
                topologies
                    .entry(topology.clone())
                    .or_insert_with(|| vec![0; slots.len()])[index] += count;
            }
        }
        let http: BTreeMap<String, Vec<u64>> = STATUS_CLASSES
            .iter()
            .enumerate()
            .map(|(class, name)| {
                let counts = slots
                    .iter()
                    .map(|slot| slot.map(|slot| slot.http[class]).unwrap_or(0))
                    .collect();
                ((*name).to_owned(), counts)
            })
            .collect();
        let heatmaps = Kind::ALL
            .iter()
            .map(|kind| {
                let heatmap = Heatmap::of(
                    slots
                        .iter()
                        .map(|slot| slot.and_then(|slot| slot.column(*kind))),
                );
                (kind.name().to_owned(), heatmap)
            })
            .collect();

        let now_ms = unix_ms();
        let instances = self
            .instances
            .iter()
            .map(|(id, instance)| {
                let age = now.duration_since(instance.seen);
                let healthy = !instance.stopping && age <= self.limits.health_timeout;
                InstanceView {
                    role: instance.role.clone(),
                    instance: id.clone(),
                    host: instance.host.clone(),
                    pid: instance.pid,
                    version: instance.version.clone(),
                    started_at_ms: instance.started_at_ms,
                    uptime_s: now_ms.saturating_sub(instance.started_at_ms) as f64 / 1e3,
                    last_seen_ms: now_ms.saturating_sub(age.as_millis() as u64),
                    age_ms: age.as_millis() as u64,
                    healthy,
                    state: if instance.stopping {
                        "stopped"
                    } else if healthy {
                        "healthy"
                    } else {
                        "unhealthy"
                    },
                }
            })
            .collect();

        Snapshot {
            now_ms,
            window_s,
            health_timeout_ms: self.limits.health_timeout.as_millis() as u64,
            seconds: range,
            instances,
            throughput: Throughput { roles, topologies },
            http,
            heatmaps,
            counters: self.totals(),
            gauges: self
                .instances
                .iter()
                .flat_map(|(id, instance)| {
                    instance.gauges.iter().map(move |gauge| GaugeView {
                        role: instance.role.clone(),
                        instance: id.clone(),
                        name: gauge.name.clone(),
                        labels: gauge.labels.clone(),
                        value: gauge.value,
                    })
                })
                .collect(),
            rejected_reports: self.rejected,
            partitions: Vec::new(),
            archive: None,
            dead_letters: 0,
            redis_error: None,
        }
    }

    /// Every counter's total by role and series: the instances' latest plus the forgotten.
    fn totals(&self) -> Vec<CounterView> {
        let mut totals: BTreeMap<(String, String, BTreeMap<String, String>), u64> = BTreeMap::new();
        let known = self.instances.values().flat_map(|instance| {
            instance
                .counters
                .iter()
                .map(move |(series, value)| (&instance.role, series, *value))
        });
        let retired = self
            .retired
            .iter()
            .map(|((role, series), value)| (role, series, *value));
        for (role, (name, labels), value) in known.chain(retired) {
            *totals
                .entry((role.clone(), name.clone(), labels.clone()))
                .or_default() += value;
        }
        totals
            .into_iter()
            .map(|((role, name, labels), value)| CounterView {
                role,
                name,
                labels,
                value,
            })
            .collect()
    }

    /// Every kind's values over about the last `seconds` before `now_s` (whole blocks of
    /// [`BLOCK_S`] seconds, so up to `BLOCK_S` more; at most the last 70 s), merged.
    pub fn recent(&self, kind: Kind, now_s: u64, seconds: u64) -> Histogram<u64> {
        let mut merged = new_histogram();
        for (_, block) in self.blocks.range(now_s.saturating_sub(seconds) / BLOCK_S..) {
            if let Some(histogram) = block.get(&kind) {
                let _ = merged.add(histogram);
            }
        }
        merged
    }
}

/// The time now, unix ms.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|since| since.as_millis() as u64)
        .unwrap_or(0)
}

/// `GET /api/v1/snapshot`: everything the dashboard shows (see docs/stats.md).
#[derive(Debug, Serialize)]
pub struct Snapshot {
    /// The monitor's clock, unix ms.
    pub now_ms: u64,
    /// The most seconds a snapshot covers (`seconds` has fewer while the monitor has not
    /// been running, nor holds reports, for that long).
    pub window_s: u64,
    /// How long an instance may be silent and still count as healthy.
    pub health_timeout_ms: u64,
    /// The seconds covered, unix, oldest first; every per-second array is aligned with it.
    pub seconds: Vec<u64>,
    /// Every role instance heard from, by id.
    pub instances: Vec<InstanceView>,
    /// Messages per second by role and by topology.
    pub throughput: Throughput,
    /// REST answers per second by status class.
    pub http: BTreeMap<String, Vec<u64>>,
    /// Latency heatmaps: `e2e`, `rest`, `batch_commit`, `archive_write`.
    pub heatmaps: BTreeMap<String, Heatmap>,
    /// Every partition: owner, queue depths and backlog age.
    pub partitions: Vec<crate::redis_view::PartitionView>,
    /// The archive's backlog and the output topic's fill.
    pub archive: Option<crate::redis_view::ArchiveView>,
    /// Dead letters in all partitions.
    pub dead_letters: u64,
    /// Why the Redis-side figures are missing or stale, when they are.
    pub redis_error: Option<String>,
    /// Counter totals by role.
    pub counters: Vec<CounterView>,
    /// Gauges by instance.
    pub gauges: Vec<GaugeView>,
    /// Reports or histograms that could not be read.
    pub rejected_reports: u64,
}

/// Messages per second.
#[derive(Debug, Serialize)]
pub struct Throughput {
    /// By role: injected (web_face), outputs (processor), archived (store), events sent
    /// (notifier).
    pub roles: BTreeMap<String, Vec<u64>>,
    /// Outputs by topology.
    pub topologies: BTreeMap<String, Vec<u64>>,
}

/// A role instance.
#[derive(Debug, Serialize)]
pub struct InstanceView {
    /// Its role.
    pub role: String,
    /// Its id (the redpill consumer id; lease owners name it).
    pub instance: String,
    /// Its host.
    pub host: String,
    /// Its process id.
    pub pid: u32,
    /// Its version.
    pub version: String,
    /// When it started, unix ms.
    pub started_at_ms: u64,
    /// Seconds since it started.
    pub uptime_s: f64,
    /// When its last report arrived, unix ms.
    pub last_seen_ms: u64,
    /// Milliseconds since its last report arrived.
    pub age_ms: u64,
    /// Heard from within the health timeout and not stopping.
    pub healthy: bool,
    /// `healthy`, `unhealthy` (silent too long) or `stopped` (said it was stopping).
    pub state: &'static str,
}

/// A counter's total.
#[derive(Debug, Serialize)]
pub struct CounterView {
    /// The role.
    pub role: String,
    /// The metric.
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// The total.
    pub value: u64,
}

/// A gauge of one instance.
#[derive(Debug, Serialize)]
pub struct GaugeView {
    /// The role.
    pub role: String,
    /// The instance.
    pub instance: String,
    /// The metric.
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its value.
    pub value: f64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::stats::{encode_histogram, HistogramSample};

    fn limits() -> Limits {
        Limits {
            window_s: 60,
            health_timeout: Duration::from_millis(2_500),
            forget_after: Duration::from_secs(30),
        }
    }

    fn report(role: &str, instance: &str, at_s: u64, outputs: u64, latencies: &[u64]) -> Report {
        let mut histogram = new_histogram();
        for latency in latencies {
            histogram.record(*latency).unwrap();
        }
        Report {
            role: role.into(),
            instance: instance.into(),
            host: "box".into(),
            pid: 1,
            version: "0.1.0".into(),
            started_at_ms: 1_000_000,
            at_ms: at_s * 1_000,
            interval_ms: 1_000,
            stopping: false,
            counters: vec![Sample {
                name: stats::OUTPUTS.into(),
                labels: BTreeMap::from([("topology".into(), "t".into())]),
                value: outputs,
            }],
            gauges: vec![],
            histograms: vec![HistogramSample {
                name: stats::E2E_LATENCY.into(),
                labels: BTreeMap::new(),
                hdr: encode_histogram(&histogram),
            }],
        }
    }

    /// Two processors' reports of the same second add up: throughput is the sum of their
    /// counter differences, the heatmap column holds both histograms' values.
    #[test]
    fn instances_of_a_second_merge() {
        let now = Instant::now();
        let mut window = Window::new(limits());
        // Started long ago: the first reports are baselines.
        window.ingest(report("processor", "p1", 2_000, 100, &[]), 2_000_999, now);
        window.ingest(report("processor", "p2", 2_000, 50, &[]), 2_000_999, now);
        window.ingest(
            report("processor", "p1", 2_001, 110, &[1_000, 1_000]),
            2_001_999,
            now,
        );
        window.ingest(
            report("processor", "p2", 2_001, 53, &[30_000]),
            2_001_999,
            now,
        );
        window.ingest(report("processor", "p1", 2_002, 111, &[]), 2_002_999, now);
        let snapshot = window.snapshot(2_003, 3, now);
        assert_eq!(snapshot.seconds, [2_000, 2_001, 2_002]);
        assert_eq!(snapshot.throughput.roles["processor"], [0, 13, 1]);
        assert_eq!(snapshot.throughput.topologies["t"], [0, 13, 1]);
        let e2e = &snapshot.heatmaps["e2e"];
        assert_eq!(e2e.cells, [[1, 9, 2], [1, 13, 1]]);
        assert_eq!(e2e.count, [0, 3, 0]);
        let totals: Vec<u64> = snapshot.counters.iter().map(|c| c.value).collect();
        assert_eq!(totals, [164]);
        assert_eq!(snapshot.instances.len(), 2);
        assert!(snapshot.instances.iter().all(|i| i.healthy));
    }

    /// An instance silent past the health timeout is unhealthy; past `forget_after` it is
    /// dropped, and its counts stay in the totals.
    #[test]
    fn silent_instances_turn_unhealthy_then_are_forgotten() {
        let start = Instant::now();
        let mut window = Window::new(limits());
        window.ingest(report("processor", "p1", 2_000, 7, &[]), 2_000_999, start);
        let later = start + Duration::from_millis(2_600);
        let snapshot = window.snapshot(2_003, 60, later);
        assert_eq!(snapshot.instances[0].state, "unhealthy");
        assert!(!snapshot.instances[0].healthy);
        window.prune(2_040, start + Duration::from_secs(31));
        let snapshot = window.snapshot(2_040, 60, start + Duration::from_secs(31));
        assert!(snapshot.instances.is_empty());
        assert_eq!(snapshot.counters[0].value, 7);
    }

    /// A freshly started instance's first report counts in full; a total that goes down
    /// counts from zero again.
    #[test]
    fn fresh_instances_count_from_their_start() {
        let now = Instant::now();
        let mut window = Window::new(limits());
        let mut first = report("web_face", "w1", 2_000, 0, &[]);
        first.started_at_ms = 1_999_500;
        first.counters[0].name = stats::MESSAGES_INJECTED.into();
        first.counters[0].value = 40;
        window.ingest(first.clone(), 2_000_999, now);
        let mut again = first.clone();
        again.counters[0].value = 5;
        window.ingest(again, 2_001_999, now);
        let snapshot = window.snapshot(2_002, 2, now);
        assert_eq!(snapshot.throughput.roles["web_face"], [40, 5]);
    }

    /// A count is split over the seconds of the span it covers, in whole counts that add up.
    #[test]
    fn counts_spread_over_the_seconds_they_cover() {
        assert_eq!(spread(13, 2_000_500, 2_001_500), [(2_000, 6), (2_001, 7)]);
        assert_eq!(spread(10, 1_000, 4_000), [(1, 3), (2, 3), (3, 3), (4, 1)]);
        assert_eq!(spread(1, 1_999, 2_999), [(2, 1)]);
        assert_eq!(spread(5, 7_000, 7_000), [(7, 5)]);
        assert_eq!(spread(2, 999, 1_999), [(1, 2)]);
    }

    /// A monitor that just started and holds no reports covers only the seconds since it
    /// started, not a window of empty seconds before.
    #[test]
    fn a_new_monitor_covers_the_seconds_since_it_started() {
        let window = Window::new(limits());
        let started = window.started_s;
        let snapshot = window.snapshot(started + 5, 60, Instant::now());
        assert_eq!(snapshot.seconds, (started..started + 5).collect::<Vec<_>>());
        let snapshot = window.snapshot(started + 100, 60, Instant::now());
        assert_eq!(snapshot.seconds.len(), 60);
        // Right after the start there is still one second to show.
        assert_eq!(
            window.snapshot(started, 60, Instant::now()).seconds,
            [started - 1]
        );
    }

    /// Seconds behind the newest one reported are sealed into columns: the heatmap stays the
    /// same, a late histogram still counts, and `/metrics`' quantiles come from the blocks.
    #[test]
    fn sealed_seconds_keep_their_heatmap_columns() {
        let now = Instant::now();
        let mut window = Window::new(limits());
        window.ingest(report("processor", "p1", 2_000, 1, &[]), 2_000_999, now);
        window.ingest(
            report("processor", "p1", 2_001, 2, &[1_000, 30_000]),
            2_001_999,
            now,
        );
        let before = window.snapshot(2_003, 3, now).heatmaps["e2e"].clone();
        for at in 2_002..2_010 {
            window.ingest(report("processor", "p1", at, 2, &[]), at * 1_000 + 999, now);
        }
        window.prune(2_010, now);
        assert!(window.seconds[&2_001].sealed && !window.seconds[&2_006].sealed);
        assert!(window.seconds[&2_001].histograms.is_empty());
        let after = window.snapshot(2_003, 3, now).heatmaps["e2e"].clone();
        assert_eq!(after, before);
        assert_eq!(after.cells, [[1, 9, 1], [1, 13, 1]]);
        // A report whose span's middle falls in the sealed second adds to its column.
        let mut late = report("processor", "p2", 2_001, 0, &[5_000]);
        late.started_at_ms = 2_001_000;
        window.ingest(late, 2_002_000, now);
        let late = window.snapshot(2_003, 3, now).heatmaps["e2e"].clone();
        assert_eq!(late.cells, [[1, 9, 1], [1, 11, 1], [1, 13, 1]]);
        assert_eq!(late.count, [0, 3, 0]);
        let recent = window.recent(Kind::E2e, 2_010, 60);
        assert_eq!(recent.len(), 3);
    }
}
