//! Hostile input at the write routes of the REST API: ten thousand malformed, oversized,
//! deeply nested, wrongly typed, wrongly labelled or invalid requests (`mesh_tests::hostile`
//! makes them, from a seed printed with the results, so a failure can be replayed), sent
//! sixteen at a time, are each refused with a 4xx status and the documented error body, while
//! web_face and the store stay up and nothing is changed or enqueued.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use mesh_tests::hostile::{
    base_doc, hostile, Hostile, Rng, BODY_LIMIT, JSON_DEPTH, NDJSON_LINES, TOPOLOGY,
};
use mesh_tests::mesh::{Answer, Mesh};
use mesh_tests::RoleProcess;
use reqwest::header::{HeaderValue, CONTENT_TYPE, IF_MATCH};
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// How many hostile requests are sent.
const REQUESTS: usize = 10_000;
/// How many are in flight at once.
const CONCURRENCY: usize = 16;
/// The generator's seed.
const SEED: u64 = 0x5eed_f00d_cafe_0001;

// ---------------------------------------------------------------------------------------
// Sending and checking.

/// Sends `request`; `Err` when no HTTP answer came back at all.
async fn send(mesh: &Mesh, request: &Hostile) -> Result<Answer, String> {
    let mut builder = mesh
        .request(request.method.clone(), &request.path)
        .body(request.body.clone());
    if let Some(content_type) = &request.content_type {
        let value = HeaderValue::from_bytes(content_type).expect("a header value");
        builder = builder.header(CONTENT_TYPE, value);
    }
    if let Some(if_match) = request.if_match {
        builder = builder.header(IF_MATCH, if_match);
    }
    let response = builder.send().await.map_err(|error| format!("{error:?}"))?;
    let status = response.status();
    let headers = response.headers().clone();
    let text = response
        .text()
        .await
        .map_err(|error| format!("{error:?}"))?;
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Ok(Answer {
        status,
        headers,
        json,
        text,
    })
}

/// What is wrong with `answer` to a hostile request, if anything: it must be a 4xx with
/// `{"error": {"code", "message"}}` as JSON.
fn fault(answer: &Answer) -> Option<String> {
    if !answer.status.is_client_error() {
        return Some(format!("status {}", answer.status));
    }
    if !answer
        .header("content-type")
        .starts_with("application/json")
    {
        return Some(format!("content-type {:?}", answer.header("content-type")));
    }
    // Only `error` at the top; inside, `code` and `message` (a refused document may add the
    // list of its `problems`).
    let shape_ok = answer.json.as_object().is_some_and(|body| body.len() == 1)
        && answer.json["error"].as_object().is_some_and(|error| {
            error
                .get("code")
                .and_then(Value::as_str)
                .is_some_and(|code| !code.is_empty())
                && error
                    .get("message")
                    .and_then(Value::as_str)
                    .is_some_and(|message| !message.is_empty())
        });
    (!shape_ok).then(|| "not the error body".to_owned())
}

/// Whether `process` is still running: it has not exited within a short wait.
async fn still_running(process: &mut RoleProcess) -> bool {
    tokio::time::timeout(
        Duration::from_millis(300),
        process.wait_for_exit(Duration::from_secs(3600)),
    )
    .await
    .is_err()
}

/// What a client can read of the attacked topology: the document with its rev, the node
/// list and the topology list.
async fn snapshot(mesh: &Mesh) -> Vec<(StatusCode, String, Value)> {
    let mut seen = Vec::new();
    for path in [
        format!("/v1/topologies/{TOPOLOGY}"),
        format!("/v1/topologies/{TOPOLOGY}/nodes"),
        "/v1/topologies".to_owned(),
    ] {
        let answer = mesh.call(Method::GET, &path, &Value::Null).await;
        seen.push((answer.status, answer.header("etag").to_owned(), answer.json));
    }
    seen
}

