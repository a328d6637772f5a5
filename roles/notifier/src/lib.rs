//! notifier: the socket.io and Server-Sent Events server of Gorgon (default port 8081).
//!
//! Clients subscribe to a topology, or one node of it, and receive each output event as an
//! `output` event, once, in `seq` order per node (`protocol::notify` has the shapes and
//! `docs/notifier.md` the semantics). Live outputs come from each topology's live channel
//! (`layout::live_outputs`), which processors publish after each commit; what that
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
//! The same outputs go out as Server-Sent Events at `/v1/topologies/{t}/stream` and
//! `/v1/topologies/{t}/nodes/{n}/stream`, each `output` event's id its `node:seq`.
//!
//! Layout: `config.rs`, `hub.rs` (live subscriptions and fan-out), `session.rs` (one socket
//! or stream: subscriptions, ordering, gap filling), `stream.rs` (opening a stream),
//! `replay.rs` (what it reads from Redis), `lib.rs` ([`run`], the handshake, the HTTP
//! routes).

#![cfg_attr(not(test), warn(clippy::print_stdout))]

pub mod config;
mod hub;
mod replay;
mod session;
mod stream;

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
use axum::serve::ListenerExt as _;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use protocol::auth::{Grants, Refusal, Tokens};
use protocol::notify::{Ack, Subscription, SUBSCRIBE_EVENT, UNSUBSCRIBE_EVENT};
use protocol::roles::NOTIFIER;
use protocol::store::ApiError;
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
use crate::session::{Command, Outlet, Reply, Session};

/// Runs notifier until `token` is cancelled: connects to Redis (waiting for it while it is
/// unreachable), checks the partition count, binds the port and serves socket.io; on cancel,
/// disconnects every socket and stops.
pub async fn run(config: Config, token: CancellationToken) -> anyhow::Result<()> {
    let tokens = Tokens::parse(config.api_tokens.as_ref().map(|secret| secret.expose()))
        .map_err(|error| anyhow::anyhow!(error))?;
    let bind = runtime::listen_address(config.bind, !tokens.is_enabled(), "socket.io server");
    let redpill_config = config.redis.redpill_config(NOTIFIER);
    let Some(started) =
        runtime::start(NOTIFIER, &config.redis, redpill_config, true, &token).await?
    else {
        return Ok(());
    };
    let client = started.client.clone();
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
    let (layer, io) = SocketIo::builder()
        .max_buffer_size(config.socket_buffer)
        .ping_interval(config.ping_interval())
        .ping_timeout(config.ping_timeout())
        .build_layer();
    let shared = Arc::new(session::Shared {
        reader: Reader::new(client.clone(), config.redis.partitions),
        hub,
        io: io.clone(),
        max_subscriptions: config.max_subscriptions,
        liveness_check: config.ping_interval(),
    });
    let gate = Arc::new(Gate {
        tokens,
        connections: AtomicUsize::new(0),
        max_connections: config.max_connections,
    });
    {
        let gate_for_check = Arc::clone(&gate);
        let token = token.clone();
        let check = move |socket: SocketRef, auth: TryData<Handshake>| {
            let (gate, token) = (Arc::clone(&gate_for_check), token.clone());
            async move {
                let token_text = auth.0.ok().and_then(|auth| auth.token);
                let grants = gate.tokens.grants(token_text.as_deref());
                gate.admit(grants.map(|(_, grants)| grants), HANDSHAKE_TOKEN)
                    .map_err(|refused| format!("{}: {}", refused.code, refused.message))?;
                prepare(&socket, &token);
                Ok::<(), String>(())
            }
        };
        let backlog = config.socket_backlog;
        let (gate, shared) = (Arc::clone(&gate), Arc::clone(&shared));
        let connect = move |socket: SocketRef, auth: TryData<Handshake>| {
            let (shared, gate) = (Arc::clone(&shared), Arc::clone(&gate));
            async move { gate.connected(socket, auth.0.ok(), shared, backlog) }
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
        prometheus: started.metrics.prometheus.clone(),
    };
    let streams = stream::Streams {
        gate: Arc::clone(&gate),
        shared,
        backlog: config.socket_backlog,
        token: token.clone(),
        keep_alive: config.ping_interval(),
    };
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics_text))
        .with_state(Arc::new(http))
        .merge(stream::routes(streams))
        .layer(layer)
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(origins),
            check_origin,
        ));

    let address = SocketAddr::new(bind, config.port);
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| {
            format!("could not listen on {address}; is the port (GORGON_NOTIFIER_PORT) taken?")
        })?;
    // A socket whose client stopped reading can leave engine.io's writer waiting on a full
    // TCP buffer for ever: the ping timeout then closes the session, but the session's end
    // (and the socket.io disconnect) waits for that writer. The kernel drops a connection
    // whose data has not moved for as long as a ping may go unanswered, and the writer ends.
    let user_timeout = config.ping_interval() + config.ping_timeout();
    let listener = listener.tap_io(move |stream| drop_when_stalled(stream, user_timeout));
    tracing::info!(%address, "serving socket.io");
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
    started.finish().await;
    served
}

