//! The stats role's configuration: flags, each with an environment variable.

use std::net::{IpAddr, Ipv4Addr};

use clap::Parser;
use runtime::{LogArgs, RedisArgs, Secret};

/// Everything stats reads at start-up; built once in `main` and passed to [`crate::run`].
#[derive(Parser, Debug)]
#[command(
    name = "stats",
    version,
    about = "Gorgon stats monitor: aggregates every role's stats and serves the dashboard"
)]
pub struct Config {
    /// Redis and the settings shared by every role.
    #[command(flatten)]
    pub redis: RedisArgs,

    /// What the role logs and how.
    #[command(flatten)]
    pub log: LogArgs,

    /// The address the dashboard, snapshot API and `/metrics` listens on.
    #[arg(long, env = "GORGON_BIND", default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub bind: IpAddr,

    /// The port the dashboard, snapshot API and `/metrics` listens on.
    #[arg(long, env = "GORGON_STATS_PORT", default_value_t = 8082)]
    pub port: u16,

    /// API tokens and what each may do: `token1=admin,token2=rw:<topology>,token3=ro:<topology>`.
    /// Unset, the API is open and only 127.0.0.1 is bound. Masked in logs.
    #[arg(long, env = "GORGON_API_TOKENS")]
    pub api_tokens: Option<Secret>,

    /// How many seconds of history the monitor keeps and charts.
    #[arg(long, env = "GORGON_STATS_WINDOW_S", default_value_t = 900,
        value_parser = clap::value_parser!(u64).range(10..=86_400))]
    pub window_s: u64,

    /// An instance not heard from for this many milliseconds is shown unhealthy.
    #[arg(long, env = "GORGON_STATS_HEALTH_TIMEOUT_MS", default_value_t = 2_500,
        value_parser = clap::value_parser!(u64).range(100..))]
    pub health_timeout_ms: u64,

    /// An instance not heard from for this many seconds is dropped from the list (its
    /// counts stay in the totals).
    #[arg(long, env = "GORGON_STATS_FORGET_AFTER_S", default_value_t = 300,
        value_parser = clap::value_parser!(u64).range(1..))]
    pub forget_after_s: u64,
}
