//! Latency heatmaps: per second, how many values fell in each of a fixed set of log-scale
//! buckets (1-2-5 steps from 2 µs to 100 s), with the second's p50, p99 and max.

use hdrhistogram::Histogram;
use serde::Serialize;

/// The lower edges of the buckets, in µs: `[0, 2)`, `[2, 5)`, `[5, 10)`, `[10, 20)`, … ,
/// `[50 s, 100 s)`, then `[100 s, ∞)`.
pub const EDGES_US: [u64; 25] = [
    0,
    2,
    5,
    10,
    20,
    50,
    100,
    200,
    500,
    1_000,
    2_000,
    5_000,
    10_000,
    20_000,
    50_000,
    100_000,
    200_000,
    500_000,
    1_000_000,
    2_000_000,
    5_000_000,
    10_000_000,
    20_000_000,
    50_000_000,
    100_000_000,
];

/// The bucket a value (µs) falls in: the last whose lower edge is not above it.
pub fn bucket_of(value_us: u64) -> usize {
    EDGES_US.partition_point(|&edge| edge <= value_us) - 1
}

/// How many values of `histogram` fall in each bucket. A value is placed by the lowest value
/// the histogram cannot tell it from (three significant digits): exact up to 20 ms, where
/// every edge is on the histogram's grid; above, a value within 0.1 % above an edge may
/// count in the bucket below it.
pub fn bucket_counts(histogram: &Histogram<u64>) -> [u64; EDGES_US.len()] {
    let mut counts = [0; EDGES_US.len()];
    for value in histogram.iter_recorded() {
        let lowest = histogram.lowest_equivalent(value.value_iterated_to());
        counts[bucket_of(lowest)] += value.count_at_value();
    }
    counts
}

/// One bucket as the snapshot describes it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Bucket {
    /// Its lower edge, µs (inclusive).
    pub lo: u64,
    /// Its upper edge, µs (exclusive); `None` for the last.
    pub hi: Option<u64>,
    /// `"<2µs"`, `"5µs"`, `"10ms"`, `"1s"`, `"≥100s"`.
    pub label: String,
}

/// Every bucket, fastest first.
pub fn buckets() -> Vec<Bucket> {
    EDGES_US
        .iter()
        .enumerate()
        .map(|(index, &lo)| {
            let hi = EDGES_US.get(index + 1).copied();
            let label = match (index, hi) {
                (0, Some(hi)) => format!("<{}", duration_label(hi)),
                (_, None) => format!("≥{}", duration_label(lo)),
                _ => duration_label(lo),
            };
            Bucket { lo, hi, label }
        })
        .collect()
}

fn duration_label(us: u64) -> String {
    if us >= 1_000_000 {
        format!("{}s", us / 1_000_000)
    } else if us >= 1_000 {
        format!("{}ms", us / 1_000)
    } else {
        format!("{us}µs")
    }
}

/// A heatmap over a run of seconds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Heatmap {
    /// Always `"us"`.
    pub unit: &'static str,
    /// The buckets, fastest first.
    pub buckets: Vec<Bucket>,
    /// `[second index, bucket index, count]` for every cell with a count.
    pub cells: Vec<[u64; 3]>,
    /// Each second's median, µs (`None` for a second with no values).
    pub p50: Vec<Option<u64>>,
    /// Each second's 99th percentile, µs.
    pub p99: Vec<Option<u64>>,
    /// Each second's largest value, µs.
    pub max: Vec<Option<u64>>,
    /// Each second's number of values.
    pub count: Vec<u64>,
}

/// One second of a heatmap: how many values fell in each bucket, and the second's quantiles.
/// What the monitor keeps of a second once no more reports for it are expected: a few
/// hundred bytes instead of a whole histogram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    /// Values per bucket.
    pub counts: [u64; EDGES_US.len()],
    /// The median, µs.
    pub p50: u64,
    /// The 99th percentile, µs.
    pub p99: u64,
    /// The largest value, µs.
    pub max: u64,
    /// The number of values.
    pub count: u64,
}

impl Column {
    /// The column of `histogram`; `None` when it holds no value.
    pub fn of(histogram: &Histogram<u64>) -> Option<Column> {
        (!histogram.is_empty()).then(|| Column {
            counts: bucket_counts(histogram),
            p50: histogram.value_at_quantile(0.5),
            p99: histogram.value_at_quantile(0.99),
            max: histogram.max(),
            count: histogram.len(),
        })
    }

    /// Adds a histogram that arrived after the column was made: its counts and its max go in;
    /// the quantiles stay those of the values the column was made from.
    pub fn add_late(&mut self, histogram: &Histogram<u64>) {
        for (total, count) in self.counts.iter_mut().zip(bucket_counts(histogram)) {
            *total += count;
        }
        self.count += histogram.len();
        self.max = self.max.max(histogram.max());
    }
}

