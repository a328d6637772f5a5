//! One run: build the topology, follow it, inject, read history, settle, verify, report.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hdrhistogram::Histogram;
use protocol::stats::new_histogram as histogram;
use rand::{Rng as _, SeedableRng as _};
use serde::Serialize;

use crate::api::Api;
use crate::config::{Config, Load};
use crate::ledger::{self, Inputs, Verdict};
use crate::live::{self, Follower};
use crate::scenario::Plan;

/// Latency percentiles in milliseconds.
#[derive(Debug, Default, Serialize)]
pub struct Percentiles {
    /// Observations.
    pub count: u64,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

impl Percentiles {
    fn of(histogram: &Histogram<u64>) -> Percentiles {
        let ms = |us: u64| (us as f64 / 1000.0 * 100.0).round() / 100.0;
        Percentiles {
            count: histogram.len(),
            p50: ms(histogram.value_at_quantile(0.5)),
            p99: ms(histogram.value_at_quantile(0.99)),
            max: ms(histogram.max()),
        }
    }
}

/// The report of a run; `--json` prints it as is.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The scenario's name.
    pub scenario: String,
    /// The topology driven.
    pub topology: String,
    /// Nodes in it.
    pub nodes: usize,
    /// Messages injected before the measured load (`--prefill`), verified with the rest.
    pub prefilled: u64,
    /// Messages injected (answered 202) in the measured load.
    pub sent: u64,
    /// Inject requests answered 429/503 and sent again.
    pub throttled: u64,
    /// Inject requests sent again (with the same `Idempotency-Key`) after the request or its
    /// reply was cut off.
    pub resent: u64,
    /// Requests that failed (injects and history reads).
    pub errors: u64,
    /// socket.io clients.
    pub clients: usize,
    /// The verification, summed over the clients.
    pub verdict: Verdict,
    /// Outputs read back from history after a `resync`.
    pub recovered: u64,
    /// Reconnects of the clients.
    pub reconnects: u64,
    /// Messages processed by nodes: injected ones plus every output handed along an edge.
    pub node_messages: u64,
    /// Seconds from the first inject to the last inject answered.
    pub inject_seconds: f64,
    /// Seconds from the first inject to the last output received.
    pub seconds: f64,
    /// Messages injected per second.
    pub inject_per_s: f64,
    /// Node messages per second, over `seconds`.
    pub node_messages_per_s: f64,
    /// Inject → socket.io delivery, every output.
    pub e2e_ms: Percentiles,
    /// Inject → socket.io delivery at the terminal nodes (the whole trip).
    pub e2e_terminal_ms: Percentiles,
    /// Inject request time.
    pub inject_ms: Percentiles,
    /// History read time (`?limit=10` of a random entry node), 200s only.
    pub history_ms: Percentiles,
    /// The same for reads of a node's oldest page (`--deep-share`).
    pub history_deep_ms: Percentiles,
    /// History reads by status code.
    pub history_statuses: std::collections::BTreeMap<u16, u64>,
    /// Whether every check held and nothing failed.
    pub passed: bool,
}

#[derive(Default)]
struct Counters {
    reserved: AtomicU64,
    sent: AtomicU64,
    throttled: AtomicU64,
    resent: AtomicU64,
    errors: AtomicU64,
    injecting: AtomicBool,
}

