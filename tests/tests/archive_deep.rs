//! The archive and history with outputs nested deeper than serde_json reads (128 levels):
//! real Redis, a real MongoDB-wire server and real role processes; the output topic's
//! entries are written the way processors write them (a JSON list of output events per
//! entry), so any depth can be tried whatever the processors allow.

use std::time::Duration;

use futures_util::TryStreamExt as _;
use mesh_tests::eventually;
use mesh_tests::mesh::{Mesh, PARTITIONS};
use mesh_tests::mongo::TestMongo;
use mongodb::bson::{doc, Document};
use protocol::{OutputEvent, Timestamp};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// The deepest `data` the store archives as BSON (`store::archive::MAX_DATA_DEPTH`).
const MAX_DATA_DEPTH: usize = 100;

/// A mesh without processors: the test writes the output topic itself.
async fn mesh_with(mongo: &TestMongo) -> Mesh {
    let uri = mongo.uri();
    Mesh::start(
        0,
        &[
            ("MONGODB_URI", uri.as_str()),
            ("GORGON_ARCHIVE_WRITE_CONCERN", "journaled"),
            ("GORGON_MONGODB_TIMEOUT_MS", "1000"),
        ],
    )
    .await
}

/// `[[[...0...]]]`, `levels` deep.
fn nested(levels: usize) -> String {
    format!("{}0{}", "[".repeat(levels), "]".repeat(levels))
}

/// The JSON text of an output event of node `node` of topology `t`, with `data` as given
/// (JSON text, any depth).
fn event(node: &str, seq: u64, data: &str) -> String {
    let event = OutputEvent {
        topology: "t".into(),
        node: node.into(),
        seq,
        msg_id: format!("{node}-{seq}"),
        input_id: format!("input-{seq}"),
        injected_at: Timestamp::from_unix_ms(1_795_400_706_000),
        ts: Timestamp::from_unix_ms(1_795_400_706_000 + seq as i64),
        data: Value::Null,
    };
    let text = serde_json::to_string(&event).unwrap();
    let data_at = text.rfind("null").unwrap();
    format!("{}{data}{}", &text[..data_at], &text[data_at + 4..])
}

/// Appends one entry holding `events` to shard `shard` of the output topic, as a
/// processor's batch commit does.
async fn publish(mesh: &Mesh, shard: usize, events: &[String]) {
    let topic = layout::output_topic(&mesh.client, PARTITIONS);
    topic
        .publish(shard, &[format!("[{}]", events.join(","))])
        .await
        .expect("append to the output topic");
}

/// The archive collection.
async fn outputs(mongo: &TestMongo) -> mongodb::Collection<Document> {
    mongo
        .client()
        .await
        .database(mesh_tests::mongo::DATABASE)
        .collection::<Document>("outputs")
}