impl Heatmap {
    /// The heatmap of a run of seconds, each the column of that second if it has values.
    pub fn of(seconds: impl IntoIterator<Item = Option<Column>>) -> Heatmap {
        let mut heatmap = Heatmap {
            unit: "us",
            buckets: buckets(),
            cells: Vec::new(),
            p50: Vec::new(),
            p99: Vec::new(),
            max: Vec::new(),
            count: Vec::new(),
        };
        for (index, column) in seconds.into_iter().enumerate() {
            match column {
                Some(column) => {
                    for (bucket, count) in column.counts.into_iter().enumerate() {
                        if count > 0 {
                            heatmap.cells.push([index as u64, bucket as u64, count]);
                        }
                    }
                    heatmap.p50.push(Some(column.p50));
                    heatmap.p99.push(Some(column.p99));
                    heatmap.max.push(Some(column.max));
                    heatmap.count.push(column.count);
                }
                None => {
                    heatmap.p50.push(None);
                    heatmap.p99.push(None);
                    heatmap.max.push(None);
                    heatmap.count.push(0);
                }
            }
        }
        heatmap
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::stats::new_histogram;

    #[test]
    fn values_fall_in_the_1_2_5_buckets_by_their_lower_edge() {
        let cases = [
            (0, 0),
            (1, 0),
            (2, 1),
            (4, 1),
            (5, 2),
            (999, 8),
            (1_000, 9),
            (1_999, 9),
            (2_000, 10),
            (4_999, 10),
            (5_000, 11),
            (1_500_000, 18),
            (99_999_999, 23),
            (100_100_000, 24),
            (3_600_000_000, 24),
        ];
        for (value, bucket) in cases {
            assert_eq!(bucket_of(value), bucket, "{value} µs");
            let mut histogram = new_histogram();
            histogram.record(value).unwrap();
            let mut expected = [0; EDGES_US.len()];
            expected[bucket] = 1;
            assert_eq!(bucket_counts(&histogram), expected, "{value} µs recorded");
        }
        // Up to 20 ms every edge is a value the histogram keeps exactly. Above, an edge off
        // its grid is within its precision (0.1 %) of the grid value below it, and a value
        // recorded right at it counts in the bucket below.
        assert_eq!(bucket_of(100_000_000), 24);
        let mut histogram = new_histogram();
        histogram.record(100_000_000).unwrap();
        assert_eq!(histogram.lowest_equivalent(100_000_000), 99_942_400);
        assert_eq!(bucket_counts(&histogram)[23], 1);
    }

    #[test]
    fn bucket_labels_read_as_durations() {
        let labels: Vec<String> = buckets().into_iter().map(|b| b.label).collect();
        assert_eq!(labels[..4], ["<2µs", "2µs", "5µs", "10µs"]);
        assert_eq!(labels[9..12], ["1ms", "2ms", "5ms"]);
        assert_eq!(labels[18], "1s");
        assert_eq!(labels[24], "≥100s");
        let last = buckets().pop().unwrap();
        assert_eq!((last.lo, last.hi), (100_000_000, None));
    }

    /// Two instances' histograms of the same second merge into one: counts add up per
    /// bucket, and the quantiles are those of all the values together.
    #[test]
    fn merged_histograms_make_one_column() {
        let mut first = new_histogram();
        first.record_n(1_000, 90).unwrap(); // 1 ms, bucket 9
        let mut second = new_histogram();
        second.record_n(1_000, 8).unwrap();
        second.record_n(30_000, 2).unwrap(); // 30 ms, bucket 13
        let mut merged = new_histogram();
        merged.add(&first).unwrap();
        merged.add(&second).unwrap();
        let heatmap = Heatmap::of([None, Column::of(&merged), Column::of(&new_histogram())]);
        assert_eq!(heatmap.cells, [[1, 9, 98], [1, 13, 2]]);
        assert_eq!(heatmap.count, [0, 100, 0]);
        assert_eq!(heatmap.p50, [None, Some(1_000), None]);
        // The 99th value of 100 is the second 30 ms one.
        assert!(merged.equivalent(heatmap.p99[1].unwrap(), 30_000));
        assert!(merged.equivalent(heatmap.max[1].unwrap(), 30_000));
        assert_eq!(heatmap.buckets.len(), 25);

        // A histogram arriving late adds its counts and max; the quantiles stay.
        let mut column = Column::of(&merged).unwrap();
        let mut late = new_histogram();
        late.record_n(3_000_000, 3).unwrap(); // 3 s, bucket 19
        column.add_late(&late);
        assert_eq!(
            (column.counts[9], column.counts[13], column.counts[19]),
            (98, 2, 3)
        );
        assert_eq!(column.count, 103);
        assert!(late.equivalent(column.max, 3_000_000));
        assert_eq!(column.p50, 1_000);
    }
}