/// Runs the scenario of `config` against the mesh and reports.
pub async fn run(config: &Config) -> anyhow::Result<Report> {
    let load = config.load();
    let plan = Arc::new(Plan::new(&config.scenario));
    let topology = config.topology();
    let api = Api::new(&config.api, &topology, config.token.clone())?;
    let say = |text: String| {
        if !config.quiet {
            eprintln!("simulator: {text}");
        }
    };

    say(format!("building {topology}: {} nodes", plan.len()));
    api.delete_topology().await?;
    api.put_topology(&plan.doc).await?;

    let nodes = Arc::new(plan.nodes.clone());
    let terminal = Arc::new(plan.terminal.clone());
    let mut followers = Vec::with_capacity(config.clients);
    for _ in 0..config.clients {
        followers.push(
            Follower::start(
                &config.notifier,
                config.token.as_deref(),
                &topology,
                Arc::clone(&nodes),
                Arc::clone(&terminal),
            )
            .await?,
        );
    }
    say(format!(
        "{} socket.io client(s) subscribed; injecting {} messages {} in requests of {}, {} at once, {} history reader(s)",
        followers.len(),
        load.messages,
        load.rate.map_or("flat out".to_owned(), |rate| format!("at {rate}/s")),
        load.batch,
        load.concurrency,
        load.readers
    ));

    let workers = load.concurrency.min(plan.entries.len());
    let (prefilled, prefill_node_messages) = match load.prefill {
        0 => (Arc::new(vec![Vec::new(); plan.entries.len()]), 0),
        messages => {
            let prefilled = prefill(&api, &plan, &load, &followers, config.quiet, workers).await?;
            let latched = read_latched(&api, &plan, &(0..plan.len()).collect::<Vec<_>>()).await?;
            (
                Arc::new(prefilled),
                messages + edge_messages(&plan, &latched),
            )
        }
    };

    let counters = Arc::new(Counters {
        injecting: AtomicBool::new(true),
        ..Counters::default()
    });
    let started = Instant::now();
    let injectors: Vec<_> = (0..workers)
        .map(|worker| {
            tokio::spawn(inject(
                api.clone(),
                Arc::clone(&plan),
                load.clone(),
                Arc::clone(&counters),
                (worker, workers),
                started,
                Arc::clone(&prefilled),
            ))
        })
        .collect();
    let readers: Vec<_> = (0..load.readers)
        .map(|reader| {
            tokio::spawn(read_history(
                api.clone(),
                Arc::clone(&plan),
                Arc::clone(&counters),
                reader as u64,
                (load.reader_interval, load.deep_share),
            ))
        })
        .collect();
    let progress = progress(
        Arc::clone(&counters),
        load.messages,
        &followers[0],
        config.quiet,
        started,
    );

    let (per_entry, inject_latency) = collect(injectors, plan.entries.len()).await?;
    let inject_seconds = started.elapsed().as_secs_f64();
    counters.injecting.store(false, Ordering::Relaxed);
    let inputs = Inputs::new(&plan, &per_entry);
    say(format!(
        "injected {} messages in {inject_seconds:.1} s; waiting for the outputs",
        counters.sent.load(Ordering::Relaxed)
    ));

    let latched = settle(&api, &plan, &inputs, &followers, config.settle_timeout_s).await?;
    let (mut history_latency, mut deep_latency) = (histogram(), histogram());
    let mut history_statuses = std::collections::BTreeMap::new();
    for reader in readers {
        let ((latency, deep), statuses) = reader.await.context("a history reader panicked")?;
        history_latency
            .add(&latency)
            .expect("same histogram bounds");
        deep_latency.add(&deep).expect("same histogram bounds");
        for (status, count) in statuses {
            *history_statuses.entry(status).or_insert(0) += count;
        }
    }
    progress.abort();

    let mut verdict = Verdict::default();
    let (mut e2e, mut e2e_terminal) = (histogram(), histogram());
    let (mut recovered, mut reconnects, mut last_arrival) = (0, 0, None);
    for follower in followers {
        let mut record = follower.stop().await;
        let patience = Duration::from_secs_f64(config.settle_timeout_s);
        live::recover(&api, &plan.nodes, &mut record, patience).await?;
        recovered += record.seen.iter().filter(|seen| seen.recovered).count() as u64;
        reconnects += record.connects.saturating_sub(1);
        verdict.unexpected += record.malformed;
        verdict.add(&ledger::verify(&plan, &inputs, &latched, &record.seen));
        e2e.add(&record.latency).expect("same histogram bounds");
        e2e_terminal
            .add(&record.terminal_latency)
            .expect("same histogram bounds");
        last_arrival = last_arrival.max(record.last_arrival);
    }
    let seconds = last_arrival
        .map_or(inject_seconds, |at| {
            at.duration_since(started).as_secs_f64()
        })
        .max(inject_seconds);
    let sent = counters.sent.load(Ordering::Relaxed);
    let node_messages = (load.prefill + sent + edge_messages(&plan, &latched))
        .saturating_sub(prefill_node_messages);
    let errors = counters.errors.load(Ordering::Relaxed);
    if !config.keep {
        api.delete_topology().await?;
    }
    let passed = verdict.passed() && errors == 0 && sent > 0;
    Ok(Report {
        scenario: config.scenario.name().to_owned(),
        topology,
        nodes: plan.len(),
        prefilled: load.prefill,
        sent,
        throttled: counters.throttled.load(Ordering::Relaxed),
        resent: counters.resent.load(Ordering::Relaxed),
        errors,
        clients: config.clients,
        verdict,
        recovered,
        reconnects,
        node_messages,
        inject_seconds: round3(inject_seconds),
        seconds: round3(seconds),
        inject_per_s: (sent as f64 / inject_seconds).round(),
        node_messages_per_s: (node_messages as f64 / seconds).round(),
        e2e_ms: Percentiles::of(&e2e),
        e2e_terminal_ms: Percentiles::of(&e2e_terminal),
        inject_ms: Percentiles::of(&inject_latency),
        history_ms: Percentiles::of(&history_latency),
        history_deep_ms: Percentiles::of(&deep_latency),
        history_statuses,
        passed,
    })
}

