//! The MongoDB archive: every output event, one document each, in collection `outputs`.
//!
//! The store reads the partition-sharded output topic as a member of the `archive` group
//! (several stores share the work), writes each batch with one unordered `insert_many` per
//! chunk, and acknowledges the topic entries only after MongoDB acknowledged the write.
//! `_id` is the event's `msg_id`, so a write repeated after a crash or a lost reply inserts
//! nothing twice: a duplicate key counts as success. While MongoDB is down the batch is
//! retried with backoff and the outputs wait in Redis.
//!
//! Memory: a batch reads rounds of at most one entry per topic shard until its entries hold
//! [`READ_BUDGET_BYTES`] (or [`MAX_READ_ROUNDS`] rounds), and turns them into documents one
//! write (`GORGON_ARCHIVE_BATCH` documents) at a time, each document kept only as its BSON
//! bytes; so a batch never holds more than the budget, one round and one write.
//!
//! Pace: a batch that emptied the topic is followed by a pause (`GORGON_ARCHIVE_LINGER_MS`,
//! 50 ms by default) before the next read, so that under a steady trickle of outputs a read
//! round (one XREADGROUP per shard) and an `insert_many` carry many outputs, not one each.
//! The archive then lags the outputs by up to that pause more; a batch that stopped at its
//! budget or its rounds is followed by the next at once.
//!
//! Robustness: each output of an entry is decoded on its own (the entry is split into raw
//! JSON values first, which has no depth limit), so one output the archive cannot carry
//! never costs the others. An output whose `data` nests deeper than [`MAX_DATA_DEPTH`]
//! levels, does not convert to BSON, or is refused by MongoDB as BSON is archived with
//! `data` as its JSON text and `data_as_text: true`; one that is not an output event, is
//! larger than MongoDB's 16 MiB even so, or is refused [`REFUSALS`] times is not archived,
//! and is logged at ERROR with its `msg_id` and counted in
//! `gorgon_archive_outputs_skipped_total`.
//!
//! Document schema (see `docs/archive.md`): `_id` (string, = `msg_id`), `topology`, `node`,
//! `seq` (Int64), `msg_id`, `input_id`, `injected_at` and `ts` (BSON dates), `ts_ms` (`ts`
//! as Int64 Unix milliseconds, which history filters on: some MongoDB-wire servers do not
//! compare dates), `data` (the output, JSON as BSON), `data_as_text` (only when true).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use mongodb::bson::{doc, Bson, DateTime, Document, RawDocumentBuf};
use mongodb::error::{ErrorKind, IndexedWriteError, WriteFailure};
use mongodb::options::{Acknowledgment, IndexOptions, WriteConcern};
use mongodb::{Collection, IndexModel};
// `data` up to the processors' bound on outputs is archived as BSON; deeper data (made before
// processors had the bound) as its JSON text, which keeps every history reply within the 128
// levels serde_json reads (a reply wraps `data` in four more).
use protocol::{json_text_depth, OutputEvent, Timestamp, MAX_DATA_DEPTH};
use redpill::{Client, Entry, Group, StartFrom};
use serde_json::value::RawValue;
use serde_json::{Map, Number, Value};
use tokio_util::sync::CancellationToken;

/// The collection outputs are archived to.
pub const COLLECTION: &str = "outputs";

/// The name the store gives the index on `(topology, node, seq)`.
pub const NODE_INDEX: &str = "topology_node_seq";

/// The name the store gives the index on `(topology, input_id)`: the outputs of one inject.
pub const INPUT_INDEX: &str = "topology_input_id";

/// The name the store gives the index on `ts` (a TTL index when outputs expire).
pub const TIME_INDEX: &str = "ts";

/// The field that marks a document whose `data` is the output's JSON text.
pub const DATA_AS_TEXT: &str = "data_as_text";

/// MongoDB's largest document (`maxBsonObjectSize`).
pub const MAX_DOCUMENT_BYTES: usize = 16 * 1024 * 1024;

/// A batch stops reading once its entries hold this many bytes (of JSON).
pub const READ_BUDGET_BYTES: usize = 8 * 1024 * 1024;

/// The most rounds one batch reads; a round takes at most one entry per topic shard.
pub const MAX_READ_ROUNDS: usize = 16;

