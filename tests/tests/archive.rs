//! The MongoDB archive end to end: real Redis, a real MongoDB-wire server, real role
//! processes. Exactly one document per output, with the documented fields and types; nothing
//! lost or archived twice when MongoDB is down for a while or the store dies between
//! MongoDB's acknowledgement and its own; two stores sharing the work; history pages that
//! match MongoDB exactly.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use futures_util::TryStreamExt as _;
use mesh_tests::eventually;
use mesh_tests::mesh::Mesh;
use mesh_tests::mongo::{MongoKind, TestMongo};
use mongodb::bson::{doc, Bson, Document};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// How long MongoDB stays down in the outage test.
const OUTAGE: Duration = Duration::from_secs(30);

async fn mesh_with(mongo: &TestMongo, processors: usize, extra: &[(&str, &str)]) -> Mesh {
    let uri = mongo.uri();
    let mut env = vec![
        ("MONGODB_URI", uri.as_str()),
        ("GORGON_ARCHIVE_WRITE_CONCERN", "journaled"),
        ("GORGON_MONGODB_TIMEOUT_MS", "1000"),
    ];
    env.extend_from_slice(extra);
    Mesh::start(processors, &env).await
}

/// Creates topology `t` with `nodes` count nodes `n0..`.
async fn count_nodes(mesh: &Mesh, nodes: usize) {
    let specs: Vec<Value> = (0..nodes)
        .map(|i| json!({"id": format!("n{i}"), "function": "count"}))
        .collect();
    let created = mesh
        .call(Method::PUT, "/v1/topologies/t", &json!({ "node": specs }))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
}

/// Injects `per_node` messages into each of `n0..n<nodes>`, 1 000 per request.
async fn inject(mesh: &Mesh, nodes: usize, per_node: usize) {
    for node in 0..nodes {
        let mut sent = 0;
        while sent < per_node {
            let lines = (sent..per_node.min(sent + 1000))
                .map(|i| i.to_string())
                .collect::<Vec<_>>();
            sent += lines.len();
            let answer = mesh
                .send(
                    mesh.request(
                        Method::POST,
                        &format!("/v1/topologies/t/nodes/n{node}/messages"),
                    )
                    .header("content-type", "application/x-ndjson")
                    .body(lines.join("\n")),
                )
                .await;
            assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text);
        }
    }
}

/// Every archived document.
async fn documents(mongo: &TestMongo) -> Vec<Document> {
    mongo
        .outputs()
        .await
        .find(doc! {})
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("read documents")
}

/// Waits until the archive holds `expected` documents (and no more, for a while).
async fn archived(mongo: &TestMongo, expected: u64, timeout: Duration) {
    let outputs = mongo.outputs().await;
    eventually(
        timeout,
        &format!("{expected} archived documents"),
        || async {
            let count = outputs.count_documents(doc! {}).await.ok()?;
            assert!(
                count <= expected,
                "{count} documents, more than the {expected} outputs"
            );
            (count == expected).then_some(())
        },
    )
    .await;
}

/// A number stored as an integer, whatever its width (servers may answer Int32).
fn integer(value: &Bson) -> u64 {
    match value {
        Bson::Int32(n) => *n as u64,
        Bson::Int64(n) => *n as u64,
        other => panic!("not an integer: {other:?}"),
    }
}

/// Checks the documents: one per `_id` = `msg_id`, each node's seqs exactly `1..=per_node`,
/// fields and BSON types as documented.
fn check_exactly_once(documents: &[Document], nodes: usize, per_node: u64, strict_types: bool) {
    let mut ids = HashSet::new();
    let mut seqs: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for document in documents {
        let id = document.get_str("_id").expect("a string _id");
        assert_eq!(document.get_str("msg_id").unwrap(), id);
        assert!(ids.insert(id.to_owned()), "{id} archived twice");
        assert_eq!(document.get_str("topology").unwrap(), "t");
        assert!(document.get_str("input_id").is_ok());
        assert!(
            matches!(document.get("ts"), Some(Bson::DateTime(_))),
            "{document}"
        );
        assert!(matches!(
            document.get("injected_at"),
            Some(Bson::DateTime(_))
        ));
        let seq = document.get("seq").expect("seq");
        if strict_types {
            assert!(matches!(seq, Bson::Int64(_)), "seq is {seq:?}");
        }
        let data = document.get_document("data").expect("data is a document");
        assert_eq!(integer(data.get("count").unwrap()), integer(seq));
        seqs.entry(document.get_str("node").unwrap().to_owned())
            .or_default()
            .push(integer(seq));
    }
    assert_eq!(seqs.len(), nodes);
    for (node, mut list) in seqs {
        list.sort_unstable();
        assert_eq!(list, (1..=per_node).collect::<Vec<_>>(), "{node}");
    }
}

