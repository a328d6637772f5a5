//! web_face: the REST API of Gorgon (`/v1`, default port 8080).
//!
//! It takes HTTP requests and, through redpill only:
//! - sends topology changes to the store (request/reply) and answers with what the store
//!   applied;
//! - pushes injected messages onto the queue of the node's partition, all of one request in
//!   one atomic push, refusing with 429 while that queue is over its high-water mark;
//! - reads topology documents (written by the store) and node records, latched outputs and
//!   dead letters (written by processors) straight from Redis, where `layout` says they are.
//!
//! It checks `GORGON_API_TOKENS` on every `/v1` request, applies the body, depth, line and
//! rate limits, and answers 503 with `Retry-After` while Redis is unreachable, recovering by
//! itself when Redis returns. It is not where topologies are validated (the store does that)
//! nor where messages are processed. History queries go to the store's history service,
//! which answers from MongoDB.
//!
//! Layout: `config.rs`, `error.rs` (error bodies and
//! statuses), `body.rs` (content types and limits), `state.rs` (shared state, topology
//! reads, store requests), `routes/` (the router, middleware, OpenAPI, and one file per
//! group of routes), `lib.rs` ([`run`]; [`app`], the router, and [`serve`], which serves it on a
//! listener, so tests can run the API in-process).

#![cfg_attr(not(test), warn(clippy::print_stdout))]

pub use protocol::auth;
mod body;
pub mod config;
mod error;
mod routes;
mod state;

use std::net::SocketAddr;

use anyhow::Context as _;
use axum::Router;
use protocol::roles::WEB_FACE;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use routes::ApiDoc;
pub use state::AppState;

/// Runs web_face until `token` is cancelled: connects to Redis (waiting for it while it is
/// unreachable), checks the partition count, binds the port and serves the API ([`serve`]);
/// on cancel, stops taking connections and finishes the requests under way.
pub async fn run(config: Config, token: CancellationToken) -> anyhow::Result<()> {
    let tokens = config.tokens()?;
    let bind = runtime::listen_address(config.bind, !tokens.is_enabled(), "API");
    let redpill_config = config.redis.redpill_config(WEB_FACE);
    let Some(started) =
        runtime::start(WEB_FACE, &config.redis, redpill_config, true, &token).await?
    else {
        return Ok(());
    };
    tracing::info!(config = ?config, "starting");
    let state = AppState::from_config(
        &config,
        started.client.clone(),
        started.metrics.prometheus.clone(),
    )?;
    let address = SocketAddr::new(bind, config.port);
    let listener = TcpListener::bind(address).await.with_context(|| {
        format!("could not listen on {address}; is the port (GORGON_WEB_PORT) taken?")
    })?;
    tracing::info!(%address, "serving the REST API");
    let served = serve(listener, state, token.clone()).await;
    started.finish().await;
    served
}

/// The whole API on `state`: every route, with authentication, the rate limit, request ids,
/// tracing, metrics, panic catching and the body limits. Each request's client address, for
/// the rate limit of an open API, comes from `ConnectInfo<SocketAddr>` as [`serve`] gives it;
/// without it (e.g. `oneshot` in a test) every request counts as one client's.
pub fn app(state: AppState) -> Router {
    routes::router(state)
}

/// Serves [`app`] on `listener` until `shutdown` is cancelled, then stops taking
/// connections and finishes the requests under way.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let service = app(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, service)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .context("the HTTP server failed")
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{header, Request, StatusCode};
    use clap::Parser as _;
    use redpill::testing::TestRedis;
    use serde_json::{json, Value};
    use tower::ServiceExt as _;

    use super::{app, AppState, Config};

    /// The API on `redis`, configured by `flags` (after the Redis URL and partition count).
    async fn api(redis: &TestRedis, flags: &[&str]) -> axum::Router {
        let url = redis.url();
        let mut args = vec!["web_face", "--redis-url", &url, "--partitions", "8"];
        args.extend_from_slice(flags);
        let config = Config::try_parse_from(args).unwrap();
        let client = redpill::Client::connect(config.redis.redpill_config("web_face"))
            .await
            .unwrap();
        app(AppState::from_config(&config, client, None).unwrap())
    }

    /// `request`'s status, `WWW-Authenticate` header and JSON body.
    async fn call(app: &axum::Router, request: Request<Body>) -> (StatusCode, String, Value) {
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let challenge = response
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .map(|value| value.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, challenge, serde_json::from_slice(&bytes).unwrap())
    }

    fn get(path: &str) -> Request<Body> {
        Request::get(path).body(Body::empty()).unwrap()
    }

    /// The probes answer without a token; `/v1` wants one (401 with a `Bearer` challenge)
    /// and lets a known one in; an unknown route is 404 in the API's error body.
    #[tokio::test]
    async fn probes_auth_and_unknown_routes_in_process() {
        let redis = TestRedis::start();
        let app = api(&redis, &["--api-tokens", "s3cret=admin"]).await;
        assert_eq!(
            call(&app, get("/healthz")).await,
            (StatusCode::OK, String::new(), json!({"status": "ok"}))
        );
        assert_eq!(
            call(&app, get("/readyz")).await,
            (StatusCode::OK, String::new(), json!({"status": "ready"}))
        );
        let (status, challenge, body) = call(&app, get("/v1/topologies")).await;
        assert_eq!(
            (status, challenge.as_str(), &body["error"]["code"]),
            (StatusCode::UNAUTHORIZED, "Bearer", &json!("unauthorized"))
        );
        let with_token = Request::get("/v1/topologies")
            .header(header::AUTHORIZATION, "Bearer s3cret")
            .body(Body::empty())
            .unwrap();
        assert_eq!(
            call(&app, with_token).await,
            (StatusCode::OK, String::new(), json!({"topologies": []}))
        );
        let (status, _, body) = call(&app, get("/nowhere")).await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (StatusCode::NOT_FOUND, &json!("not_found"))
        );
    }

    /// A configuration that could never work is refused when the state is built.
    #[test]
    fn a_depth_past_the_output_bound_is_refused() {
        let config = Config::try_parse_from(["web_face", "--json-depth", "101"]).unwrap();
        let error = config.tokens().unwrap_err().to_string();
        assert!(error.contains("GORGON_JSON_DEPTH is 101"), "{error}");
    }
}