/// How many times MongoDB may refuse a document (not counting a duplicate key) before it is
/// set aside, the first refusal as BSON, the others as JSON text, with the write backoff
/// between them (about 20 s in all).
pub const REFUSALS: u32 = 10;

/// MongoDB's duplicate-key error code.
const DUPLICATE_KEY: i32 = 11000;

/// MongoDB's error code for a collection (or database) that does not exist.
const NAMESPACE_NOT_FOUND: i32 = 26;

/// Counter: archive writes that failed and are retried.
const WRITE_FAILURES: &str = "gorgon_archive_write_failures_total";

/// Counter: outputs archived with `data` as JSON text.
const OUTPUTS_AS_TEXT: &str = "gorgon_archive_outputs_as_text_total";

/// Counter, by `reason`: outputs that are not archived (`unreadable`, `too_large`,
/// `refused`); an entry that is not a list counts once as `unreadable`.
const OUTPUTS_SKIPPED: &str = "gorgon_archive_outputs_skipped_total";

/// How the archive writes.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The deployment's partition count (the output topic's shard count).
    pub partitions: u32,
    /// The most documents one `insert_many` carries.
    pub batch: usize,
    /// The write concern every write waits for.
    pub write_concern: WriteConcern,
    /// The pause after a batch that emptied the topic (zero: none).
    pub linger: Duration,
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

