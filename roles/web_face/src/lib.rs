//! web_face: the REST API of Gorgon (`/v1`, default port 8080).
//!
//! It will consume HTTP requests and, through redpill only, produce:
//! - topology changes and history queries, sent to the store by request/reply;
//! - injected messages, pushed onto the queue of the target node's partition;
//! - its request counters and latency histograms, on the stats topic.
//!
//! It reads latched outputs and node state from what the processors commit, and checks
//! `GORGON_API_TOKENS` on every request.
//!
//! In this version it only connects to Redis, logs its configuration and waits for SIGTERM or
//! Ctrl-C; it does not open its port yet. The API arrives with its own issue.
//!
//! Layout: `config.rs` (flags and environment), `lib.rs` ([`run`]).

#![cfg_attr(not(test), warn(clippy::print_stdout))]

pub mod config;

use protocol::roles::WEB_FACE;
use tokio_util::sync::CancellationToken;

pub use config::Config;

/// Runs web_face until `token` is cancelled: connects to Redis (waiting for it while it is
/// unreachable), logs the effective configuration, waits, then closes the connection.
pub async fn run(config: Config, token: CancellationToken) -> anyhow::Result<()> {
    let redpill_config = config.redis.redpill_config(WEB_FACE);
    let Some(client) = runtime::connect(WEB_FACE, redpill_config, &token).await? else {
        tracing::info!("stopped before connecting to Redis");
        return Ok(());
    };
    tracing::info!(config = ?config, "starting");
    token.cancelled().await;
    client.close().await;
    tracing::info!("stopped");
    Ok(())
}
