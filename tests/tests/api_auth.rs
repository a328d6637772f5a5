//! API tokens and scopes end to end: what an admin, a read-write and a read-only token, a
//! wrong token and no token get from every kind of route, that a topology a token may not
//! read does not exist for it, that refused requests change and enqueue nothing, and the
//! per-token rate limit.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use mesh_tests::eventually;
use mesh_tests::mesh::{Answer, Mesh};
use reqwest::header::AUTHORIZATION;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const TOKENS: &str = "t-admin=admin,t-rw=rw:sensors,t-ro=ro:sensors";
/// The topology the rw and ro tokens are scoped to.
const SENSORS: &str = "sensors";
/// A topology only the admin token may see.
const OTHER: &str = "other";

/// Both topologies: a count node that receives the injects, and a node to delete.
fn doc(description: &str) -> Value {
    json!({
        "description": description,
        "node": [
            {"id": "temp", "function": "count"},
            {"id": "spare", "function": "pass"}
        ]
    })
}

/// Who sends a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    Admin,
    Rw,
    Ro,
    /// A token that is not configured.
    Wrong,
    /// No `Authorization` header.
    Nobody,
}

impl Who {
    fn authorization(self) -> Option<&'static str> {
        match self {
            Who::Admin => Some("Bearer t-admin"),
            Who::Rw => Some("Bearer t-rw"),
            Who::Ro => Some("Bearer t-ro"),
            Who::Wrong => Some("Bearer t-nope"),
            Who::Nobody => None,
        }
    }
}

/// A representative request of each kind: four reads, three writes and an inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    GetTopology,
    GetNode,
    ListNodes,
    GetOutput,
    Put,
    PatchAttrs,
    DeleteNode,
    Inject,
}

impl Op {
    const ALL: [Op; 8] = [
        Op::GetTopology,
        Op::GetNode,
        Op::ListNodes,
        Op::GetOutput,
        Op::Put,
        Op::PatchAttrs,
        Op::DeleteNode,
        Op::Inject,
    ];

    fn is_read(self) -> bool {
        matches!(
            self,
            Op::GetTopology | Op::GetNode | Op::ListNodes | Op::GetOutput
        )
    }

    /// The status of the request when it is let through.
    fn success(self) -> StatusCode {
        match self {
            Op::DeleteNode => StatusCode::NO_CONTENT,
            Op::Inject => StatusCode::ACCEPTED,
            _ => StatusCode::OK,
        }
    }
}

/// The status `who` must get for `op` on `topology`.
fn expected(who: Who, topology: &str, op: Op) -> StatusCode {
    match who {
        Who::Admin => op.success(),
        Who::Rw if topology == SENSORS => op.success(),
        Who::Ro if topology == SENSORS && op.is_read() => op.success(),
        Who::Ro if topology == SENSORS => StatusCode::FORBIDDEN,
        Who::Rw | Who::Ro => StatusCode::NOT_FOUND,
        Who::Wrong | Who::Nobody => StatusCode::UNAUTHORIZED,
    }
}

/// `method path` as `who`, with a JSON body unless it is null.
async fn call(mesh: &Mesh, who: Who, method: Method, path: &str, body: &Value) -> Answer {
    let mut request = mesh.request(method, path);
    if let Some(authorization) = who.authorization() {
        request = request.header(AUTHORIZATION, authorization);
    }
    if !body.is_null() {
        request = request.json(body);
    }
    mesh.send(request).await
}

/// Sends `op` on `topology` as `who`.
async fn perform(mesh: &Mesh, who: Who, topology: &str, op: Op) -> Answer {
    let base = format!("/v1/topologies/{topology}");
    let note = format!("{who:?}");
    match op {
        Op::GetTopology => call(mesh, who, Method::GET, &base, &Value::Null).await,
        Op::GetNode => {
            call(
                mesh,
                who,
                Method::GET,
                &format!("{base}/nodes/temp"),
                &Value::Null,
            )
            .await
        }
        Op::ListNodes => {
            call(
                mesh,
                who,
                Method::GET,
                &format!("{base}/nodes"),
                &Value::Null,
            )
            .await
        }
        Op::GetOutput => {
            call(
                mesh,
                who,
                Method::GET,
                &format!("{base}/nodes/temp/output"),
                &Value::Null,
            )
            .await
        }
        Op::Put => {
            call(
                mesh,
                who,
                Method::PUT,
                &base,
                &doc(&format!("put by {note}")),
            )
            .await
        }
        Op::PatchAttrs => {
            let patch = json!({"note": note});
            call(
                mesh,
                who,
                Method::PATCH,
                &format!("{base}/nodes/temp/attrs"),
                &patch,
            )
            .await
        }
        Op::DeleteNode => {
            call(
                mesh,
                who,
                Method::DELETE,
                &format!("{base}/nodes/spare"),
                &Value::Null,
            )
            .await
        }
        Op::Inject => {
            let message = json!({"v": 1});
            call(
                mesh,
                who,
                Method::POST,
                &format!("{base}/nodes/temp/messages"),
                &message,
            )
            .await
        }
    }
}

