//! The REST API end to end, with the store and processors running: every route's happy path
//! with exact bodies, every error code with its status (and nothing enqueued by a refused
//! request), document round trips through JSON and TOML, and attribute patches racing with
//! the messages of a `count` node.

use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use mesh_tests::eventually;
use mesh_tests::mesh::{Answer, Mesh};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const SENSORS_TOML: &str = r#"description = "room temperatures"
graph = """
temp-in --> temp-avg --> too-hot
"""

[[node]]
id = "temp-in"
function = "pass"

[[node]]
id = "temp-avg"
function = "average"
attrs = { field = "/celsius" }

[[node]]
id = "too-hot"
function = "threshold"
attrs = { field = "/mean", above = 30.0 }
"#;

async fn put_toml(mesh: &Mesh, topology: &str, text: &str) -> Answer {
    mesh.send(
        mesh.request(Method::PUT, &format!("/v1/topologies/{topology}"))
            .header("content-type", "application/toml")
            .body(text.to_owned()),
    )
    .await
}

async fn get_settled(mesh: &Mesh, path: &str, ready: impl Fn(&Value) -> bool) -> Value {
    eventually(Duration::from_secs(15), path, || async {
        let answer = mesh.call(Method::GET, path, &Value::Null).await;
        (answer.status == StatusCode::OK && ready(&answer.json)).then_some(answer.json)
    })
    .await
}