/// Messages handed along the plan's edges, for nodes that have output `latched` each.
fn edge_messages(plan: &Plan, latched: &[u64]) -> u64 {
    (0..plan.len())
        .map(|node| {
            plan.sources[node]
                .iter()
                .map(|&src| latched[src as usize])
                .sum::<u64>()
        })
        .sum()
}

/// Prints progress once a second until aborted: messages sent of `total`, outputs received.
fn progress(
    counters: Arc<Counters>,
    total: u64,
    follower: &Follower,
    quiet: bool,
    started: Instant,
) -> tokio::task::JoinHandle<()> {
    let record = Arc::clone(&follower.record);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        let mut last_sent = 0;
        loop {
            tick.tick().await;
            if quiet {
                continue;
            }
            let received = record.lock().expect("record lock").seen.len();
            let elapsed = started.elapsed().as_secs_f64();
            let sent = counters.sent.load(Ordering::Relaxed);
            // The rate over the last second, not since the start: it drops to 0 once
            // injection is over instead of decaying.
            let rate = sent - std::mem::replace(&mut last_sent, sent);
            eprintln!(
                "simulator: {elapsed:6.1} s  sent {sent}/{total} ({rate}/s)  outputs received {received}  throttled {}  resent {}  errors {}",
                counters.throttled.load(Ordering::Relaxed),
                counters.resent.load(Ordering::Relaxed),
                counters.errors.load(Ordering::Relaxed),
            );
        }
    })
}

/// What one injector returns: the ids it injected by entry, and its request times.
type Injected = (Vec<(usize, Vec<u128>)>, Histogram<u64>);

/// The ids each injector recorded, by entry, and their request times.
async fn collect(
    injectors: Vec<tokio::task::JoinHandle<Injected>>,
    entries: usize,
) -> anyhow::Result<(Vec<Vec<u128>>, Histogram<u64>)> {
    let mut per_entry = vec![Vec::new(); entries];
    let mut latency = histogram();
    for injector in injectors {
        let (ids, times) = injector.await.context("an injector panicked")?;
        for (entry, ids) in ids {
            per_entry[entry] = ids;
        }
        latency.add(&times).expect("same histogram bounds");
    }
    Ok((per_entry, latency))
}

