//! The routes for operators: liveness, readiness, metrics and the OpenAPI document.

use mesh_tests::api::Api;
use mesh_tests::mesh::Mesh;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::{create_sensors, inject_four};

/// `/healthz` and `/readyz` answer their JSON; the OpenAPI document lists the routes, the
/// token scheme, the slug pattern of ids and the refusals every route may answer.
#[tokio::test]
async fn probes_and_the_openapi_document() {
    let api = Api::web(&[]).await;
    let health = api.call(Method::GET, "/healthz", &Value::Null).await;
    assert_eq!(health.json, json!({"status": "ok"}));
    let ready = api.call(Method::GET, "/readyz", &Value::Null).await;
    assert_eq!(ready.json, json!({"status": "ready"}));
    let openapi = api.call(Method::GET, "/openapi.json", &Value::Null).await;
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
    assert!(api.all_running());
}

/// `/metrics` counts the API's requests and, exactly, the messages injected. (A web_face
/// process of its own: in-process roles share one recorder across the tests running.)
#[tokio::test]
async fn metrics_count_requests_and_injects() {
    let mesh = Mesh::start(0, &[]).await;
    create_sensors(&mesh).await;
    inject_four(&mesh).await;
    let metrics = mesh.call(Method::GET, "/metrics", &Value::Null).await;
    assert_eq!(metrics.status, StatusCode::OK);
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
}
