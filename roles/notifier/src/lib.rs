//! notifier: the socket.io server of Gorgon (default port 8081).
//!
//! Clients subscribe to a topology, or one node of it, and receive each output event as an
//! `output` event, once, in `seq` order per node (`protocol::notify` has the shapes and
//! `docs/notifier.md` the semantics). Live outputs come from each topology's live channel
//! (`protocol::names::live_outputs`), which processors publish after each commit; what that
//! channel loses, and what a reconnecting client asks for with `after_seq`, comes from each
//! node's replay buffer in Redis, which processors write in the same commit as the outputs.
//! When the buffer no longer holds what is asked for, the client is sent `resync`.
//!
//! It checks `GORGON_API_TOKENS` at the handshake (`auth: {"token"}`) and the token's scope at
//! each subscribe, and `Origin` against `GORGON_ALLOWED_ORIGINS`. It keeps no state of its
//! own beyond its sockets, so several notifiers can run side by side and a restarted one
//! loses nothing its clients cannot resume. It is not where outputs are made or archived.
//! It also serves `/healthz`, `/readyz` and `/metrics` on its port.
//!
//! Layout: `config.rs`, `hub.rs` (live subscriptions and fan-out), `session.rs` (one socket:
//! subscriptions, ordering, gap filling), `replay.rs` (what it reads from Redis), `lib.rs`
//! ([`run`], the handshake, the HTTP routes).

#![cfg_attr(not(test), warn(clippy::print_stdout))]

pub mod config;
mod hub;
mod replay;
mod session;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::Context as _;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use protocol::auth::{Refusal, Tokens};
use protocol::names;
use protocol::notify::{Ack, Subscription, SUBSCRIBE_EVENT, UNSUBSCRIBE_EVENT};
use protocol::roles::NOTIFIER;
use redpill::{Client, Live};
use serde::Deserialize;
use socketioxide::extract::{AckSender, SocketRef, TryData};
use socketioxide::handler::ConnectHandler as _;
use socketioxide::SocketIo;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use config::Config;

use crate::hub::Hub;
use crate::replay::Reader;
use crate::session::{Command, Session};

