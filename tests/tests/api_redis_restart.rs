//! Redis killed under a running mesh and started again on the same port with its data
//! (AOF, `appendfsync always`): while it is away the API answers quickly with 503
//! `unavailable` and `Retry-After`, and `/readyz` says so; once it is back the same
//! web_face process answers normally again, and every message the API accepted is counted
//! exactly once.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mesh_tests::eventually;
use mesh_tests::mesh::{Answer, Mesh};
use mesh_tests::RoleProcess;
use redpill::testing::TestRedis;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::task::JoinHandle;

const TOPOLOGY: &str = "/v1/topologies/sensors";
const TALLY: &str = "/v1/topologies/sensors/nodes/tally";
const INJECT: &str = "/v1/topologies/sensors/nodes/tally/messages";
/// The longest any request may take while Redis is away.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);
/// How long Redis stays away: longer than the partition lease (1 s), so that processors lose
/// their partitions and must take them back.
const OUTAGE: Duration = Duration::from_secs(3);
/// ndjson injects of [`BATCH`] messages queued just before Redis is killed.
const BACKLOG_BATCHES: u64 = 2;
const BATCH: usize = 5_000;

fn doc() -> Value {
    json!({"description": "counts what arrives", "node": [{"id": "tally", "function": "count"}]})
}

/// `method path` with a JSON body (none for null); panics when the answer takes longer than
/// [`ANSWER_WITHIN`].
async fn timed(mesh: &Mesh, method: Method, path: &str, body: &Value) -> (Answer, Duration) {
    let started = Instant::now();
    let answer = tokio::time::timeout(ANSWER_WITHIN, mesh.call(method.clone(), path, body))
        .await
        .unwrap_or_else(|_| panic!("{method} {path} not answered within {ANSWER_WITHIN:?}"));
    (answer, started.elapsed())
}

/// What one background request saw.
#[derive(Debug)]
struct Seen {
    status: StatusCode,
    code: String,
    retry_after: String,
    took: Duration,
}

/// Sends `method path` with `body` over and over from a task of its own until `stop` is set,
/// counting the answers with status `ok` in `oks`, and returns what each request saw.
fn keep_sending(
    http: reqwest::Client,
    url: String,
    (method, body): (Method, Value),
    (ok, oks): (StatusCode, Arc<AtomicUsize>),
    stop: Arc<AtomicBool>,
) -> JoinHandle<Vec<Seen>> {
    tokio::spawn(async move {
        let mut seen = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            let started = Instant::now();
            let mut request = http.request(method.clone(), &url);
            if !body.is_null() {
                request = request.json(&body);
            }
            let response = request
                .send()
                .await
                .unwrap_or_else(|error| panic!("{method} {url} got no answer: {error}"));
            let status = response.status();
            if status == ok {
                oks.fetch_add(1, Ordering::SeqCst);
            }
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|value| value.to_str().ok())
                .unwrap_or("")
                .to_owned();
            let text = response.text().await.unwrap_or_default();
            let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            seen.push(Seen {
                status,
                code: json["error"]["code"].as_str().unwrap_or("").to_owned(),
                retry_after,
                took: started.elapsed(),
            });
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        seen
    })
}