/// Waits until the archive holds `expected` documents of `node`, then checks for a while
/// that no more come.
async fn archived(outputs: &mongodb::Collection<Document>, node: &str, expected: u64) {
    let count = || async {
        outputs
            .count_documents(doc! {"topology": "t", "node": node})
            .await
            .ok()
    };
    eventually(
        Duration::from_secs(60),
        &format!("{expected} archived outputs of {node}"),
        || async { (count().await? == expected).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        count().await,
        Some(expected),
        "{node}: more than {expected}"
    );
}

/// The history page of `node`, oldest first; asserts it answered 200.
async fn history(mesh: &Mesh, node: &str) -> Vec<Value> {
    let page = mesh
        .call(
            Method::GET,
            &format!("/v1/topologies/t/nodes/{node}/history?order=asc&limit=1000"),
            &Value::Null,
        )
        .await;
    assert_eq!(
        page.status,
        StatusCode::OK,
        "history of {node}: {}",
        page.text
    );
    page.json["items"].as_array().expect("items").clone()
}

/// One entry of a batch: 50 outputs of node `plain` with one output of node `deep` among
/// them whose data nests 500 levels. Every plain output is archived, exactly once, the deep
/// one with its data as JSON text; the history of both nodes answers 200.
#[tokio::test]
async fn one_output_too_deep_costs_no_other_output() {
    let mongo = TestMongo::start();
    let mesh = mesh_with(&mongo).await;
    let deep = nested(500);
    let mut events: Vec<String> = (1..=50)
        .map(|seq| event("plain", seq, &json!({"count": seq}).to_string()))
        .collect();
    events.insert(25, event("deep", 1, &deep));
    publish(&mesh, 3, &events).await;

    let outputs = outputs(&mongo).await;
    archived(&outputs, "plain", 50).await;
    archived(&outputs, "deep", 1).await;
    let document = outputs
        .find_one(doc! {"_id": "deep-1"})
        .await
        .unwrap()
        .expect("the deep output's document");
    assert_eq!(document.get_str("data").unwrap(), deep);
    assert!(document.get_bool("data_as_text").unwrap());
    mesh.store
        .wait_for_output("deep-1", Duration::from_secs(5))
        .await;
    assert!(mesh.store.output().contains("data_as_text"));

    let plain = history(&mesh, "plain").await;
    let seqs: Vec<u64> = plain
        .iter()
        .map(|item| item["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (1..=50).collect::<Vec<_>>());
    assert_eq!(plain[9]["data"], json!({"count": 10}));
    let deep_items = history(&mesh, "deep").await;
    assert_eq!(deep_items.len(), 1);
    assert_eq!(deep_items[0]["msg_id"], "deep-1");
    assert_eq!(deep_items[0]["data"], Value::String(deep));
}

/// Outputs around the bound and around what a history reply can wrap for serde_json (a
/// reply adds four levels): each is archived, and the history of every node answers 200,
/// the data as JSON up to the bound and as its JSON text beyond.
#[tokio::test]
async fn history_of_deeply_nested_outputs_answers_200() {
    let mongo = TestMongo::start();
    let mesh = mesh_with(&mongo).await;
    let depths = [
        1,
        MAX_DATA_DEPTH,
        MAX_DATA_DEPTH + 1,
        123,
        124,
        125,
        126,
        300,
    ];
    // One entry per output, on several shards: whether an entry's own depth can be read or
    // not, each is archived.
    for (i, depth) in depths.iter().enumerate() {
        let node = format!("depth-{depth}");
        publish(
            &mesh,
            i % PARTITIONS as usize,
            &[event(&node, 1, &nested(*depth))],
        )
        .await;
    }
    // Each node's history answers 200 as soon as its output is archived; then the data.
    let outputs = outputs(&mongo).await;
    let mut pages = Vec::new();
    for depth in depths {
        let node = format!("depth-{depth}");
        archived(&outputs, &node, 1).await;
        pages.push(history(&mesh, &node).await);
    }
    for (depth, items) in depths.into_iter().zip(pages) {
        assert_eq!(items.len(), 1, "depth {depth}");
        let expected = if depth <= MAX_DATA_DEPTH {
            serde_json::from_str::<Value>(&nested(depth)).unwrap()
        } else {
            Value::String(nested(depth))
        };
        assert_eq!(items[0]["data"], expected, "depth {depth}");
    }
    // Every document of the archive reads back the way history gave it.
    let all: Vec<Document> = outputs
        .find(doc! {})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(all.len(), depths.len());
    for document in all {
        let text = document.get_bool("data_as_text").unwrap_or(false);
        let node = document.get_str("node").unwrap();
        let depth: usize = node.trim_start_matches("depth-").parse().unwrap();
        assert_eq!(text, depth > MAX_DATA_DEPTH, "{node}");
    }

    // A document an older store archived with data 125 levels deep as BSON: history gives
    // its data as JSON text. (A server that refuses such a document has none to read.)
    let mut legacy = all_but_data("legacy");
    legacy.insert(
        "data",
        mongodb::bson::to_bson(&serde_json::from_str::<Value>(&nested(125)).unwrap()).unwrap(),
    );
    if outputs.insert_one(legacy).await.is_ok() {
        let items = history(&mesh, "legacy").await;
        assert_eq!(items.len(), 1);
        assert_eq!(items[0]["data"], Value::String(nested(125)));
    }
}

/// An archive document of node `node` with every field but `data`, as the store writes it.
fn all_but_data(node: &str) -> Document {
    doc! {
        "_id": format!("{node}-1"),
        "topology": "t",
        "node": node,
        "seq": 1_i64,
        "msg_id": format!("{node}-1"),
        "input_id": "input-1",
        "injected_at": mongodb::bson::DateTime::from_millis(1_795_400_706_000),
        "ts": mongodb::bson::DateTime::from_millis(1_795_400_706_001),
        "ts_ms": 1_795_400_706_001_i64,
    }
}
