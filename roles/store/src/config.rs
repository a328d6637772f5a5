//! The store role's configuration: flags, each with an environment variable.

use clap::Parser;
use runtime::{ConnectionUrl, LogArgs, RedisArgs};

/// Everything store reads at start-up; built once in `main` and passed to [`crate::run`].
#[derive(Parser, Debug)]
#[command(
    name = "store",
    version,
    about = "Gorgon topology store: applies topology changes and archives outputs to MongoDB"
)]
pub struct Config {
    /// Redis and the settings shared by every role.
    #[command(flatten)]
    pub redis: RedisArgs,

    /// What the role logs and how.
    #[command(flatten)]
    pub log: LogArgs,

    /// The MongoDB database outputs are archived to. The password is masked in logs.
    #[arg(
        long,
        env = "MONGODB_URI",
        default_value = "mongodb://127.0.0.1:27017/gorgon"
    )]
    pub mongodb_uri: ConnectionUrl,

    /// The most documents one archive write carries.
    #[arg(long, env = "GORGON_ARCHIVE_BATCH", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub archive_batch: u64,

    /// The pause after an archive batch that emptied the output topic, in ms, so a steady
    /// trickle of outputs is archived in batches (0: none; the archive lags by up to this more).
    #[arg(long, env = "GORGON_ARCHIVE_LINGER_MS", default_value_t = 50, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub archive_linger_ms: u64,

    /// The write concern of archive writes: `majority` (a replica set), `journaled`
    /// (`w: 1, j: true`, for a standalone server) or a number of members.
    #[arg(long, env = "GORGON_ARCHIVE_WRITE_CONCERN", default_value = "majority")]
    pub archive_write_concern: String,

    /// Days archived outputs are kept (a TTL index on `ts`); 0 keeps them for ever.
    #[arg(long, env = "GORGON_ARCHIVE_RETENTION_DAYS", default_value_t = 0)]
    pub archive_retention_days: u32,

    /// How long a MongoDB operation waits for a reachable server, in milliseconds, before it
    /// fails (and is retried).
    #[arg(long, env = "GORGON_MONGODB_TIMEOUT_MS", default_value_t = 5000)]
    pub mongodb_timeout_ms: u64,

    /// The most sources one node may have, counting those from a document's graph.
    #[arg(long, env = "GORGON_MAX_SOURCES", default_value_t = protocol::DEFAULT_MAX_SOURCES)]
    pub max_sources: usize,

    /// How long a store holds a topology's lease while it applies changes, in milliseconds. A
    /// store that dies holding one blocks changes to that topology this long.
    #[arg(long, env = "GORGON_STORE_LEASE_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1000..))]
    pub store_lease_ms: u64,

    /// How often to look for node changes a store that died left undelivered, in milliseconds.
    #[arg(long, env = "GORGON_STORE_SWEEP_MS", default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(100..))]
    pub store_sweep_ms: u64,

    /// Test-only, hidden from `--help`: makes the store fail on purpose for the fault tests.
    /// `archive_after_write` aborts the process after the first archive write MongoDB
    /// acknowledged, before the output topic is. Never set it in production.
    #[arg(long, env = "GORGON_FAILPOINT", hide = true)]
    pub failpoint: Option<String>,
}
