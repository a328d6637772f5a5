//! Injects, and the dead letters of a topology.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use protocol::api::{DeadLetterList, DeadLetterView, Injected, InjectedMany, Replayed};
use protocol::{partition_of, Envelope, ErrorCode, Timestamp};
use redpill::{DeadLetter, PushedOnce, Queue};
use serde::Deserialize;
use serde_json::Value;
use utoipa::IntoParams;

use super::{write_access, Path, Query};
use crate::auth::Caller;
use crate::body::{self, Format};
use crate::error::{ApiResult, Failure};
use crate::state::AppState;

/// The most dead letters read from each partition per request.
const DEAD_LETTERS_PER_PARTITION: u64 = 1000;
/// The longest `Idempotency-Key` accepted, in bytes.
const MAX_IDEMPOTENCY_KEY: usize = 255;
/// The response header that marks an answer repeated from an earlier request with the same
/// `Idempotency-Key`.
const REPLAYED_HEADER: &str = "idempotent-replayed";

/// Injects one message (`application/json`) or many (`application/x-ndjson`, one per line,
/// all or none). 202 with the ids; 429 with `Retry-After` while the node's partition queue
/// is over its high-water mark. Accepted while no processor runs: messages wait in the queue.
/// With an `Idempotency-Key` header the request is queued once: a repeat of it (same key,
/// node and body) within `GORGON_IDEMPOTENCY_TTL_S` is answered with the first one's ids and
/// queues nothing; the same key with another body is 422 `idempotency_key_reused`.
#[utoipa::path(post, path = "/v1/topologies/{t}/nodes/{n}/messages", tag = "messages",
    params(("t" = String, Path, description = "topology id"), ("n" = String, Path, description = "node id")),
    request_body(content = Object, description = "a JSON message, or ndjson with one per line",
                 content_type = "application/json"),
    responses((status = 202, description = r#"{"msg_id"} for a JSON message, {"msg_ids": [...]} for ndjson"#, body = Injected),
              (status = 404, description = "not_found"), (status = 429, description = "backlog over the high-water mark")))]
pub async fn inject(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((topology, node)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    write_access(&caller, &topology)?;
    let format = body::format_of(&headers, &[Format::Json, Format::Ndjson])?;
    let idempotency_key = idempotency_key(&headers)?;
    let bytes = body::read(body, &state.0.limits).await?;
    let messages: Vec<Value> = match format {
        Format::Ndjson => body::ndjson(&bytes, &state.0.limits)?,
        _ => vec![body::json(&bytes, &state.0.limits, "the message")?],
    };
    if !state.has_node(&topology, &node).await? {
        let message = if state.read_topology(&topology).await?.is_some() {
            format!("topology {topology:?} has no node {node:?}")
        } else {
            format!("there is no topology {topology:?}")
        };
        return Err(Failure::not_found(message));
    }
    let now = Timestamp::now().unix_ms();
    let envelopes: Vec<(String, Vec<u8>)> = messages
        .into_iter()
        .map(|data| {
            let id = redpill::new_id();
            let bytes = Envelope::inject(&topology, &node, &id, now, data).to_bytes();
            (id, bytes)
        })
        .collect();
    let partition = partition_of(&topology, &node, state.0.settings.partitions);
    let queue = layout::input_queue(&state.0.client, partition)
        .with_bound(state.0.settings.queue_high_water);
    let batch: Vec<(&str, &[u8])> = envelopes
        .iter()
        .map(|(id, body)| (id.as_str(), body.as_slice()))
        .collect();
    let pushed = match idempotency_key {
        None => queue.push_with_ids(&batch).await.map(|_| None),
        Some(key) => {
            let fingerprint = fingerprint(format, &bytes);
            let ids: Vec<&str> = envelopes.iter().map(|(id, _)| id.as_str()).collect();
            let record = format!("{fingerprint} {}", ids.join(" "));
            let scoped = format!("{topology}/{node}/{key}");
            let ttl = state.0.settings.idempotency_ttl;
            match queue.push_once(&scoped, ttl, &record, &batch).await {
                Ok(PushedOnce::Queued(_)) => Ok(None),
                Ok(PushedOnce::Repeated(record)) => {
                    let mut fields = record.split(' ');
                    if fields.next() != Some(fingerprint.as_str()) {
                        return Err(Failure::new(
                            ErrorCode::IdempotencyKeyReused,
                            format!(
                                "Idempotency-Key {key:?} was used for another request to node \
                                 {node:?} in the last {} s; use a new key for a new request",
                                ttl.as_secs()
                            ),
                        ));
                    }
                    Ok(Some(fields.map(str::to_owned).collect::<Vec<_>>()))
                }
                Err(error) => Err(error),
            }
        }
    };
    let (ids, replayed) = match pushed {
        Ok(None) => (envelopes.into_iter().map(|(id, _)| id).collect(), false),
        Ok(Some(ids)) => (ids, true),
        Err(redpill::Error::Full { len, max, .. }) => {
            metrics::counter!("gorgon_inject_backlog_refusals_total").increment(1);
            return Err(Failure {
                retry_after: Some(1),
                ..Failure::new(
                    ErrorCode::Backlog,
                    format!(
                        "node {node:?}'s partition holds {len} messages, at its high-water \
                         mark of {max} (GORGON_QUEUE_HIGH_WATER); retry after the backlog drains"
                    ),
                )
            });
        }
        Err(error) => return Err(error.into()),
    };
    let count = ids.len() as u64;
    let mut answer = match format {
        Format::Ndjson => {
            (StatusCode::ACCEPTED, Json(InjectedMany { msg_ids: ids })).into_response()
        }
        _ => {
            let msg_id = ids.into_iter().next().unwrap_or_default();
            (StatusCode::ACCEPTED, Json(Injected { msg_id })).into_response()
        }
    };
    if replayed {
        metrics::counter!("gorgon_inject_repeats_total").increment(1);
        answer
            .headers_mut()
            .insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    } else {
        metrics::counter!(protocol::stats::MESSAGES_INJECTED).increment(count);
    }
    Ok(answer)
}

/// The request's `Idempotency-Key`: 1 to 255 visible ASCII characters, else 400
/// `invalid_idempotency_key`.
fn idempotency_key(headers: &HeaderMap) -> ApiResult<Option<&str>> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value.to_str().unwrap_or_default();
    if key.is_empty()
        || key.len() > MAX_IDEMPOTENCY_KEY
        || !key.bytes().all(|byte| byte.is_ascii_graphic())
    {
        return Err(Failure::new(
            ErrorCode::InvalidIdempotencyKey,
            format!(
                "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters \
                 (a UUID is a good key)"
            ),
        ));
    }
    Ok(Some(key))
}