/// 20 000 outputs → exactly 20 000 documents, one per `msg_id`, fields and types as documented.
#[tokio::test]
async fn every_output_is_archived_exactly_once() {
    let mongo = TestMongo::start();
    let mesh = mesh_with(&mongo, 2, &[]).await;
    count_nodes(&mesh, 10).await;
    inject(&mesh, 10, 2000).await;
    archived(&mongo, 20_000, Duration::from_secs(120)).await;
    let strict = matches!(mongo.kind(), MongoKind::Mongod(_));
    check_exactly_once(&documents(&mongo).await, 10, 2000, strict);
}

/// MongoDB down for 30 s while messages flow, then back: nothing lost, nothing archived
/// twice, and the backlog drains.
#[tokio::test]
async fn mongodb_outage_loses_and_doubles_nothing() {
    let mut mongo = TestMongo::start();
    let mesh = mesh_with(&mongo, 1, &[]).await;
    count_nodes(&mesh, 4).await;
    inject(&mesh, 4, 500).await;
    archived(&mongo, 2000, Duration::from_secs(60)).await;
    mongo.stop();
    let started = std::time::Instant::now();
    inject(&mesh, 4, 1000).await; // 1 000 more per node while MongoDB is away.
                                  // Outputs are processed and wait in Redis meanwhile.
    eventually(
        Duration::from_secs(30),
        "processing during the outage",
        || async {
            let node = mesh
                .call(Method::GET, "/v1/topologies/t/nodes/n3", &Value::Null)
                .await;
            (node.json["attrs"]["count"] == 1500).then_some(())
        },
    )
    .await;
    tokio::time::sleep(OUTAGE.saturating_sub(started.elapsed())).await;
    mongo.start_again();
    archived(&mongo, 6000, Duration::from_secs(120)).await;
    let strict = matches!(mongo.kind(), MongoKind::Mongod(_));
    check_exactly_once(&documents(&mongo).await, 4, 1500, strict);
    assert!(
        mesh.store
            .output()
            .contains("archive write failed; retrying"),
        "the outage was seen"
    );
}

/// The store killed between MongoDB's acknowledgement and its own: the next store writes
/// the same outputs again and MongoDB keeps one document each.
#[tokio::test]
async fn a_store_killed_after_writing_archives_nothing_twice() {
    let mongo = TestMongo::start();
    let mut mesh = mesh_with(&mongo, 1, &[]).await;
    // Replace the store by one that aborts right after its first acknowledged write.
    mesh.store.signal("KILL");
    mesh.store.wait_for_exit(Duration::from_secs(10)).await;
    let mut doomed = mesh.spawn_with("store", &[("GORGON_FAILPOINT", "archive_after_write")]);
    doomed
        .wait_for_output("archiving outputs", Duration::from_secs(10))
        .await;
    count_nodes(&mesh, 2).await;
    inject(&mesh, 2, 1000).await;
    let (status, output) = doomed.wait_for_exit(Duration::from_secs(60)).await;
    assert!(!status.success(), "{output}");
    assert!(output.contains("failpoint archive_after_write"), "{output}");
    let written = documents(&mongo).await.len();
    assert!(written > 0, "the first write reached MongoDB");
    mesh.store = mesh.spawn("store");
    archived(&mongo, 2000, Duration::from_secs(120)).await;
    check_exactly_once(&documents(&mongo).await, 2, 1000, false);
}