/// Makes sure the indexes the archive and history queries use exist: `(topology, node,
/// seq)`, `(topology, input_id)` and `ts` (a TTL index when outputs expire). An index
/// already on the same keys is used whatever its name (MongoDB refuses a second index on the
/// same keys, and nx-27017 names indexes its own way); the others are created under
/// [`NODE_INDEX`], [`INPUT_INDEX`] and [`TIME_INDEX`]. Retries while MongoDB is
/// unreachable; fails when the `ts` index does not expire as `retention_days` says.
pub async fn ensure_indexes(
    outputs: &Collection<Document>,
    retention_days: u32,
    token: &CancellationToken,
) -> anyhow::Result<()> {
    let expire_after =
        (retention_days > 0).then(|| Duration::from_secs(u64::from(retention_days) * 86_400));
    let mut delay = Duration::from_millis(250);
    loop {
        match ensure_indexes_once(outputs, expire_after).await {
            Ok(Ok(names)) => {
                tracing::info!(indexes = ?names, "archive indexes in place");
                return Ok(());
            }
            Ok(Err(mismatch)) => anyhow::bail!(mismatch),
            Err(error) if is_unreachable(&error) => {
                tracing::warn!(%error, "MongoDB is unreachable; creating the archive indexes later");
            }
            Err(error) => anyhow::bail!("could not create the archive indexes: {error}"),
        }
        tokio::select! {
            _ = token.cancelled() => return Ok(()),
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// One pass of [`ensure_indexes`]: the names of the three indexes, or what is wrong with the
/// `ts` index.
async fn ensure_indexes_once(
    outputs: &Collection<Document>,
    expire_after: Option<Duration>,
) -> Result<Result<Vec<String>, String>, mongodb::error::Error> {
    let mut ts_options = IndexOptions::builder().name(TIME_INDEX.to_owned()).build();
    ts_options.expire_after = expire_after;
    let wanted = [
        IndexModel::builder()
            .keys(doc! {"topology": 1, "node": 1, "seq": 1})
            .options(IndexOptions::builder().name(NODE_INDEX.to_owned()).build())
            .build(),
        IndexModel::builder()
            .keys(doc! {"topology": 1, "input_id": 1})
            .options(IndexOptions::builder().name(INPUT_INDEX.to_owned()).build())
            .build(),
        IndexModel::builder()
            .keys(doc! {"ts": 1})
            .options(ts_options)
            .build(),
    ];
    let existing = list_indexes(outputs).await?;
    let mut names = Vec::new();
    let mut missing = Vec::new();
    for model in wanted {
        let found = existing.iter().find(|index| {
            index
                .get_document("key")
                .is_ok_and(|keys| same_keys(keys, &model.keys))
        });
        let Some(index) = found else {
            names.push(
                model
                    .options
                    .as_ref()
                    .and_then(|options| options.name.clone())
                    .unwrap_or_default(),
            );
            missing.push(model);
            continue;
        };
        let name = index.get_str("name").unwrap_or("(unnamed)").to_owned();
        if model.keys.contains_key("ts") {
            let has = index.get("expireAfterSeconds").and_then(number);
            let wants = expire_after.map(|expire| expire.as_secs() as f64);
            if has != wants {
                let has = has.map_or("never expires".to_owned(), |seconds| {
                    format!("expires after {seconds} s")
                });
                let wants = wants.map_or("keeps outputs for ever".to_owned(), |seconds| {
                    format!("asks for expiry after {seconds} s")
                });
                return Ok(Err(format!(
                    "index {name:?} on ts of collection {COLLECTION} {has}, but \
                     GORGON_ARCHIVE_RETENTION_DAYS {wants}; drop it \
                     (db.{COLLECTION}.dropIndex({name:?})) and start the store again"
                )));
            }
        }
        names.push(name);
    }
    if !missing.is_empty() {
        outputs.create_indexes(missing).await?;
    }
    Ok(Ok(names))
}

/// The indexes of `outputs` as the server describes them (`key`, `name`, options); none
/// when the collection does not exist yet.
async fn list_indexes(
    outputs: &Collection<Document>,
) -> Result<Vec<Document>, mongodb::error::Error> {
    // A command rather than the driver's `list_indexes`, which fails on an option of a type
    // it does not expect; a collection has at most 64 indexes, all in the first batch.
    let database = outputs.client().database(&outputs.namespace().db);
    match database
        .run_command(doc! {"listIndexes": outputs.name()})
        .await
    {
        Ok(reply) => Ok(reply
            .get_document("cursor")
            .ok()
            .and_then(|cursor| cursor.get_array("firstBatch").ok())
            .map(|batch| {
                batch
                    .iter()
                    .filter_map(|index| index.as_document().cloned())
                    .collect()
            })
            .unwrap_or_default()),
        Err(error)
            if matches!(error.kind.as_ref(),
                ErrorKind::Command(command) if command.code == NAMESPACE_NOT_FOUND) =>
        {
            Ok(Vec::new())
        }
        Err(error) => Err(error),
    }
}

/// Whether two index key patterns name the same fields in the same order and directions
/// (`1`, `1.0` and `1i64` alike: shells write numbers as doubles).
fn same_keys(a: &Document, b: &Document) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b.iter())
            .all(|((a_key, a_value), (b_key, b_value))| {
                a_key == b_key && number(a_value).is_some() && number(a_value) == number(b_value)
            })
}

/// A BSON number of any width as a double.
fn number(value: &Bson) -> Option<f64> {
    match value {
        Bson::Int32(number) => Some(f64::from(*number)),
        Bson::Int64(number) => Some(*number as f64),
        Bson::Double(number) => Some(*number),
        _ => None,
    }
}

/// Archives the output topic until `token` is cancelled.
pub async fn run(
    client: Client,
    outputs: Collection<Document>,
    settings: Settings,
    token: CancellationToken,
) -> anyhow::Result<()> {
    // Documents go to MongoDB as the BSON bytes they were built as, one buffer each.
    let outputs = outputs.clone_with_type::<RawDocumentBuf>();
    let topic = layout::output_topic(&client, settings.partitions);
    let group = loop {
        match topic
            .group(layout::ARCHIVE_GROUP, StartFrom::Beginning)
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
        read_budget_bytes = READ_BUDGET_BYTES,
        "archiving outputs"
    );
    loop {
        let entries = tokio::select! {
            _ = token.cancelled() => return Ok(()),
            entries = read_batch(&group) => entries,
        };
        let (entries, drained) = match entries {
            Ok(read) => read,
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
        if drained && !settings.linger.is_zero() {
            tokio::select! {
                _ = token.cancelled() => return Ok(()),
                _ = tokio::time::sleep(settings.linger) => {}
            }
        }
    }
}

/// The next batch of entries: rounds of at most one entry per shard, so every shard gets
/// its turn, until a round finds nothing, the entries hold [`READ_BUDGET_BYTES`], or
/// [`MAX_READ_ROUNDS`] rounds were read. Waits up to a second for the first round. With the
/// entries, whether they emptied the topic (a round after the first found nothing, or a read
/// failed): only then does the archive pause before reading again.
async fn read_batch(group: &Group) -> Result<(Vec<Entry>, bool), redpill::Error> {
    let mut entries = group.read_wait(1, Duration::from_secs(1)).await?;
    let mut bytes: usize = entries.iter().map(|entry| entry.body.len()).sum();
    let mut rounds = 1;
    while !entries.is_empty() && bytes < READ_BUDGET_BYTES && rounds < MAX_READ_ROUNDS {
        // Entries already read are this member's now: an error ends the batch, it does not
        // drop them.
        let more = match group.read(1).await {
            Ok(more) => more,
            Err(error) => {
                tracing::warn!(%error, "could not read more of the output topic; archiving what was read");
                return Ok((entries, true));
            }
        };
        if more.is_empty() {
            return Ok((entries, true));
        }
        bytes += more.iter().map(|entry| entry.body.len()).sum::<usize>();
        entries.extend(more);
        rounds += 1;
    }
    // Stopped by the budget or the rounds (more may be waiting), or nothing was read.
    Ok((entries, false))
}

/// An output ready to write: its document as BSON bytes, and where it came from.
struct Prepared<'a> {
    /// The output's `msg_id`, for the log.
    msg_id: String,
    /// The archive document.
    document: RawDocumentBuf,
    /// The output event as it is in the topic entry.
    event: &'a RawValue,
    /// The topic entry's id, for the log.
    entry: &'a str,
    /// The event's position in the entry, for the log.
    position: usize,
    /// Whether `document` holds `data` as JSON text already.
    as_text: bool,
}

/// Writes the events of `entries`, one chunk of documents at a time, until MongoDB
/// acknowledged them (or refused some for good), then acknowledges the entries. Returns
/// false when cancelled first.
async fn archive_batch(
    group: &Group,
    outputs: &Collection<RawDocumentBuf>,
    settings: &Settings,
    entries: &[Entry],
    token: &CancellationToken,
) -> bool {
    let batch = settings.batch.max(1);
    let mut chunk: Vec<Prepared<'_>> = Vec::new();
    let mut wrote = false;
    for entry in entries {
        for prepared in prepare_entry(entry) {
            chunk.push(prepared);
            if chunk.len() >= batch {
                if !write_chunk(outputs, settings, &mut chunk, token).await {
                    return false;
                }
                wrote = true;
            }
        }
    }
    if !chunk.is_empty() {
        if !write_chunk(outputs, settings, &mut chunk, token).await {
            return false;
        }
        wrote = true;
    }
    if settings.abort_after_write && wrote {
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

/// The documents of one topic entry, a JSON list of output events. The list is split into
/// raw values first (which has no depth limit), so each output is decoded on its own and one
/// that cannot be archived costs none of the others.
fn prepare_entry(entry: &Entry) -> Vec<Prepared<'_>> {
    let events: Vec<&RawValue> = match serde_json::from_slice(&entry.body) {
        Ok(events) => events,
        Err(error) => {
            tracing::error!(entry = %entry.id, %error, "skipping an output topic entry that is not a JSON list");
            metrics::counter!(OUTPUTS_SKIPPED, "reason" => "unreadable").increment(1);
            return Vec::new();
        }
    };
    events
        .into_iter()
        .enumerate()
        .filter_map(|(position, event)| prepare(event, &entry.id, position))
        .collect()
}

/// The document of one output event (`position` in entry `entry`): `data` as BSON when it
/// can be, else as JSON text; `None`, logged and counted, when it cannot be archived.
fn prepare<'a>(event: &'a RawValue, entry: &'a str, position: usize) -> Option<Prepared<'a>> {
    let text = event.get();
    // The event object is one level more than its data.
    let depth = json_text_depth(text.as_bytes());
    let why = if depth <= MAX_DATA_DEPTH + 1 {
        let parsed = match serde_json::from_str::<OutputEvent>(text) {
            Ok(parsed) => parsed,
            Err(error) => {
                unreadable(entry, position, &error.to_string());
                return None;
            }
        };
        let msg_id = parsed.msg_id.clone();
        match RawDocumentBuf::from_document(&into_document(parsed)) {
            Ok(document) if document.as_bytes().len() <= MAX_DOCUMENT_BYTES => {
                return Some(Prepared {
                    msg_id,
                    document,
                    event,
                    entry,
                    position,
                    as_text: false,
                });
            }
            Ok(document) => format!(
                "its document is {} bytes as BSON, more than MongoDB's {MAX_DOCUMENT_BYTES}",
                document.as_bytes().len()
            ),
            Err(error) => format!("it does not convert to BSON ({error})"),
        }
    } else {
        format!(
            "its data nests {} levels deep, more than the {MAX_DATA_DEPTH} archived as BSON",
            depth - 1
        )
    };
    as_text(event, entry, position, &why)
}

/// The document of `event` with `data` as its JSON text and `data_as_text: true`, logged
/// at WARN and counted (`why` says why); `None`, logged at ERROR and counted, when even that
/// cannot be archived.
fn as_text<'a>(
    event: &'a RawValue,
    entry: &'a str,
    position: usize,
    why: &str,
) -> Option<Prepared<'a>> {
    let (msg_id, document) = match text_document(event) {
        Ok(prepared) => prepared,
        Err(error) => {
            unreadable(entry, position, &error);
            return None;
        }
    };
    let bytes = document.as_bytes().len();
    if bytes > MAX_DOCUMENT_BYTES {
        tracing::error!(%msg_id, entry, position, bytes, reason = why, "an output is larger than MongoDB's largest document even with its data as JSON text; it is not archived");
        metrics::counter!(OUTPUTS_SKIPPED, "reason" => "too_large").increment(1);
        return None;
    }
    tracing::warn!(%msg_id, entry, position, reason = why, "archiving an output with its data as JSON text (data_as_text)");
    metrics::counter!(OUTPUTS_AS_TEXT).increment(1);
    Some(Prepared {
        msg_id,
        document,
        event,
        entry,
        position,
        as_text: true,
    })
}