/// `--prefill`: injects that many messages flat out, as evenly over the entries as requests
/// allow, waits until every output has arrived and the archive has written them all, and
/// forgets the delivery latencies so far. The ids injected, by entry.
async fn prefill(
    api: &Api,
    plan: &Arc<Plan>,
    load: &Load,
    followers: &[Follower],
    quiet: bool,
    workers: usize,
) -> anyhow::Result<Vec<Vec<u128>>> {
    let entries = plan.entries.len() as u64;
    let fill = Load {
        messages: load.prefill,
        duration: None,
        rate: None,
        batch: (load.prefill / entries).clamp(1, 1_000),
        ..load.clone()
    };
    if !quiet {
        eprintln!(
            "simulator: prefill: {} messages flat out in requests of {}",
            fill.messages, fill.batch
        );
    }
    let counters = Arc::new(Counters::default());
    let started = Instant::now();
    let none = Arc::new(vec![Vec::new(); plan.entries.len()]);
    let injectors: Vec<_> = (0..workers)
        .map(|worker| {
            tokio::spawn(inject(
                api.clone(),
                Arc::clone(plan),
                fill.clone(),
                Arc::clone(&counters),
                (worker, workers),
                started,
                Arc::clone(&none),
            ))
        })
        .collect();
    let shown = progress(
        Arc::clone(&counters),
        fill.messages,
        &followers[0],
        quiet,
        started,
    );
    let (per_entry, _) = collect(injectors, plan.entries.len()).await?;
    shown.abort();
    let errors = counters.errors.load(Ordering::Relaxed);
    anyhow::ensure!(errors == 0, "the prefill failed: {errors} inject errors");
    // Settled once the archive has written everything and no output arrived for a second.
    let deadline = Instant::now() + Duration::from_secs(3_600);
    let mut received = usize::MAX;
    loop {
        let now: usize = followers
            .iter()
            .map(|follower| follower.record.lock().expect("record lock").seen.len())
            .sum();
        let backlog = api.archive_backlog().await?;
        if backlog == Some(0) && now == received {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the prefill did not settle within an hour (archive backlog {backlog:?})"
        );
        if !quiet {
            eprintln!(
                "simulator: prefill: {:6.1} s  outputs received {now}  archive backlog {} entries",
                started.elapsed().as_secs_f64(),
                backlog.map_or("unknown".to_owned(), |entries| entries.to_string())
            );
        }
        received = now;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    for follower in followers {
        let mut record = follower.record.lock().expect("record lock");
        record.latency.reset();
        record.terminal_latency.reset();
    }
    Ok(per_entry)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// One injector: drives the entries `worker`, `worker + workers`, … one request at a time
/// each, so each entry's messages enter in the order recorded. Takes messages from the
/// shared count until it is used up, the duration is over, or a request fails.
async fn inject(
    api: Api,
    plan: Arc<Plan>,
    load: Load,
    counters: Arc<Counters>,
    (worker, workers): (usize, usize),
    started: Instant,
    before: Arc<Vec<Vec<u128>>>,
) -> Injected {
    let mine: Vec<usize> = (worker..plan.entries.len()).step_by(workers).collect();
    // Each entry's messages go on from those injected before (the prefill), in order.
    let mut ids: Vec<Vec<u128>> = mine.iter().map(|&entry| before[entry].clone()).collect();
    let mut latency = histogram();
    let mut rng = rand::rngs::StdRng::seed_from_u64(worker as u64);
    let random = plan.entries.len() > 1 && load.rate.is_some();
    let mut turn = 0usize;
    loop {
        let reserved = counters.reserved.fetch_add(load.batch, Ordering::Relaxed);
        if reserved >= load.messages || load.duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
        let count = load.batch.min(load.messages - reserved);
        if let Some(rate) = load.rate {
            let due = started + Duration::from_secs_f64(reserved as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
        }
        // Paced runs pick a random entry of their own, as users would; flat-out runs go round.
        let slot = if random {
            rng.random_range(0..mine.len())
        } else {
            turn += 1;
            (turn - 1) % mine.len()
        };
        let entry = mine[slot];
        let k0 = ids[slot].len() as u64;
        let messages: Vec<_> = (0..count)
            .map(|k| plan.message(&mut rng, entry, k0 + k))
            .collect();
        let node = &plan.nodes[plan.entries[entry] as usize];
        let sent_at = Instant::now();
        match api.inject(node, &messages).await {
            Ok(injected) => {
                latency.saturating_record(sent_at.elapsed().as_micros() as u64);
                counters
                    .throttled
                    .fetch_add(u64::from(injected.throttled), Ordering::Relaxed);
                counters
                    .resent
                    .fetch_add(u64::from(injected.resent), Ordering::Relaxed);
                counters.sent.fetch_add(count, Ordering::Relaxed);
                ids[slot].extend(injected.ids);
            }
            Err(error) => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
                eprintln!("simulator: {error:#}; this injector stops");
                break;
            }
        }
    }
    (mine.into_iter().zip(ids).collect(), latency)
}

/// One history reader: `?limit=10` of a random entry node (its oldest page for a
/// `deep_share` of the reads), in a loop while injecting, pausing `interval` between reads.
/// The times of recent and of deep reads.
async fn read_history(
    api: Api,
    plan: Arc<Plan>,
    counters: Arc<Counters>,
    seed: u64,
    (interval, deep_share): (Duration, f64),
) -> ((Histogram<u64>, Histogram<u64>), Vec<(u16, u64)>) {
    let (mut latency, mut deep_latency) = (histogram(), histogram());
    let mut statuses: std::collections::BTreeMap<u16, u64> = Default::default();
    let mut rng = rand::rngs::StdRng::seed_from_u64(1_000 + seed);
    // Readers start spread over one interval, not all at once.
    tokio::time::sleep(interval.mul_f64(rng.random::<f64>())).await;
    while counters.injecting.load(Ordering::Relaxed) {
        let entry = plan.entries[rng.random_range(0..plan.entries.len())];
        let deep = rng.random::<f64>() < deep_share;
        let query = if deep {
            "limit=10&order=asc"
        } else {
            "limit=10"
        };
        let started = Instant::now();
        match api.history_page(&plan.nodes[entry as usize], query).await {
            Ok((status, _, _)) => {
                if status.is_success() {
                    let took = started.elapsed().as_micros() as u64;
                    match deep {
                        true => deep_latency.saturating_record(took),
                        false => latency.saturating_record(took),
                    }
                }
                *statuses.entry(status.as_u16()).or_insert(0) += 1;
            }
            Err(error) => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
                eprintln!("simulator: {error:#}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        if !interval.is_zero() {
            tokio::time::sleep(interval).await;
        }
    }
    ((latency, deep_latency), statuses.into_iter().collect())
}

/// Waits until every client has what it should (or the timeout passes), then reads the
/// latched seq of every node.
async fn settle(
    api: &Api,
    plan: &Plan,
    inputs: &Inputs,
    followers: &[Follower],
    timeout_s: f64,
) -> anyhow::Result<Vec<u64>> {
    let deadline = Instant::now() + Duration::from_secs_f64(timeout_s);
    let uncertain: Vec<usize> = (0..plan.len()).filter(|&n| !plan.is_certain[n]).collect();
    let certain_total: u64 = inputs.reaching.iter().sum();
    let mut previous: Option<Vec<u64>> = None;
    loop {
        let now: Vec<u64> = read_latched(api, plan, &uncertain).await?;
        let wanted = certain_total + now.iter().sum::<u64>();
        let stable = previous.as_ref() == Some(&now);
        let complete = followers.iter().all(|follower| {
            let (received, skipped) = follower.progress();
            received + skipped >= wanted
        });
        if (complete && stable) || Instant::now() >= deadline {
            break;
        }
        previous = Some(now);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let all: Vec<usize> = (0..plan.len()).collect();
    read_latched(api, plan, &all).await
}

/// The latched seq of `which` nodes, zero for every node of the plan not read: bulk reads
/// of up to [`protocol::MAX_NODE_IDS`] nodes each.
async fn read_latched(api: &Api, plan: &Plan, which: &[usize]) -> anyhow::Result<Vec<u64>> {
    let ids: Vec<&str> = which
        .iter()
        .map(|&node| plan.nodes[node].as_str())
        .collect();
    let seqs = api.latched_seqs(&ids).await?;
    let mut latched = vec![0; plan.len()];
    for (&node, seq) in which.iter().zip(seqs) {
        latched[node] = seq;
    }
    Ok(latched)
}

impl Report {
    /// The report as a table for people.
    pub fn table(&self) -> String {
        let v = &self.verdict;
        let pct = |p: &Percentiles| {
            format!(
                "p50 {:>9.2}  p99 {:>9.2}  max {:>9.2}  ({} samples)",
                p.p50, p.p99, p.max, p.count
            )
        };
        let statuses = self
            .history_statuses
            .iter()
            .map(|(status, count)| format!("{status}: {count}"))
            .collect::<Vec<_>>()
            .join(", ");
        [
            format!("scenario            {} (topology {}, {} nodes)", self.scenario, self.topology, self.nodes),
            format!("prefilled           {} messages (verified, not in the figures)", self.prefilled),
            format!("injected            {} messages in {:.2} s: {} msg/s ({} throttled, {} resent, {} errors)", self.sent, self.inject_seconds, self.inject_per_s, self.throttled, self.resent, self.errors),
            format!("node messages       {} in {:.2} s: {} /s", self.node_messages, self.seconds, self.node_messages_per_s),
            format!("e2e latency ms      {}", pct(&self.e2e_ms)),
            format!("  at terminal nodes {}", pct(&self.e2e_terminal_ms)),
            format!("inject request ms   {}", pct(&self.inject_ms)),
            format!("history read ms     {}  [{statuses}]", pct(&self.history_ms)),
            format!("  oldest pages      {}", pct(&self.history_deep_ms)),
            format!("socket.io clients   {} ({} reconnects, {} outputs recovered from history)", self.clients, self.reconnects, self.recovered),
            format!("outputs             expected {}  received {}", v.expected, v.received),
            format!("verification        lost {}  duplicated {}  out of order {}  unexpected {}  effect mismatches {}", v.lost, v.duplicated, v.out_of_order, v.unexpected, v.effect_mismatches),
            format!("result              {}", if self.passed { "PASSED" } else { "FAILED" }),
        ]
        .join("\n")
    }
}