/// Runs notifier until `token` is cancelled: connects to Redis (waiting for it while it is
/// unreachable), checks the partition count, binds the port and serves socket.io; on cancel,
/// disconnects every socket and stops.
pub async fn run(config: Config, token: CancellationToken) -> anyhow::Result<()> {
    let tokens = Tokens::parse(config.api_tokens.as_ref().map(|secret| secret.expose()))
        .map_err(|error| anyhow::anyhow!(error))?;
    let bind = runtime::listen_address(config.bind, !tokens.is_enabled(), "socket.io server");
    let metrics = runtime::install_metrics(true);
    let redpill_config = config.redis.redpill_config(NOTIFIER);
    let Some(client) = runtime::connect(NOTIFIER, redpill_config, &token).await? else {
        tracing::info!("stopped before connecting to Redis");
        return Ok(());
    };
    runtime::check_partitions(&client, config.redis.partitions).await?;
    let replay_buffer = published_replay_buffer(&client).await;
    tracing::info!(config = ?config, replay_buffer = ?replay_buffer, "starting");
    if replay_buffer == Some(0) {
        tracing::warn!(
            "processors keep no replay buffer (GORGON_REPLAY_BUFFER=0): every resume is a resync"
        );
    }

    let live = Live::new(&client);
    let hub = Hub::new(live, token.clone());
    tokio::spawn(hub::watch_losses(hub.clone(), token.clone()));
    let shared = Arc::new(session::Shared {
        reader: Reader::new(client.clone(), config.redis.partitions),
        hub,
        max_subscriptions: config.max_subscriptions,
    });
    let gate = Arc::new(Gate {
        tokens,
        connections: AtomicUsize::new(0),
        max_connections: config.max_connections,
    });
    let (layer, io) = SocketIo::builder()
        .max_buffer_size(config.socket_buffer)
        .build_layer();
    {
        let gate_for_check = Arc::clone(&gate);
        let check = move |auth: TryData<Handshake>| {
            let gate = Arc::clone(&gate_for_check);
            async move { gate.admit(auth.0.ok()) }
        };
        let backlog = config.socket_backlog;
        let token = token.clone();
        let gate = Arc::clone(&gate);
        let connect = move |socket: SocketRef, auth: TryData<Handshake>| {
            let (shared, gate, token) = (Arc::clone(&shared), Arc::clone(&gate), token.clone());
            async move { gate.connected(socket, auth.0.ok(), shared, backlog, token) }
        };
        io.ns("/", connect.with(check));
    }

    let origins: HashSet<String> = config
        .allowed_origins
        .iter()
        .map(|origin| origin.trim().trim_end_matches('/').to_owned())
        .filter(|origin| !origin.is_empty())
        .collect();
    let http = Http {
        client: client.clone(),
        prometheus: metrics.prometheus.clone(),
    };
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics_text))
        .layer(layer)
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(origins),
            check_origin,
        ))
        .with_state(Arc::new(http));

    let address = SocketAddr::new(bind, config.port);
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| {
            format!("could not listen on {address}; is the port (GORGON_NOTIFIER_PORT) taken?")
        })?;
    tracing::info!(%address, "serving socket.io");
    let stats = runtime::spawn_stats(
        &client,
        NOTIFIER,
        &metrics,
        config.redis.stats_interval(),
        &token,
    );
    let closing = {
        let (io, token) = (io.clone(), token.clone());
        async move {
            token.cancelled().await;
            // Sockets are long-lived: close them, or the graceful shutdown waits for ever.
            io.close().await;
        }
    };
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(closing)
        .await
        .context("the socket.io server failed");
    stats.stop().await;
    client.close().await;
    tracing::info!("stopped");
    served
}

/// The replay buffer length processors last published, if any did.
async fn published_replay_buffer(client: &Client) -> Option<u64> {
    let key = client.keys().plain(names::PUBLISHED_SETTINGS);
    let fields = client.read_hashes(&[key]).await.ok()?.pop()?;
    let length = fields.get(names::REPLAY_BUFFER_SETTING)?.parse().ok()?;
    metrics::gauge!("gorgon_replay_buffer_entries").set(length as f64);
    Some(length)
}

/// The handshake's `auth` object.
#[derive(Debug, Default, Deserialize)]
struct Handshake {
    token: Option<String>,
}

/// Who may connect, and how many are.
struct Gate {
    tokens: Tokens,
    connections: AtomicUsize,
    max_connections: usize,
}

impl Gate {
    /// The handshake check: a known token (when tokens are configured) and room for one more
    /// socket. The error's text reaches the client as its `connect_error` message.
    fn admit(&self, auth: Option<Handshake>) -> Result<(), String> {
        let token = auth.and_then(|auth| auth.token);
        if let Err(refusal) = self.tokens.grants(token.as_deref()) {
            metrics::counter!("gorgon_notifier_connections_refused_total", "reason" => "token")
                .increment(1);
            return Err(match refusal {
                Refusal::Missing => {
                    "unauthorized: a token is required; connect with auth: {\"token\": \"...\"}"
                }
                Refusal::Unknown => "unauthorized: the token is not valid",
            }
            .to_owned());
        }
        if self.connections.load(Ordering::Relaxed) >= self.max_connections {
            metrics::counter!("gorgon_notifier_connections_refused_total", "reason" => "limit")
                .increment(1);
            return Err(format!(
                "too_many_connections: this notifier serves {} sockets, its most \
                 (GORGON_NOTIFIER_MAX_CONNECTIONS); try another notifier or later",
                self.max_connections
            ));
        }
        Ok(())
    }

