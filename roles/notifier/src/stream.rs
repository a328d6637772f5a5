//! Outputs as Server-Sent Events: `GET /v1/topologies/{t}/stream` (every node, nodes made
//! later too) and `GET /v1/topologies/{t}/nodes/{n}/stream`, for clients that speak plain
//! HTTP (`curl -N`, a browser's `EventSource`).
//!
//! A stream is a session like a socket's (`session.rs`: the same ordering, gap filling and
//! `resync`), opened by its request: the token from `Authorization: Bearer`, the same scopes,
//! connection limit and Origin check. Its first event is `positions` (per node, the seq its
//! outputs start after); each `output` event's id is `node:seq`. A client resumes with
//! `Last-Event-ID` (`node:seq`, or several joined by commas: each node after its seq, the
//! others from now) or `?after_seq=N` (every node after N), as `after_seq` does over
//! socket.io.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use protocol::notify::{AfterSeq, Subscription};
use protocol::store::ApiError;
use protocol::ErrorCode;
use serde::Deserialize;
use socketioxide::socket::Sid;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::session::{self, Command, Outlet, Reply, Session};
use crate::{Gate, Slot};

/// Events a stream's body may hold before its session waits for the client to read.
const STREAM_BUFFER: usize = 256;

/// What the stream routes share.
pub struct Streams {
    pub gate: Arc<Gate>,
    pub shared: Arc<session::Shared>,
    /// Live batches a session may hold before the hub marks it behind.
    pub backlog: usize,
    /// Cancelled when the notifier stops: every stream ends.
    pub token: CancellationToken,
    /// How often a stream sends a comment (the ping interval), so that proxies keep it open
    /// and a client that has gone is found: a write to its closed connection fails, or the
    /// listener's `TCP_USER_TIMEOUT` drops one whose data is not read.
    pub keep_alive: Duration,
}

/// The routes of both streams.
pub fn routes(streams: Streams) -> Router {
    Router::new()
        .route("/v1/topologies/{t}/stream", get(topology_stream))
        .route("/v1/topologies/{t}/nodes/{n}/stream", get(node_stream))
        .with_state(Arc::new(streams))
}

/// The query of both routes.
#[derive(Deserialize)]
struct StreamQuery {
    after_seq: Option<String>,
}

async fn topology_stream(
    State(streams): State<Arc<Streams>>,
    Path(topology): Path<String>,
    query: Result<Query<StreamQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    open(&streams, topology, None, query, &headers)
        .await
        .unwrap_or_else(refusal)
}

async fn node_stream(
    State(streams): State<Arc<Streams>>,
    Path((topology, node)): Path<(String, String)>,
    query: Result<Query<StreamQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    open(&streams, topology, Some(node), query, &headers)
        .await
        .unwrap_or_else(refusal)
}