/// After a batch that emptied the topic the archive pauses for `GORGON_ARCHIVE_LINGER_MS`
/// before it reads again, so a trickle of outputs is written in batches: an output made
/// during the pause is not archived before the pause is over, and is archived after it.
#[tokio::test]
async fn the_archive_lingers_after_emptying_the_topic() {
    let mongo = TestMongo::start();
    let mesh = mesh_with(&mongo, 1, &[("GORGON_ARCHIVE_LINGER_MS", "3000")]).await;
    count_nodes(&mesh, 1).await;
    inject(&mesh, 1, 1).await;
    // The first output is read at once (the archive waits for it): the pause starts once
    // it is written.
    archived(&mongo, 1, Duration::from_secs(30)).await;
    inject(&mesh, 1, 1).await;
    let injected = std::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        documents(&mongo).await.len(),
        1,
        "an output was archived during the pause"
    );
    archived(&mongo, 2, Duration::from_secs(30)).await;
    assert!(
        injected.elapsed() < Duration::from_secs(10),
        "the pause lasted {:?}",
        injected.elapsed()
    );
}

/// Two stores at once share the archive: no duplicates, no gaps.
#[tokio::test]
async fn two_stores_share_the_archive() {
    let mongo = TestMongo::start();
    let mesh = mesh_with(&mongo, 2, &[]).await;
    let second = mesh.spawn("store");
    count_nodes(&mesh, 8).await;
    inject(&mesh, 8, 1000).await;
    archived(&mongo, 8000, Duration::from_secs(120)).await;
    check_exactly_once(&documents(&mongo).await, 8, 1000, false);
    assert!(second.output().contains("archiving outputs"));
}

/// History pages over 2 500 outputs, in both orders, by seq and by time, are exactly what
/// MongoDB holds.
#[tokio::test]
async fn history_pages_match_mongodb() {
    let mongo = TestMongo::start();
    let mesh = mesh_with(&mongo, 1, &[]).await;
    count_nodes(&mesh, 1).await;
    inject(&mesh, 1, 2500).await;
    archived(&mongo, 2500, Duration::from_secs(120)).await;
    let mut all = documents(&mongo).await;
    all.sort_by_key(|document| integer(document.get("seq").unwrap()));
    let seqs = |items: &[Value]| -> Vec<u64> {
        items
            .iter()
            .map(|item| item["seq"].as_u64().unwrap())
            .collect()
    };

    // Everything, newest first then oldest first, 100 a page, following `next`.
    for (order, expected) in [
        ("desc", (1..=2500).rev().collect::<Vec<u64>>()),
        ("asc", (1..=2500).collect()),
    ] {
        let mut path = Some(format!(
            "/v1/topologies/t/nodes/n0/history?limit=100&order={order}"
        ));
        let mut got = Vec::new();
        let mut pages = 0;
        while let Some(next) = path {
            let page = mesh.call(Method::GET, &next, &Value::Null).await;
            assert_eq!(page.status, StatusCode::OK, "{}", page.text);
            got.extend(seqs(page.json["items"].as_array().unwrap()));
            path = page.json["next"].as_str().map(str::to_owned);
            pages += 1;
        }
        assert_eq!(got, expected, "{order}");
        assert_eq!(pages, 25, "{order}");
    }

    // One item is the output event exactly as archived.
    let page = mesh
        .call(
            Method::GET,
            "/v1/topologies/t/nodes/n0/history?limit=1",
            &Value::Null,
        )
        .await;
    let item = &page.json["items"][0];
    let last = all.last().unwrap();
    assert_eq!(item["msg_id"], last.get_str("_id").unwrap());
    assert_eq!(item["seq"], 2500);
    assert_eq!(item["data"], json!({"count": 2500}));
    assert_eq!(item["topology"], "t");

    // By seq: after 1 000 and before 1 101, oldest first.
    let page = mesh
        .call(
            Method::GET,
            "/v1/topologies/t/nodes/n0/history?after_seq=1000&before_seq=1101&order=asc&limit=1000",
            &Value::Null,
        )
        .await;
    assert_eq!(
        seqs(page.json["items"].as_array().unwrap()),
        (1001..=1100).collect::<Vec<_>>()
    );
    assert_eq!(page.json["next"], Value::Null);

    // By time: from the ts of seq 500 to (not including) the ts of seq 2000, as MongoDB
    // answers the same filter.
    let time = |seq: usize| match all[seq - 1].get("ts").unwrap() {
        Bson::DateTime(time) => *time,
        other => panic!("{other:?}"),
    };
    let (from, to) = (time(500), time(2000));
    let expected: Vec<u64> = all
        .iter()
        .filter(|document| match document.get("ts").unwrap() {
            Bson::DateTime(ts) => *ts >= from && *ts < to,
            _ => false,
        })
        .map(|document| integer(document.get("seq").unwrap()))
        .collect();
    let rfc3339 = |time: mongodb::bson::DateTime| {
        protocol::Timestamp::from_unix_ms(time.timestamp_millis()).to_string()
    };
    let mut path = Some(format!(
        "/v1/topologies/t/nodes/n0/history?order=asc&limit=333&from={}&to={}",
        rfc3339(from),
        rfc3339(to)
    ));
    let mut got = Vec::new();
    while let Some(next) = path {
        let page = mesh.call(Method::GET, &next, &Value::Null).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        got.extend(seqs(page.json["items"].as_array().unwrap()));
        path = page.json["next"].as_str().map(str::to_owned);
    }
    let outputs = mongo.outputs().await;
    let direct: Vec<u64> = outputs
        .find(doc! {"topology": "t", "node": "n0",
        "ts_ms": {"$gte": from.timestamp_millis(), "$lt": to.timestamp_millis()}})
        .sort(doc! {"seq": 1})
        .await
        .unwrap()
        .try_collect::<Vec<Document>>()
        .await
        .unwrap()
        .iter()
        .map(|document| integer(document.get("seq").unwrap()))
        .collect();
    assert_eq!(direct, expected, "MongoDB's own answer");
    assert_eq!(got, expected);
    assert!(!got.is_empty());

    // Bad parameters.
    for bad in [
        "limit=0",
        "limit=1001",
        "order=up",
        "from=yesterday",
        "after_seq=-1",
    ] {
        let answer = mesh
            .call(
                Method::GET,
                &format!("/v1/topologies/t/nodes/n0/history?{bad}"),
                &Value::Null,
            )
            .await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{bad}: {}",
            answer.text
        );
        assert_eq!(answer.code(), "invalid_query", "{bad}");
    }
}