/// 10 000 hostile requests, 16 at a time, against a mesh with a 64 KiB body limit: not one
/// answer is a 5xx (or a 2xx), every answer carries the `{"error": {"code", "message"}}`
/// body, web_face and the store stay up without a panic, and afterwards the topology, its
/// rev, the topology list and every partition queue are exactly as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_hostile_requests_are_refused_and_change_nothing() {
    let limit = BODY_LIMIT.to_string();
    let depth = JSON_DEPTH.to_string();
    let lines = NDJSON_LINES.to_string();
    let mut mesh = Mesh::start(
        0,
        &[
            ("GORGON_BODY_LIMIT", limit.as_str()),
            ("GORGON_JSON_DEPTH", depth.as_str()),
            ("GORGON_NDJSON_LINES", lines.as_str()),
        ],
    )
    .await;
    let created = mesh
        .call(
            Method::PUT,
            &format!("/v1/topologies/{TOPOLOGY}"),
            &base_doc(),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let queues_before = mesh.queue_lengths().await;
    assert!(
        queues_before.iter().any(|(held, _)| *held > 0),
        "the node changes of the topology wait in the queues, since no processor runs: {queues_before:?}"
    );
    let before = snapshot(&mesh).await;
    assert_eq!(before[0].0, StatusCode::OK);
    assert_eq!(before[0].1, "\"1\"");

    let mut rng = Rng::new(SEED);
    let requests: Vec<Hostile> = (0..REQUESTS).map(|_| hostile(&mut rng)).collect();
    let started = Instant::now();
    let answers: Vec<(usize, Result<Answer, String>)> = stream::iter(requests.iter().enumerate())
        .map(|(index, request)| {
            let mesh = &mesh;
            async move { (index, send(mesh, request).await) }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let elapsed = started.elapsed();

    // The tally: per kind of request, how many got each status.
    let mut by_kind: BTreeMap<&str, BTreeMap<String, usize>> = BTreeMap::new();
    let mut by_class: BTreeMap<String, usize> = BTreeMap::new();
    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    let mut codes: BTreeMap<String, usize> = BTreeMap::new();
    let mut faults = Vec::new();
    for (index, answer) in &answers {
        let request = &requests[*index];
        let (status, class) = match answer {
            Ok(answer) => {
                if let Some(fault) = fault(answer) {
                    faults.push(format!(
                        "#{index} {} {} ({}): {fault}; answered {} {:?}",
                        request.method,
                        request.path,
                        request.kind,
                        answer.status,
                        answer.text.chars().take(300).collect::<String>()
                    ));
                }
                *codes.entry(answer.code().to_owned()).or_default() += 1;
                let status = answer.status.as_u16();
                (status.to_string(), format!("{}xx", status / 100))
            }
            Err(error) => {
                faults.push(format!(
                    "#{index} {} {} ({}, {} bytes): no answer: {error}",
                    request.method,
                    request.path,
                    request.kind,
                    request.body.len()
                ));
                ("no answer".to_owned(), "no answer".to_owned())
            }
        };
        *by_status.entry(status.clone()).or_default() += 1;
        *by_kind
            .entry(request.kind)
            .or_default()
            .entry(status)
            .or_default() += 1;
        *by_class.entry(class).or_default() += 1;
    }
    eprintln!(
        "{REQUESTS} hostile requests (seed {SEED:#x}), {CONCURRENCY} at a time, in {elapsed:.1?}"
    );
    eprintln!("by class: {by_class:?}");
    eprintln!("by status: {by_status:?}");
    eprintln!("by error code: {codes:?}");
    for (kind, statuses) in &by_kind {
        eprintln!("  {kind:<55} {statuses:?}");
    }

    assert_eq!(answers.len(), REQUESTS);
    assert_eq!(by_class.get("5xx"), None, "5xx answers: {by_class:?}");
    assert!(
        faults.is_empty(),
        "{} answers are not 4xx error bodies; the first ones:\n{}",
        faults.len(),
        faults[..faults.len().min(20)].join("\n")
    );
    assert_eq!(by_class.get("4xx"), Some(&REQUESTS));

    // Both roles are up, answer, and never panicked.
    let health = mesh.call(Method::GET, "/healthz", &Value::Null).await;
    assert_eq!(health.status, StatusCode::OK);
    assert!(still_running(&mut mesh.web).await, "web_face exited");
    assert!(still_running(&mut mesh.store).await, "the store exited");
    assert_eq!(mesh.web.count("panicked"), 0, "{}", mesh.web.output());
    assert_eq!(mesh.store.count("panicked"), 0, "{}", mesh.store.output());

    // Nothing changed, nothing enqueued.
    assert_eq!(snapshot(&mesh).await, before);
    assert_eq!(mesh.queue_lengths().await, queues_before);
}
