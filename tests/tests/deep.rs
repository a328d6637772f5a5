//! Messages that functions nest deeper and deeper: a chain of `window` nodes (size 1) wraps
//! each message in one more array per node. Where an output would pass the depth every reader
//! of the mesh can parse (`protocol::MAX_DATA_DEPTH`), the message is dead-lettered with
//! `output_too_deep`; everything before it is output, latched, shown, archived and readable in
//! history; nothing is dropped silently and nothing answers 500.

use std::time::Duration;

use futures_util::TryStreamExt as _;
use mesh_tests::eventually;
use mesh_tests::mesh::Mesh;
use mesh_tests::mongo::TestMongo;
use mongodb::bson::{doc, Document};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Nodes in the chain.
const CHAIN: usize = 70;
/// Nesting of the injected message (within the API's default limit of 64).
const INJECTED: usize = 60;

#[tokio::test(flavor = "multi_thread")]
async fn too_deep_outputs_are_dead_lettered_and_the_rest_is_kept() {
    let mongo = TestMongo::start();
    let uri = mongo.uri();
    let mesh = Mesh::start(
        2,
        &[
            ("MONGODB_URI", uri.as_str()),
            ("GORGON_ARCHIVE_WRITE_CONCERN", "journaled"),
            ("GORGON_MONGODB_TIMEOUT_MS", "1000"),
        ],
    )
    .await;
    let nodes: Vec<Value> = (1..=CHAIN)
        .map(|i| {
            let sources = if i == 1 {
                json!([])
            } else {
                json!([format!("w-{}", i - 1)])
            };
            json!({"id": format!("w-{i}"), "function": "window", "sources": sources,
                   "attrs": {"size": 1}})
        })
        .collect();
    let put = mesh
        .call(
            Method::PUT,
            "/v1/topologies/deep",
            &json!({ "node": nodes }),
        )
        .await;
    assert_eq!(put.status, StatusCode::CREATED, "{}", put.text);
    let message = format!("{}1{}", "[".repeat(INJECTED), "]".repeat(INJECTED));
    let inject = mesh
        .send(
            mesh.request(Method::POST, "/v1/topologies/deep/nodes/w-1/messages")
                .header("content-type", "application/json")
                .body(message),
        )
        .await;
    assert_eq!(inject.status, StatusCode::ACCEPTED, "{}", inject.text);

    // w-k outputs INJECTED + k levels: the last that may is w-(MAX - INJECTED).
    let last = protocol::MAX_DATA_DEPTH - INJECTED;
    let refused = format!("w-{}", last + 1);
    let dead = eventually(Duration::from_secs(30), "the dead letter", || async {
        let answer = mesh
            .call(
                Method::GET,
                "/v1/topologies/deep/dead-letters",
                &Value::Null,
            )
            .await;
        let items = answer.json["items"].as_array()?.clone();
        (!items.is_empty()).then_some(items)
    })
    .await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["node"], refused.as_str());
    assert_eq!(dead[0]["attempts"], 1);
    let error = dead[0]["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("output_too_deep: "), "{error}");

    for i in 1..=CHAIN {
        let node = format!("w-{i}");
        let view = mesh
            .call(
                Method::GET,
                &format!("/v1/topologies/deep/nodes/{node}"),
                &Value::Null,
            )
            .await;
        assert_eq!(view.status, StatusCode::OK, "{node}: {}", view.text);
        let output = mesh
            .call(
                Method::GET,
                &format!("/v1/topologies/deep/nodes/{node}/output"),
                &Value::Null,
            )
            .await;
        if i <= last {
            assert_eq!(output.status, StatusCode::OK, "{node}: {}", output.text);
            assert_eq!(output.json["seq"], 1, "{node}");
            assert_eq!(
                view.json["output"], output.json,
                "{node}: the view shows the latch"
            );
            assert_eq!(view.json["status"]["state"], "ok", "{node}");
        } else {
            assert_eq!(
                output.status,
                StatusCode::NOT_FOUND,
                "{node}: {}",
                output.text
            );
            assert_eq!(output.code(), "no_output", "{node}");
            assert_eq!(view.json["output"], Value::Null, "{node}");
        }
        if node == refused {
            assert_eq!(view.json["status"]["state"], "error");
            assert_eq!(view.json["status"]["dead_letters"], 1);
            assert_eq!(view.json["status"]["last_error"].as_str(), Some(error));
        }
    }

    // Every output is archived, the deepest too, and history reads them all back.
    let client = mongo.client().await;
    let outputs = client
        .database(mesh_tests::mongo::DATABASE)
        .collection::<Document>("outputs");
    eventually(Duration::from_secs(30), "every output archived", || async {
        let count = outputs.count_documents(doc! {}).await.ok()?;
        (count == last as u64).then_some(())
    })
    .await;
    let archived: Vec<Document> = outputs
        .find(doc! {"topology": "deep"})
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("read");
    assert_eq!(archived.len(), last);
    for i in [1, last] {
        let history = mesh
            .call(
                Method::GET,
                &format!("/v1/topologies/deep/nodes/w-{i}/history"),
                &Value::Null,
            )
            .await;
        assert_eq!(history.status, StatusCode::OK, "w-{i}: {}", history.text);
        let items = history.json["items"].as_array().expect("items");
        assert_eq!(items.len(), 1, "w-{i}");
        assert_eq!(items[0]["seq"], 1);
        let mut depth = 0;
        let mut data = &items[0]["data"];
        while let Some(inner) = data.get(0) {
            depth += 1;
            data = inner;
        }
        assert_eq!(
            depth,
            INJECTED + i,
            "w-{i}'s history keeps the whole output"
        );
    }
    // History of a node that never was, and of one refused everything: 404 and 200.
    for (path, status) in [
        (
            "/v1/topologies/deep/nodes/w-999/history",
            StatusCode::NOT_FOUND,
        ),
        (
            "/v1/topologies/never-made/nodes/w-1/history",
            StatusCode::NOT_FOUND,
        ),
        ("/v1/topologies/deep/nodes/w-70/history", StatusCode::OK),
    ] {
        let answer = mesh.call(Method::GET, path, &Value::Null).await;
        assert_eq!(answer.status, status, "{path}: {}", answer.text);
    }
}
