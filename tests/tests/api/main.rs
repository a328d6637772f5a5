//! The REST API end to end, by group of routes: every route's happy path with exact bodies,
//! every error code with its status (and nothing enqueued by a refused request, `errors.rs`),
//! document round trips through JSON and TOML, attribute patches racing with the messages of
//! a `count` node, and a restart of every process.
//!
//! Most tests run web_face, the store and processors in-process (`mesh_tests::api::Api`);
//! those that kill roles, or count exact figures on `/metrics`, run them as processes
//! (`mesh_tests::mesh::Mesh`).
//!
//! Layout: `topologies.rs`, `nodes.rs`, `messages.rs` (injects, outputs, idempotency, back
//! pressure, dead letters), `ops.rs` (probes, metrics, OpenAPI), `errors.rs` (the error
//! table), `restart.rs`.

mod errors;
mod messages;
mod nodes;
mod ops;
mod restart;
mod topologies;

use std::time::Duration;

use mesh_tests::eventually;
use mesh_tests::http::{Answer, Http};
use reqwest::{Method, StatusCode};
use serde_json::Value;

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

async fn put_toml(api: &Http, topology: &str, text: &str) -> Answer {
    api.send(
        api.request(Method::PUT, &format!("/v1/topologies/{topology}"))
            .header("content-type", "application/toml")
            .body(text.to_owned()),
    )
    .await
}

async fn get_settled(api: &Http, path: &str, ready: impl Fn(&Value) -> bool) -> Value {
    eventually(Duration::from_secs(15), path, || async {
        let answer = api.call(Method::GET, path, &Value::Null).await;
        (answer.status == StatusCode::OK && ready(&answer.json)).then_some(answer.json)
    })
    .await
}

/// Creates topology `sensors` from [`SENSORS_TOML`]: 201, rev 1.
async fn create_sensors(api: &Http) {
    let created = put_toml(api, "sensors", SENSORS_TOML).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
}

/// Injects `{"celsius": 20}` as JSON, then 30, 40 and 50 as ndjson (with a blank line),
/// into `sensors/temp-in`: 202 with one id, then three; returns the three.
async fn inject_four(api: &Http) -> Vec<String> {
    let one = api
        .call(
            Method::POST,
            "/v1/topologies/sensors/nodes/temp-in/messages",
            &serde_json::json!({"celsius": 20}),
        )
        .await;
    assert_eq!(one.status, StatusCode::ACCEPTED);
    let first_id = one.json["msg_id"].as_str().unwrap().to_owned();
    assert_eq!(first_id.len(), 32);
    let many = api
        .send(
            api.request(
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
    ids
}
