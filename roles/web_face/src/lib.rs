//! web_face: the REST API of Gorgon (`/v1`, default port 8080).
//!
//! It takes HTTP requests and, through redpill only:
//! - sends topology changes to the store (request/reply) and answers with what the store
//!   applied;
//! - pushes injected messages onto the queue of the node's partition, all of one request in
//!   one atomic push, refusing with 429 while that queue is over its high-water mark;
//! - reads topology documents (written by the store) and node records, latched outputs and
//!   dead letters (written by processors) straight from Redis.
//!
//! It checks `GORGON_API_TOKENS` on every `/v1` request, applies the body, depth, line and
//! rate limits, and answers 503 with `Retry-After` while Redis is unreachable, recovering by
//! itself when Redis returns. It is not where topologies are validated (the store does that)
//! nor where messages are processed. History queries arrive with the archive.
//!
//! Layout: `config.rs`, `error.rs` (error bodies and
//! statuses), `body.rs` (content types and limits), `state.rs` (shared state, topology
//! reads, store requests), `routes/` (the router, middleware, OpenAPI, and one file per
//! group of routes), `lib.rs` ([`run`]).

#![cfg_attr(not(test), warn(clippy::print_stdout))]

pub use protocol::auth;
mod body;
pub mod config;
mod error;
mod routes;
mod state;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use protocol::roles::WEB_FACE;
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use routes::ApiDoc;

/// Runs web_face until `token` is cancelled: connects to Redis (waiting for it while it is
/// unreachable), checks the partition count, binds the port and serves the API; on cancel,
/// stops taking connections and finishes the requests under way.
pub async fn run(config: Config, token: CancellationToken) -> anyhow::Result<()> {
    let tokens = auth::Tokens::parse(config.api_tokens.as_ref().map(|secret| secret.expose()))
        .map_err(|error| anyhow::anyhow!(error))?;
    anyhow::ensure!(
        (1..=protocol::MAX_DATA_DEPTH).contains(&config.json_depth),
        "GORGON_JSON_DEPTH is {}; it must be between 1 and {}, the deepest a node's output may \
         nest, or a message accepted could never be output",
        config.json_depth,
        protocol::MAX_DATA_DEPTH
    );
    let bind = runtime::listen_address(config.bind, !tokens.is_enabled(), "API");
    let metrics = runtime::install_metrics(true);
    let redpill_config = config.redis.redpill_config(WEB_FACE);
    let Some(client) = runtime::connect(WEB_FACE, redpill_config, &token).await? else {
        tracing::info!("stopped before connecting to Redis");
        return Ok(());
    };
    runtime::check_partitions(&client, config.redis.partitions).await?;
    tracing::info!(config = ?config, "starting");
    let state = state::AppState::new(
        client.clone(),
        body::Limits {
            body: config.body_limit,
            depth: config.json_depth,
            lines: config.ndjson_lines,
        },
        tokens,
        metrics.prometheus.clone(),
        state::Settings {
            partitions: config.redis.partitions,
            queue_high_water: config.queue_high_water,
            idempotency_ttl: Duration::from_secs(config.idempotency_ttl_s.max(1)),
            store_timeout: Duration::from_millis(config.store_timeout_ms),
            rate_limit: config.rate_limit,
        },
    );
    let address = SocketAddr::new(bind, config.port);
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| {
            format!("could not listen on {address}; is the port (GORGON_WEB_PORT) taken?")
        })?;
    tracing::info!(%address, "serving the REST API");
    let stats = runtime::spawn_stats(
        &client,
        WEB_FACE,
        &metrics,
        config.redis.stats_interval(),
        &token,
    );
    let app = routes::router(state).into_make_service_with_connect_info::<SocketAddr>();
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(token.clone().cancelled_owned())
        .await
        .context("the HTTP server failed");
    stats.stop().await;
    client.close().await;
    tracing::info!("stopped");
    served
}