/// Logs and counts an output that is not an output event.
fn unreadable(entry: &str, position: usize, error: &str) {
    tracing::error!(
        entry,
        position,
        error,
        "skipping an output topic entry's output that is not an output event"
    );
    metrics::counter!(OUTPUTS_SKIPPED, "reason" => "unreadable").increment(1);
}

/// `event`'s `msg_id` and document with `data` as its JSON text, however deep it is: the
/// event is split into raw fields, and only the others are decoded.
fn text_document(event: &RawValue) -> Result<(String, RawDocumentBuf), String> {
    let fields: HashMap<&str, &RawValue> =
        serde_json::from_str(event.get()).map_err(|error| error.to_string())?;
    let mut shallow = Map::new();
    for (name, value) in &fields {
        let value = if *name == "data" {
            Value::Null
        } else {
            serde_json::from_str(value.get()).map_err(|error| format!("field {name}: {error}"))?
        };
        shallow.insert((*name).to_owned(), value);
    }
    let parsed: OutputEvent =
        serde_json::from_value(Value::Object(shallow)).map_err(|error| error.to_string())?;
    let msg_id = parsed.msg_id.clone();
    let mut document = into_document(parsed);
    let data = fields.get("data").map_or("null", |data| data.get());
    document.insert("data", data);
    document.insert(DATA_AS_TEXT, true);
    let document = RawDocumentBuf::from_document(&document)
        .map_err(|error| format!("output {msg_id}: {error}"))?;
    Ok((msg_id, document))
}

