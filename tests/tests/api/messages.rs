//! The message routes: injects (JSON and ndjson) and the outputs they make, idempotency keys,
//! back pressure, and dead letters listed and replayed.

use std::time::Duration;

use mesh_tests::api::{Api, Setup};
use mesh_tests::eventually;
use mesh_tests::mesh::Mesh;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::{create_sensors, get_settled, inject_four};

/// Injected messages reach the nodes: the average node sees all four, the threshold went
/// above 30 once, with the exact outputs a client reads; no dead letters are listed or
/// replayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injects_reach_the_nodes_and_their_outputs() {
    let api = Api::mesh(1).await;
    create_sensors(&api).await;
    let ids = inject_four(&api).await;

    // The average node sees all four: mean 35; the threshold went above 30 once.
    let avg = get_settled(&api, "/v1/topologies/sensors/nodes/temp-avg", |node| {
        node["attrs"]["count"] == 4
    })
    .await;
    assert_eq!(avg["id"], "temp-avg");
    assert_eq!(avg["function"], "average");
    assert_eq!(avg["sources"], json!(["temp-in"]));
    assert_eq!(avg["attrs"]["mean"], 35.0);
    assert_eq!(
        avg["status"],
        json!({"state": "ok", "last_error": null, "dead_letters": 0})
    );
    assert_eq!(avg["output"]["seq"], 4);
    assert_eq!(avg["output"]["input_id"], ids[2].as_str());
    assert_eq!(avg["output"]["data"], json!({"mean": 35.0, "count": 4}));
    let hot = get_settled(&api, "/v1/topologies/sensors/nodes/too-hot/output", |out| {
        out["seq"] == 2
    })
    .await;
    assert_eq!(hot["topology"], "sensors");
    assert_eq!(hot["node"], "too-hot");
    assert_eq!(hot["data"], json!({"state": "above", "value": 35.0}));
    // Means 20, 25, 30 (all normal: seq 1 for the first state), then 35: above (seq 2).
    assert_eq!(hot["input_id"], ids[2].as_str());
    for key in ["msg_id", "injected_at", "ts"] {
        assert!(hot[key].is_string(), "{key}");
    }

    // No dead letters: an empty list, and nothing to replay.
    let dead = api
        .call(
            Method::GET,
            "/v1/topologies/sensors/dead-letters",
            &Value::Null,
        )
        .await;
    assert_eq!(dead.json, json!({"items": []}));
    let replayed = api
        .call(
            Method::POST,
            "/v1/topologies/sensors/dead-letters/replay",
            &Value::Null,
        )
        .await;
    assert_eq!(replayed.json, json!({"replayed": []}));
}

