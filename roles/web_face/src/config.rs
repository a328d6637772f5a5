//! The web_face role's configuration: flags, each with an environment variable.

use std::net::{IpAddr, Ipv4Addr};

use clap::Parser;
use protocol::auth::Tokens;
use runtime::{LogArgs, RedisArgs, Secret};

/// Everything web_face reads at start-up; built once in `main` and passed to [`crate::run`].
#[derive(Parser, Debug)]
#[command(
    name = "web_face",
    version,
    about = "Gorgon REST API: topologies, nodes, injects, outputs and history"
)]
pub struct Config {
    /// Redis and the settings shared by every role.
    #[command(flatten)]
    pub redis: RedisArgs,

    /// What the role logs and how.
    #[command(flatten)]
    pub log: LogArgs,

    /// The address the REST API listens on.
    #[arg(long, env = "GORGON_BIND", default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub bind: IpAddr,

    /// The port the REST API listens on.
    #[arg(long, env = "GORGON_WEB_PORT", default_value_t = 8080)]
    pub port: u16,

    /// API tokens and what each may do: `token1=admin,token2=rw:<topology>,token3=ro:<topology>`.
    /// Unset, the API is open and only 127.0.0.1 is bound. Masked in logs.
    #[arg(long, env = "GORGON_API_TOKENS")]
    pub api_tokens: Option<Secret>,

    /// The largest request body accepted, in bytes (larger ones get 413).
    #[arg(long, env = "GORGON_BODY_LIMIT", default_value_t = 1024 * 1024)]
    pub body_limit: usize,

    /// The deepest nesting of arrays and objects accepted in a JSON body (deeper ones get 400);
    /// at most 100, the deepest a node's output may nest.
    #[arg(long, env = "GORGON_JSON_DEPTH", default_value_t = 64)]
    pub json_depth: usize,

    /// The most lines one ndjson inject may carry (more get 413).
    #[arg(long, env = "GORGON_NDJSON_LINES", default_value_t = 10_000)]
    pub ndjson_lines: usize,

    /// Requests per second each token (each client address, with no tokens configured) may
    /// make under `/v1`, with bursts of twice that; beyond it, 429 with `Retry-After`.
    /// 0 turns the limit off.
    #[arg(long, env = "GORGON_RATE_LIMIT", default_value_t = 0)]
    pub rate_limit: u32,

    /// The most messages a partition queue may hold before injects into its nodes get 429
    /// with `Retry-After`: the back-pressure that keeps Redis memory bounded while processors
    /// are slow or stopped.
    #[arg(long, env = "GORGON_QUEUE_HIGH_WATER", default_value_t = 100_000)]
    pub queue_high_water: u64,

    /// How long an inject's `Idempotency-Key` is remembered, in seconds: a repeat of the key
    /// within this time is answered with the first request's ids and queues nothing.
    #[arg(long, env = "GORGON_IDEMPOTENCY_TTL_S", default_value_t = 600)]
    pub idempotency_ttl_s: u64,

    /// How long to wait for the store to apply a topology change, in milliseconds, before
    /// answering 503.
    #[arg(long, env = "GORGON_STORE_TIMEOUT_MS", default_value_t = 10_000)]
    pub store_timeout_ms: u64,
}

impl Config {
    /// The API tokens, once the settings that could never work are refused: a malformed
    /// `GORGON_API_TOKENS`, or a `GORGON_JSON_DEPTH` outside 1..=100.
    pub fn tokens(&self) -> anyhow::Result<Tokens> {
        let tokens = Tokens::parse(self.api_tokens.as_ref().map(|secret| secret.expose()))
            .map_err(|error| anyhow::anyhow!(error))?;
        anyhow::ensure!(
            (1..=protocol::MAX_DATA_DEPTH).contains(&self.json_depth),
            "GORGON_JSON_DEPTH is {}; it must be between 1 and {}, the deepest a node's output may \
             nest, or a message accepted could never be output",
            self.json_depth,
            protocol::MAX_DATA_DEPTH
        );
        Ok(tokens)
    }
}
