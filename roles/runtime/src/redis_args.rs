//! The command-line flags and environment variables that every role shares.

use std::time::Duration;

use redpill::DurabilityPolicy;

use crate::ConnectionUrl;

/// Where the mesh's Redis is and how to use it; flattened into every role's `Config`.
#[derive(clap::Args, Clone, Debug)]
pub struct RedisArgs {
    /// The Redis server all roles share, `redis://[user:password@]host:port[/db]`; for a
    /// Redis Cluster, one node's URL or several separated by commas.
    /// The password is masked in logs.
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    pub redis_url: ConnectionUrl,

    /// The prefix of every Redis key and channel of this deployment; deployments that share a
    /// Redis must use different prefixes.
    #[arg(long, env = "GORGON_PREFIX", default_value = "gorgon")]
    pub prefix: String,

    /// The number of partitions nodes are hashed into. Fixed when a deployment first starts.
    #[arg(
        long,
        env = "GORGON_PARTITIONS",
        default_value_t = 64,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub partitions: u32,

    /// Refuse to start when Redis can lose acknowledged writes (AOF off, or an evicting
    /// `maxmemory-policy`), instead of logging a warning and carrying on.
    #[arg(
        long,
        env = "GORGON_REFUSE_UNSAFE_REDIS",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub refuse_unsafe_redis: bool,

    /// How long, in milliseconds, this process may go without renewing its heartbeat in Redis
    /// before other processes count it as dead and take back the messages it holds.
    #[arg(
        long,
        env = "GORGON_CONSUMER_TTL_MS",
        default_value_t = 5000,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub consumer_ttl_ms: u64,

    /// How often, in milliseconds, this process publishes its stats report (counters,
    /// histograms, heartbeat) for the stats monitor.
    #[arg(
        long,
        env = "GORGON_STATS_INTERVAL_MS",
        default_value_t = 1000,
        value_parser = clap::value_parser!(u64).range(10..)
    )]
    pub stats_interval_ms: u64,

    /// How many Redis replicas must have every write this process acknowledges (an inject's
    /// 202, a processor's commit before its outputs go on, a topology change) before it is
    /// acknowledged: `WAIT` on the master that took it. 0: no wait, so a master that fails
    /// right after a write can lose it (see docs/production.md).
    #[arg(long, env = "GORGON_REPLICA_ACKS", default_value_t = 0)]
    pub replica_acks: u32,

    /// How long, in milliseconds, a write waits for its replica acknowledgements before it
    /// fails as retryable (503 at the API).
    #[arg(
        long,
        env = "GORGON_REPLICA_ACK_TIMEOUT_MS",
        default_value_t = 2000,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub replica_ack_timeout_ms: u64,
}

impl RedisArgs {
    /// How often this process publishes its stats report.
    pub fn stats_interval(&self) -> Duration {
        Duration::from_millis(self.stats_interval_ms)
    }

    /// The redpill settings for a process of `role`: these flags over redpill's defaults,
    /// with the role as the consumer name.
    pub fn redpill_config(&self, role: &str) -> redpill::Config {
        let durability = if self.refuse_unsafe_redis {
            DurabilityPolicy::Refuse
        } else {
            DurabilityPolicy::Warn
        };
        redpill::Config::default()
            .set_url(self.redis_url.expose())
            .set_prefix(self.prefix.as_str())
            .set_name(role)
            .set_durability(durability)
            .set_consumer_ttl(Duration::from_millis(self.consumer_ttl_ms))
            .set_replica_acks(
                self.replica_acks,
                Duration::from_millis(self.replica_ack_timeout_ms),
            )
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::RedisArgs;

    #[derive(Parser)]
    struct Command {
        #[command(flatten)]
        redis: RedisArgs,
    }

    /// Flags given on the command line reach the redpill config, and the URL's password
    /// appears in neither `Debug`.
    #[test]
    fn flags_reach_the_redpill_config_masked() {
        let command = Command::try_parse_from([
            "role",
            "--redis-url",
            "redis://app:s3cret@db:6379/0",
            "--prefix",
            "test",
            "--refuse-unsafe-redis",
            "--consumer-ttl-ms",
            "1500",
        ])
        .unwrap();
        assert_eq!(
            command.redis.redis_url.expose(),
            "redis://app:s3cret@db:6379/0"
        );
        let args = format!("{:?}", command.redis);
        assert!(!args.contains("s3cret"), "{args}");
        let config = format!("{:?}", command.redis.redpill_config("store"));
        assert!(!config.contains("s3cret"), "{config}");
        assert!(config.contains("redis://app:***@db:6379/0"), "{config}");
        assert!(config.contains("prefix: \"test\""), "{config}");
        assert!(config.contains("durability: Refuse"), "{config}");
        assert!(config.contains("consumer_ttl: 1.5s"), "{config}");
        assert!(config.contains("name: \"store\""), "{config}");
    }

    /// Zero partitions is refused when parsing, not later.
    #[test]
    fn zero_partitions_is_refused() {
        assert!(Command::try_parse_from(["role", "--partitions", "0"]).is_err());
    }
}
