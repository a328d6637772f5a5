//! Every process restarted, Redis included: nothing a client can read is lost.

use std::time::Duration;

use mesh_tests::eventually;
use mesh_tests::mesh::Mesh;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::{get_settled, put_toml};

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
    mesh.redis.single_mut().restart();
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
