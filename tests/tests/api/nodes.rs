//! The node routes: the list, POST, GET, PATCH (sources), PATCH attrs and DELETE; and
//! attribute patches racing with messages.

use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use mesh_tests::api::{Api, Setup};
use mesh_tests::eventually;
use mesh_tests::http::Answer;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::{create_sensors, get_settled};

/// The node routes' happy paths, with the exact bodies a client reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_routes_answer_as_documented() {
    let api = Api::mesh(1).await;
    create_sensors(&api).await;

    // The node list, in document order.
    let nodes = api
        .call(Method::GET, "/v1/topologies/sensors/nodes", &Value::Null)
        .await;
    assert_eq!(ids_of(&nodes.json), ["temp-in", "temp-avg", "too-hot"]);

    // Create a node, change it, patch its attributes, delete it.
    let node = api
        .call(
            Method::POST,
            "/v1/topologies/sensors/nodes",
            &json!({"id": "counter", "function": "count", "sources": ["temp-in"]}),
        )
        .await;
    assert_eq!(node.status, StatusCode::CREATED, "{}", node.text);
    assert_eq!(
        node.json,
        json!({"id": "counter", "function": "count", "sources": ["temp-in"], "attrs": {},
               "output": null, "status": {"state": "ok", "last_error": null, "dead_letters": 0}})
    );
    assert_eq!(node.header("etag"), "\"2\"");
    let changed = api
        .call(
            Method::PATCH,
            "/v1/topologies/sensors/nodes/counter",
            &json!({"sources": ["temp-avg"]}),
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.text);
    assert_eq!(changed.json["sources"], json!(["temp-avg"]));
    assert_eq!(changed.header("etag"), "\"3\"");
    // Changing edges moved the graph's edges into the nodes' sources.
    let doc = api
        .call(Method::GET, "/v1/topologies/sensors", &Value::Null)
        .await;
    assert_eq!(doc.json.get("graph"), None);
    assert_eq!(doc.json["node"][2]["sources"], json!(["temp-avg"]));
    let patched = api
        .call(
            Method::PATCH,
            "/v1/topologies/sensors/nodes/counter/attrs",
            &json!({"note": "kept", "count": 100}),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text);
    assert_eq!(patched.json["attrs"]["note"], "kept");
    assert_eq!(patched.json["attrs"]["count"], 100);
    let removed = api
        .call(
            Method::PATCH,
            "/v1/topologies/sensors/nodes/counter/attrs",
            &json!({"note": null}),
        )
        .await;
    assert_eq!(removed.json["attrs"].get("note"), None);
    let counter = get_settled(&api, "/v1/topologies/sensors/nodes/counter", |node| {
        node["attrs"].get("note").is_none() && node["attrs"]["count"] == 100
    })
    .await;
    assert_eq!(counter["attrs"], json!({"count": 100}));
    let deleted = api
        .call(
            Method::DELETE,
            "/v1/topologies/sensors/nodes/counter",
            &Value::Null,
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let gone = api
        .call(
            Method::GET,
            "/v1/topologies/sensors/nodes/counter",
            &Value::Null,
        )
        .await;
    assert_eq!(
        (gone.status, gone.code()),
        (StatusCode::NOT_FOUND, "not_found")
    );
}