/// Admits the request, starts its session and subscribes it: the stream, or why not.
async fn open(
    streams: &Streams,
    topology: String,
    node: Option<String>,
    query: Result<Query<StreamQuery>, QueryRejection>,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    let grants = streams.gate.admit(
        streams
            .gate
            .tokens
            .caller(authorization, "stream")
            .map(|caller| caller.grants),
        "send the header Authorization: Bearer <token>",
    )?;
    let last_event_id = headers
        .get("last-event-id")
        .map(|value| value.to_str().unwrap_or("\u{fffd}"));
    let Query(query) = query.map_err(|rejection| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            format!("the query string does not read: {}", rejection.body_text()),
        )
    })?;
    let after_seq = resume_point(last_event_id, query.after_seq.as_deref())
        .map_err(|message| ApiError::new(ErrorCode::InvalidRequest, message))?;

    let (events, body) = mpsc::channel(STREAM_BUFFER);
    let (commands, command_receiver) = mpsc::channel(session::COMMAND_QUEUE);
    let (answer, answered) = oneshot::channel();
    let subscription = Subscription {
        topology,
        node,
        after_seq,
    };
    commands
        .try_send(Command::Subscribe(subscription, Reply::Request(answer)))
        .expect("a new command queue has room");
    Session::start(
        Outlet::Stream(events, Sid::new()),
        grants,
        Arc::clone(&streams.shared),
        streams.backlog,
        Slot::take(&streams.gate),
        streams.token.child_token(),
        command_receiver,
    );
    let ack = answered.await.map_err(|_| {
        ApiError::new(
            ErrorCode::Unavailable,
            "the notifier is stopping; connect to another or try again",
        )
    })?;
    if !ack.ok {
        return Err(ack.error.unwrap_or_else(|| {
            ApiError::new(
                ErrorCode::Internal,
                "the subscription was refused without a reason",
            )
        }));
    }
    // The session lives while its command queue is open: the body holds the sender, so the
    // session ends when the client goes (or at its next send, whichever it notices first).
    let body = futures_util::stream::unfold((body, commands), |(mut body, commands)| async {
        let event = body.recv().await?;
        Some((Ok::<Event, Infallible>(event), (body, commands)))
    });
    Ok(Sse::new(body)
        .keep_alive(KeepAlive::new().interval(streams.keep_alive))
        .into_response())
}

/// Where the stream resumes: `Last-Event-ID` first (what a reconnecting `EventSource`
/// sends), else `after_seq`; neither: live outputs only.
fn resume_point(
    last_event_id: Option<&str>,
    after_seq: Option<&str>,
) -> Result<Option<AfterSeq>, String> {
    if let Some(ids) = last_event_id.filter(|ids| !ids.trim().is_empty()) {
        let mut per_node = BTreeMap::new();
        for id in ids.split(',') {
            let parsed = id.trim().rsplit_once(':').and_then(|(node, seq)| {
                protocol::validate_slug(node).ok()?;
                Some((node.to_owned(), seq.parse::<u64>().ok()?))
            });
            let Some((node, seq)) = parsed else {
                return Err(format!(
                    "Last-Event-ID must be node:seq, or several joined by commas (got {id:?})"
                ));
            };
            per_node.insert(node, seq);
        }
        return Ok(Some(AfterSeq::PerNode(per_node)));
    }
    after_seq
        .map(|seq| {
            seq.parse::<u64>()
                .map(AfterSeq::All)
                .map_err(|_| format!("after_seq must be a non-negative integer (got {seq:?})"))
        })
        .transpose()
}

/// An error as the REST API answers it: the status its code has, and `Retry-After: 1` with a
/// 503 (too many connections, Redis unreachable, the notifier stopping).
pub(crate) fn refusal(error: ApiError) -> Response {
    let status =
        StatusCode::from_u16(error.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut answer = (status, Json(serde_json::json!({ "error": error }))).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        answer.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from_static("1"),
        );
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_points() {
        let per_node = |pairs: &[(&str, u64)]| {
            Some(AfterSeq::PerNode(
                pairs.iter().map(|(n, s)| ((*n).to_owned(), *s)).collect(),
            ))
        };
        assert_eq!(resume_point(None, None), Ok(None));
        assert_eq!(resume_point(None, Some("7")), Ok(Some(AfterSeq::All(7))));
        assert_eq!(resume_point(Some("a:3"), None), Ok(per_node(&[("a", 3)])));
        // Last-Event-ID wins: it is what a reconnecting client last received.
        assert_eq!(
            resume_point(Some("a:3, b-2:10"), Some("7")),
            Ok(per_node(&[("a", 3), ("b-2", 10)]))
        );
        assert_eq!(
            resume_point(Some(" "), Some("0")),
            Ok(Some(AfterSeq::All(0)))
        );
        for bad in ["a", "a:", "a:-1", ":3", "A B:3", "a:3,,b:4"] {
            assert!(resume_point(Some(bad), None).is_err(), "{bad:?}");
        }
        assert!(resume_point(None, Some("x")).is_err());
    }
}