/// The replay buffer length processors last published, if any did.
async fn published_replay_buffer(client: &Client) -> Option<u64> {
    let length = layout::read_replay_buffer(client).await.ok()??;
    metrics::gauge!("gorgon_replay_buffer_entries").set(length as f64);
    Some(length)
}

/// The handshake's `auth` object.
#[derive(Debug, Default, Deserialize)]
struct Handshake {
    token: Option<String>,
}

/// Has the kernel drop `stream` when data it sends stays unacknowledged (or cannot be sent,
/// the peer's window being shut) for `timeout` (`TCP_USER_TIMEOUT`; Linux only).
fn drop_when_stalled(stream: &mut tokio::net::TcpStream, timeout: std::time::Duration) {
    #[cfg(any(target_os = "android", target_os = "fuchsia", target_os = "linux"))]
    if let Err(error) = socket2::SockRef::from(&*stream).set_tcp_user_timeout(Some(timeout)) {
        tracing::debug!(%error, "could not set TCP_USER_TIMEOUT on a connection");
    }
    #[cfg(not(any(target_os = "android", target_os = "fuchsia", target_os = "linux")))]
    let _ = (stream, timeout);
}

/// How a socket presents its token, for the refusal of one without.
const HANDSHAKE_TOKEN: &str = "connect with auth: {\"token\": \"...\"}";

/// Who may connect, and how many are.
struct Gate {
    tokens: Tokens,
    /// Sockets connected: the [`Slot`]s alive.
    connections: AtomicUsize,
    max_connections: usize,
}

/// One socket's place in the connection count (and `gorgon_notifier_connections`), given
/// back when dropped. The socket's task owns it, and that task ends whenever the socket is
/// gone, however it went (see `Session::run`), so the count cannot drift whichever socket.io
/// paths did or did not run.
pub(crate) struct Slot {
    gate: Arc<Gate>,
}

impl Slot {
    fn take(gate: &Arc<Gate>) -> Slot {
        gate.connections.fetch_add(1, Ordering::Relaxed);
        metrics::gauge!(protocol::stats::NOTIFIER_CONNECTIONS).increment(1.0);
        Slot {
            gate: Arc::clone(gate),
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.gate.connections.fetch_sub(1, Ordering::Relaxed);
        metrics::gauge!(protocol::stats::NOTIFIER_CONNECTIONS).decrement(1.0);
    }
}

impl Gate {
    /// The check of a socket's handshake or a stream's request: a known token (when tokens
    /// are configured; `grants` is what the token gives) and room for one more connection.
    /// A socket's client gets the refusal as its `connect_error` message (`code: message`),
    /// a stream's as an HTTP error.
    fn admit(
        &self,
        grants: Result<Arc<Grants>, Refusal>,
        how: &'static str,
    ) -> Result<Arc<Grants>, ApiError> {
        let grants = match grants {
            Ok(grants) => grants,
            Err(refusal) => {
                metrics::counter!("gorgon_notifier_connections_refused_total", "reason" => "token")
                    .increment(1);
                let reason = match refusal {
                    Refusal::Missing => format!("a token is required; {how}"),
                    Refusal::Unknown => "the token is not valid".to_owned(),
                };
                return Err(ApiError::new(protocol::ErrorCode::Unauthorized, reason));
            }
        };
        if self.connections.load(Ordering::Relaxed) >= self.max_connections {
            metrics::counter!("gorgon_notifier_connections_refused_total", "reason" => "limit")
                .increment(1);
            return Err(ApiError::new(
                protocol::ErrorCode::TooManyConnections,
                format!(
                    "this notifier serves {} connections (sockets and streams), its most \
                     (GORGON_NOTIFIER_MAX_CONNECTIONS); try another notifier or later",
                    self.max_connections
                ),
            ));
        }
        Ok(grants)
    }

