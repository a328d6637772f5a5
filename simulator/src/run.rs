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
    /// Messages injected (answered 202).
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
    /// History reads by status code.
    pub history_statuses: std::collections::BTreeMap<u16, u64>,
    /// Whether every check held and nothing failed.
    pub passed: bool,
}

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

    let counters = Arc::new(Counters {
        reserved: AtomicU64::new(0),
        sent: AtomicU64::new(0),
        throttled: AtomicU64::new(0),
        resent: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        injecting: AtomicBool::new(true),
    });
    let started = Instant::now();
    let workers = load.concurrency.min(plan.entries.len());
    let injectors: Vec<_> = (0..workers)
        .map(|worker| {
            tokio::spawn(inject(
                api.clone(),
                Arc::clone(&plan),
                load.clone(),
                Arc::clone(&counters),
                worker,
                workers,
                started,
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
            ))
        })
        .collect();

    let progress = {
        let counters = Arc::clone(&counters);
        let quiet = config.quiet;
        let total = load.messages;
        let record = Arc::clone(&followers[0].record);
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
    };

    let mut per_entry = vec![Vec::new(); plan.entries.len()];
    let mut inject_latency = histogram();
    for injector in injectors {
        let (entries, latency) = injector.await.context("an injector panicked")?;
        for (entry, ids) in entries {
            per_entry[entry] = ids;
        }
        inject_latency.add(&latency).expect("same histogram bounds");
    }
    let inject_seconds = started.elapsed().as_secs_f64();
    counters.injecting.store(false, Ordering::Relaxed);
    let inputs = Inputs::new(&plan, &per_entry);
    say(format!(
        "injected {} messages in {inject_seconds:.1} s; waiting for the outputs",
        counters.sent.load(Ordering::Relaxed)
    ));

    let latched = settle(&api, &plan, &inputs, &followers, config.settle_timeout_s).await?;
    let mut history_latency = histogram();
    let mut history_statuses = std::collections::BTreeMap::new();
    for reader in readers {
        let (latency, statuses) = reader.await.context("a history reader panicked")?;
        history_latency
            .add(&latency)
            .expect("same histogram bounds");
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
    let node_messages = sent
        + (0..plan.len())
            .map(|node| {
                plan.sources[node]
                    .iter()
                    .map(|&src| latched[src as usize])
                    .sum::<u64>()
            })
            .sum::<u64>();
    let errors = counters.errors.load(Ordering::Relaxed);
    if !config.keep {
        api.delete_topology().await?;
    }
    let passed = verdict.passed() && errors == 0 && sent > 0;
    Ok(Report {
        scenario: config.scenario.name().to_owned(),
        topology,
        nodes: plan.len(),
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
        history_statuses,
        passed,
    })
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
    worker: usize,
    workers: usize,
    started: Instant,
) -> (Vec<(usize, Vec<u128>)>, Histogram<u64>) {
    let mine: Vec<usize> = (worker..plan.entries.len()).step_by(workers).collect();
    let mut ids: Vec<Vec<u128>> = vec![Vec::new(); mine.len()];
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

/// One history reader: `?limit=10` of a random entry node, in a loop while injecting.
async fn read_history(
    api: Api,
    plan: Arc<Plan>,
    counters: Arc<Counters>,
    seed: u64,
) -> (Histogram<u64>, Vec<(u16, u64)>) {
    let mut latency = histogram();
    let mut statuses: std::collections::BTreeMap<u16, u64> = Default::default();
    let mut rng = rand::rngs::StdRng::seed_from_u64(1_000 + seed);
    while counters.injecting.load(Ordering::Relaxed) {
        let entry = plan.entries[rng.random_range(0..plan.entries.len())];
        let started = Instant::now();
        match api
            .history_page(&plan.nodes[entry as usize], "limit=10")
            .await
        {
            Ok((status, _, _)) => {
                if status.is_success() {
                    latency.saturating_record(started.elapsed().as_micros() as u64);
                }
                *statuses.entry(status.as_u16()).or_insert(0) += 1;
            }
            Err(error) => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
                eprintln!("simulator: {error:#}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    (latency, statuses.into_iter().collect())
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
            format!("injected            {} messages in {:.2} s: {} msg/s ({} throttled, {} resent, {} errors)", self.sent, self.inject_seconds, self.inject_per_s, self.throttled, self.resent, self.errors),
            format!("node messages       {} in {:.2} s: {} /s", self.node_messages, self.seconds, self.node_messages_per_s),
            format!("e2e latency ms      {}", pct(&self.e2e_ms)),
            format!("  at terminal nodes {}", pct(&self.e2e_terminal_ms)),
            format!("inject request ms   {}", pct(&self.inject_ms)),
            format!("history read ms     {}  [{statuses}]", pct(&self.history_ms)),
            format!("socket.io clients   {} ({} reconnects, {} outputs recovered from history)", self.clients, self.reconnects, self.recovered),
            format!("outputs             expected {}  received {}", v.expected, v.received),
            format!("verification        lost {}  duplicated {}  out of order {}  unexpected {}  effect mismatches {}", v.lost, v.duplicated, v.out_of_order, v.unexpected, v.effect_mismatches),
            format!("result              {}", if self.passed { "PASSED" } else { "FAILED" }),
        ]
        .join("\n")
    }
}