/// Follows `next` from `first`: the seqs of every page and the `gorgon-history-source` of
/// each.
async fn walk(mesh: &Mesh, first: &str) -> (Vec<u64>, Vec<String>) {
    let mut path = Some(first.to_owned());
    let (mut seqs, mut sources) = (Vec::new(), Vec::new());
    while let Some(next) = path {
        let page = mesh.call(Method::GET, &next, &Value::Null).await;
        assert_eq!(page.status, StatusCode::OK, "{next}: {}", page.text);
        seqs.extend(
            page.json["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|item| item["seq"].as_u64().unwrap()),
        );
        sources.push(page.header("gorgon-history-source").to_owned());
        path = page.json["next"].as_str().map(str::to_owned);
    }
    (seqs, sources)
}

/// Walking `node`'s history in pages of each of `limits`, newest first and oldest first,
/// gives every seq from `latest` down to 1 (and up again) once, in order.
async fn walks_are_whole(mesh: &Mesh, node: &str, limits: &[u32], latest: u64) {
    for limit in limits {
        for (order, expected) in [
            ("desc", (1..=latest).rev().collect::<Vec<u64>>()),
            ("asc", (1..=latest).collect()),
        ] {
            let first =
                format!("/v1/topologies/t/nodes/{node}/history?limit={limit}&order={order}");
            let (seqs, _) = walk(mesh, &first).await;
            assert_eq!(seqs, expected, "{node} {order} {limit}");
        }
    }
}

/// History from Redis and the archive joined: with a replay buffer of 10, 25 outputs of `n0`
/// read in pages of every size, both orders, give 1 to 25 with no gap and no repeat, the
/// newest pages from Redis alone; with the archive behind (its newest documents of `n1`
/// removed) the pages are whole all the same; and `n0` deleted and made again keeps its
/// former outputs in its history, ranked by seq as the archive ranks them, none hidden by the
/// new buffer.
#[tokio::test]
async fn history_joins_the_replay_buffer_and_the_archive() {
    let mongo = TestMongo::start();
    let mesh = mesh_with(&mongo, 1, &[("GORGON_REPLAY_BUFFER", "10")]).await;
    count_nodes(&mesh, 2).await;
    inject(&mesh, 2, 25).await;
    archived(&mongo, 50, Duration::from_secs(60)).await;
    let history =
        |node: &str, query: &str| format!("/v1/topologies/t/nodes/{node}/history?{query}");

    walks_are_whole(&mesh, "n0", &[1, 3, 4, 10, 24, 25, 100], 25).await;
    // Pages of 4: the first two from Redis alone, the rest joined with the archive.
    let (_, sources) = walk(&mesh, &history("n0", "limit=4")).await;
    assert_eq!(sources[..2], ["redis", "redis"], "{sources:?}");
    assert_eq!(sources.last().unwrap(), "redis+archive", "{sources:?}");
    // Oldest first after 20: all in the buffer.
    let tail = mesh
        .call(
            Method::GET,
            &history("n0", "order=asc&after_seq=20"),
            &Value::Null,
        )
        .await;
    assert_eq!(tail.header("gorgon-history-source"), "redis");
    assert_eq!(tail.json["items"].as_array().unwrap().len(), 5);
    assert_eq!(tail.json["next"], Value::Null);
    // The same event from either place.
    let newest = mesh
        .call(Method::GET, &history("n0", "limit=1"), &Value::Null)
        .await;
    let oldest = mesh
        .call(
            Method::GET,
            &history("n0", "limit=1&order=asc"),
            &Value::Null,
        )
        .await;
    assert_eq!(newest.header("gorgon-history-source"), "redis");
    assert_eq!(oldest.header("gorgon-history-source"), "redis+archive");
    assert_eq!(newest.json["items"][0]["data"], json!({"count": 25}));
    assert_eq!(oldest.json["items"][0]["data"], json!({"count": 1}));
    for page in [&newest, &oldest] {
        let item = &page.json["items"][0];
        let fields: Vec<&str> = item
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            fields,
            [
                "topology",
                "node",
                "seq",
                "msg_id",
                "input_id",
                "injected_at",
                "ts",
                "data",
            ],
            "{item}"
        );
    }

    // The archive behind: n1's documents past seq 18 removed, as if not written yet.
    let outputs = mongo.outputs().await;
    let removed = outputs
        .delete_many(doc! {"node": "n1", "seq": {"$gt": 18}})
        .await
        .unwrap();
    assert_eq!(removed.deleted_count, 7);
    walks_are_whole(&mesh, "n1", &[1, 4, 7, 30], 25).await;

    // n0 deleted and made again, then 3 outputs: its history holds both lives.
    let deleted = mesh
        .call(Method::DELETE, "/v1/topologies/t/nodes/n0", &Value::Null)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text);
    let made = mesh
        .call(
            Method::POST,
            "/v1/topologies/t/nodes",
            &json!({"id": "n0", "function": "count"}),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.text);
    for _ in 0..3 {
        let injected = mesh
            .call(
                Method::POST,
                "/v1/topologies/t/nodes/n0/messages",
                &json!({"again": true}),
            )
            .await;
        assert_eq!(injected.status, StatusCode::ACCEPTED, "{}", injected.text);
    }
    archived(&mongo, 50 - 7 + 3, Duration::from_secs(60)).await;
    let page = mesh
        .call(Method::GET, &history("n0", "limit=100"), &Value::Null)
        .await;
    assert_eq!(page.header("gorgon-history-source"), "redis+archive");
    let items = page.json["items"].as_array().unwrap();
    let seqs: Vec<u64> = items
        .iter()
        .map(|item| item["seq"].as_u64().unwrap())
        .collect();
    let mut expected: Vec<u64> = (4..=25).rev().collect();
    expected.extend([3, 3, 2, 2, 1, 1]);
    assert_eq!(seqs, expected);
    // Of two outputs with one seq, the newer life's first; every output once.
    assert_eq!(items[22]["data"], json!({"count": 3}));
    assert!(items[22]["ts"].as_str() >= items[23]["ts"].as_str());
    let ids: HashSet<&str> = items
        .iter()
        .map(|item| item["msg_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 28);
    // The newest two are the former life's, which the new buffer does not hold.
    let top = mesh
        .call(Method::GET, &history("n0", "limit=2"), &Value::Null)
        .await;
    let top: Vec<u64> = top.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(top, [25, 24]);
    // Above the former life's highest seq nothing but the buffer can be.
    let above = mesh
        .call(
            Method::GET,
            &history("n0", "order=asc&after_seq=25"),
            &Value::Null,
        )
        .await;
    assert_eq!(above.header("gorgon-history-source"), "redis");
    assert_eq!(above.json["items"], json!([]));
}

/// With the replay buffer off every page comes from the archive.
#[tokio::test]
async fn history_without_a_replay_buffer_reads_the_archive() {
    let mongo = TestMongo::start();
    let mesh = mesh_with(&mongo, 1, &[("GORGON_REPLAY_BUFFER", "0")]).await;
    count_nodes(&mesh, 1).await;
    inject(&mesh, 1, 5).await;
    archived(&mongo, 5, Duration::from_secs(60)).await;
    let (seqs, sources) = walk(&mesh, "/v1/topologies/t/nodes/n0/history?limit=2").await;
    assert_eq!(seqs, [5, 4, 3, 2, 1]);
    assert_eq!(sources, ["archive", "archive", "archive"]);
}

/// The outputs of inject `id`, every page of `limit` followed: their `(node, input_id)` and
/// the `gorgon-history-source` of each page.
async fn caused(
    mesh: &Mesh,
    id: &str,
    node: Option<&str>,
    limit: u32,
) -> (Vec<(String, String)>, Vec<String>) {
    let node = node.map_or(String::new(), |node| format!("&node={node}"));
    let mut path = Some(format!(
        "/v1/topologies/t/outputs?input_id={id}{node}&limit={limit}"
    ));
    let (mut outputs, mut sources) = (Vec::new(), Vec::new());
    let mut last_id = String::new();
    while let Some(next) = path {
        let page = mesh.call(Method::GET, &next, &Value::Null).await;
        assert_eq!(page.status, StatusCode::OK, "{next}: {}", page.text);
        for item in page.json["items"].as_array().unwrap() {
            let msg_id = item["msg_id"].as_str().unwrap().to_owned();
            assert!(msg_id > last_id, "{next}: out of msg_id order");
            last_id = msg_id;
            outputs.push((
                item["node"].as_str().unwrap().to_owned(),
                item["input_id"].as_str().unwrap().to_owned(),
            ));
        }
        sources.push(page.header("gorgon-history-source").to_owned());
        path = page.json["next"].as_str().map(str::to_owned);
    }
    (outputs, sources)
}

/// Waits until the three outputs of inject `id` through the chain from `a` are found.
async fn chain_done(mesh: &Mesh, id: &str) {
    eventually(
        Duration::from_secs(30),
        "the chain's three outputs",
        || async {
            let (outputs, _) = caused(mesh, id, Some("a"), 100).await;
            (outputs.len() == 3).then_some(())
        },
    )
    .await;
}

/// Injects `data` into node `a` of `t`: its msg_id.
async fn inject_one(mesh: &Mesh, data: Value) -> String {
    let answer = mesh
        .call(Method::POST, "/v1/topologies/t/nodes/a/messages", &data)
        .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text);
    answer.json["msg_id"].as_str().unwrap().to_owned()
}

