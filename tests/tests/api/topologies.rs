//! The topology routes: the function registry, PUT (TOML and JSON), GET (JSON, TOML,
//! Mermaid), the list and DELETE; and reads that follow every change at once.

use mesh_tests::api::Api;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::{put_toml, SENSORS_TOML};

/// The topology routes' happy paths, with the exact bodies a client reads.
#[tokio::test]
async fn topology_routes_answer_as_documented() {
    let api = Api::mesh(0).await;

    // The registry lists the built-ins with their parameters.
    let functions = api.call(Method::GET, "/v1/functions", &Value::Null).await;
    assert_eq!(functions.status, StatusCode::OK);
    let names: Vec<&str> = functions.json["functions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    for name in ["average", "count", "filter", "pass", "threshold"] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
    let count = &functions.json["functions"][names.iter().position(|n| *n == "count").unwrap()];
    assert_eq!(count["params"][0]["name"], "count");
    assert_eq!(count["params"][0]["state"], true);

    // PUT a new topology (TOML): 201 with the plan and rev 1.
    let created = put_toml(&api, "sensors", SENSORS_TOML).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(
        created.json,
        json!({"id": "sensors", "rev": 1, "created": ["temp-in", "temp-avg", "too-hot"],
               "updated": [], "deleted": []})
    );
    assert_eq!(created.header("etag"), "\"1\"");
    assert!(!created.header("x-request-id").is_empty());

    // The same again: 200, nothing changes, rev stays.
    let again = put_toml(&api, "sensors", SENSORS_TOML).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(
        again.json,
        json!({"id": "sensors", "rev": 1, "created": [], "updated": [], "deleted": []})
    );

    // List.
    let list = api.call(Method::GET, "/v1/topologies", &Value::Null).await;
    assert_eq!(
        list.json,
        json!({"topologies": [{"id": "sensors", "nodes": 3, "rev": 1}]})
    );

    // The document as JSON, and the Mermaid chart.
    let doc = api
        .call(Method::GET, "/v1/topologies/sensors", &Value::Null)
        .await;
    assert_eq!(doc.status, StatusCode::OK);
    assert_eq!(
        doc.json,
        json!({"description": "room temperatures", "graph": "temp-in --> temp-avg --> too-hot\n",
               "node": [
                   {"id": "temp-in", "function": "pass", "sources": [], "attrs": {}},
                   {"id": "temp-avg", "function": "average", "sources": [], "attrs": {"field": "/celsius"}},
                   {"id": "too-hot", "function": "threshold", "sources": [],
                    "attrs": {"field": "/mean", "above": 30.0}}]})
    );
    let chart = api
        .call(
            Method::GET,
            "/v1/topologies/sensors/graph.mmd",
            &Value::Null,
        )
        .await;
    assert_eq!(chart.status, StatusCode::OK);
    assert!(chart.header("content-type").starts_with("text/vnd.mermaid"));
    assert_eq!(
        chart.text,
        "flowchart LR\n    temp-in[\"temp-in<br/>pass\"]\n    temp-avg[\"temp-avg<br/>average\"]\n    \
         too-hot[\"too-hot<br/>threshold\"]\n    temp-in --> temp-avg\n    temp-avg --> too-hot\n"
    );

    // Delete the topology: 204, then 404 and an empty list.
    let deleted = api
        .call(Method::DELETE, "/v1/topologies/sensors", &Value::Null)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let gone = api
        .call(Method::GET, "/v1/topologies/sensors", &Value::Null)
        .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    let list = api.call(Method::GET, "/v1/topologies", &Value::Null).await;
    assert_eq!(list.json, json!({"topologies": []}));
    // A topology that is gone, with no dead letters: 404 (history: tests/deep.rs).
    for (method, path) in [
        (Method::GET, "/v1/topologies/sensors/dead-letters"),
        (Method::POST, "/v1/topologies/sensors/dead-letters/replay"),
        (Method::GET, "/v1/topologies/never-made/dead-letters"),
    ] {
        let answer = api.call(method.clone(), path, &Value::Null).await;
        assert_eq!(
            (answer.status, answer.code()),
            (StatusCode::NOT_FOUND, "not_found"),
            "{method} {path}: {}",
            answer.text
        );
    }
}

/// TOML → GET JSON → PUT → GET is unchanged, and the TOML export re-imports to the same
/// document.
#[tokio::test]
async fn documents_round_trip() {
    let api = Api::mesh(0).await;
    assert_eq!(
        put_toml(&api, "rooms", SENSORS_TOML).await.status,
        StatusCode::CREATED
    );
    let first = api
        .call(Method::GET, "/v1/topologies/rooms", &Value::Null)
        .await;
    let put = api
        .call(Method::PUT, "/v1/topologies/rooms", &first.json)
        .await;
    assert_eq!(put.status, StatusCode::OK);
    assert_eq!(
        put.json["rev"], 1,
        "re-applying the same document changes nothing"
    );
    let second = api
        .call(Method::GET, "/v1/topologies/rooms", &Value::Null)
        .await;
    assert_eq!(second.json, first.json);

    let toml = api
        .send(
            api.request(Method::GET, "/v1/topologies/rooms")
                .header("accept", "application/toml"),
        )
        .await;
    assert_eq!(toml.status, StatusCode::OK);
    assert_eq!(toml.header("content-type"), "application/toml");
    assert_eq!(
        put_toml(&api, "copy", &toml.text).await.status,
        StatusCode::CREATED
    );
    let copy = api
        .call(Method::GET, "/v1/topologies/copy", &Value::Null)
        .await;
    assert_eq!(copy.json, first.json);
}

/// web_face keeps the topologies it reads parsed, checked against their rev: every read
/// right after a change, through each route that reads the document, shows the change.
#[tokio::test]
async fn reads_follow_every_change_at_once() {
    let api = Api::mesh(0).await;
    let doc = |round: u64, extra: bool| {
        let mut nodes = vec![
            json!({"id": "in", "function": "pass"}),
            json!({"id": "gate", "function": "threshold", "sources": ["in"],
                   "attrs": {"field": "/v", "above": round}}),
        ];
        if extra {
            nodes.push(json!({"id": "tail", "function": "pass", "sources": ["gate"]}));
        }
        json!({"node": nodes})
    };
    for round in 1..=20u64 {
        let extra = round % 2 == 0;
        let put = api
            .call(Method::PUT, "/v1/topologies/live", &doc(round, extra))
            .await;
        assert!(put.status.is_success(), "round {round}: {}", put.text);
        assert_eq!(put.json["rev"], round, "round {round}");

        let gate = api
            .call(Method::GET, "/v1/topologies/live/nodes/gate", &Value::Null)
            .await;
        assert_eq!(gate.status, StatusCode::OK, "round {round}: {}", gate.text);
        assert_eq!(gate.json["attrs"]["above"], round, "round {round}");
        let stored = api
            .call(Method::GET, "/v1/topologies/live", &Value::Null)
            .await;
        assert_eq!(stored.header("etag"), format!("\"{round}\""));
        assert_eq!(stored.json["node"][1]["attrs"]["above"], round);
        let tail = api
            .call(Method::GET, "/v1/topologies/live/nodes/tail", &Value::Null)
            .await;
        let expected = if extra {
            StatusCode::OK
        } else {
            StatusCode::NOT_FOUND
        };
        assert_eq!(tail.status, expected, "round {round}: {}", tail.text);
        let listed = api
            .call(Method::GET, "/v1/topologies/live/nodes", &Value::Null)
            .await;
        assert_eq!(
            listed.json["nodes"].as_array().map(Vec::len),
            Some(if extra { 3 } else { 2 }),
            "round {round}"
        );
        let chart = api
            .call(Method::GET, "/v1/topologies/live/graph.mmd", &Value::Null)
            .await;
        assert_eq!(chart.text.contains("gate --> tail"), extra, "round {round}");
        let list = api.call(Method::GET, "/v1/topologies", &Value::Null).await;
        assert_eq!(
            list.json,
            json!({"topologies": [{"id": "live", "nodes": if extra { 3 } else { 2 }, "rev": round}]})
        );
    }

    // Deleted: gone at once from every read; created again: there at once.
    let deleted = api
        .call(Method::DELETE, "/v1/topologies/live", &Value::Null)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    for path in ["/v1/topologies/live", "/v1/topologies/live/nodes/gate"] {
        let gone = api.call(Method::GET, path, &Value::Null).await;
        assert_eq!(
            (gone.status, gone.code()),
            (StatusCode::NOT_FOUND, "not_found"),
            "{path}"
        );
    }
    let inject = api
        .call(
            Method::POST,
            "/v1/topologies/live/nodes/in/messages",
            &json!({"v": 1}),
        )
        .await;
    assert_eq!(inject.status, StatusCode::NOT_FOUND, "{}", inject.text);
    let list = api.call(Method::GET, "/v1/topologies", &Value::Null).await;
    assert_eq!(list.json, json!({"topologies": []}));
    let again = api
        .call(Method::PUT, "/v1/topologies/live", &doc(7, true))
        .await;
    assert_eq!(again.status, StatusCode::CREATED, "{}", again.text);
    let gate = api
        .call(Method::GET, "/v1/topologies/live/nodes/gate", &Value::Null)
        .await;
    assert_eq!(gate.json["attrs"]["above"], 7);
    let inject = api
        .call(
            Method::POST,
            "/v1/topologies/live/nodes/tail/messages",
            &json!({"v": 1}),
        )
        .await;
    assert_eq!(inject.status, StatusCode::ACCEPTED, "{}", inject.text);
}