/// Checks the answer to `op` on `topology` by `who`: the exact status, and the body and
/// headers that go with it.
fn check(answer: &Answer, who: Who, topology: &str, op: Op) {
    let status = expected(who, topology, op);
    let context = format!(
        "{who:?} {op:?} on {topology}: {} {}",
        answer.status, answer.text
    );
    assert_eq!(answer.status, status, "{context}");
    match status {
        StatusCode::UNAUTHORIZED => {
            assert_eq!(answer.code(), "unauthorized", "{context}");
            assert_eq!(answer.header("www-authenticate"), "Bearer", "{context}");
        }
        StatusCode::FORBIDDEN => assert_eq!(answer.code(), "forbidden", "{context}"),
        StatusCode::NOT_FOUND => {
            // Word for word what a topology that does not exist answers.
            assert_eq!(answer.code(), "not_found", "{context}");
            assert_eq!(
                answer.json["error"]["message"],
                format!("there is no topology {topology:?}"),
                "{context}"
            );
        }
        _ => match op {
            Op::GetTopology => assert_eq!(answer.json["node"][0]["id"], "temp", "{context}"),
            Op::GetNode => assert_eq!(answer.json["function"], "count", "{context}"),
            Op::ListNodes => assert_eq!(answer.json["nodes"][0]["id"], "temp", "{context}"),
            Op::GetOutput => assert!(answer.json.is_object(), "{context}"),
            Op::Put => assert_eq!(answer.json["id"], topology, "{context}"),
            Op::PatchAttrs => {
                assert_eq!(
                    answer.json["attrs"]["note"],
                    format!("{who:?}"),
                    "{context}"
                );
            }
            Op::DeleteNode => assert_eq!(answer.text, "", "{context}"),
            Op::Inject => assert!(answer.json["msg_id"].is_string(), "{context}"),
        },
    }
}

/// What refused requests must leave alone: every partition queue, and each topology's
/// document, rev and nodes as the admin reads them.
async fn fingerprint(mesh: &Mesh) -> (Vec<(u64, u64)>, Vec<(String, Value, Value)>) {
    let mut views = Vec::new();
    for topology in [SENSORS, OTHER] {
        let path = format!("/v1/topologies/{topology}");
        let document = call(mesh, Who::Admin, Method::GET, &path, &Value::Null).await;
        assert_eq!(document.status, StatusCode::OK, "{}", document.text);
        let nodes = call(
            mesh,
            Who::Admin,
            Method::GET,
            &format!("{path}/nodes"),
            &Value::Null,
        )
        .await;
        assert_eq!(nodes.status, StatusCode::OK, "{}", nodes.text);
        views.push((
            document.header("etag").to_owned(),
            document.json,
            nodes.json,
        ));
    }
    (mesh.queue_lengths().await, views)
}

/// Messages held in all partition queues.
fn held(lengths: &[(u64, u64)]) -> u64 {
    lengths.iter().map(|(held, _)| held).sum()
}

