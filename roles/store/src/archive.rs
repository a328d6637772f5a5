//! The MongoDB archive: every output event, one document each, in collection `outputs`.
//!
//! The store reads the partition-sharded output topic as a member of the `archive` group
//! (several stores share the work), writes each batch with one unordered `insert_many` per
//! chunk, and acknowledges the topic entries only after MongoDB acknowledged the write.
//! `_id` is the event's `msg_id`, so a write repeated after a crash or a lost reply inserts
//! nothing twice: a duplicate key counts as success. While MongoDB is down the batch is
//! retried with backoff and the outputs wait in Redis.
//!
//! Document schema (see `docs/archive.md`): `_id` (string, = `msg_id`), `topology`, `node`,
//! `seq` (Int64), `msg_id`, `input_id`, `injected_at` and `ts` (BSON dates), `ts_ms` (`ts`
//! as Int64 Unix milliseconds, which history filters on: some MongoDB-wire servers do not
//! compare dates), `data` (the output, JSON as BSON).

use std::time::Duration;

use mongodb::bson::{doc, Bson, DateTime, Document};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::{Acknowledgment, IndexOptions, WriteConcern};
use mongodb::{Collection, IndexModel};
use protocol::{names, OutputEvent, Timestamp};
use redpill::{Client, Entry, Group, StartFrom, Topic};
use serde_json::{Map, Number, Value};
use tokio_util::sync::CancellationToken;

/// The collection outputs are archived to.
pub const COLLECTION: &str = "outputs";

/// MongoDB's duplicate-key error code.
const DUPLICATE_KEY: i32 = 11000;

/// Entries read per topic shard per batch.
const ENTRIES_PER_SHARD: usize = 16;

/// How the archive writes.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The deployment's partition count (the output topic's shard count).
    pub partitions: u32,
    /// The most documents one `insert_many` carries.
    pub batch: usize,
    /// The write concern every write waits for.
    pub write_concern: WriteConcern,
    /// Outputs older than this many days are removed by MongoDB (a TTL index on `ts`);
    /// 0 keeps them.
    pub retention_days: u32,
    /// Test-only: abort the process after the first write MongoDB acknowledged, before the
    /// topic is (`GORGON_FAILPOINT=archive_after_write`), as a kill at the worst moment would.
    pub abort_after_write: bool,
}

/// The write concern named by `GORGON_ARCHIVE_WRITE_CONCERN`: `majority`, `journaled`
/// (`w: 1, j: true`, for a standalone server) or a number of members.
pub fn write_concern(name: &str) -> Result<WriteConcern, String> {
    match name {
        "majority" => Ok(WriteConcern::majority()),
        "journaled" => Ok(WriteConcern::builder()
            .w(Acknowledgment::Nodes(1))
            .journal(true)
            .build()),
        number => number
            .parse::<u32>()
            .ok()
            .filter(|members| *members > 0)
            .map(WriteConcern::nodes)
            .ok_or_else(|| {
                format!(
                    "GORGON_ARCHIVE_WRITE_CONCERN is {number:?}; use majority, journaled, or a \
                     number of members (1, 2, ...)"
                )
            }),
    }
}

