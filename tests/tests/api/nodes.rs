//! The node routes: the list, POST, GET, PATCH (sources), PATCH attrs and DELETE; and
//! attribute patches racing with messages.

use futures_util::stream::{self, StreamExt};
use mesh_tests::api::Api;
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
    let listed: Vec<&str> = nodes.json["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["temp-in", "temp-avg", "too-hot"]);

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