/// Admin 2xx everywhere; rw 2xx on its topology and 404 on another; ro 200 on reads of its
/// topology, 403 on writes and injects there, and 404 on another; a wrong or no token 401
/// with `WWW-Authenticate: Bearer`. The refused requests enqueue nothing and change no
/// document, rev or node; the admitted ones enqueue exactly their node changes and messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_token_gets_exactly_what_its_scope_allows() {
    let mut mesh = Mesh::start(1, &[("GORGON_API_TOKENS", TOKENS)]).await;
    for topology in [SENSORS, OTHER] {
        let path = format!("/v1/topologies/{topology}");
        let created = call(&mesh, Who::Admin, Method::PUT, &path, &doc("created")).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        let message = json!({"v": 0});
        let path = format!("{path}/nodes/temp/messages");
        let injected = call(&mesh, Who::Admin, Method::POST, &path, &message).await;
        assert_eq!(injected.status, StatusCode::ACCEPTED, "{}", injected.text);
    }
    // Each count node outputs once; then the processor stops, so that whatever a request
    // enqueues stays in the queues.
    for topology in [SENSORS, OTHER] {
        let path = format!("/v1/topologies/{topology}/nodes/temp/output");
        eventually(Duration::from_secs(15), &path, || async {
            let output = call(&mesh, Who::Admin, Method::GET, &path, &Value::Null).await;
            (output.status == StatusCode::OK).then_some(())
        })
        .await;
    }
    let mut processor = mesh.processors.pop().expect("one processor");
    processor.signal("TERM");
    let (status, _) = processor.wait_for_exit(Duration::from_secs(10)).await;
    assert!(status.success(), "the processor stopped with {status}");

    // Refused (and read-only) requests first.
    let before = fingerprint(&mesh).await;
    let refused = [
        (Who::Ro, SENSORS),
        (Who::Ro, OTHER),
        (Who::Rw, OTHER),
        (Who::Wrong, SENSORS),
        (Who::Wrong, OTHER),
        (Who::Nobody, SENSORS),
        (Who::Nobody, OTHER),
    ];
    for (who, topology) in refused {
        for op in Op::ALL {
            let answer = perform(&mesh, who, topology, op).await;
            check(&answer, who, topology, op);
        }
    }
    assert_eq!(fingerprint(&mesh).await, before);

    // Then the admitted ones, each in order: reads, PUT (which brings back `spare`), PATCH,
    // DELETE of `spare`, inject.
    let admitted = [
        (Who::Admin, SENSORS),
        (Who::Rw, SENSORS),
        (Who::Admin, OTHER),
    ];
    for (who, topology) in admitted {
        for op in Op::ALL {
            let answer = perform(&mesh, who, topology, op).await;
            check(&answer, who, topology, op);
        }
    }
    // What they enqueued, with no processor to take it: per topology and caller an attribute
    // change, a node deletion and a message, and the node the second PUT of `sensors`
    // brought back.
    let (after, _) = fingerprint(&mesh).await;
    assert_eq!(held(&after), held(&before.0) + 3 + 3 + 3 + 1, "{after:?}");
}

/// `GET /v1/topologies` lists only what a token may read; a topology it may not read
/// answers exactly like one that does not exist; only `Bearer <known token>` is let in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_token_lists_and_finds_only_what_it_may_read() {
    let mesh = Mesh::start(0, &[("GORGON_API_TOKENS", TOKENS)]).await;
    for topology in [SENSORS, OTHER] {
        let path = format!("/v1/topologies/{topology}");
        let created = call(&mesh, Who::Admin, Method::PUT, &path, &doc("created")).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    }
    let listed = |ids: &[&str]| {
        let topologies: Vec<Value> = ids
            .iter()
            .map(|id| json!({"id": id, "nodes": 2, "rev": 1}))
            .collect();
        json!({ "topologies": topologies })
    };
    for (who, ids) in [
        (Who::Admin, &[OTHER, SENSORS][..]),
        (Who::Rw, &[SENSORS][..]),
        (Who::Ro, &[SENSORS][..]),
    ] {
        let list = call(&mesh, who, Method::GET, "/v1/topologies", &Value::Null).await;
        assert_eq!(list.status, StatusCode::OK, "{who:?}: {}", list.text);
        assert_eq!(list.json, listed(ids), "{who:?}");
    }
    for who in [Who::Wrong, Who::Nobody] {
        let list = call(&mesh, who, Method::GET, "/v1/topologies", &Value::Null).await;
        assert_eq!(list.status, StatusCode::UNAUTHORIZED, "{who:?}");
        assert_eq!(list.code(), "unauthorized");
        assert_eq!(list.header("www-authenticate"), "Bearer");
    }
    // Only a Bearer token is taken.
    for authorization in [
        "Basic dC1hZG1pbjo=",
        "t-admin",
        "Bearer",
        "Bearer t-admin t-rw",
    ] {
        let request = mesh
            .request(Method::GET, "/v1/topologies")
            .header(AUTHORIZATION, authorization);
        let answer = mesh.send(request).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{authorization}");
        assert_eq!(answer.code(), "unauthorized", "{authorization}");
    }
    // A method a route does not have: refused for want of a token first, then as a 405.
    let wrong_method = format!("/v1/topologies/{SENSORS}");
    let anonymous = call(
        &mesh,
        Who::Nobody,
        Method::POST,
        &wrong_method,
        &Value::Null,
    )
    .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let admin = call(&mesh, Who::Admin, Method::POST, &wrong_method, &Value::Null).await;
    assert_eq!(admin.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(admin.code(), "method_not_allowed");
    assert_eq!(admin.header("allow"), "GET,HEAD,PUT,DELETE");

    // rw and ro cannot tell `other` from a topology that does not exist.
    for who in [Who::Rw, Who::Ro] {
        for path in ["", "/nodes", "/nodes/temp", "/graph.mmd"] {
            let hidden = format!("/v1/topologies/{OTHER}{path}");
            let missing = format!("/v1/topologies/nosuch{path}");
            let hidden = call(&mesh, who, Method::GET, &hidden, &Value::Null).await;
            let missing = call(&mesh, who, Method::GET, &missing, &Value::Null).await;
            assert_eq!(hidden.status, StatusCode::NOT_FOUND, "{who:?} {path}");
            assert_eq!(missing.status, StatusCode::NOT_FOUND, "{who:?} {path}");
            assert_eq!(
                hidden.text.replace(OTHER, "nosuch"),
                missing.text,
                "{who:?} {path}"
            );
        }
    }
}