/// What identifies a request's body for its `Idempotency-Key`: SHA-256 of its format and bytes,
/// in hex.
fn fingerprint(format: Format, bytes: &[u8]) -> String {
    use sha2::{Digest as _, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(format.media_type().as_bytes());
    hasher.update(b"\n");
    hasher.update(bytes);
    hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Query of the dead-letter routes.
#[derive(Deserialize, IntoParams)]
pub struct DeadQuery {
    /// Only those of this node.
    #[serde(default)]
    node: Option<String>,
}

/// Lists the topology's dead-lettered messages.
#[utoipa::path(get, path = "/v1/topologies/{t}/dead-letters", tag = "messages",
    params(("t" = String, Path, description = "topology id"), DeadQuery),
    responses((status = 200, body = DeadLetterList), (status = 404, description = "not_found")))]
pub async fn dead_letters(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(topology): Path<String>,
    Query(query): Query<DeadQuery>,
) -> ApiResult<Json<DeadLetterList>> {
    if protocol::validate_slug(&topology).is_err() || !caller.grants.reads(&topology) {
        return Err(Failure::no_topology(&topology));
    }
    let found = topology_dead_letters(&state, &topology, query.node.as_deref()).await?;
    require_letters_or_topology(&state, &topology, &found).await?;
    let items = found
        .into_iter()
        .flat_map(|(_, letters)| letters)
        .map(|(node, data, letter)| DeadLetterView {
            id: letter.id,
            node,
            error: letter.error,
            attempts: letter.attempts,
            at: Timestamp::from_unix_ms(letter.at_ms as i64).to_string(),
            data,
        })
        .collect();
    Ok(Json(DeadLetterList { items }))
}

/// Puts the topology's dead letters (or one node's) back on their queues, with fresh attempt
/// counts. A message for a node that no longer exists is dead-lettered again as `node_deleted`.
#[utoipa::path(post, path = "/v1/topologies/{t}/dead-letters/replay", tag = "messages",
    params(("t" = String, Path, description = "topology id"), DeadQuery),
    responses((status = 200, body = Replayed), (status = 404, description = "not_found")))]
pub async fn replay(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(topology): Path<String>,
    Query(query): Query<DeadQuery>,
) -> ApiResult<Json<Replayed>> {
    write_access(&caller, &topology)?;
    let found = topology_dead_letters(&state, &topology, query.node.as_deref()).await?;
    require_letters_or_topology(&state, &topology, &found).await?;
    let mut replayed = Vec::new();
    for (queue, letters) in found {
        let letters: Vec<DeadLetter> = letters.into_iter().map(|(_, _, letter)| letter).collect();
        replayed.extend(queue.replay_dead_letters(&letters).await?);
    }
    Ok(Json(Replayed { replayed }))
}

/// 404 for a topology that does not exist and has no dead letters. Dead letters outlive
/// their topology (a deleted topology's queued messages are dead-lettered as `node_deleted`),
/// so those of a deleted one are still listed and replayed.
async fn require_letters_or_topology<T>(
    state: &AppState,
    topology: &str,
    found: &[T],
) -> ApiResult<()> {
    if found.is_empty() && state.read_topology(topology).await?.is_none() {
        return Err(Failure::no_topology(topology));
    }
    Ok(())
}

/// The dead letters of `topology` (and `node`, if given) in every partition, with the node
/// and message of each, grouped by queue. Partitions are read one after another.
#[allow(clippy::type_complexity)]
async fn topology_dead_letters(
    state: &AppState,
    topology: &str,
    node: Option<&str>,
) -> ApiResult<Vec<(Queue, Vec<(String, Option<Value>, DeadLetter)>)>> {
    let partitions: Vec<u32> = match node {
        Some(node) => vec![partition_of(topology, node, state.0.settings.partitions)],
        None => (0..state.0.settings.partitions).collect(),
    };
    let mut found = Vec::new();
    for partition in partitions {
        let queue = layout::input_queue(&state.0.client, partition);
        let letters = queue.dead_letters(0, DEAD_LETTERS_PER_PARTITION).await?;
        let mine: Vec<_> = letters
            .into_iter()
            .filter_map(|letter| {
                let envelope: Envelope = serde_json::from_slice(&letter.body).ok()?;
                if envelope.topology != topology || node.is_some_and(|node| node != envelope.node) {
                    return None;
                }
                let data = match envelope.body {
                    protocol::Body::Message(message) => Some(message.data),
                    _ => None,
                };
                Some((envelope.node, data, letter))
            })
            .collect();
        if !mine.is_empty() {
            found.push((queue, mine));
        }
    }
    Ok(found)
}
