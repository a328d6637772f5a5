//! The processor role's configuration: flags, each with an environment variable.

use clap::builder::RangedU64ValueParser;
use clap::builder::TypedValueParser as _;
use clap::Parser;
use runtime::{LogArgs, RedisArgs};

/// Everything processor reads at start-up; built once in `main` and passed to [`crate::run`].
#[derive(Parser, Debug)]
#[command(
    name = "processor",
    version,
    about = "Gorgon processor: runs node functions on the partitions it owns"
)]
pub struct Config {
    /// Redis and the settings shared by every role.
    #[command(flatten)]
    pub redis: RedisArgs,

    /// What the role logs and how.
    #[command(flatten)]
    pub log: LogArgs,

    /// How long, in milliseconds, a partition's lease lasts without renewal; a dead
    /// processor's partitions are taken over within this plus one second. At least 1000.
    #[arg(
        long,
        env = "GORGON_LEASE_MS",
        default_value_t = 5000,
        value_parser = clap::value_parser!(u64).range(1000..)
    )]
    pub lease_ms: u64,

    /// The most messages pulled from a partition's queue and committed together. Batches are
    /// only this large when a backlog waits; larger ones cost Redis less per message
    /// (measured: 93 k node-messages/s at 100, 123 k at 500 in back-to-back runs; docs/benchmarks.md).
    #[arg(
        long,
        env = "GORGON_BATCH_SIZE",
        default_value_t = 500,
        value_parser = RangedU64ValueParser::<usize>::new().range(1..=redpill::MAX_PULL as u64)
    )]
    pub batch_size: usize,

    /// Deliveries of a message whose function fails before it is dead-lettered. At least 1.
    #[arg(
        long,
        env = "GORGON_MAX_ATTEMPTS",
        default_value_t = 3,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub max_attempts: u32,

    /// Output events kept per node in Redis (its replay buffer), so socket.io clients that
    /// reconnect resume by `seq` without a gap; 0 keeps none (every resume is a `resync`).
    /// Memory: about nodes × this × the size of an output event.
    #[arg(
        long,
        env = "GORGON_REPLAY_BUFFER",
        default_value_t = 100,
        value_parser = clap::value_parser!(u64).range(0..=1_000_000).map(|n| n as usize)
    )]
    pub replay_buffer: usize,

    /// Test-only, hidden from `--help`: makes the processor fail on purpose for the fault
    /// tests. `after_commit` aborts the process right after the first commit that wrote
    /// forwards to other partitions; `batch_delay_ms:<n>` waits between running a batch and
    /// committing it. Never set it in production.
    #[arg(long, env = "GORGON_FAILPOINT", hide = true)]
    pub failpoint: Option<String>,
}
