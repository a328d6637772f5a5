//! stats: the stats monitor of Gorgon (default port 8082).
//!
//! It will consume, through redpill, the stats topic on which every role publishes its
//! counters and histograms once a second, and read queue depths, dead letters and the
//! partition map. It will serve the dashboard (`stats-web/`, embedded), `/api/v1/snapshot`
//! and `/metrics`, behind an `admin` token from `GORGON_API_TOKENS` when tokens are set.
//!
//! In this version it only connects to Redis, logs its configuration and waits for SIGTERM or
//! Ctrl-C; it does not open its port yet. The monitor arrives with its own issue.
//!
//! Layout: `config.rs` (flags and environment), `lib.rs` ([`run`]).

#![cfg_attr(not(test), warn(clippy::print_stdout))]

pub mod config;

use protocol::roles::STATS;
use tokio_util::sync::CancellationToken;

pub use config::Config;

/// Runs stats until `token` is cancelled: connects to Redis (waiting for it while it is
/// unreachable), logs the effective configuration, waits, then closes the connection.
pub async fn run(config: Config, token: CancellationToken) -> anyhow::Result<()> {
    let redpill_config = config.redis.redpill_config(STATS);
    let Some(client) = runtime::connect(STATS, redpill_config, &token).await? else {
        tracing::info!("stopped before connecting to Redis");
        return Ok(());
    };
    tracing::info!(config = ?config, "starting");
    token.cancelled().await;
    client.close().await;
    tracing::info!("stopped");
    Ok(())
}