/// Each answer is either a success (`ok`) or a 503 `unavailable` with `Retry-After: 1`, and
/// came within [`ANSWER_WITHIN`]; returns how many of each.
fn only_ok_or_unavailable(what: &str, seen: &[Seen], ok: StatusCode) -> (usize, usize) {
    let mut counts = (0, 0);
    for answer in seen {
        assert!(answer.took < ANSWER_WITHIN, "{what}: {answer:?}");
        if answer.status == ok {
            counts.0 += 1;
        } else {
            assert_eq!(
                answer.status,
                StatusCode::SERVICE_UNAVAILABLE,
                "{what}: {answer:?}"
            );
            assert_eq!(answer.code, "unavailable", "{what}: {answer:?}");
            assert_eq!(answer.retry_after, "1", "{what}: {answer:?}");
            counts.1 += 1;
        }
    }
    counts
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

/// The count the `tally` node reports.
async fn count(mesh: &Mesh) -> Option<u64> {
    let node = mesh.call(Method::GET, TALLY, &Value::Null).await;
    (node.status == StatusCode::OK).then(|| node.json["attrs"]["count"].as_u64().unwrap_or(0))
}

/// Redis is killed with a backlog of 10 000 messages being counted and reads and injects
/// under way, and started
/// again 3 s later on the same port and data. While it is away, GET topology, inject, PUT,
/// the topology list and a node read answer 503 `unavailable` with `Retry-After: 1` in
/// under 10 s, and `/readyz` answers 503; web_face keeps running. Once Redis is back, the
/// same web_face process answers GET with the same document and rev, injects with 202 and
/// PUT with 200, and the `count` node ends at exactly the number of messages answered 202:
/// none lost, none counted twice, none dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_answers_503_then_recovers_without_losing_a_message() {
    let mut mesh = Mesh::start_on(TestRedis::start_with_aof(), 1, &[]).await;
    let created = mesh.call(Method::PUT, TOPOLOGY, &doc()).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let before = mesh.call(Method::GET, TOPOLOGY, &Value::Null).await;
    assert_eq!(before.status, StatusCode::OK);
    assert_eq!(before.header("etag"), "\"1\"");

    // Reads under way while Redis dies and returns.
    let http = reqwest::Client::builder()
        .timeout(ANSWER_WITHIN)
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let reads_ok = Arc::new(AtomicUsize::new(0));
    let reader = keep_sending(
        http.clone(),
        format!("{}{TOPOLOGY}", mesh.base),
        (Method::GET, Value::Null),
        (StatusCode::OK, Arc::clone(&reads_ok)),
        Arc::clone(&stop),
    );

    // A backlog for the processor to be busy with when Redis dies.
    let mut accepted: u64 = 0;
    for batch in 0..BACKLOG_BATCHES {
        let lines: Vec<String> = (0..BATCH)
            .map(|i| json!({"batch": batch, "i": i}).to_string())
            .collect();
        let injected = mesh
            .send(
                mesh.request(Method::POST, INJECT)
                    .header("content-type", "application/x-ndjson")
                    .body(lines.join("\n")),
            )
            .await;
        assert_eq!(injected.status, StatusCode::ACCEPTED, "{}", injected.text);
        accepted += injected.json["msg_ids"].as_array().map_or(0, Vec::len) as u64;
    }
    for i in 0..20 {
        let single = mesh.call(Method::POST, INJECT, &json!({"single": i})).await;
        assert_eq!(single.status, StatusCode::ACCEPTED, "{}", single.text);
        accepted += 1;
    }
    assert_eq!(accepted, BACKLOG_BATCHES * BATCH as u64 + 20);
    let counted_at_kill = count(&mesh).await.unwrap_or(0);
    assert!(
        counted_at_kill < accepted,
        "the backlog was gone before Redis was killed"
    );

    let killed = Instant::now();
    mesh.redis.single_mut().kill();
    // Injects under way from now until after Redis is back: none can be half applied.
    let injects_ok = Arc::new(AtomicUsize::new(0));
    let injector = keep_sending(
        http.clone(),
        format!("{}{INJECT}", mesh.base),
        (Method::POST, json!({"during": "outage"})),
        (StatusCode::ACCEPTED, Arc::clone(&injects_ok)),
        Arc::clone(&stop),
    );

    // While Redis is away.
    let mut rounds = 0;
    while killed.elapsed() < OUTAGE {
        rounds += 1;
        for (method, path, body) in [
            (Method::GET, TOPOLOGY, Value::Null),
            (Method::POST, INJECT, json!({"refused": true})),
            (Method::PUT, TOPOLOGY, doc()),
            (Method::GET, "/v1/topologies", Value::Null),
            (Method::GET, TALLY, Value::Null),
        ] {
            let (answer, took) = timed(&mesh, method.clone(), path, &body).await;
            let context = format!(
                "{method} {path} after {:?}: {}",
                killed.elapsed(),
                answer.text
            );
            assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{context}");
            assert_eq!(answer.code(), "unavailable", "{context}");
            assert_eq!(answer.header("retry-after"), "1", "{context}");
            assert!(took < ANSWER_WITHIN, "{context}: took {took:?}");
        }
        let (ready, _) = timed(&mesh, Method::GET, "/readyz", &Value::Null).await;
        assert_eq!(
            ready.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            ready.text
        );
        assert_eq!(ready.header("retry-after"), "1");
        let (health, _) = timed(&mesh, Method::GET, "/healthz", &Value::Null).await;
        assert_eq!(health.status, StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        still_running(&mut mesh.web).await,
        "web_face exited while Redis was away"
    );

    // Redis back, same port, same data.
    let reads_before_restart = reads_ok.load(Ordering::SeqCst);
    mesh.redis.single_mut().start_again();
    let restarted = Instant::now();
    let after = eventually(Duration::from_secs(20), "GET to answer 200", || async {
        let answer = mesh.call(Method::GET, TOPOLOGY, &Value::Null).await;
        (answer.status == StatusCode::OK).then_some(answer)
    })
    .await;
    assert_eq!(after.json, before.json);
    assert_eq!(after.header("etag"), "\"1\"");
    let readmitted = eventually(
        Duration::from_secs(20),
        "an inject to answer 202",
        || async {
            let answer = mesh
                .call(Method::POST, INJECT, &json!({"after": "restart"}))
                .await;
            (answer.status == StatusCode::ACCEPTED).then_some(answer)
        },
    )
    .await;
    assert!(readmitted.json["msg_id"].is_string(), "{}", readmitted.text);
    accepted += 1;
    let put = eventually(Duration::from_secs(20), "PUT to answer 200", || async {
        let answer = mesh.call(Method::PUT, TOPOLOGY, &doc()).await;
        (answer.status == StatusCode::OK).then_some(answer)
    })
    .await;
    assert_eq!(
        put.json,
        json!({"id": "sensors", "rev": 1, "created": [], "updated": [], "deleted": []})
    );
    let ready = mesh.call(Method::GET, "/readyz", &Value::Null).await;
    assert_eq!(ready.status, StatusCode::OK);
    let recovered = restarted.elapsed();
    // The background requests succeed again too.
    eventually(
        Duration::from_secs(10),
        "background requests to succeed",
        || async {
            (reads_ok.load(Ordering::SeqCst) > reads_before_restart
                && injects_ok.load(Ordering::SeqCst) > 0)
                .then_some(())
        },
    )
    .await;
    stop.store(true, Ordering::SeqCst);

    let reads = reader.await.unwrap();
    let (reads_ok, reads_refused) = only_ok_or_unavailable("GET", &reads, StatusCode::OK);
    assert!(
        reads_ok > reads_before_restart,
        "GETs succeeded again after the restart"
    );
    let injects = injector.await.unwrap();
    let (injects_ok, injects_refused) =
        only_ok_or_unavailable("inject", &injects, StatusCode::ACCEPTED);
    accepted += injects_ok as u64;
    assert!(
        reads_ok > 0 && reads_refused > 0,
        "{reads_ok} reads 200, {reads_refused} 503"
    );
    assert!(
        injects_ok > 0 && injects_refused > 0,
        "{injects_ok} injects 202, {injects_refused} 503"
    );

    // The same web_face process throughout.
    assert!(still_running(&mut mesh.web).await, "web_face exited");
    assert_eq!(
        mesh.web.count("serving the REST API"),
        1,
        "web_face started again"
    );

    // Every accepted message counted once, and nothing left over or dead-lettered.
    let counted = eventually(
        Duration::from_secs(30),
        &format!("a count of {accepted}"),
        || async { count(&mesh).await.filter(|&counted| counted >= accepted) },
    )
    .await;
    assert_eq!(
        counted, accepted,
        "counted {counted} of {accepted} accepted messages"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(count(&mesh).await, Some(accepted));
    assert_eq!(
        mesh.queue_lengths().await,
        vec![(0, 0); mesh_tests::mesh::PARTITIONS as usize]
    );
    let dead = mesh
        .call(
            Method::GET,
            "/v1/topologies/sensors/dead-letters",
            &Value::Null,
        )
        .await;
    assert_eq!(dead.json, json!({"items": []}));
    eprintln!(
        "{counted_at_kill} of {} counted when Redis was killed; Redis away {OUTAGE:?} \
         ({rounds} rounds of checks); API back {recovered:?} after the \
         restart; background GETs: {reads_ok} x 200, {reads_refused} x 503; background \
         injects: {injects_ok} x 202, {injects_refused} x 503; {accepted} messages accepted \
         and counted; the processor logged {} lines on lost partitions or leases and {} on \
         batches not committed",
        BACKLOG_BATCHES * BATCH as u64 + 20,
        mesh.processors[0].count("lost"),
        mesh.processors[0].count("not committed")
    );
}