/// Writes `chunk` until MongoDB acknowledged every document (or refused some [`REFUSALS`]
/// times), emptying it. Returns false when cancelled first.
async fn write_chunk(
    outputs: &Collection<RawDocumentBuf>,
    settings: &Settings,
    chunk: &mut Vec<Prepared<'_>>,
    token: &CancellationToken,
) -> bool {
    let mut delay = Duration::from_millis(100);
    let mut refusals = 0;
    while !chunk.is_empty() {
        let started = Instant::now();
        match insert(outputs, chunk, &settings.write_concern).await {
            Ok(()) => {
                metrics::histogram!(protocol::stats::ARCHIVE_WRITE)
                    .record(started.elapsed().as_secs_f64());
                metrics::counter!(protocol::stats::ARCHIVED).increment(chunk.len() as u64);
                chunk.clear();
                continue;
            }
            Err(WriteError::Refused(refused)) => {
                // Unordered: every other document was written.
                metrics::counter!(protocol::stats::ARCHIVED)
                    .increment(chunk.len().saturating_sub(refused.len()) as u64);
                refusals += 1;
                let mut documents: Vec<Option<Prepared<'_>>> = chunk.drain(..).map(Some).collect();
                for error in refused {
                    let Some(prepared) = documents.get_mut(error.index).and_then(Option::take)
                    else {
                        continue;
                    };
                    let why = format!(
                        "MongoDB refused it (code {}: {})",
                        error.code, error.message
                    );
                    if !prepared.as_text {
                        chunk.extend(as_text(
                            prepared.event,
                            prepared.entry,
                            prepared.position,
                            &why,
                        ));
                    } else if refusals >= REFUSALS {
                        tracing::error!(msg_id = %prepared.msg_id, code = error.code, error = %error.message, "MongoDB refused an output {REFUSALS} times; it is not archived");
                        metrics::counter!(OUTPUTS_SKIPPED, "reason" => "refused").increment(1);
                    } else {
                        tracing::warn!(msg_id = %prepared.msg_id, code = error.code, error = %error.message, "MongoDB refused an output; retrying it");
                        chunk.push(prepared);
                    }
                }
            }
            Err(WriteError::Failed(error)) => {
                metrics::counter!(WRITE_FAILURES).increment(1);
                tracing::warn!(%error, documents = chunk.len(), "archive write failed; retrying (the outputs wait in Redis)");
            }
        }
        if chunk.is_empty() {
            break;
        }
        tokio::select! {
            _ = token.cancelled() => return false,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
    true
}

/// Why an `insert_many` did not write everything.
enum WriteError {
    /// MongoDB wrote every other document and refused these (by index), for themselves.
    Refused(Vec<IndexedWriteError>),
    /// The write failed as a whole (MongoDB unreachable, a write concern not met, ...).
    Failed(mongodb::error::Error),
}

/// One unordered `insert_many`; documents already archived (duplicate `_id`) count as
/// written.
async fn insert(
    outputs: &Collection<RawDocumentBuf>,
    documents: &[Prepared<'_>],
    write_concern: &WriteConcern,
) -> Result<(), WriteError> {
    let written = outputs
        .insert_many(documents.iter().map(|prepared| &prepared.document))
        .ordered(false)
        .write_concern(write_concern.clone())
        .await;
    let Err(error) = written else {
        return Ok(());
    };
    match error.kind.as_ref() {
        ErrorKind::InsertMany(failure) if failure.write_concern_error.is_none() => {
            let Some(errors) = &failure.write_errors else {
                return Err(WriteError::Failed(error));
            };
            let refused: Vec<IndexedWriteError> = errors
                .iter()
                .filter(|error| error.code != DUPLICATE_KEY)
                .cloned()
                .collect();
            if refused.is_empty() {
                Ok(())
            } else {
                Err(WriteError::Refused(refused))
            }
        }
        ErrorKind::Write(WriteFailure::WriteError(write)) if write.code == DUPLICATE_KEY => Ok(()),
        _ => Err(WriteError::Failed(error)),
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

/// The archive document of `event`, `data` as BSON.
pub fn into_document(event: OutputEvent) -> Document {
    let ts = event.ts.unix_ms();
    doc! {
        "_id": event.msg_id.clone(),
        "topology": event.topology,
        "node": event.node,
        "seq": event.seq as i64,
        "msg_id": event.msg_id,
        "input_id": event.input_id,
        "injected_at": DateTime::from_millis(event.injected_at.unix_ms()),
        "ts": DateTime::from_millis(ts),
        "ts_ms": ts,
        "data": json_into_bson(event.data),
    }
}

/// The output event of an archive document, reading numbers leniently (a server may answer
/// Int32 for small integers); `None` for a document of another shape. `data` archived as
/// JSON text, or nested deeper than [`MAX_DATA_DEPTH`] (archived before there was a bound),
/// comes back as that text, a JSON string, so every reply stays readable.
pub fn from_document(document: &Document) -> Option<OutputEvent> {
    let text = |key: &str| document.get_str(key).ok().map(str::to_owned);
    let time = |key: &str| match document.get(key)? {
        Bson::DateTime(time) => Some(Timestamp::from_unix_ms(time.timestamp_millis())),
        Bson::String(text) => Timestamp::parse(text),
        _ => None,
    };
    let data = match document.get("data") {
        None => Value::Null,
        Some(Bson::String(text)) if document.get_bool(DATA_AS_TEXT).unwrap_or(false) => {
            Value::String(text.clone())
        }
        Some(data) if bson_depth(data) > MAX_DATA_DEPTH => {
            Value::String(bson_to_json(data).to_string())
        }
        Some(data) => bson_to_json(data),
    };
    Some(OutputEvent {
        topology: text("topology")?,
        node: text("node")?,
        seq: integer(document.get("seq")?)?,
        msg_id: text("msg_id").or_else(|| text("_id"))?,
        input_id: text("input_id")?,
        injected_at: time("injected_at")?,
        ts: time("ts")?,
        data,
    })
}

/// How deeply `value` nests: 0 for a scalar, 1 for an array or document of scalars.
fn bson_depth(value: &Bson) -> usize {
    match value {
        Bson::Array(items) => 1 + items.iter().map(bson_depth).max().unwrap_or(0),
        Bson::Document(document) => 1 + document.values().map(bson_depth).max().unwrap_or(0),
        _ => 0,
    }
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

/// JSON as BSON, taking the strings over: integers that fit i64 as Int64, other numbers as
/// Double. Recursive: callers bound the depth ([`MAX_DATA_DEPTH`]).
pub fn json_into_bson(value: Value) -> Bson {
    match value {
        Value::Null => Bson::Null,
        Value::Bool(flag) => Bson::Boolean(flag),
        Value::Number(number) => match number.as_i64() {
            Some(integer) => Bson::Int64(integer),
            None => Bson::Double(number.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(text) => Bson::String(text),
        Value::Array(items) => Bson::Array(items.into_iter().map(json_into_bson).collect()),
        Value::Object(map) => Bson::Document(
            map.into_iter()
                .map(|(key, value)| (key, json_into_bson(value)))
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

    fn event(seq: u64, data: Value) -> OutputEvent {
        OutputEvent {
            topology: "sensors".into(),
            node: "avg".into(),
            seq,
            msg_id: format!("m{seq}"),
            input_id: "i1".into(),
            injected_at: Timestamp::from_unix_ms(1_795_400_706_789),
            ts: Timestamp::from_unix_ms(1_795_400_706_790),
            data,
        }
    }

    /// `data` nested `levels` deep: `[[[...0...]]]`.
    fn nested(levels: usize) -> String {
        format!("{}0{}", "[".repeat(levels), "]".repeat(levels))
    }

    /// An output event's JSON text with `data` given as JSON text.
    fn event_text(seq: u64, data: &str) -> String {
        let mut text = serde_json::to_string(&event(seq, Value::Null)).unwrap();
        let tail = text.rfind("null").unwrap();
        text.replace_range(tail..tail + 4, data);
        text
    }

    fn entry(events: &[String]) -> Entry {
        Entry {
            shard: 0,
            id: "1-0".into(),
            body: format!("[{}]", events.join(",")).into_bytes().into(),
        }
    }

    /// An event becomes the documented document and reads back the same, also when the
    /// server answers small integers as Int32.
    #[test]
    fn documents_round_trip() {
        let event = event(
            7,
            json!({"mean": 21.5, "count": 3, "big": u64::MAX, "tags": ["a", null]}),
        );
        let mut document = into_document(event.clone());
        assert_eq!(document.get_str("_id").unwrap(), "m7");
        assert_eq!(document.get_i64("seq").unwrap(), 7);
        assert_eq!(
            document.get_datetime("ts").unwrap().timestamp_millis(),
            1_795_400_706_790
        );
        assert!(!document.contains_key(DATA_AS_TEXT));
        let back = from_document(&document).unwrap();
        assert_eq!(back.data["big"], json!(u64::MAX as f64));
        assert_eq!(back.data["count"], 3);
        assert_eq!(back.ts, event.ts);
        document.insert("seq", Bson::Int32(7));
        assert_eq!(from_document(&document).unwrap().seq, 7);
    }

    /// An entry with one output nested far deeper than serde_json reads (and one at the
    /// bound) among normal ones: every output is prepared, the deep one with its data as
    /// JSON text that reads back exactly.
    #[test]
    fn one_deep_output_costs_no_other() {
        let deep = nested(5_000);
        let at_bound = nested(MAX_DATA_DEPTH);
        let over_bound = nested(MAX_DATA_DEPTH + 1);
        let events = [
            event_text(1, "{\"count\": 1}"),
            event_text(2, &deep),
            event_text(3, &at_bound),
            event_text(4, &over_bound),
            event_text(5, "{\"count\": 5}"),
        ];
        let entry = entry(&events);
        let prepared = prepare_entry(&entry);
        let kinds: Vec<(String, bool)> = prepared
            .iter()
            .map(|prepared| (prepared.msg_id.clone(), prepared.as_text))
            .collect();
        assert_eq!(
            kinds,
            [
                ("m1".to_owned(), false),
                ("m2".to_owned(), true),
                ("m3".to_owned(), false),
                ("m4".to_owned(), true),
                ("m5".to_owned(), false),
            ]
        );
        let document = prepared[1].document.to_document().unwrap();
        assert_eq!(document.get_str("data").unwrap(), deep);
        assert!(document.get_bool(DATA_AS_TEXT).unwrap());
        assert_eq!(document.get_i64("seq").unwrap(), 2);
        let back = from_document(&document).unwrap();
        assert_eq!(back.data, Value::String(deep));
        assert_eq!(back.msg_id, "m2");
        // At the bound, data stays BSON and comes back as JSON.
        let document = prepared[2].document.to_document().unwrap();
        let back = from_document(&document).unwrap();
        assert_eq!(
            json_text_depth(back.data.to_string().as_bytes()),
            MAX_DATA_DEPTH
        );
    }

    /// Data stored deeper than the bound (by a store before the bound) comes back as its
    /// JSON text, so a history reply always reads.
    #[test]
    fn deep_bson_reads_back_as_text() {
        let data: Value = serde_json::from_str(&nested(MAX_DATA_DEPTH + 20)).unwrap();
        let mut document = into_document(event(1, Value::Null));
        document.insert("data", json_into_bson(data));
        let back = from_document(&document).unwrap();
        assert_eq!(back.data, Value::String(nested(MAX_DATA_DEPTH + 20)));
    }

    /// What is not an output event is skipped, and the rest of the entry stays.
    #[test]
    fn unreadable_outputs_are_skipped_alone() {
        let events = [
            event_text(1, "1"),
            "{\"not\": \"an event\"}".to_owned(),
            format!("{{\"not\": {}}}", nested(300)),
            "17".to_owned(),
            event_text(2, "2"),
        ];
        let entry = entry(&events);
        let ids: Vec<String> = prepare_entry(&entry)
            .into_iter()
            .map(|prepared| prepared.msg_id)
            .collect();
        assert_eq!(ids, ["m1", "m2"]);
        let not_a_list = Entry {
            body: b"{\"a\": 1}".to_vec().into(),
            ..entry
        };
        assert!(prepare_entry(&not_a_list).is_empty());
    }

    /// A key BSON cannot hold (a NUL byte) makes the data JSON text, not a failed write.
    #[test]
    fn data_bson_cannot_hold_goes_as_text() {
        let events = [event_text(1, r#"{"a\u0000b": 1}"#)];
        let entry = entry(&events);
        let prepared = prepare_entry(&entry);
        assert_eq!(prepared.len(), 1);
        assert!(prepared[0].as_text);
        let document = prepared[0].document.to_document().unwrap();
        assert_eq!(document.get_str("data").unwrap(), r#"{"a\u0000b": 1}"#);
    }

    /// Index keys compare by field and direction, whatever the number's width.
    #[test]
    fn index_keys_compare_leniently() {
        let wanted = doc! {"topology": 1, "node": 1, "seq": 1};
        assert!(same_keys(
            &doc! {"topology": 1.0, "node": 1_i64, "seq": 1},
            &wanted
        ));
        assert!(!same_keys(&doc! {"topology": 1, "node": 1}, &wanted));
        assert!(!same_keys(
            &doc! {"node": 1, "topology": 1, "seq": 1},
            &wanted
        ));
        assert!(!same_keys(&doc! {"ts": -1}, &doc! {"ts": 1}));
        assert!(!same_keys(&doc! {"ts": "hashed"}, &doc! {"ts": "hashed"}));
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
