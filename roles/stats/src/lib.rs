//! stats: the stats monitor of Gorgon (default port 8082).
//!
//! It reads the stats topic, on which every role instance publishes its counters,
//! histograms and heartbeat once a second (`runtime::spawn_stats`), and aggregates them by
//! second, merging histograms across instances, over a bounded window (15 minutes by
//! default). At start it re-reads what the topic (a ring) still holds of the window. Once a
//! second it also reads from Redis each partition's owner, queue depths, backlog age and
//! outbox, and the archive's backlog with its rates and the time it would take to drain. It
//! serves the dashboard (`stats-web/`, embedded), `/api/v1/snapshot` (the same as JSON) and
//! `/metrics` (Prometheus text), behind an `admin` token when `GORGON_API_TOKENS` is set.
//!
//! It is not a time-series database: it keeps the window in memory and nothing on disk;
//! scrape `/metrics` for longer history.
//!
//! Layout: `config.rs` (flags and environment), `window.rs` (aggregation and the snapshot),
//! `heatmap.rs` (log-scale latency buckets), `redis_view.rs` (partitions, queues, archive),
//! `web.rs` (routes, auth, Prometheus text), `lib.rs` ([`run`] and the reading tasks).

#![cfg_attr(not(test), warn(clippy::print_stdout))]

pub mod config;
pub mod heatmap;
pub mod redis_view;
mod web;
pub mod window;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use protocol::auth::Tokens;
use protocol::roles::STATS;
use protocol::stats::Report;
use redpill::Client;
use tokio_util::sync::CancellationToken;

pub use config::Config;

use crate::redis_view::{ArchiveRates, ArchiveView, PartitionView, RedisView};
use crate::window::{unix_ms, Limits, Window};

/// The most reports read in one round trip.
const READ_BATCH: usize = 500;

/// What the HTTP side reads.
pub struct Monitor {
    client: Client,
    tokens: Tokens,
    window: Mutex<Window>,
    redis: Mutex<RedisState>,
}

/// The latest read of Redis.
#[derive(Default)]
struct RedisState {
    partitions: Vec<PartitionView>,
    archive: Option<ArchiveView>,
    error: Option<String>,
}

/// Runs stats until `token` is cancelled: connects to Redis (waiting for it while it is
/// unreachable), checks the partition count, reads the stats topic and Redis, and serves the
/// dashboard, the snapshot and `/metrics`.
pub async fn run(config: Config, token: CancellationToken) -> anyhow::Result<()> {
    let tokens = Tokens::parse(config.api_tokens.as_ref().map(|secret| secret.expose()))
        .map_err(|error| anyhow::anyhow!(error))?;
    let bind = runtime::listen_address(config.bind, !tokens.is_enabled(), "stats dashboard");
    let redpill_config = config.redis.redpill_config(STATS);
    let Some(started) = runtime::start(STATS, &config.redis, redpill_config, false, &token).await?
    else {
        return Ok(());
    };
    let client = started.client.clone();
    tracing::info!(config = ?config, "starting");
    let limits = Limits {
        window_s: config.window_s,
        health_timeout: Duration::from_millis(config.health_timeout_ms),
        forget_after: Duration::from_secs(config.forget_after_s),
    };
    let monitor = Arc::new(Monitor {
        client: client.clone(),
        tokens,
        window: Mutex::new(Window::new(limits)),
        redis: Mutex::default(),
    });
    let interval = config.redis.stats_interval();
    let reader = tokio::spawn(read_reports(
        client.clone(),
        Arc::clone(&monitor),
        config.window_s,
        token.clone(),
    ));
    let poller = tokio::spawn(poll_redis(
        RedisView::new(&client, config.redis.partitions),
        Arc::clone(&monitor),
        interval,
        token.clone(),
    ));

    let address = SocketAddr::new(bind, config.port);
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| {
            format!("could not listen on {address}; is the port (GORGON_STATS_PORT) taken?")
        })?;
    tracing::info!(%address, "serving the stats dashboard");
    let served = axum::serve(listener, web::router(Arc::clone(&monitor)))
        .with_graceful_shutdown(token.clone().cancelled_owned())
        .await
        .context("the HTTP server failed");
    token.cancel();
    let _ = tokio::join!(reader, poller);
    started.finish().await;
    served
}

/// Reads the stats topic into the window, from what the ring still holds of the window on.
/// Reports read while catching up are aged by their entry's time, so instances that have
/// since gone quiet do not look alive; once caught up, arrival is what counts.
async fn read_reports(
    client: Client,
    monitor: Arc<Monitor>,
    window_s: u64,
    token: CancellationToken,
) {
    let topic = layout::stats_topic(&client);
    let mut after = unix_ms().saturating_sub(window_s * 1_000).to_string();
    let mut catching_up = true;
    let mut failing = false;
    let mut pruned_at = Instant::now();
    loop {
        let read = tokio::select! {
            _ = token.cancelled() => return,
            read = topic.read_after_wait(0, &after, READ_BATCH, Duration::from_secs(1)) => read,
        };
        let entries = match read {
            Ok(entries) => {
                if failing {
                    failing = false;
                    tracing::info!("reading stats again");
                }
                entries
            }
            Err(error) => {
                if !failing {
                    failing = true;
                    tracing::warn!(%error, "could not read the stats topic; retrying");
                }
                tokio::select! {
                    _ = token.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
                continue;
            }
        };
        let now = Instant::now();
        let now_ms = unix_ms();
        {
            let mut window = monitor.window.lock().expect("stats window");
            for entry in &entries {
                after.clone_from(&entry.id);
                let entry_ms = entry_time_ms(&entry.id).unwrap_or(now_ms);
                let Ok(report) = serde_json::from_slice::<Report>(&entry.body) else {
                    window.rejected += 1;
                    continue;
                };
                let seen = if catching_up {
                    now.checked_sub(Duration::from_millis(now_ms.saturating_sub(entry_ms)))
                        .unwrap_or(now)
                } else {
                    now
                };
                window.ingest(report, entry_ms, seen);
            }
            if now.duration_since(pruned_at) >= Duration::from_secs(1) {
                window.prune(now_ms / 1_000, now);
                pruned_at = now;
            }
        }
        if entries.len() < READ_BATCH {
            catching_up = false;
        }
    }
}

/// The time part of a stream entry id, `<ms>-<seq>`.
fn entry_time_ms(id: &str) -> Option<u64> {
    id.split_once('-')?.0.parse().ok()
}

/// Reads partitions, queues and the archive's backlog from Redis every `interval`.
async fn poll_redis(
    view: RedisView,
    monitor: Arc<Monitor>,
    interval: Duration,
    token: CancellationToken,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut rates = ArchiveRates::default();
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let now_ms = unix_ms();
        let read =
            tokio::time::timeout(interval.max(Duration::from_secs(1)), view.read(now_ms)).await;
        let mut state = monitor.redis.lock().expect("redis view");
        match read {
            Ok(Ok((partitions, mut archive))) => {
                rates.observe(now_ms, &mut archive);
                state.partitions = partitions;
                state.archive = Some(archive);
                state.error = None;
            }
            Ok(Err(error)) => state.error = Some(format!("Redis: {error}")),
            Err(_) => state.error = Some("Redis: reading the partitions timed out".to_owned()),
        }
    }
}