    /// A socket let in: start its task and route its events to it.
    fn connected(
        self: Arc<Self>,
        socket: SocketRef,
        auth: Option<Handshake>,
        shared: Arc<session::Shared>,
        backlog: usize,
        token: CancellationToken,
    ) {
        let token_text = auth.and_then(|auth| auth.token);
        let Ok((_, grants)) = self.tokens.grants(token_text.as_deref()) else {
            // Checked by `admit` already; never reached.
            socket.disconnect().ok();
            return;
        };
        self.connections.fetch_add(1, Ordering::Relaxed);
        metrics::gauge!(protocol::stats::NOTIFIER_CONNECTIONS).increment(1.0);
        // The socket's task ends when the socket disconnects (or the notifier stops).
        let closed = token.child_token();
        let commands = Session::start(socket.clone(), grants, shared, backlog, closed.clone());
        socket.on(
            SUBSCRIBE_EVENT,
            on_command(commands.clone(), Command::Subscribe),
        );
        socket.on(
            UNSUBSCRIBE_EVENT,
            on_command(commands, Command::Unsubscribe),
        );
        let gate = Arc::clone(&self);
        socket.on_disconnect(move || {
            closed.cancel();
            gate.connections.fetch_sub(1, Ordering::Relaxed);
            metrics::gauge!(protocol::stats::NOTIFIER_CONNECTIONS).decrement(1.0);
            std::future::ready(())
        });
    }
}

/// The handler of `subscribe` or `unsubscribe`: hands the request to the socket's task,
/// which answers it in order with everything else it sends.
fn on_command(
    commands: mpsc::Sender<Command>,
    make: fn(Subscription, AckSender) -> Command,
) -> impl Fn(TryData<Subscription>, AckSender) -> std::future::Ready<()> + Clone + Send + Sync + 'static
{
    move |TryData(subscription): TryData<Subscription>, ack: AckSender| {
        match subscription {
            Ok(subscription) => {
                // Closed: the socket's task has ended because the socket is going away, and
                // there is no one to answer.
                if let Err(mpsc::error::TrySendError::Full(command)) =
                    commands.try_send(make(subscription, ack))
                {
                    command
                        .into_ack()
                        .send(&Ack::refused(
                            "busy",
                            "this socket has too many requests waiting; wait for their answers",
                        ))
                        .ok();
                }
            }
            Err(error) => {
                ack.send(&Ack::refused(
                    "invalid_request",
                    format!(
                        "expected {{\"topology\", \"node\"?, \"after_seq\"?}} with slugs and \
                         a non-negative seq (or an object of them per node): {error}"
                    ),
                ))
                .ok();
            }
        }
        std::future::ready(())
    }
}

/// What the HTTP routes read.
struct Http {
    client: Client,
    prometheus: Option<PrometheusHandle>,
}

async fn ready(State(http): State<Arc<Http>>) -> Response {
    match http.client.ping().await {
        Ok(()) => "ready".into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "Redis is unreachable").into_response(),
    }
}

async fn metrics_text(State(http): State<Arc<Http>>) -> Response {
    published_replay_buffer(&http.client).await;
    match &http.prometheus {
        Some(handle) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4"),
            )],
            handle.render(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "metrics are off").into_response(),
    }
}

/// Refuses (403) a request whose `Origin` is not allowed, before socket.io sees it.
async fn check_origin(
    State(origins): State<Arc<HashSet<String>>>,
    request: Request,
    next: Next,
) -> Response {
    if !origins.is_empty() {
        if let Some(origin) = request.headers().get(header::ORIGIN) {
            let allowed = origin
                .to_str()
                .is_ok_and(|origin| origins.contains(origin.trim_end_matches('/')));
            if !allowed {
                metrics::counter!("gorgon_notifier_connections_refused_total", "reason" => "origin")
                    .increment(1);
                let body = serde_json::json!({"error": {
                    "code": "origin_not_allowed",
                    "message": "this Origin is not in GORGON_ALLOWED_ORIGINS",
                }});
                return (StatusCode::FORBIDDEN, axum::Json(body)).into_response();
            }
        }
    }
    next.run(request).await
}