/// Every route's happy path, with the exact bodies a client reads.
#[tokio::test]
async fn every_route_answers_as_documented() {
    let mesh = Mesh::start(1, &[]).await;

    // The registry lists the built-ins with their parameters.
    let functions = mesh.call(Method::GET, "/v1/functions", &Value::Null).await;
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
    let created = put_toml(&mesh, "sensors", SENSORS_TOML).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(
        created.json,
        json!({"id": "sensors", "rev": 1, "created": ["temp-in", "temp-avg", "too-hot"],
               "updated": [], "deleted": []})
    );
    assert_eq!(created.header("etag"), "\"1\"");
    assert!(!created.header("x-request-id").is_empty());

    // The same again: 200, nothing changes, rev stays.
    let again = put_toml(&mesh, "sensors", SENSORS_TOML).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(
        again.json,
        json!({"id": "sensors", "rev": 1, "created": [], "updated": [], "deleted": []})
    );

    // List.
    let list = mesh.call(Method::GET, "/v1/topologies", &Value::Null).await;
    assert_eq!(
        list.json,
        json!({"topologies": [{"id": "sensors", "nodes": 3, "rev": 1}]})
    );

    // The document as JSON, and the Mermaid chart.
    let doc = mesh
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
    let chart = mesh
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

    // Inject one message and three as ndjson.
    let one = mesh
        .call(
            Method::POST,
            "/v1/topologies/sensors/nodes/temp-in/messages",
            &json!({"celsius": 20}),
        )
        .await;
    assert_eq!(one.status, StatusCode::ACCEPTED);
    let first_id = one.json["msg_id"].as_str().unwrap().to_owned();
    assert_eq!(first_id.len(), 32);
    let many = mesh
        .send(
            mesh.request(
                Method::POST,
                "/v1/topologies/sensors/nodes/temp-in/messages",
            )
            .header("content-type", "application/x-ndjson")
            .body("{\"celsius\": 30}\n{\"celsius\": 40}\n\n{\"celsius\": 50}\n"),
        )
        .await;
    assert_eq!(many.status, StatusCode::ACCEPTED);
    let ids: Vec<String> = many.json["msg_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 3);

    // The average node sees all four: mean 35; the threshold went above 30 once.
    let avg = get_settled(&mesh, "/v1/topologies/sensors/nodes/temp-avg", |node| {
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
    let hot = get_settled(
        &mesh,
        "/v1/topologies/sensors/nodes/too-hot/output",
        |out| out["seq"] == 2,
    )
    .await;
    assert_eq!(hot["topology"], "sensors");
    assert_eq!(hot["node"], "too-hot");
    assert_eq!(hot["data"], json!({"state": "above", "value": 35.0}));
    // Means 20, 25, 30 (all normal: seq 1 for the first state), then 35: above (seq 2).
    assert_eq!(hot["input_id"], ids[2].as_str());
    for key in ["msg_id", "injected_at", "ts"] {
        assert!(hot[key].is_string(), "{key}");
    }

    // The node list, in document order.
    let nodes = mesh
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
    let node = mesh
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
    let changed = mesh
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
    let doc = mesh
        .call(Method::GET, "/v1/topologies/sensors", &Value::Null)
        .await;
    assert_eq!(doc.json.get("graph"), None);
    assert_eq!(doc.json["node"][2]["sources"], json!(["temp-avg"]));
    let patched = mesh
        .call(
            Method::PATCH,
            "/v1/topologies/sensors/nodes/counter/attrs",
            &json!({"note": "kept", "count": 100}),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text);
    assert_eq!(patched.json["attrs"]["note"], "kept");
    assert_eq!(patched.json["attrs"]["count"], 100);
    let removed = mesh
        .call(
            Method::PATCH,
            "/v1/topologies/sensors/nodes/counter/attrs",
            &json!({"note": null}),
        )
        .await;
    assert_eq!(removed.json["attrs"].get("note"), None);
    let counter = get_settled(&mesh, "/v1/topologies/sensors/nodes/counter", |node| {
        node["attrs"].get("note").is_none() && node["attrs"]["count"] == 100
    })
    .await;
    assert_eq!(counter["attrs"], json!({"count": 100}));
    let deleted = mesh
        .call(
            Method::DELETE,
            "/v1/topologies/sensors/nodes/counter",
            &Value::Null,
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let gone = mesh
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

    // Dead letters: a message for a node deleted under it, listed then replayed.
    let dead = mesh
        .call(
            Method::GET,
            "/v1/topologies/sensors/dead-letters",
            &Value::Null,
        )
        .await;
    assert_eq!(dead.json, json!({"items": []}));
    let replayed = mesh
        .call(
            Method::POST,
            "/v1/topologies/sensors/dead-letters/replay",
            &Value::Null,
        )
        .await;
    assert_eq!(replayed.json, json!({"replayed": []}));

    // Operations.
    let health = mesh.call(Method::GET, "/healthz", &Value::Null).await;
    assert_eq!(health.json, json!({"status": "ok"}));
    let ready = mesh.call(Method::GET, "/readyz", &Value::Null).await;
    assert_eq!(ready.json, json!({"status": "ready"}));
    let metrics = mesh.call(Method::GET, "/metrics", &Value::Null).await;
    assert!(
        metrics.text.contains("gorgon_http_requests_total"),
        "{}",
        metrics.text
    );
    assert!(
        metrics.text.contains("gorgon_messages_injected_total 4"),
        "{}",
        metrics.text
    );
    let openapi = mesh.call(Method::GET, "/openapi.json", &Value::Null).await;
    assert!(openapi.json["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/v1/functions",
        "/v1/topologies/{t}",
        "/v1/topologies/{t}/nodes/{n}/messages",
        "/v1/topologies/{t}/nodes/{n}/attrs",
        "/v1/topologies/{t}/dead-letters/replay",
    ] {
        assert!(openapi.json["paths"].get(path).is_some(), "{path}");
    }
    // The token scheme, the slug pattern of ids and the refusals every route may answer.
    assert_eq!(
        openapi.json["components"]["securitySchemes"]["token"]["scheme"],
        "bearer"
    );
    let create = &openapi.json["paths"]["/v1/topologies/{t}/nodes"]["post"];
    assert_eq!(create["security"], json!([{"token": []}]));
    assert_eq!(
        create["parameters"][0]["schema"]["pattern"],
        protocol::SLUG_PATTERN
    );
    for status in ["201", "401", "403", "404", "422", "429", "503"] {
        assert!(create["responses"].get(status).is_some(), "{status}");
    }
    assert!(openapi.json["paths"]["/healthz"]["get"]["security"].is_null());

    // Delete the topology: 204, then 404 and an empty list.
    let deleted = mesh
        .call(Method::DELETE, "/v1/topologies/sensors", &Value::Null)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let gone = mesh
        .call(Method::GET, "/v1/topologies/sensors", &Value::Null)
        .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    let list = mesh.call(Method::GET, "/v1/topologies", &Value::Null).await;
    assert_eq!(list.json, json!({"topologies": []}));
    // A topology that is gone, with no dead letters: 404 (history: tests/deep.rs).
    for (method, path) in [
        (Method::GET, "/v1/topologies/sensors/dead-letters"),
        (Method::POST, "/v1/topologies/sensors/dead-letters/replay"),
        (Method::GET, "/v1/topologies/never-made/dead-letters"),
    ] {
        let answer = mesh.call(method.clone(), path, &Value::Null).await;
        assert_eq!(
            (answer.status, answer.code()),
            (StatusCode::NOT_FOUND, "not_found"),
            "{method} {path}: {}",
            answer.text
        );
    }
}

/// Every error code with its status, and nothing enqueued by a refused request.
#[tokio::test]
async fn errors_have_their_codes_and_enqueue_nothing() {
    let mesh = Mesh::start(
        0,
        &[("GORGON_BODY_LIMIT", "4096"), ("GORGON_NDJSON_LINES", "3")],
    )
    .await;
    let doc = json!({"node": [{"id": "a", "function": "pass"},
                              {"id": "b", "function": "count", "sources": ["a"]}]});
    let created = mesh.call(Method::PUT, "/v1/topologies/t", &doc).await;
    assert_eq!(created.status, StatusCode::CREATED);
    let before = mesh.queue_lengths().await;

    let mesh = &mesh;
    let put = |doc: Value| async move { mesh.call(Method::PUT, "/v1/topologies/t", &doc).await };
    let cases: Vec<(Answer, StatusCode, &str)> =
        vec![
        (
            put(json!({"node": [{"id": "a", "function": "pass", "sources": ["b"]},
                                {"id": "b", "function": "pass", "sources": ["a"]}]}))
            .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "cycle",
        ),
        (
            put(json!({"node": [{"id": "A_1", "function": "pass"}]})).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_slug",
        ),
        (
            put(json!({"node": [{"id": "a", "function": "nope"}]})).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_function",
        ),
        (
            put(json!({"node": [{"id": "a", "function": "pass", "sources": ["x"]}]})).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_source",
        ),
        (
            put(json!({"node": [{"id": "a", "function": "threshold", "attrs": {"above": "hot"}}]}))
                .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_attrs",
        ),
        (
            put(json!({"node": [{"id": "a", "function": "pass", "sorces": []}]})).await,
            StatusCode::BAD_REQUEST,
            "malformed_document",
        ),
        (
            mesh.send(
                mesh.request(Method::PUT, "/v1/topologies/t")
                    .header("content-type", "application/json")
                    .body("{\"node\": ["),
            )
            .await,
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            mesh.send(
                mesh.request(Method::PUT, "/v1/topologies/t")
                    .header("content-type", "text/plain")
                    .body("{}"),
            )
            .await,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            mesh.send(
                mesh.request(Method::PUT, "/v1/topologies/t")
                    .header("if-match", "\"7\"")
                    .json(&doc),
            )
            .await,
            StatusCode::PRECONDITION_FAILED,
            "rev_mismatch",
        ),
        (
            mesh.call(Method::DELETE, "/v1/topologies/t/nodes/a", &Value::Null)
                .await,
            StatusCode::CONFLICT,
            "has_dependents",
        ),
        (
            mesh.call(
                Method::POST,
                "/v1/topologies/t/nodes",
                &json!({"id": "b", "function": "pass"}),
            )
            .await,
            StatusCode::CONFLICT,
            "already_exists",
        ),
        (
            mesh.call(Method::GET, "/v1/topologies/t/nodes/b/output", &Value::Null)
                .await,
            StatusCode::NOT_FOUND,
            "no_output",
        ),
        (
            mesh.call(Method::GET, "/v1/topologies/none", &Value::Null).await,
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            mesh.call(
                Method::POST,
                "/v1/topologies/t/nodes/zz/messages",
                &json!(1),
            )
            .await,
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            mesh.send(
                mesh.request(Method::POST, "/v1/topologies/t/nodes/a/messages")
                    .header("content-type", "application/json")
                    .body(format!("{{\"big\": \"{}\"}}", "x".repeat(5000))),
            )
            .await,
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
        ),
        (
            mesh.send(
                mesh.request(Method::POST, "/v1/topologies/t/nodes/a/messages")
                    .header("content-type", "application/x-ndjson")
                    .body("1\n2\n3\n4\n"),
            )
            .await,
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_lines",
        ),
        (
            mesh.send(
                mesh.request(Method::POST, "/v1/topologies/t/nodes/a/messages")
                    .header("content-type", "application/x-ndjson")
                    .body("1\n{oops\n3\n"),
            )
            .await,
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            mesh.send(
                mesh.request(Method::POST, "/v1/topologies/t/nodes/a/messages")
                    .header("content-type", "application/json")
                    .body(format!("{}1{}", "[".repeat(65), "]".repeat(65))),
            )
            .await,
            StatusCode::BAD_REQUEST,
            "too_deep",
        ),
        (
            mesh.call(
                Method::PATCH,
                "/v1/topologies/t/nodes/b",
                &json!({"sources": ["b"]}),
            )
            .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "cycle",
        ),
    ];
    for (answer, status, code) in &cases {
        assert_eq!(
            (answer.status, answer.code()),
            (*status, *code),
            "{}",
            answer.text
        );
        assert!(
            answer.json["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{}",
            answer.text
        );
    }
    // The cycle names its path; the ndjson error names the line.
    assert!(cases[0].0.json["error"]["message"]
        .as_str()
        .unwrap()
        .contains("a -> b -> a"));
    assert!(cases[16].0.json["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("line 2 "));

    // Nothing was enqueued, and the document is as created.
    assert_eq!(mesh.queue_lengths().await, before);
    let doc_now = mesh
        .call(Method::GET, "/v1/topologies/t", &Value::Null)
        .await;
    assert_eq!(doc_now.header("etag"), "\"1\"");

    // A dry run plans and changes nothing.
    let plan = mesh
        .call(
            Method::PUT,
            "/v1/topologies/t?dry_run=true",
            &json!({"node": [{"id": "a", "function": "pass"}, {"id": "c", "function": "count"}]}),
        )
        .await;
    assert_eq!(plan.status, StatusCode::OK);
    assert_eq!(
        plan.json,
        json!({"id": "t", "rev": 1, "created": ["c"], "updated": [], "deleted": ["b"]})
    );
    assert_eq!(mesh.queue_lengths().await, before);

    // A matching If-Match applies; force deletes a node with dependents and its edges.
    let forced = mesh
        .send(
            mesh.request(Method::DELETE, "/v1/topologies/t/nodes/a?force=true")
                .header("if-match", "1"),
        )
        .await;
    assert_eq!(forced.status, StatusCode::NO_CONTENT, "{}", forced.text);
    let doc_now = mesh
        .call(Method::GET, "/v1/topologies/t", &Value::Null)
        .await;
    assert_eq!(
        doc_now.json,
        json!({"node": [{"id": "b", "function": "count", "sources": [], "attrs": {}}]})
    );
}

/// TOML → GET JSON → PUT → GET is unchanged, and the TOML export re-imports to the same
/// document.
#[tokio::test]
async fn documents_round_trip() {
    let mesh = Mesh::start(0, &[]).await;
    assert_eq!(
        put_toml(&mesh, "rooms", SENSORS_TOML).await.status,
        StatusCode::CREATED
    );
    let first = mesh
        .call(Method::GET, "/v1/topologies/rooms", &Value::Null)
        .await;
    let put = mesh
        .call(Method::PUT, "/v1/topologies/rooms", &first.json)
        .await;
    assert_eq!(put.status, StatusCode::OK);
    assert_eq!(
        put.json["rev"], 1,
        "re-applying the same document changes nothing"
    );
    let second = mesh
        .call(Method::GET, "/v1/topologies/rooms", &Value::Null)
        .await;
    assert_eq!(second.json, first.json);

    let toml = mesh
        .send(
            mesh.request(Method::GET, "/v1/topologies/rooms")
                .header("accept", "application/toml"),
        )
        .await;
    assert_eq!(toml.status, StatusCode::OK);
    assert_eq!(toml.header("content-type"), "application/toml");
    assert_eq!(
        put_toml(&mesh, "copy", &toml.text).await.status,
        StatusCode::CREATED
    );
    let copy = mesh
        .call(Method::GET, "/v1/topologies/copy", &Value::Null)
        .await;
    assert_eq!(copy.json, first.json);
}

/// web_face keeps the topologies it reads parsed, checked against their rev: every read
/// right after a change, through each route that reads the document, shows the change.
#[tokio::test]
async fn reads_follow_every_change_at_once() {
    let mesh = Mesh::start(0, &[]).await;
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
        let put = mesh
            .call(Method::PUT, "/v1/topologies/live", &doc(round, extra))
            .await;
        assert!(put.status.is_success(), "round {round}: {}", put.text);
        assert_eq!(put.json["rev"], round, "round {round}");

        let gate = mesh
            .call(Method::GET, "/v1/topologies/live/nodes/gate", &Value::Null)
            .await;
        assert_eq!(gate.status, StatusCode::OK, "round {round}: {}", gate.text);
        assert_eq!(gate.json["attrs"]["above"], round, "round {round}");
        let stored = mesh
            .call(Method::GET, "/v1/topologies/live", &Value::Null)
            .await;
        assert_eq!(stored.header("etag"), format!("\"{round}\""));
        assert_eq!(stored.json["node"][1]["attrs"]["above"], round);
        let tail = mesh
            .call(Method::GET, "/v1/topologies/live/nodes/tail", &Value::Null)
            .await;
        let expected = if extra {
            StatusCode::OK
        } else {
            StatusCode::NOT_FOUND
        };
        assert_eq!(tail.status, expected, "round {round}: {}", tail.text);
        let listed = mesh
            .call(Method::GET, "/v1/topologies/live/nodes", &Value::Null)
            .await;
        assert_eq!(
            listed.json["nodes"].as_array().map(Vec::len),
            Some(if extra { 3 } else { 2 }),
            "round {round}"
        );
        let chart = mesh
            .call(Method::GET, "/v1/topologies/live/graph.mmd", &Value::Null)
            .await;
        assert_eq!(chart.text.contains("gate --> tail"), extra, "round {round}");
        let list = mesh.call(Method::GET, "/v1/topologies", &Value::Null).await;
        assert_eq!(
            list.json,
            json!({"topologies": [{"id": "live", "nodes": if extra { 3 } else { 2 }, "rev": round}]})
        );
    }

    // Deleted: gone at once from every read; created again: there at once.
    let deleted = mesh
        .call(Method::DELETE, "/v1/topologies/live", &Value::Null)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    for path in ["/v1/topologies/live", "/v1/topologies/live/nodes/gate"] {
        let gone = mesh.call(Method::GET, path, &Value::Null).await;
        assert_eq!(
            (gone.status, gone.code()),
            (StatusCode::NOT_FOUND, "not_found"),
            "{path}"
        );
    }
    let inject = mesh
        .call(
            Method::POST,
            "/v1/topologies/live/nodes/in/messages",
            &json!({"v": 1}),
        )
        .await;
    assert_eq!(inject.status, StatusCode::NOT_FOUND, "{}", inject.text);
    let list = mesh.call(Method::GET, "/v1/topologies", &Value::Null).await;
    assert_eq!(list.json, json!({"topologies": []}));
    let again = mesh
        .call(Method::PUT, "/v1/topologies/live", &doc(7, true))
        .await;
    assert_eq!(again.status, StatusCode::CREATED, "{}", again.text);
    let gate = mesh
        .call(Method::GET, "/v1/topologies/live/nodes/gate", &Value::Null)
        .await;
    assert_eq!(gate.json["attrs"]["above"], 7);
    let inject = mesh
        .call(
            Method::POST,
            "/v1/topologies/live/nodes/tail/messages",
            &json!({"v": 1}),
        )
        .await;
    assert_eq!(inject.status, StatusCode::ACCEPTED, "{}", inject.text);
}

/// 1 000 concurrent attribute patches while 10 000 messages flow through a `count` node: the
/// count is exact and every patched key is there.
#[tokio::test]
async fn attribute_patches_race_with_messages() {
    const MESSAGES: usize = 10_000;
    const PATCHES: usize = 1_000;
    let mesh = Mesh::start(2, &[]).await;
    let created = mesh
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
            let answer = mesh
                .send(
                    mesh.request(Method::POST, "/v1/topologies/race/nodes/counter/messages")
                        .header("content-type", "application/x-ndjson")
                        .body(chunk.join("\n")),
                )
                .await;
            assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text);
        }
    };
    let patch = stream::iter(0..PATCHES)
        .map(|i| {
            let mesh = &mesh;
            async move {
                mesh.call(
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
    let node = get_settled(&mesh, "/v1/topologies/race/nodes/counter", |node| {
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
    let doc = mesh
        .call(Method::GET, "/v1/topologies/race", &Value::Null)
        .await;
    assert_eq!(doc.header("etag"), format!("\"{}\"", PATCHES + 1));
    assert_eq!(
        doc.json["node"][0]["attrs"].as_object().unwrap().len(),
        PATCHES
    );
}

/// Everything survives a restart of every process, Redis included (AOF): every role and Redis
/// killed with SIGKILL, then started again → the document, its rev, node state and latched
/// outputs are as they were, and the mesh carries on counting exactly.
#[tokio::test]
async fn everything_survives_a_restart_of_every_process() {
    let mut mesh = Mesh::start_on(redpill::testing::TestRedis::start_with_aof(), 1, &[]).await;
    let created = put_toml(
        &mesh,
        "kept",
        "graph = \"a --> b\"\n[[node]]\nid = \"a\"\nfunction = \"pass\"\n\n[[node]]\nid = \"b\"\nfunction = \"count\"\n",
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let patched = mesh
        .call(
            Method::PATCH,
            "/v1/topologies/kept/nodes/a/attrs",
            &json!({"note": "x"}),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK);
    let lines: Vec<String> = (0..100).map(|i| i.to_string()).collect();
    let injected = mesh
        .send(
            mesh.request(Method::POST, "/v1/topologies/kept/nodes/a/messages")
                .header("content-type", "application/x-ndjson")
                .body(lines.join("\n")),
        )
        .await;
    assert_eq!(injected.status, StatusCode::ACCEPTED);
    get_settled(&mesh, "/v1/topologies/kept/nodes/b", |node| {
        node["attrs"]["count"] == 100
    })
    .await;
    let doc_before = mesh
        .call(Method::GET, "/v1/topologies/kept", &Value::Null)
        .await;
    let output_before = mesh
        .call(
            Method::GET,
            "/v1/topologies/kept/nodes/b/output",
            &Value::Null,
        )
        .await;

    let mut roles: Vec<&mut mesh_tests::RoleProcess> = vec![&mut mesh.web, &mut mesh.store];
    roles.extend(mesh.processors.iter_mut());
    for role in roles {
        role.signal("KILL");
        role.wait_for_exit(Duration::from_secs(10)).await;
    }
    mesh.redis.restart();
    mesh.store = mesh.spawn("store");
    mesh.processors = vec![mesh.spawn("processor")];
    mesh.web = mesh.spawn("web_face");
    eventually(Duration::from_secs(30), "the API back", || async {
        let ready = mesh.request(Method::GET, "/readyz").send().await.ok()?;
        (ready.status() == StatusCode::OK).then_some(())
    })
    .await;

    let doc_after = mesh
        .call(Method::GET, "/v1/topologies/kept", &Value::Null)
        .await;
    assert_eq!(doc_after.json, doc_before.json);
    assert_eq!(doc_after.header("etag"), "\"2\"");
    let output_after = mesh
        .call(
            Method::GET,
            "/v1/topologies/kept/nodes/b/output",
            &Value::Null,
        )
        .await;
    assert_eq!(output_after.json, output_before.json);
    let a = mesh
        .call(Method::GET, "/v1/topologies/kept/nodes/a", &Value::Null)
        .await;
    assert_eq!(a.json["attrs"], json!({"note": "x"}));

    let more = mesh
        .send(
            mesh.request(Method::POST, "/v1/topologies/kept/nodes/a/messages")
                .header("content-type", "application/x-ndjson")
                .body(lines[..50].join("\n")),
        )
        .await;
    assert_eq!(more.status, StatusCode::ACCEPTED);
    let b = get_settled(&mesh, "/v1/topologies/kept/nodes/b", |node| {
        node["attrs"]["count"].as_u64() >= Some(150)
    })
    .await;
    assert_eq!(b["attrs"]["count"], 150);
    assert_eq!(b["output"]["seq"], 150);
    let changed = mesh
        .call(
            Method::PATCH,
            "/v1/topologies/kept/nodes/a/attrs",
            &json!({"note": null}),
        )
        .await;
    assert_eq!(
        (changed.status, changed.header("etag")),
        (StatusCode::OK, "\"3\"")
    );
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
#[tokio::test]
async fn an_idempotency_key_queues_a_request_once() {
    let mesh = Mesh::start(1, &[("GORGON_IDEMPOTENCY_TTL_S", "2")]).await;
    let created = mesh
        .call(
            Method::PUT,
            "/v1/topologies/once",
            &json!({"node": [{"id": "c", "function": "count"}]}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let inject = |key: &str, body: &str| {
        mesh.send(
            mesh.request(Method::POST, "/v1/topologies/once/nodes/c/messages")
                .header("content-type", "application/x-ndjson")
                .header("idempotency-key", key)
                .body(body.to_owned()),
        )
    };
    let count = || async {
        let latched = mesh
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
    assert!(mesh
        .queue_lengths()
        .await
        .iter()
        .all(|&(held, _)| held == 0));

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
#[tokio::test]
async fn dead_letters_are_listed_and_replayed() {
    let mesh = Mesh::start(1, &[("GORGON_MAX_ATTEMPTS", "1")]).await;
    let created = mesh
        .call(
            Method::PUT,
            "/v1/topologies/dl",
            &json!({"node": [{"id": "avg", "function": "average", "attrs": {"field": "/celsius"}}]}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let injected = mesh
        .call(
            Method::POST,
            "/v1/topologies/dl/nodes/avg/messages",
            &json!({"celsius": "warm", "kelvin": 300}),
        )
        .await;
    let id = injected.json["msg_id"].as_str().unwrap().to_owned();
    let node = get_settled(&mesh, "/v1/topologies/dl/nodes/avg", |node| {
        node["status"]["dead_letters"] == 1
    })
    .await;
    assert_eq!(node["status"]["state"], "error");
    let listed = mesh
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

    let fixed = mesh
        .call(
            Method::PATCH,
            "/v1/topologies/dl/nodes/avg/attrs",
            &json!({"field": "/kelvin"}),
        )
        .await;
    assert_eq!(fixed.status, StatusCode::OK);
    let replayed = mesh
        .call(
            Method::POST,
            "/v1/topologies/dl/dead-letters/replay",
            &Value::Null,
        )
        .await;
    assert_eq!(replayed.json, json!({"replayed": [id]}));
    let node = get_settled(&mesh, "/v1/topologies/dl/nodes/avg", |node| {
        node["attrs"]["count"] == 1
    })
    .await;
    assert_eq!(node["attrs"]["mean"], 300.0);
    assert_eq!(node["status"]["state"], "ok");
    let listed = mesh
        .call(Method::GET, "/v1/topologies/dl/dead-letters", &Value::Null)
        .await;
    assert_eq!(listed.json, json!({"items": []}));
}