    /// A socket let in and connected: take its slot and start its task with what
    /// [`prepare`] left it. This runs in a task of its own, spawned once socket.io has
    /// connected the socket, so the socket may be gone already: its task then finds its
    /// token cancelled, or the socket out of its namespace, and ends at once.
    fn connected(
        self: Arc<Self>,
        socket: SocketRef,
        auth: Option<Handshake>,
        shared: Arc<session::Shared>,
        backlog: usize,
    ) {
        let token_text = auth.and_then(|auth| auth.token);
        let prepared = socket
            .extensions
            .remove::<Prepared>()
            .and_then(|prepared| prepared.0.lock().ok()?.take());
        let (Ok((_, grants)), Some((commands, closed))) =
            (self.tokens.grants(token_text.as_deref()), prepared)
        else {
            // Checked and prepared by the middleware already; never reached.
            socket.disconnect().ok();
            return;
        };
        let slot = Slot::take(&self);
        Session::start(
            Outlet::Socket(socket),
            grants,
            shared,
            backlog,
            slot,
            closed,
            commands,
        );
    }
}

/// What [`prepare`] leaves a socket for [`Gate::connected`]: the receiving end of its
/// commands and the token its disconnect cancels. (Extensions must be `Clone`.)
#[derive(Clone)]
struct Prepared(Arc<std::sync::Mutex<Option<PreparedParts>>>);

type PreparedParts = (mpsc::Receiver<Command>, CancellationToken);

/// Sets the handlers of a socket let in, while the connect middleware runs: before
/// socket.io puts the socket in its namespace, so before any packet can reach it. Events that
/// come before its task starts wait in the command queue, and a disconnect at any time
/// after this cancels the task's token. (Set in the connect handler, which socket.io spawns
/// once the socket is connected, they would miss what comes first: an event is dropped, and
/// a disconnect leaves the task running and the slot taken.) If the connection fails after
/// this, the socket is dropped with its handlers and what they hold; no slot was taken.
fn prepare(socket: &SocketRef, token: &CancellationToken) {
    let (commands, command_receiver) = mpsc::channel(session::COMMAND_QUEUE);
    // Cancelled when the socket disconnects or the notifier stops.
    let closed = token.child_token();
    socket.on_disconnect({
        let closed = closed.clone();
        move || {
            closed.cancel();
            std::future::ready(())
        }
    });
    socket.on(
        SUBSCRIBE_EVENT,
        on_command(commands.clone(), Command::Subscribe),
    );
    socket.on(
        UNSUBSCRIBE_EVENT,
        on_command(commands, Command::Unsubscribe),
    );
    let parts = (command_receiver, closed);
    socket
        .extensions
        .insert(Prepared(Arc::new(std::sync::Mutex::new(Some(parts)))));
}

/// The handler of `subscribe` or `unsubscribe`: hands the request to the socket's task,
/// which answers it in order with everything else it sends.
fn on_command(
    commands: mpsc::Sender<Command>,
    make: fn(Subscription, Reply) -> Command,
) -> impl Fn(TryData<Subscription>, AckSender) -> std::future::Ready<()> + Clone + Send + Sync + 'static
{
    move |TryData(subscription): TryData<Subscription>, ack: AckSender| {
        match subscription {
            Ok(subscription) => {
                // Closed: the socket's task has ended because the socket is going away, and
                // there is no one to answer.
                if let Err(mpsc::error::TrySendError::Full(command)) =
                    commands.try_send(make(subscription, Reply::Ack(ack)))
                {
                    command
                        .into_reply()
                        .send(&Ack::refused(
                            protocol::ErrorCode::Busy,
                            "this socket has too many requests waiting; wait for their answers",
                        ))
                        .ok();
                }
            }
            Err(error) => {
                ack.send(&Ack::refused(
                    protocol::ErrorCode::InvalidRequest,
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
    runtime::readyz(&http.client).await
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
                let error = protocol::store::ApiError::new(
                    protocol::ErrorCode::OriginNotAllowed,
                    "this Origin is not in GORGON_ALLOWED_ORIGINS",
                );
                return stream::refusal(error);
            }
        }
    }
    next.run(request).await
}
