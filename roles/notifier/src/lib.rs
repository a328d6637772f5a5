//! notifier: the socket.io server of Gorgon (default port 8081).
//!
//! It will consume, through redpill, the partition-sharded output topic, and emit each output
//! event to the socket.io clients subscribed to its topology or node, replaying from a `seq`
//! for clients that reconnect. It checks `GORGON_API_TOKENS` at the handshake and publishes its
//! stats on the stats topic. Several notifiers can run side by side.
//!
//! In this version it only connects to Redis, logs its configuration and waits for SIGTERM or
//! Ctrl-C; it does not open its port yet. The socket.io server arrives with its own issue.
//!
//! Layout: `config.rs` (flags and environment), `lib.rs` ([`run`]).

#![cfg_attr(not(test), warn(clippy::print_stdout))]

pub mod config;

use protocol::roles::NOTIFIER;
use tokio_util::sync::CancellationToken;

pub use config::Config;

/// Runs notifier until `token` is cancelled: connects to Redis (waiting for it while it is
/// unreachable), logs the effective configuration, waits, then closes the connection.
pub async fn run(config: Config, token: CancellationToken) -> anyhow::Result<()> {
    let redpill_config = config.redis.redpill_config(NOTIFIER);
    let Some(client) = runtime::connect(NOTIFIER, redpill_config, &token).await? else {
        tracing::info!("stopped before connecting to Redis");
        return Ok(());
    };
    tracing::info!(config = ?config, "starting");
    token.cancelled().await;
    client.close().await;
    tracing::info!("stopped");
    Ok(())
}