/// 1 000 concurrent attribute patches while 10 000 messages flow through a `count` node: the
/// count is exact and every patched key is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attribute_patches_race_with_messages() {
    const MESSAGES: usize = 10_000;
    const PATCHES: usize = 1_000;
    let api = Api::mesh(2).await;
    let created = api
        .call(
            Method::PUT,
            "/v1/topologies/race",
            &json!({"node": [{"id": "counter", "function": "count"}]}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);

    let inject = async {
        let lines: Vec<String> = (0..MESSAGES).map(|i| format!("{{\"i\": {i}}}")).collect();
        for chunk in lines.chunks(500) {
            let answer = api
                .send(
                    api.request(Method::POST, "/v1/topologies/race/nodes/counter/messages")
                        .header("content-type", "application/x-ndjson")
                        .body(chunk.join("\n")),
                )
                .await;
            assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text);
        }
    };
    let patch = stream::iter(0..PATCHES)
        .map(|i| {
            let api = &api;
            async move {
                api.call(
                    Method::PATCH,
                    "/v1/topologies/race/nodes/counter/attrs",
                    &json!({ format!("k{i}"): i }),
                )
                .await
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<Answer>>();
    let ((), answers) = tokio::join!(inject, patch);
    assert!(
        answers.iter().all(|a| a.status == StatusCode::OK),
        "{:?}",
        answers.iter().find(|a| a.status != StatusCode::OK)
    );
    let node = get_settled(&api, "/v1/topologies/race/nodes/counter", |node| {
        node["attrs"]["count"].as_u64() >= Some(MESSAGES as u64)
            && node["attrs"].as_object().unwrap().len() > PATCHES
    })
    .await;
    assert_eq!(node["attrs"]["count"], MESSAGES as u64);
    for i in 0..PATCHES {
        assert_eq!(node["attrs"][format!("k{i}")], i, "k{i}");
    }
    assert_eq!(node["output"]["seq"], MESSAGES as u64);
    // Every patch is in the document too, one rev each.
    let doc = api
        .call(Method::GET, "/v1/topologies/race", &Value::Null)
        .await;
    assert_eq!(doc.header("etag"), format!("\"{}\"", PATCHES + 1));
    assert_eq!(
        doc.json["node"][0]["attrs"].as_object().unwrap().len(),
        PATCHES
    );
}

/// The ids of a node list's `nodes`, in order.
fn ids_of(list: &Value) -> Vec<&str> {
    list["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|node| node["id"].as_str().unwrap())
        .collect()
}

/// Entry nodes of the bulk-read topology; each feeds [`COUNTERS`] `count` nodes.
const ENTRIES: usize = 100;
const COUNTERS: usize = 99;

/// How many messages entry `entry` is given: 1 to 4, so that nodes differ.
fn messages_into(entry: usize) -> u64 {
    (entry % 4) as u64 + 1
}

/// Bulk reads of 10 000 nodes are exact: 100 `pass` entries `e<i>`, each fanning out to 99
/// `count` nodes `e<i>-c<j>`, entry i given 1 to 4 messages. Read in pages of 1 000 (id
/// order, every node once, `next` chaining the pages), by 1 000 ids (the order given,
/// repeats once, unknown ids in `missing`), and whole (document order): every node's
/// output, seq and attributes are its own. The query's limits answer 400 `invalid_query`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_reads_of_ten_thousand_nodes_are_exact() {
    let api = Api::start(Setup {
        store: true,
        processors: 1,
        web: &["--body-limit", "8388608"],
        ..Setup::default()
    })
    .await;
    let mut graph = String::new();
    let mut nodes = Vec::new();
    let mut document_order = Vec::new();
    for entry in 0..ENTRIES {
        nodes.push(json!({"id": format!("e{entry}"), "function": "pass"}));
        document_order.push(format!("e{entry}"));
        for counter in 0..COUNTERS {
            graph.push_str(&format!("e{entry} --> e{entry}-c{counter}\n"));
            nodes.push(json!({"id": format!("e{entry}-c{counter}"), "function": "count"}));
            document_order.push(format!("e{entry}-c{counter}"));
        }
    }
    let created = api
        .call(
            Method::PUT,
            "/v1/topologies/bulk",
            &json!({"graph": graph, "node": nodes}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    for entry in 0..ENTRIES {
        let lines: String = (0..messages_into(entry))
            .map(|k| format!("{{\"k\":{k}}}\n"))
            .collect();
        let injected = api
            .send(
                api.request(
                    Method::POST,
                    &format!("/v1/topologies/bulk/nodes/e{entry}/messages"),
                )
                .header("content-type", "application/x-ndjson")
                .body(lines),
            )
            .await;
        assert_eq!(injected.status, StatusCode::ACCEPTED, "{}", injected.text);
    }
    // What node `id` shows once every message went through.
    let expected = |id: &str| -> (u64, Value) {
        let entry: usize = id[1..].split('-').next().unwrap().parse().unwrap();
        let seq = messages_into(entry);
        if id.contains("-c") {
            (seq, json!({"count": seq}))
        } else {
            (seq, json!({"k": seq - 1}))
        }
    };
    let exact = |node: &Value| {
        let id = node["id"].as_str().unwrap();
        let (seq, data) = expected(id);
        assert_eq!(node["output"]["node"], id, "{node}");
        assert_eq!(node["output"]["topology"], "bulk", "{node}");
        assert_eq!(node["output"]["seq"], seq, "{node}");
        assert_eq!(node["output"]["data"], data, "{node}");
        if id.contains("-c") {
            assert_eq!(node["attrs"], json!({"count": seq}), "{node}");
            assert_eq!(node["function"], "count", "{node}");
        }
        assert_eq!(node["status"]["state"], "ok", "{node}");
    };
    let settled = |node: &Value| node["output"]["seq"] == expected(node["id"].as_str().unwrap()).0;

    // Pages of 1 000 in id order, until every node has settled.
    let mut by_id = document_order.clone();
    by_id.sort();
    let pages = eventually(Duration::from_secs(120), "every node settled", || async {
        let mut pages = Vec::new();
        let mut path = Some("/v1/topologies/bulk/nodes?limit=1000".to_owned());
        while let Some(next) = path {
            let page = api.call(Method::GET, &next, &Value::Null).await;
            assert_eq!(page.status, StatusCode::OK, "{}", page.text);
            path = page.json["next"].as_str().map(str::to_owned);
            pages.push(page.json);
        }
        pages
            .iter()
            .all(|page| page["nodes"].as_array().unwrap().iter().all(settled))
            .then_some(pages)
    })
    .await;
    assert_eq!(pages.len(), 10);
    let paged: Vec<&Value> = pages
        .iter()
        .flat_map(|page| page["nodes"].as_array().unwrap())
        .collect();
    let paged_ids: Vec<&str> = paged
        .iter()
        .map(|node| node["id"].as_str().unwrap())
        .collect();
    assert_eq!(paged_ids, by_id);
    paged.iter().for_each(|node| exact(node));
    assert_eq!(
        pages[0]["next"],
        format!("/v1/topologies/bulk/nodes?limit=1000&after={}", by_id[999])
    );
    assert_eq!(pages[9]["next"], Value::Null);
    assert_eq!(pages[9].get("missing"), None);

    // 1 000 ids: every tenth node from the end, two unknown ids and a repeat.
    let mut asked: Vec<String> = document_order.iter().rev().step_by(10).cloned().collect();
    asked.truncate(998);
    asked.insert(10, "nobody".to_owned());
    asked.push("e5-c99".to_owned());
    asked.push(asked[0].clone());
    let chosen = api
        .call(
            Method::GET,
            &format!("/v1/topologies/bulk/nodes?ids={}", asked.join(",")),
            &Value::Null,
        )
        .await;
    assert_eq!(chosen.status, StatusCode::OK, "{}", chosen.text);
    chosen.json["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .for_each(exact);
    let chosen_ids = ids_of(&chosen.json);
    let known: Vec<&str> = asked[..999]
        .iter()
        .map(String::as_str)
        .filter(|id| *id != "nobody")
        .collect();
    assert_eq!(chosen_ids, known);
    assert_eq!(chosen.json["missing"], json!(["nobody", "e5-c99"]));
    assert_eq!(chosen.json["next"], Value::Null);

    // The whole list, in document order.
    let whole = api
        .call(Method::GET, "/v1/topologies/bulk/nodes", &Value::Null)
        .await;
    whole.json["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .for_each(exact);
    assert_eq!(ids_of(&whole.json), document_order);
    assert_eq!(whole.json.get("missing"), None);

    // A cursor that names no node (one deleted since, say) starts after where it would sort.
    let after_gap = api
        .call(
            Method::GET,
            "/v1/topologies/bulk/nodes?limit=2&after=e50-c5z",
            &Value::Null,
        )
        .await;
    let ids = ids_of(&after_gap.json);
    assert_eq!(ids, ["e50-c6", "e50-c60"]);
    assert_eq!(
        after_gap.json["next"],
        "/v1/topologies/bulk/nodes?limit=2&after=e50-c60"
    );

    // The query's limits.
    let too_many: Vec<&str> = by_id.iter().take(1001).map(String::as_str).collect();
    for query in [
        format!("ids={}", too_many.join(",")),
        "ids=".to_owned(),
        "ids=e1&limit=10".to_owned(),
        "ids=e1&after=e0".to_owned(),
        "limit=0".to_owned(),
        "limit=10001".to_owned(),
        "after=e0".to_owned(),
        "limit=ten".to_owned(),
    ] {
        let refused = api
            .call(
                Method::GET,
                &format!("/v1/topologies/bulk/nodes?{query}"),
                &Value::Null,
            )
            .await;
        assert_eq!(
            refused.status,
            StatusCode::BAD_REQUEST,
            "{query}: {}",
            refused.text
        );
        assert_eq!(refused.json["error"]["code"], "invalid_query", "{query}");
    }
    let unknown = api
        .call(
            Method::GET,
            "/v1/topologies/nowhere/nodes?ids=e1",
            &Value::Null,
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}