/// Outputs by `input_id` through a chain a → b → c (beside an unrelated node z): exactly the
/// inject's three, in the order they were made, in pages of every size; from the replay
/// buffers alone while they reach back a second before the inject and the edges have not
/// changed since; joined with the archive once the buffers moved on, with the archive
/// behind, and after an edge was removed; from the archive alone without the node.
#[tokio::test]
async fn outputs_of_one_inject_through_a_three_node_chain() {
    let mongo = TestMongo::start();
    let mesh = mesh_with(&mongo, 1, &[("GORGON_REPLAY_BUFFER", "10")]).await;
    let created = mesh
        .call(
            Method::PUT,
            "/v1/topologies/t",
            &json!({"graph": "a --> b --> c", "node": [
                {"id": "a", "function": "pass"}, {"id": "b", "function": "pass"},
                {"id": "c", "function": "pass"}, {"id": "z", "function": "pass"},
            ]}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    // Edges that changed within a second of an inject are not trusted to be the ones it took.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let x = inject_one(&mesh, json!({"n": 1})).await;
    let y = inject_one(&mesh, json!({"n": 2})).await;
    let chain = |id: &str| -> Vec<(String, String)> {
        ["a", "b", "c"]
            .iter()
            .map(|node| ((*node).to_owned(), id.to_owned()))
            .collect()
    };
    chain_done(&mesh, &x).await;
    for limit in [1, 2, 3, 100] {
        let (outputs, sources) = caused(&mesh, &x, Some("a"), limit).await;
        assert_eq!(outputs, chain(&x), "limit {limit}");
        assert!(
            sources.iter().all(|source| source == "redis"),
            "{sources:?}"
        );
    }
    let page = mesh
        .call(
            Method::GET,
            &format!("/v1/topologies/t/outputs?input_id={x}&node=a"),
            &Value::Null,
        )
        .await;
    assert_eq!(
        page.json["items"][2]["data"],
        json!({"n": 1}),
        "{}",
        page.text
    );
    assert_eq!(page.json["items"][2]["seq"], 1);

    // Without the node: the archive alone, the same outputs, found by its index.
    archived(&mongo, 6, Duration::from_secs(60)).await;
    let database = mongo.client().await.database(mesh_tests::mongo::DATABASE);
    let listed = database
        .run_command(doc! {"listIndexes": "outputs"})
        .await
        .unwrap();
    let keys: Vec<Vec<String>> = listed
        .get_document("cursor")
        .and_then(|cursor| cursor.get_array("firstBatch"))
        .unwrap()
        .iter()
        .filter_map(|index| index.as_document()?.get_document("key").ok())
        .map(|key| key.keys().cloned().collect())
        .collect();
    assert!(
        keys.contains(&vec!["topology".to_owned(), "input_id".to_owned()]),
        "{keys:?}"
    );
    for limit in [1, 2, 100] {
        let (outputs, sources) = caused(&mesh, &y, None, limit).await;
        assert_eq!(outputs, chain(&y), "limit {limit}");
        assert!(
            sources.iter().all(|source| source == "archive"),
            "{sources:?}"
        );
    }

    // Fifteen more: x's outputs leave the buffers of ten; the archive has them.
    for n in 0..15 {
        inject_one(&mesh, json!({"burst": n})).await;
    }
    let w = inject_one(&mesh, json!({"n": 3})).await;
    archived(&mongo, 3 * 18, Duration::from_secs(60)).await;
    for limit in [1, 2, 100] {
        let (outputs, sources) = caused(&mesh, &x, Some("a"), limit).await;
        assert_eq!(outputs, chain(&x), "limit {limit}");
        assert!(
            sources.iter().all(|source| source == "redis+archive"),
            "{sources:?}"
        );
    }
    // w is buffered, but the buffers reach back less than a second before it: joined, and
    // whole with the archive behind (c's output of w not archived).
    let outputs = mongo.outputs().await;
    let removed = outputs
        .delete_many(doc! {"node": "c", "input_id": &w})
        .await
        .unwrap();
    assert_eq!(removed.deleted_count, 1);
    let (got, sources) = caused(&mesh, &w, Some("a"), 100).await;
    assert_eq!(got, chain(&w));
    assert_eq!(sources, ["redis+archive"]);

    // A second later the buffers reach back far enough: v from Redis alone, until c no
    // longer receives from b. Then b → c is not walked; the archive still has c's output.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let v = inject_one(&mesh, json!({"n": 4})).await;
    chain_done(&mesh, &v).await;
    let (got, sources) = caused(&mesh, &v, Some("a"), 100).await;
    assert_eq!(got, chain(&v));
    assert_eq!(sources, ["redis"]);
    archived(&mongo, 3 * 19 - 1, Duration::from_secs(60)).await;
    let cut = mesh
        .call(
            Method::PATCH,
            "/v1/topologies/t/nodes/c",
            &json!({"sources": []}),
        )
        .await;
    assert_eq!(cut.status, StatusCode::OK, "{}", cut.text);
    let (got, sources) = caused(&mesh, &v, Some("a"), 100).await;
    assert_eq!(got, chain(&v));
    assert_eq!(sources, ["redis+archive"]);

    // An inject nobody made: nothing; a topology that never was: 404; bad queries: 400.
    let (got, _) = caused(&mesh, "0190000000007000800000000000000f", Some("z"), 10).await;
    assert_eq!(got, []);
    let missing = mesh
        .call(
            Method::GET,
            &format!("/v1/topologies/nope/outputs?input_id={x}"),
            &Value::Null,
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{}", missing.text);
    for bad in [
        "/v1/topologies/t/outputs",
        "/v1/topologies/t/outputs?input_id=",
        "/v1/topologies/t/outputs?input_id=x&limit=0",
        "/v1/topologies/t/outputs?input_id=x&limit=1001",
        "/v1/topologies/t/outputs?input_id=x&node=Not%20a%20slug",
    ] {
        let answer = mesh.call(Method::GET, bad, &Value::Null).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{bad}: {}",
            answer.text
        );
        assert_eq!(answer.code(), "invalid_query", "{bad}");
    }
}

/// `archive = false`: a topology's nodes that do not say otherwise write nothing to MongoDB,
/// a node that says `archive = true` does; their views say so, their recent history is read
/// from Redis all the same, and a node patched to `archive: true` is archived from its next
/// output on.
#[tokio::test]
async fn nodes_that_do_not_archive_cost_no_mongodb_write() {
    let mongo = TestMongo::start();
    let mesh = mesh_with(&mongo, 1, &[]).await;
    let created = mesh
        .call(
            Method::PUT,
            "/v1/topologies/t",
            &json!({"archive": false, "node": [
                {"id": "quiet", "function": "count"},
                {"id": "kept", "function": "count", "archive": true},
            ]}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let view = |node: &'static str| {
        let mesh = &mesh;
        async move {
            let answer = mesh
                .call(
                    Method::GET,
                    &format!("/v1/topologies/t/nodes/{node}"),
                    &Value::Null,
                )
                .await;
            assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
            answer.json
        }
    };
    assert_eq!(view("quiet").await["archive"], json!(false));
    assert!(view("kept").await.get("archive").is_none());
    let send = |node: &'static str, count: usize| {
        let mesh = &mesh;
        async move {
            let lines: Vec<String> = (0..count).map(|i| i.to_string()).collect();
            let answer = mesh
                .send(
                    mesh.request(
                        Method::POST,
                        &format!("/v1/topologies/t/nodes/{node}/messages"),
                    )
                    .header("content-type", "application/x-ndjson")
                    .body(lines.join("\n")),
                )
                .await;
            assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text);
        }
    };
    send("quiet", 5).await;
    send("kept", 5).await;
    eventually(Duration::from_secs(30), "quiet's five outputs", || async {
        (view("quiet").await["output"]["seq"] == json!(5)).then_some(())
    })
    .await;
    archived(&mongo, 5, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let nodes: Vec<String> = documents(&mongo)
        .await
        .iter()
        .map(|document| document.get_str("node").unwrap().to_owned())
        .collect();
    assert_eq!(nodes, ["kept"; 5]);
    let history = mesh
        .call(
            Method::GET,
            "/v1/topologies/t/nodes/quiet/history?order=asc",
            &Value::Null,
        )
        .await;
    assert_eq!(history.header("gorgon-history-source"), "redis");
    let seqs: Vec<u64> = history.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);

    let patched = mesh
        .call(
            Method::PATCH,
            "/v1/topologies/t/nodes/quiet",
            &json!({"archive": true}),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text);
    assert!(patched.json.get("archive").is_none(), "{}", patched.text);
    send("quiet", 2).await;
    archived(&mongo, 7, Duration::from_secs(60)).await;
    let mut quiet: Vec<u64> = documents(&mongo)
        .await
        .iter()
        .filter(|document| document.get_str("node") == Ok("quiet"))
        .map(|document| integer(document.get("seq").unwrap()))
        .collect();
    quiet.sort_unstable();
    assert_eq!(quiet, [6, 7]);
}
