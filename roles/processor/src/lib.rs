//! processor: runs node functions on the partitions it owns.
//!
//! It holds a fenced lease per owned partition (`ownership.rs`) and consumes, through
//! redpill, each owned partition's input queue (`partition.rs`). For each batch it runs the
//! node functions in queue order (`batch.rs`) and commits atomically, fenced by the lease, in
//! the partition's own hash slot: node states (attributes, latched output, per-node `seq`,
//! status, per-edge high-water marks), appends to the partition-sharded output topic, pushes
//! to its own queue, the outbox of messages bound for other partitions, dead letters, and the
//! acks of the inputs. It then delivers the outbox to the downstream partition queues and
//! publishes the outputs on each topology's live channel.
//!
//! Users build their own processor binary from this library to add functions: build a
//! [`Registry`], register their [`Function`]s, and call [`run_with`]. The function interface,
//! the registry and the built-ins live in the `functions` crate; this crate re-exports them
//! (`processor::function`, `processor::registry`, `processor::builtins` and the names below).
//!
//! Layout: `config.rs`, `batch.rs` (running a batch and deciding everything its commit
//! writes: no I/O; where each thing is kept is the `layout` crate's), `partition.rs` (one
//! owned partition's loop), `ownership.rs` (leases and fair shares).

#![cfg_attr(not(test), warn(clippy::print_stdout))]

pub mod batch;
pub mod config;
mod ownership;
mod partition;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use protocol::roles::PROCESSOR;
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use functions::{builtins, function, registry};
pub use functions::{
    Function, FunctionDescription, FunctionError, Input, NodeContext, Param, ParamKind, Registry,
    RegistryError,
};

/// Runs the processor with the built-in functions until `token` is cancelled.
pub async fn run(config: Config, token: CancellationToken) -> anyhow::Result<()> {
    run_with(config, Registry::builtins(), token).await
}

/// Runs the processor with `registry` until `token` is cancelled: connects to Redis (waiting
/// for it while it is unreachable), checks the partition count, takes a fair share of the
/// partitions and works them; on cancel, hands every partition over after its current batch.
pub async fn run_with(
    config: Config,
    registry: Registry,
    token: CancellationToken,
) -> anyhow::Result<()> {
    let lease_time = Duration::from_millis(config.lease_ms);
    // The heartbeat lives as long as a lease, so a dead processor's partitions and its share
    // are freed together.
    let redpill_config = config
        .redis
        .redpill_config(PROCESSOR)
        .set_consumer_ttl(lease_time)
        .set_max_attempts(config.max_attempts);
    let Some(started) =
        runtime::start(PROCESSOR, &config.redis, redpill_config, false, &token).await?
    else {
        return Ok(());
    };
    let client = started.client.clone();
    layout::publish_functions(&client, &registry.describe())
        .await
        .context("could not publish the function registry to Redis")?;
    layout::publish_replay_buffer(&client, config.replay_buffer)
        .await
        .context("publishing the replay buffer length")?;
    let failpoint = config.failpoint.clone().unwrap_or_default();
    let settings = Arc::new(partition::Settings {
        partitions: config.redis.partitions,
        batch_size: config.batch_size,
        max_attempts: config.max_attempts,
        replay_buffer: config.replay_buffer,
        abort_after_commit: failpoint == "after_commit",
        batch_delay: failpoint
            .strip_prefix("batch_delay_ms:")
            .and_then(|ms| ms.parse().ok())
            .map(Duration::from_millis),
    });
    tracing::info!(config = ?config, functions = registry.len(), "starting");
    if !failpoint.is_empty() {
        tracing::warn!(failpoint = %failpoint, "a failpoint is set (GORGON_FAILPOINT, for tests only)");
    }
    let outcome = ownership::run(
        client.clone(),
        Arc::new(registry),
        settings,
        lease_time,
        token,
    )
    .await
    .context("partition ownership failed");
    started.finish().await;
    outcome
}
