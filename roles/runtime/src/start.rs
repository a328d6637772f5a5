//! The start and end every role shares: metrics, Redis, the partition check, the stats
//! publisher; and at the end the stats publisher's last report and the client's close.

use redpill::Client;
use tokio_util::sync::CancellationToken;

use crate::{Metrics, RedisArgs, StatsTask};

/// A role started: connected to Redis, its partition count checked, publishing its stats.
/// End it with [`Started::finish`]; dropped without it (a role failing on its way up), it
/// still stops the stats publisher.
pub struct Started {
    /// The role's Redis client.
    pub client: Client,
    /// The process's metrics, with the Prometheus handle when asked for.
    pub metrics: Metrics,
    stats: Option<StatsTask>,
}

/// Starts role `role`: installs the process's metrics recorder (keeping Prometheus text when
/// `prometheus`, for a role that serves `/metrics`), connects with `redpill_config` (waiting
/// for Redis while it is unreachable), checks the deployment's partition count against
/// `redis`'s and starts publishing the role's stats every `redis.stats_interval()`.
///
/// `Ok(None)` when `token` is cancelled before a connection was made; an error for what a
/// retry cannot cure (see [`crate::connect`], [`crate::check_partitions`]).
pub async fn start(
    role: &'static str,
    redis: &RedisArgs,
    redpill_config: redpill::Config,
    prometheus: bool,
    token: &CancellationToken,
) -> anyhow::Result<Option<Started>> {
    let metrics = crate::install_metrics(prometheus);
    let Some(client) = crate::connect(role, redpill_config, token).await? else {
        tracing::info!("stopped before connecting to Redis");
        return Ok(None);
    };
    if let Err(error) = crate::check_partitions(&client, redis.partitions).await {
        client.close().await;
        return Err(error);
    }
    let stats = crate::spawn_stats(&client, role, &metrics, redis.stats_interval(), token);
    Ok(Some(Started {
        client,
        metrics,
        stats: Some(stats),
    }))
}

impl Started {
    /// Publishes the last stats report (marked `stopping`), closes the client, and logs that
    /// the role stopped.
    pub async fn finish(mut self) {
        if let Some(stats) = self.stats.take() {
            stats.stop().await;
        }
        self.client.close().await;
        tracing::info!("stopped");
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        if let Some(stats) = self.stats.take() {
            stats.cancel();
        }
    }
}