/// Creates the indexes the archive and history queries use: `(topology, node, seq)` and
/// `ts` (a TTL index when outputs expire). Retries while MongoDB is unreachable.
pub async fn ensure_indexes(
    outputs: &Collection<Document>,
    retention_days: u32,
    token: &CancellationToken,
) -> anyhow::Result<()> {
    let by_node = IndexModel::builder()
        .keys(doc! {"topology": 1, "node": 1, "seq": 1})
        .options(
            IndexOptions::builder()
                .name("topology_node_seq".to_owned())
                .build(),
        )
        .build();
    let mut ts_options = IndexOptions::builder().name("ts".to_owned()).build();
    if retention_days > 0 {
        ts_options.expire_after = Some(Duration::from_secs(u64::from(retention_days) * 86_400));
    }
    let by_time = IndexModel::builder()
        .keys(doc! {"ts": 1})
        .options(ts_options)
        .build();
    let mut delay = Duration::from_millis(250);
    loop {
        match outputs
            .create_indexes([by_node.clone(), by_time.clone()])
            .await
        {
            Ok(_) => return Ok(()),
            Err(error) if is_unreachable(&error) => {
                tracing::warn!(%error, "MongoDB is unreachable; creating the archive indexes later");
            }
            Err(error) => {
                anyhow::bail!(
                    "could not create the archive indexes ({error}); if the retention changed, \
                     drop index \"ts\" of collection {COLLECTION} and start the store again"
                )
            }
        }
        tokio::select! {
            _ = token.cancelled() => return Ok(()),
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// Archives the output topic until `token` is cancelled.
pub async fn run(
    client: Client,
    outputs: Collection<Document>,
    settings: Settings,
    token: CancellationToken,
) -> anyhow::Result<()> {
    let topic = Topic::partitioned(&client, names::OUTPUT_TOPIC, settings.partitions);
    let group = loop {
        match topic
            .group(names::ARCHIVE_GROUP, StartFrom::Beginning)
            .await
        {
            Ok(group) => break group,
            Err(error) if error.is_retryable() => {
                tracing::warn!(%error, "could not join the archive group; retrying");
                tokio::select! {
                    _ = token.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
            Err(error) => return Err(error.into()),
        }
    };
    tracing::info!(
        batch = settings.batch,
        retention_days = settings.retention_days,
        "archiving outputs"
    );
    loop {
        let entries = tokio::select! {
            _ = token.cancelled() => return Ok(()),
            entries = group.read_wait(ENTRIES_PER_SHARD, Duration::from_secs(1)) => entries,
        };
        let entries = match entries {
            Ok(entries) => entries,
            Err(error) => {
                tracing::warn!(%error, "could not read the output topic; retrying");
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue;
            }
        };
        if entries.is_empty() {
            continue;
        }
        if !archive_batch(&group, &outputs, &settings, &entries, &token).await {
            return Ok(()); // Cancelled: the entries stay pending and go to another member.
        }
    }
}

/// Writes the events of `entries` until MongoDB acknowledges them, then acknowledges the
/// entries. Returns false when cancelled first.
async fn archive_batch(
    group: &Group,
    outputs: &Collection<Document>,
    settings: &Settings,
    entries: &[Entry],
    token: &CancellationToken,
) -> bool {
    let mut documents = Vec::new();
    for entry in entries {
        match serde_json::from_slice::<Vec<OutputEvent>>(&entry.body) {
            Ok(events) => documents.extend(events.iter().map(to_document)),
            Err(error) => {
                tracing::error!(id = %entry.id, %error, "skipping an output topic entry that is not a list of output events");
            }
        }
    }
    let mut delay = Duration::from_millis(100);
    for chunk in documents.chunks(settings.batch.max(1)) {
        loop {
            let started = std::time::Instant::now();
            match insert(outputs, chunk, &settings.write_concern).await {
                Ok(()) => {
                    metrics::histogram!(protocol::stats::ARCHIVE_WRITE)
                        .record(started.elapsed().as_secs_f64());
                    metrics::counter!(protocol::stats::ARCHIVED).increment(chunk.len() as u64);
                    break;
                }
                Err(error) => {
                    metrics::counter!("gorgon_archive_write_failures_total").increment(1);
                    tracing::warn!(error = %error, documents = chunk.len(), "archive write failed; retrying (the outputs wait in Redis)");
                    tokio::select! {
                        _ = token.cancelled() => return false,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
    if settings.abort_after_write && !documents.is_empty() {
        tracing::error!("failpoint archive_after_write: aborting before the topic is acknowledged");
        std::process::abort();
    }
    loop {
        match group.ack(entries).await {
            Ok(_) => return true,
            Err(error) => {
                tracing::warn!(%error, "could not acknowledge archived outputs; retrying");
                tokio::select! {
                    _ = token.cancelled() => return false,
                    _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                }
            }
        }
    }
}

/// One unordered `insert_many`; documents already archived (duplicate `_id`) count as
/// written, any other failure fails the call.
async fn insert(
    outputs: &Collection<Document>,
    documents: &[Document],
    write_concern: &WriteConcern,
) -> Result<(), mongodb::error::Error> {
    match outputs
        .insert_many(documents)
        .ordered(false)
        .write_concern(write_concern.clone())
        .await
    {
        Ok(_) => Ok(()),
        Err(error) => match error.kind.as_ref() {
            ErrorKind::InsertMany(failure)
                if failure.write_concern_error.is_none()
                    && failure
                        .write_errors
                        .as_ref()
                        .is_some_and(|errors| errors.iter().all(|e| e.code == DUPLICATE_KEY)) =>
            {
                Ok(())
            }
            ErrorKind::Write(WriteFailure::WriteError(write)) if write.code == DUPLICATE_KEY => {
                Ok(())
            }
            _ => Err(error),
        },
    }
}

/// Whether `error` says MongoDB could not be reached (worth waiting for).
pub fn is_unreachable(error: &mongodb::error::Error) -> bool {
    matches!(
        error.kind.as_ref(),
        ErrorKind::ServerSelection { .. }
            | ErrorKind::Io(_)
            | ErrorKind::ConnectionPoolCleared { .. }
    ) || error.contains_label(mongodb::error::RETRYABLE_WRITE_ERROR)
}

/// The archive document of `event`.
pub fn to_document(event: &OutputEvent) -> Document {
    doc! {
        "_id": &event.msg_id,
        "topology": &event.topology,
        "node": &event.node,
        "seq": event.seq as i64,
        "msg_id": &event.msg_id,
        "input_id": &event.input_id,
        "injected_at": DateTime::from_millis(event.injected_at.unix_ms()),
        "ts": DateTime::from_millis(event.ts.unix_ms()),
        "ts_ms": event.ts.unix_ms(),
        "data": json_to_bson(&event.data),
    }
}

/// The output event of an archive document, reading numbers leniently (a server may answer
/// Int32 for small integers); `None` for a document of another shape.
pub fn from_document(document: &Document) -> Option<OutputEvent> {
    let text = |key: &str| document.get_str(key).ok().map(str::to_owned);
    let time = |key: &str| match document.get(key)? {
        Bson::DateTime(time) => Some(Timestamp::from_unix_ms(time.timestamp_millis())),
        Bson::String(text) => Timestamp::parse(text),
        _ => None,
    };
    Some(OutputEvent {
        topology: text("topology")?,
        node: text("node")?,
        seq: integer(document.get("seq")?)?,
        msg_id: text("msg_id").or_else(|| text("_id"))?,
        input_id: text("input_id")?,
        injected_at: time("injected_at")?,
        ts: time("ts")?,
        data: document.get("data").map_or(Value::Null, bson_to_json),
    })
}

/// A non-negative integer, whatever its BSON width.
fn integer(value: &Bson) -> Option<u64> {
    match value {
        Bson::Int32(number) => u64::try_from(*number).ok(),
        Bson::Int64(number) => u64::try_from(*number).ok(),
        Bson::Double(number) if number.fract() == 0.0 && *number >= 0.0 => Some(*number as u64),
        _ => None,
    }
}

/// JSON as BSON: integers that fit i64 as Int64, other numbers as Double.
pub fn json_to_bson(value: &Value) -> Bson {
    match value {
        Value::Null => Bson::Null,
        Value::Bool(flag) => Bson::Boolean(*flag),
        Value::Number(number) => match number.as_i64() {
            Some(integer) => Bson::Int64(integer),
            None => Bson::Double(number.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(text) => Bson::String(text.clone()),
        Value::Array(items) => Bson::Array(items.iter().map(json_to_bson).collect()),
        Value::Object(map) => Bson::Document(
            map.iter()
                .map(|(key, value)| (key.clone(), json_to_bson(value)))
                .collect(),
        ),
    }
}

/// BSON as JSON, numbers of any width as JSON numbers, dates as RFC 3339 text.
pub fn bson_to_json(value: &Bson) -> Value {
    match value {
        Bson::Null | Bson::Undefined => Value::Null,
        Bson::Boolean(flag) => Value::Bool(*flag),
        Bson::Int32(number) => Value::from(*number),
        Bson::Int64(number) => Value::from(*number),
        Bson::Double(number) => Number::from_f64(*number).map_or(Value::Null, Value::Number),
        Bson::String(text) => Value::String(text.clone()),
        Bson::Array(items) => Value::Array(items.iter().map(bson_to_json).collect()),
        Bson::Document(document) => Value::Object(
            document
                .iter()
                .map(|(key, value)| (key.clone(), bson_to_json(value)))
                .collect::<Map<String, Value>>(),
        ),
        Bson::DateTime(time) => {
            Value::String(Timestamp::from_unix_ms(time.timestamp_millis()).to_string())
        }
        other => Value::String(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// An event becomes the documented document and reads back the same, also when the
    /// server answers small integers as Int32.
    #[test]
    fn documents_round_trip() {
        let event = OutputEvent {
            topology: "sensors".into(),
            node: "avg".into(),
            seq: 7,
            msg_id: "m1".into(),
            input_id: "i1".into(),
            injected_at: Timestamp::from_unix_ms(1_795_400_706_789),
            ts: Timestamp::from_unix_ms(1_795_400_706_790),
            data: json!({"mean": 21.5, "count": 3, "big": u64::MAX, "tags": ["a", null]}),
        };
        let mut document = to_document(&event);
        assert_eq!(document.get_str("_id").unwrap(), "m1");
        assert_eq!(document.get_i64("seq").unwrap(), 7);
        assert_eq!(
            document.get_datetime("ts").unwrap().timestamp_millis(),
            1_795_400_706_790
        );
        let back = from_document(&document).unwrap();
        assert_eq!(back.data["big"], json!(u64::MAX as f64));
        assert_eq!(back.data["count"], 3);
        assert_eq!(back.ts, event.ts);
        document.insert("seq", Bson::Int32(7));
        assert_eq!(from_document(&document).unwrap().seq, 7);
    }

    /// The write concern names.
    #[test]
    fn write_concern_names() {
        assert_eq!(write_concern("majority").unwrap(), WriteConcern::majority());
        assert_eq!(write_concern("journaled").unwrap().journal, Some(true));
        assert_eq!(write_concern("2").unwrap(), WriteConcern::nodes(2));
        assert!(write_concern("all")
            .unwrap_err()
            .contains("majority, journaled"));
    }
}
