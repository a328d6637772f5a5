//! History queries: pages of one node's archived outputs, or of the outputs one inject
//! caused, answered from MongoDB over the history request/reply service.
//!
//! Every reply reads back in web_face: documents are read as raw BSON and converted one by
//! one, so a document that does not convert is skipped (logged with its `_id`) instead of
//! failing the page, and `data` nested deeper than `protocol::MAX_DATA_DEPTH` comes back as
//! its JSON text (`archive::from_document`).

use std::time::Duration;

use futures_util::future::join_all;
use futures_util::TryStreamExt as _;
use mongodb::bson::{doc, Document, RawDocumentBuf};
use mongodb::Collection;
use protocol::caused::CausedQuery;
use protocol::history::{
    ArchiveQuery, HistoryPage, HistoryQuery, HistoryReply, MAX_HISTORY_LIMIT, SEQ_TIES,
};
use protocol::store::ApiError;
use protocol::ErrorCode;
use redpill::{Client, Request};
use tokio_util::sync::CancellationToken;

use crate::archive::{from_document, is_unreachable};

/// Serves history queries until `token` is cancelled.
pub async fn serve(client: Client, outputs: Collection<Document>, token: CancellationToken) {
    let responder = layout::history_service(&client);
    loop {
        let batch = tokio::select! {
            _ = token.cancelled() => return,
            batch = responder.next(64, Duration::from_secs(1)) => batch,
        };
        let requests = match batch {
            Ok(requests) => requests,
            Err(error) => {
                tracing::warn!(%error, "could not take history queries; retrying");
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue;
            }
        };
        if requests.is_empty() {
            continue;
        }
        let replies = join_all(
            requests
                .into_iter()
                .map(|request| answer(&outputs, request)),
        )
        .await;
        if let Err(error) = responder.reply(replies).await {
            tracing::warn!(%error, "could not send history replies");
        }
    }
}

async fn answer(outputs: &Collection<Document>, request: Request) -> (Request, redpill::Reply) {
    let reply: HistoryReply = match serde_json::from_slice::<ArchiveQuery>(&request.body) {
        Ok(ArchiveQuery::Node(query)) => page(outputs, &query).await,
        Ok(ArchiveQuery::Caused(query)) => caused_page(outputs, &query).await,
        Err(error) => Err(ApiError::new(
            ErrorCode::InvalidQuery,
            format!("not a history query: {error}"),
        )),
    };
    let body = serde_json::to_vec(&reply).expect("a reply always serializes");
    (request, Ok(body.into()))
}

/// One page: the matching outputs in `seq` order, every output of its last seq included
/// (`HistoryPage::cut`), and whether more follow.
pub async fn page(outputs: &Collection<Document>, query: &HistoryQuery) -> HistoryReply {
    let limit = query.limit.clamp(1, MAX_HISTORY_LIMIT);
    let sort = doc! {"seq": if query.ascending { 1 } else { -1 }};
    let read = limit + 1 + SEQ_TIES;
    let (events, all) = read_events(outputs, filter(query), sort, read).await?;
    Ok(HistoryPage::cut(
        events,
        limit as usize,
        query.ascending,
        !all,
    ))
}

/// One page of the outputs one inject caused: in `msg_id` (`_id`) order, found by the
/// `(topology, input_id)` index.
pub async fn caused_page(outputs: &Collection<Document>, query: &CausedQuery) -> HistoryReply {
    let limit = query.limit.clamp(1, MAX_HISTORY_LIMIT);
    let mut filter = doc! {"topology": &query.topology, "input_id": &query.input_id};
    if let Some(after) = &query.after {
        filter.insert("_id", doc! {"$gt": after});
    }
    let (mut items, _) = read_events(outputs, filter, doc! {"_id": 1}, limit + 1).await?;
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    Ok(HistoryPage { items, more })
}

/// The first `count` outputs `filter` matches in `sort` order, and whether that is all of
/// them (fewer matched). Documents that do not read as output events are skipped.
async fn read_events(
    outputs: &Collection<Document>,
    filter: Document,
    sort: Document,
    count: u32,
) -> Result<(Vec<protocol::OutputEvent>, bool), ApiError> {
    // An aggregation rather than `find`: MongoDB plans a leading `$match`, `$sort`, `$limit`
    // exactly like the equivalent find (an index, top-k), while MongoDB-wire servers on
    // SQLite such as nx-27017 scan the whole collection for a sorted find and use the index
    // only for the pipeline (100 ms against 3 ms at 30 000 outputs).
    let found = outputs
        .aggregate([
            doc! {"$match": filter},
            doc! {"$sort": sort},
            doc! {"$limit": i64::from(count)},
        ])
        .with_type::<RawDocumentBuf>()
        .await;
    let documents: Vec<RawDocumentBuf> = match found {
        Ok(cursor) => cursor.try_collect().await,
        Err(error) => Err(error),
    }
    .map_err(|error| {
        tracing::warn!(%error, "history query failed");
        if is_unreachable(&error) {
            ApiError::new(
                ErrorCode::Unavailable,
                "the archive (MongoDB) is unreachable; retry shortly",
            )
        } else {
            ApiError::new(
                ErrorCode::Internal,
                "the archive query failed; the store's log has the details",
            )
        }
    })?;
    let all = documents.len() < count as usize;
    let events = documents
        .iter()
        .filter_map(|raw| {
            let event = raw
                .to_document()
                .map_err(|error| error.to_string())
                .and_then(|document| from_document(&document).ok_or_else(|| "another shape".to_owned()));
            match event {
                Ok(event) => Some(event),
                Err(error) => {
                    tracing::warn!(id = ?raw.get("_id").ok().flatten(), %error, "skipping an archive document history cannot read");
                    None
                }
            }
        })
        .collect();
    Ok((events, all))
}

/// The MongoDB filter of `query`.
fn filter(query: &HistoryQuery) -> Document {
    let mut filter = doc! {"topology": &query.topology, "node": &query.node};
    let mut seq = Document::new();
    if let Some(after) = query.after_seq {
        seq.insert("$gt", after as i64);
    }
    if let Some(before) = query.before_seq {
        seq.insert("$lt", before as i64);
    }
    if !seq.is_empty() {
        filter.insert("seq", seq);
    }
    // `ts_ms` rather than the `ts` date: the same instant, and numbers compare the same on
    // every MongoDB-wire server.
    let mut ts = Document::new();
    if let Some(from) = query.from_ms {
        ts.insert("$gte", from);
    }
    if let Some(to) = query.to_ms {
        ts.insert("$lt", to);
    }
    if !ts.is_empty() {
        filter.insert("ts_ms", ts);
    }
    filter
}