/// A partition queue at its high-water mark refuses injects with 429 and `Retry-After`, all
/// of a request or none; with no store running, changes answer 503 with `Retry-After`.
#[tokio::test]
async fn back_pressure_and_a_missing_store() {
    let mut mesh = Mesh::start(
        0,
        &[
            ("GORGON_QUEUE_HIGH_WATER", "10"),
            ("GORGON_STORE_TIMEOUT_MS", "1000"),
        ],
    )
    .await;
    let created = mesh
        .call(
            Method::PUT,
            "/v1/topologies/full",
            &json!({"node": [{"id": "a", "function": "pass"}]}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let ndjson = |n: usize| (0..n).map(|i| i.to_string()).collect::<Vec<_>>().join("\n");
    let inject = |n: usize| {
        mesh.send(
            mesh.request(Method::POST, "/v1/topologies/full/nodes/a/messages")
                .header("content-type", "application/x-ndjson")
                .body(ndjson(n)),
        )
    };
    // The node's put already holds one place in the queue (no processor runs).
    assert_eq!(inject(8).await.status, StatusCode::ACCEPTED);
    let before = mesh.queue_lengths().await;
    let refused = inject(2).await;
    assert_eq!(
        (refused.status, refused.code()),
        (StatusCode::TOO_MANY_REQUESTS, "backlog")
    );
    assert_eq!(refused.header("retry-after"), "1");
    assert_eq!(mesh.queue_lengths().await, before, "all or none");
    assert_eq!(inject(1).await.status, StatusCode::ACCEPTED);

    mesh.store.signal("KILL");
    mesh.store.wait_for_exit(Duration::from_secs(10)).await;
    let started = std::time::Instant::now();
    let no_store = mesh
        .call(Method::PUT, "/v1/topologies/other", &json!({"node": []}))
        .await;
    assert_eq!(
        (no_store.status, no_store.code()),
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    );
    assert_eq!(no_store.header("retry-after"), "1");
    assert!(started.elapsed() < Duration::from_secs(5));
    // The request expired unanswered, so a store started later does not apply it.
    mesh.store = mesh.spawn("store");
    mesh.store
        .wait_for_output("starting", Duration::from_secs(10))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let other = mesh
        .call(Method::GET, "/v1/topologies/other", &Value::Null)
        .await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
}

/// An inject with an `Idempotency-Key` is queued once: its repeat, after the messages were
/// processed, answers the same ids with `Idempotent-Replayed` and queues nothing; the key with
/// another body is 422; a malformed key is 400; once the key's time is over it queues again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_queues_a_request_once() {
    let api = Api::start(Setup {
        store: true,
        processors: 1,
        web: &["--idempotency-ttl-s", "2"],
        ..Setup::default()
    })
    .await;
    let created = api
        .call(
            Method::PUT,
            "/v1/topologies/once",
            &json!({"node": [{"id": "c", "function": "count"}]}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let inject = |key: &str, body: &str| {
        api.send(
            api.request(Method::POST, "/v1/topologies/once/nodes/c/messages")
                .header("content-type", "application/x-ndjson")
                .header("idempotency-key", key)
                .body(body.to_owned()),
        )
    };
    let count = || async {
        let latched = api
            .call(
                Method::GET,
                "/v1/topologies/once/nodes/c/output",
                &Value::Null,
            )
            .await;
        latched.json["data"]["count"].as_u64()
    };
    let first = inject("order-17", "{\"n\":1}\n{\"n\":2}").await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.text);
    assert_eq!(first.header("idempotent-replayed"), "");
    let ids = first.json["msg_ids"].clone();
    assert_eq!(ids.as_array().map(Vec::len), Some(2));
    eventually(Duration::from_secs(10), "both counted", || async {
        (count().await == Some(2)).then_some(())
    })
    .await;

    let repeat = inject("order-17", "{\"n\":1}\n{\"n\":2}").await;
    assert_eq!(repeat.status, StatusCode::ACCEPTED, "{}", repeat.text);
    assert_eq!(repeat.header("idempotent-replayed"), "true");
    assert_eq!(repeat.json["msg_ids"], ids);
    let reused = inject("order-17", "{\"n\":3}").await;
    assert_eq!(
        (reused.status, reused.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused")
    );
    for bad in ["", "two words", &"k".repeat(256)] {
        let refused = inject(bad, "{\"n\":4}").await;
        assert_eq!(
            (refused.status, refused.code()),
            (StatusCode::BAD_REQUEST, "invalid_idempotency_key"),
            "key {bad:?}"
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(count().await, Some(2), "the repeat queued nothing");
    assert!(api.queue_lengths().await.iter().all(|&(held, _)| held == 0));

    tokio::time::sleep(Duration::from_secs(2)).await;
    let again = inject("order-17", "{\"n\":1}\n{\"n\":2}").await;
    assert_eq!(again.status, StatusCode::ACCEPTED);
    assert_eq!(again.header("idempotent-replayed"), "");
    assert_ne!(again.json["msg_ids"], ids);
    eventually(Duration::from_secs(10), "counted again", || async {
        (count().await == Some(4)).then_some(())
    })
    .await;
}

/// A message whose function fails is dead-lettered with its error, listed with its node and
/// data, and replayed once the node is fixed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_and_replayed() {
    let api = Api::start(Setup {
        store: true,
        processors: 1,
        processor: &["--max-attempts", "1"],
        ..Setup::default()
    })
    .await;
    let created = api
        .call(
            Method::PUT,
            "/v1/topologies/dl",
            &json!({"node": [{"id": "avg", "function": "average", "attrs": {"field": "/celsius"}}]}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let injected = api
        .call(
            Method::POST,
            "/v1/topologies/dl/nodes/avg/messages",
            &json!({"celsius": "warm", "kelvin": 300}),
        )
        .await;
    let id = injected.json["msg_id"].as_str().unwrap().to_owned();
    let node = get_settled(&api, "/v1/topologies/dl/nodes/avg", |node| {
        node["status"]["dead_letters"] == 1
    })
    .await;
    assert_eq!(node["status"]["state"], "error");
    let listed = api
        .call(Method::GET, "/v1/topologies/dl/dead-letters", &Value::Null)
        .await;
    let items = listed.json["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{}", listed.text);
    assert_eq!(items[0]["id"], id.as_str());
    assert_eq!(items[0]["node"], "avg");
    assert_eq!(items[0]["attempts"], 1);
    assert_eq!(items[0]["data"], json!({"celsius": "warm", "kelvin": 300}));
    assert!(
        items[0]["error"].as_str().unwrap().contains("/celsius"),
        "{}",
        items[0]["error"]
    );

    let fixed = api
        .call(
            Method::PATCH,
            "/v1/topologies/dl/nodes/avg/attrs",
            &json!({"field": "/kelvin"}),
        )
        .await;
    assert_eq!(fixed.status, StatusCode::OK);
    let replayed = api
        .call(
            Method::POST,
            "/v1/topologies/dl/dead-letters/replay",
            &Value::Null,
        )
        .await;
    assert_eq!(replayed.json, json!({"replayed": [id]}));
    let node = get_settled(&api, "/v1/topologies/dl/nodes/avg", |node| {
        node["attrs"]["count"] == 1
    })
    .await;
    assert_eq!(node["attrs"]["mean"], 300.0);
    assert_eq!(node["status"]["state"], "ok");
    let listed = api
        .call(Method::GET, "/v1/topologies/dl/dead-letters", &Value::Null)
        .await;
    assert_eq!(listed.json, json!({"items": []}));
}
