//! Connecting to Redis at start-up: wait for it while it is unreachable, fail fast otherwise.

use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

/// The pause after the first failed attempt; it doubles after each further one.
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(250);
/// The longest pause between two attempts.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

/// Connects a redpill client for `role`, waiting for Redis as long as it takes.
///
/// - While Redis is unreachable (a retryable error), logs a warning per attempt and tries
///   again after 250 ms, doubling up to 5 s between attempts.
/// - Returns `Ok(None)` once `token` is cancelled before a connection was made.
/// - Returns an error, saying what to fix, for anything a retry cannot cure: a malformed
///   URL, a refused password, or a server refused under `--refuse-unsafe-redis`.
pub async fn connect(
    role: &str,
    config: redpill::Config,
    token: &CancellationToken,
) -> anyhow::Result<Option<redpill::Client>> {
    let url = config.masked_url();
    let mut delay = FIRST_RETRY_DELAY;
    loop {
        let attempt = tokio::select! {
            biased;
            _ = token.cancelled() => return Ok(None),
            attempt = redpill::Client::connect(config.clone()) => attempt,
        };
        match attempt {
            Ok(client) => {
                tracing::info!(url = %url, consumer = client.consumer_id(), "connected to Redis");
                return Ok(Some(client));
            }
            Err(err) if err.is_retryable() => {
                tracing::warn!("Redis at {url} is unreachable ({err}); retrying in {delay:?}");
                tokio::select! {
                    biased;
                    _ = token.cancelled() => return Ok(None),
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = next_delay(delay);
            }
            Err(err) => {
                let advice = advice(&err);
                return Err(err)
                    .with_context(|| format!("{role} cannot use Redis at {url}: {advice}"));
            }
        }
    }
}

/// The pause after the next failed attempt.
fn next_delay(delay: Duration) -> Duration {
    (delay * 2).min(MAX_RETRY_DELAY)
}

/// What the operator can change to get past a non-retryable connection error.
fn advice(err: &redpill::Error) -> &'static str {
    match err {
        redpill::Error::UnsafeServer(_) => {
            "turn on appendonly and set maxmemory-policy to noeviction on the Redis server, \
             or drop --refuse-unsafe-redis (GORGON_REFUSE_UNSAFE_REDIS) to start anyway"
        }
        redpill::Error::Invalid(_) => {
            "fix REDIS_URL (--redis-url); it reads redis://[user:password@]host:port[/db]"
        }
        _ => {
            "check REDIS_URL (--redis-url): the user and password it carries, \
             and that it points at a Redis server"
        }
    }
}

/// Checks this deployment's partition count: the first role to start records
/// `GORGON_PARTITIONS` in Redis, and a role started with another value must refuse to run,
/// since nodes would hash to other partitions than their queued messages and state.
pub async fn check_partitions(client: &redpill::Client, partitions: u32) -> anyhow::Result<()> {
    let recorded = client
        .fixed_setting("partitions", &partitions.to_string())
        .await
        .context("could not read the deployment's partition count from Redis")?;
    if recorded != partitions.to_string() {
        anyhow::bail!(
            "this deployment was first started with GORGON_PARTITIONS={recorded}, and the partition count cannot change; start this role with GORGON_PARTITIONS={recorded} (it was given {partitions})"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio_util::sync::CancellationToken;

    use super::{connect, next_delay};

    /// The pause doubles from 250 ms and stays at 5 s.
    #[test]
    fn delay_doubles_up_to_five_seconds() {
        let mut delay = super::FIRST_RETRY_DELAY;
        let mut delays = Vec::new();
        for _ in 0..7 {
            delays.push(delay.as_millis());
            delay = next_delay(delay);
        }
        assert_eq!(delays, [250, 500, 1000, 2000, 4000, 5000, 5000]);
    }

    /// A URL redpill cannot parse fails at once, naming the variable to fix.
    #[tokio::test]
    async fn malformed_url_fails_with_advice() {
        let config = redpill::Config::default().set_url("not a url");
        let token = CancellationToken::new();
        let Err(err) = connect("store", config, &token).await else {
            panic!("a malformed URL was accepted");
        };
        let message = format!("{err:#}");
        assert!(message.contains("store cannot use Redis"), "{message}");
        assert!(message.contains("REDIS_URL"), "{message}");
    }

    /// While Redis is unreachable, cancelling the token ends the wait with `None`.
    #[tokio::test]
    async fn cancelled_while_unreachable_gives_none() {
        let url = format!("redis://127.0.0.1:{}", redpill::testing::free_port());
        let config = redpill::Config::default()
            .set_url(url)
            .set_connect_timeout(Duration::from_millis(200));
        let token = CancellationToken::new();
        let cancel = token.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(600)).await;
            cancel.cancel();
        });
        let connected =
            tokio::time::timeout(Duration::from_secs(10), connect("store", config, &token))
                .await
                .expect("connect returns soon after the token is cancelled")
                .unwrap();
        assert!(connected.is_none());
    }

    /// A reachable server gives a client.
    #[tokio::test]
    async fn reachable_server_gives_a_client() {
        let redis = redpill::testing::TestRedis::start();
        let config = redpill::Config::default().set_url(redis.url());
        let token = CancellationToken::new();
        let client = connect("store", config, &token).await.unwrap().unwrap();
        client.ping().await.unwrap();
        client.close().await;
    }
}