/// With `GORGON_RATE_LIMIT=5` (bursts of 10), a burst from one token gets 429 `rate_limited`
/// with a `Retry-After` of at least a second once its bucket is empty, while another token
/// and `/healthz` are not limited; after `Retry-After` the first token is let in again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_over_the_rate_limit_gets_429_for_that_token_only() {
    const RATE: u64 = 5;
    const BURST: usize = 40;
    let mesh = Mesh::start(
        0,
        &[
            ("GORGON_API_TOKENS", "t-a=rw:sensors,t-b=rw:sensors"),
            ("GORGON_RATE_LIMIT", "5"),
        ],
    )
    .await;
    let get = |token: &'static str| {
        let request = mesh
            .request(Method::GET, "/v1/topologies")
            .header(AUTHORIZATION, format!("Bearer {token}"));
        mesh.send(request)
    };

    let started = Instant::now();
    let answers = join_all((0..BURST).map(|_| get("t-a"))).await;
    let elapsed = started.elapsed();
    let ok = answers
        .iter()
        .filter(|answer| answer.status == StatusCode::OK)
        .count();
    let limited: Vec<&Answer> = answers
        .iter()
        .filter(|answer| answer.status == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    eprintln!(
        "burst of {BURST} in {elapsed:?}: {ok} let through, {} refused",
        limited.len()
    );
    assert_eq!(ok + limited.len(), BURST, "only 200 and 429 answers");
    // The bucket holds two seconds' worth, and refills at the rate while the burst runs.
    let refilled = (elapsed.as_secs_f64() * RATE as f64).ceil() as usize;
    assert!(
        ok >= 2 * RATE as usize && ok <= 2 * RATE as usize + refilled,
        "{ok} let through in {elapsed:?}"
    );
    assert!(!limited.is_empty(), "{ok} let through in {elapsed:?}");
    let mut wait = 0;
    for answer in &limited {
        assert_eq!(answer.code(), "rate_limited", "{}", answer.text);
        let seconds: u64 = answer
            .header("retry-after")
            .parse()
            .unwrap_or_else(|_| panic!("Retry-After is {:?}", answer.header("retry-after")));
        assert!(seconds >= 1, "Retry-After {seconds}");
        wait = wait.max(seconds);
    }

    // Another token has a bucket of its own; /healthz is not limited; an unknown token is
    // refused as such.
    for _ in 0..5 {
        assert_eq!(get("t-b").await.status, StatusCode::OK);
        let health = mesh.send(mesh.request(Method::GET, "/healthz")).await;
        assert_eq!(health.status, StatusCode::OK);
    }
    assert_eq!(get("t-zzz").await.status, StatusCode::UNAUTHORIZED);

    // After Retry-After, the limited token is let in again.
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let again = get("t-a").await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
}
