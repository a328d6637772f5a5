//! The notifier end to end, with the official socket.io client: every output to every
//! subscribed client exactly once and in order (100 clients over two notifiers), resuming
//! by `seq` across a notifier killed with SIGKILL, `resync` when the replay buffer no longer
//! holds what is asked for, and the handshake token, scopes, Origin and limits. The same
//! outputs as Server-Sent Events, read with a plain HTTP client, resuming by `Last-Event-ID`.

use std::time::Duration;

use mesh_tests::mesh::Mesh;
use mesh_tests::socketio::{probe, Clients, Notifier};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// `sources` pass nodes fanning in to one `count` node, `total`.
fn fan_in(sources: usize) -> Value {
    let mut nodes: Vec<Value> = (1..=sources)
        .map(|i| json!({"id": format!("s{i}"), "function": "pass"}))
        .collect();
    let names: Vec<String> = (1..=sources).map(|i| format!("s{i}")).collect();
    nodes.push(json!({"id": "total", "function": "count", "sources": names}));
    json!({"node": nodes})
}

async fn put(mesh: &Mesh, topology: &str, doc: &Value) {
    let answer = mesh
        .call(Method::PUT, &format!("/v1/topologies/{topology}"), doc)
        .await;
    assert!(
        answer.status.is_success(),
        "PUT {topology}: {}",
        answer.text
    );
}

/// Injects `count` messages into `topology/node` in ndjson requests of `per_request` lines.
async fn inject(mesh: &Mesh, topology: &str, node: &str, count: usize, per_request: usize) {
    let mut sent = 0;
    while sent < count {
        let lines = per_request.min(count - sent);
        let body: String = (sent..sent + lines)
            .map(|i| format!("{{\"i\":{i}}}\n"))
            .collect();
        let answer = mesh
            .send(
                mesh.request(
                    Method::POST,
                    &format!("/v1/topologies/{topology}/nodes/{node}/messages"),
                )
                .header("content-type", "application/x-ndjson")
                .body(body),
            )
            .await;
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text);
        sent += lines;
    }
}

/// Waits until `topology/node` has output `seq`.
async fn wait_for_seq(mesh: &Mesh, topology: &str, node: &str, seq: u64) {
    let path = format!("/v1/topologies/{topology}/nodes/{node}/output");
    mesh_tests::eventually(Duration::from_secs(60), &path, || async {
        let answer = mesh.call(Method::GET, &path, &Value::Null).await;
        (answer.json["seq"].as_u64() >= Some(seq)).then_some(())
    })
    .await;
}

/// A mesh whose replay buffers hold 10 outputs, topology `feed` of one `pass` node `a` that
/// has made outputs 1 to 30 (of messages `{"i": 0}` to `{"i": 29}`), and a notifier.
async fn feed_of_thirty() -> (Mesh, Notifier) {
    let mesh = Mesh::start(1, &[("GORGON_REPLAY_BUFFER", "10")]).await;
    put(
        &mesh,
        "feed",
        &json!({"node": [{"id": "a", "function": "pass"}]}),
    )
    .await;
    inject(&mesh, "feed", "a", 30, 30).await;
    wait_for_seq(&mesh, "feed", "a", 30).await;
    let notifier = Notifier::start(&mesh, &[]).await;
    (mesh, notifier)
}

/// A client resuming after a seq still in the replay buffer gets exactly the outputs after
/// it; one resuming after a seq the buffer no longer holds gets `resync` naming the gap,
/// then the outputs the buffer holds. The ack gives each node's position; a second
/// subscription covering a node already followed does not start it again.
#[tokio::test]
async fn resume_replays_from_the_buffer_or_resyncs() {
    let (_mesh, notifier) = feed_of_thirty().await;

    let seqs = |report: &Value| -> Vec<u64> {
        report["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|event| event["seq"].as_u64().unwrap())
            .collect()
    };
    let inside = probe(&json!({
        "url": notifier.url,
        "subscribe": {"topology": "feed", "node": "a", "after_seq": 25},
    }))
    .await;
    assert_eq!(inside["ack"], json!({"ok": true, "positions": {"a": 25}}));
    assert_eq!(seqs(&inside), [26, 27, 28, 29, 30]);
    assert_eq!(inside["resyncs"], json!([]));
    let event = &inside["outputs"][0];
    assert_eq!(event["topology"], "feed");
    assert_eq!(event["node"], "a");
    assert_eq!(event["data"], json!({"i": 25}));
    for key in ["msg_id", "input_id", "injected_at", "ts"] {
        assert!(event[key].is_string(), "{key} in {event}");
    }

    let outside = probe(&json!({
        "url": notifier.url,
        "subscribe": {"topology": "feed", "after_seq": 5},
    }))
    .await;
    assert_eq!(outside["ack"], json!({"ok": true, "positions": {"a": 5}}));
    assert_eq!(
        outside["resyncs"],
        json!([{"topology": "feed", "node": "a", "after_seq": 5, "next_seq": 21}])
    );
    assert_eq!(seqs(&outside), (21..=30).collect::<Vec<_>>());

    // Live only; a node subscription on top of it goes on from the same position, so
    // asking it to replay from 0 sends nothing twice.
    let live = probe(&json!({
        "url": notifier.url,
        "subscribe": {"topology": "feed"},
        "subscribe_again": {"topology": "feed", "node": "a", "after_seq": 0},
    }))
    .await;
    assert_eq!(live["ack"], json!({"ok": true, "positions": {"a": 30}}));
    assert_eq!(
        live["ack_again"],
        json!({"ok": true, "positions": {"a": 30}})
    );
    assert_eq!(seqs(&live), Vec::<u64>::new());
}

/// The figures every client must show: every output of every node exactly once, in order.
fn assert_exact(report: &Value, clients: u64, outputs: u64) {
    let figures = json!({
        "complete": report["complete"],
        "received": report["received"],
        "missing": report["missing"],
        "duplicated": report["duplicated"],
        "out_of_order": report["out_of_order"],
        "resyncs": report["resyncs"],
        "other": report["other"],
    });
    assert_eq!(
        figures,
        json!({
            "complete": true,
            "received": clients * outputs,
            "missing": 0,
            "duplicated": 0,
            "out_of_order": 0,
            "resyncs": 0,
            "other": 0,
        }),
        "{report}"
    );
}

/// 100 clients, half on each of two notifiers, subscribed to one topology; 10 000 outputs
/// (four pass nodes and the count node they fan in to, on several partitions) reach every
/// client exactly once each, in seq order per node.
#[tokio::test]
async fn hundred_clients_get_every_output_once_in_order() {
    let mesh = Mesh::start(2, &[]).await;
    put(&mesh, "plant", &fan_in(4)).await;
    let first = Notifier::start(&mesh, &[]).await;
    let second = Notifier::start(&mesh, &[]).await;
    let expect = json!({"s1": 1250, "s2": 1250, "s3": 1250, "s4": 1250, "total": 5000});
    let clients: Vec<Clients> = [&first, &second]
        .iter()
        .map(|notifier| {
            Clients::start(&json!({
                "url": notifier.url,
                "clients": 50,
                "subscribe": {"topology": "plant"},
                "expect": expect,
                "timeout_ms": 120_000,
            }))
        })
        .collect();
    for group in &clients {
        group.wait_for("ready", Duration::from_secs(30)).await;
    }
    for source in ["s1", "s2", "s3", "s4"] {
        inject(&mesh, "plant", source, 1250, 250).await;
    }
    for group in clients {
        let report = group.finish(Duration::from_secs(150)).await;
        assert_exact(&report, 50, 10_000);
        assert_eq!(report["reconnects"], 0, "{report}");
    }
}

/// A notifier killed with SIGKILL while 100 clients receive a steady flow, then started
/// again on its port: every client reconnects, subscribes again with its last seq per node,
/// and ends with every output exactly once, in order, and no resync.
#[tokio::test]
async fn clients_resume_across_a_killed_notifier() {
    resume_across_a_killed_notifier("socket.io", 100).await;
}

/// The same with 20 Server-Sent Events streams, each opened again with `Last-Event-ID`
/// naming every node's last seq.
#[tokio::test]
async fn streams_resume_across_a_killed_notifier() {
    resume_across_a_killed_notifier("sse", 20).await;
}

async fn resume_across_a_killed_notifier(transport: &str, count: u64) {
    let mesh = Mesh::start(2, &[("GORGON_REPLAY_BUFFER", "5000")]).await;
    put(&mesh, "plant", &fan_in(4)).await;
    let mut notifier = Notifier::start(&mesh, &[]).await;
    let expect = json!({"s1": 1250, "s2": 1250, "s3": 1250, "s4": 1250, "total": 5000});
    let clients = Clients::start(&json!({
        "url": notifier.url,
        "clients": count,
        "subscribe": {"topology": "plant"},
        "expect": expect,
        "resume": true,
        "timeout_ms": 150_000,
        "transport": transport,
    }));
    clients.wait_for("ready", Duration::from_secs(30)).await;
    // 5 000 messages in 50 rounds of 25 per source, about 8 s in all.
    let flow = async {
        for round in 0..50 {
            for source in ["s1", "s2", "s3", "s4"] {
                inject(&mesh, "plant", source, 25, 25).await;
            }
            if round == 15 {
                notifier.kill().await;
            }
            if round == 25 {
                notifier.restart(&mesh).await;
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    };
    flow.await;
    let report = clients.finish(Duration::from_secs(180)).await;
    assert_exact(&report, count, 10_000);
    assert!(
        report["reconnects"].as_u64() >= Some(count),
        "every client reconnected: {report}"
    );
}

/// The handshake needs a configured token; a token's scope decides which topologies it may
/// follow (another one is not found, as in the REST API); bad requests, unknown topologies and
/// nodes and one subscription too many are refused with their codes; an Origin not allowed
/// gets 403 before socket.io sees the request.
#[tokio::test]
async fn tokens_scopes_origins_and_limits_are_enforced() {
    let tokens = "adm=admin,alpha-reader=ro:alpha";
    let mesh = Mesh::start(1, &[("GORGON_API_TOKENS", tokens)]).await;
    for topology in ["alpha", "beta"] {
        let answer = mesh
            .send(
                mesh.request(Method::PUT, &format!("/v1/topologies/{topology}"))
                    .bearer_auth("adm")
                    .json(&json!({"node": [{"id": "a", "function": "pass"}]})),
            )
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
    }
    let notifier = Notifier::start(
        &mesh,
        &[
            ("GORGON_ALLOWED_ORIGINS", "https://good.example"),
            ("GORGON_NOTIFIER_MAX_SUBSCRIPTIONS", "1"),
        ],
    )
    .await;
    let url = &notifier.url;

    let none = probe(&json!({"url": url})).await;
    assert_eq!(none["connected"], false);
    assert_eq!(
        none["connect_error"],
        "unauthorized: a token is required; connect with auth: {\"token\": \"...\"}"
    );
    let wrong = probe(&json!({"url": url, "token": "nope"})).await;
    assert_eq!(wrong["connected"], false);
    assert_eq!(
        wrong["connect_error"],
        "unauthorized: the token is not valid"
    );

    let reader =
        |subscribe: Value| json!({"url": url, "token": "alpha-reader", "subscribe": subscribe});
    let own = probe(&reader(json!({"topology": "alpha"}))).await;
    assert_eq!(own["ack"], json!({"ok": true, "positions": {"a": 0}}));
    let refused = |code: &str, message: &str| json!({"ok": false, "error": {"code": code, "message": message}});
    let other = probe(&reader(json!({"topology": "beta"}))).await;
    assert_eq!(other["ack"], refused("not_found", "no topology \"beta\""));
    let missing_node = probe(&reader(json!({"topology": "alpha", "node": "zz"}))).await;
    assert_eq!(
        missing_node["ack"],
        refused("not_found", "no node \"zz\" in topology alpha")
    );
    let admin_missing =
        probe(&json!({"url": url, "token": "adm", "subscribe": {"topology": "gamma"}})).await;
    assert_eq!(
        admin_missing["ack"],
        refused("not_found", "no topology \"gamma\"")
    );
    let malformed = probe(&reader(json!({"topology": "alpha", "after_seq": "soon"}))).await;
    assert_eq!(malformed["ack"]["ok"], false);
    assert_eq!(malformed["ack"]["error"]["code"], "invalid_request");

    let admin = probe(&json!({
        "url": url,
        "token": "adm",
        "subscribe": {"topology": "alpha"},
        "subscribe_again": {"topology": "beta"},
    }))
    .await;
    assert_eq!(admin["ack"], json!({"ok": true, "positions": {"a": 0}}));
    assert_eq!(
        admin["ack_again"]["error"]["code"],
        "too_many_subscriptions"
    );

    let http = reqwest::Client::new();
    let handshake = format!("{url}/socket.io/?EIO=4&transport=polling");
    let status = |origin: Option<&'static str>| {
        let mut request = http.get(&handshake);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        async move { request.send().await.unwrap().status() }
    };
    assert_eq!(
        status(Some("https://evil.example")).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(status(Some("https://good.example")).await, StatusCode::OK);
    assert_eq!(status(None).await, StatusCode::OK);

    // Streams: the same tokens, scopes and Origin check, refused as the REST API refuses.
    let stream = |path: &str, token: Option<&'static str>, origin: Option<&'static str>| {
        let mut request = http.get(format!("{url}{path}"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        async move {
            let answer = request.send().await.unwrap();
            let status = answer.status();
            if status != StatusCode::OK {
                return (status, answer.json::<Value>().await.unwrap());
            }
            let mut events = SseReader::new(answer);
            (status, events.next().await.data)
        }
    };
    let error = |code: &str, message: &str| json!({"error": {"code": code, "message": message}});
    assert_eq!(
        stream("/v1/topologies/alpha/stream", None, None).await,
        (
            StatusCode::UNAUTHORIZED,
            error(
                "unauthorized",
                "a token is required; send the header Authorization: Bearer <token>"
            )
        )
    );
    assert_eq!(
        stream("/v1/topologies/alpha/stream", Some("nope"), None).await,
        (
            StatusCode::UNAUTHORIZED,
            error("unauthorized", "the token is not valid")
        )
    );
    assert_eq!(
        stream("/v1/topologies/beta/stream", Some("alpha-reader"), None).await,
        (
            StatusCode::NOT_FOUND,
            error("not_found", "no topology \"beta\"")
        )
    );
    assert_eq!(
        stream(
            "/v1/topologies/alpha/nodes/zz/stream",
            Some("alpha-reader"),
            None
        )
        .await,
        (
            StatusCode::NOT_FOUND,
            error("not_found", "no node \"zz\" in topology alpha")
        )
    );
    assert_eq!(
        stream(
            "/v1/topologies/alpha/stream?after_seq=soon",
            Some("alpha-reader"),
            None
        )
        .await,
        (
            StatusCode::BAD_REQUEST,
            error(
                "invalid_request",
                "after_seq must be a non-negative integer (got \"soon\")"
            )
        )
    );
    let (status, body) = stream(
        "/v1/topologies/alpha/stream?after_seq=1&after_seq=2",
        Some("alpha-reader"),
        None,
    )
    .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::BAD_REQUEST, &json!("invalid_request")),
        "{body}"
    );
    let (status, _) = stream(
        "/v1/topologies/alpha/stream",
        Some("alpha-reader"),
        Some("https://evil.example"),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        stream(
            "/v1/topologies/alpha/stream",
            Some("alpha-reader"),
            Some("https://good.example")
        )
        .await,
        (StatusCode::OK, json!({"a": 0}))
    );

    // /readyz wants no token and answers as every HTTP role's does.
    let ready = http.get(format!("{url}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    assert_eq!(
        ready.json::<Value>().await.unwrap(),
        json!({"status": "ready"})
    );
}

/// The stream of a node resumes after the `Last-Event-ID` it is given (`node:seq`), from the
/// replay buffer, then goes on live; a topology's stream asked for what the buffer no longer
/// holds sends `resync` naming the gap, then what the buffer holds. Read with a plain HTTP
/// client: every event's name, id and data exact.
#[tokio::test]
async fn streams_resume_by_last_event_id_and_resync() {
    let (mesh, notifier) = feed_of_thirty().await;
    let http = reqwest::Client::new();
    let open = |path: &str, last_event_id: Option<&'static str>| {
        let mut request = http.get(format!("{}{path}", notifier.url));
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        async move {
            let answer = request.send().await.unwrap();
            assert_eq!(answer.status(), StatusCode::OK);
            assert_eq!(answer.headers()["content-type"], "text/event-stream");
            SseReader::new(answer)
        }
    };
    let outputs = |events: &[Sse]| -> Vec<(String, u64)> {
        events
            .iter()
            .map(|event| {
                assert_eq!(event.event, "output");
                assert_eq!(event.data["node"], "a");
                (event.id.clone(), event.data["seq"].as_u64().unwrap())
            })
            .collect()
    };
    let expected = |seqs: std::ops::RangeInclusive<u64>| -> Vec<(String, u64)> {
        seqs.map(|seq| (format!("a:{seq}"), seq)).collect()
    };

    let mut node = open("/v1/topologies/feed/nodes/a/stream", Some("a:25")).await;
    let positions = node.next().await;
    assert_eq!(
        (positions.event.as_str(), positions.data),
        ("positions", json!({"a": 25}))
    );
    let replayed = node.take(5).await;
    assert_eq!(replayed[0].data["data"], json!({"i": 25}));
    assert_eq!(outputs(&replayed), expected(26..=30));
    inject(&mesh, "feed", "a", 3, 3).await;
    assert_eq!(outputs(&node.take(3).await), expected(31..=33));

    // The buffer holds 24..=33: after 5, a resync names the gap.
    let mut topology = open("/v1/topologies/feed/stream?after_seq=5", None).await;
    assert_eq!(topology.next().await.data, json!({"a": 5}));
    let resync = topology.next().await;
    assert_eq!(
        (resync.event.as_str(), resync.id.as_str(), resync.data),
        (
            "resync",
            "",
            json!({"topology": "feed", "node": "a", "after_seq": 5, "next_seq": 24})
        )
    );
    assert_eq!(outputs(&topology.take(10).await), expected(24..=33));
    // Both go on live, and nothing more came before.
    inject(&mesh, "feed", "a", 1, 1).await;
    assert_eq!(outputs(&topology.take(1).await), expected(34..=34));
    assert_eq!(outputs(&node.take(1).await), expected(34..=34));

    // A stream holds one of the notifier's connections while its client reads, and gives it
    // back when the client goes (found by the keep-alive comments, every ping interval).
    let limited = Notifier::start(
        &mesh,
        &[
            ("GORGON_NOTIFIER_MAX_CONNECTIONS", "1"),
            ("GORGON_NOTIFIER_PING_INTERVAL_MS", "300"),
        ],
    )
    .await;
    let path = format!("{}/v1/topologies/feed/stream", limited.url);
    let mut first = SseReader::new(http.get(&path).send().await.unwrap());
    assert_eq!(first.next().await.data, json!({"a": 34}));
    let second = http.get(&path).send().await.unwrap();
    assert_eq!(second.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(second.headers()["retry-after"], "1");
    let refused: Value = second.json().await.unwrap();
    assert_eq!(refused["error"]["code"], "too_many_connections");
    drop(first);
    let mut again = mesh_tests::eventually(Duration::from_secs(10), "the slot given back", || {
        let request = http.get(&path);
        async move {
            let answer = request.send().await.unwrap();
            (answer.status() == StatusCode::OK).then(|| SseReader::new(answer))
        }
    })
    .await;
    assert_eq!(again.next().await.data, json!({"a": 34}));
}

/// One Server-Sent Event: its name, id (empty when it has none) and JSON data.
struct Sse {
    event: String,
    id: String,
    data: Value,
}

/// Reads the events of a `text/event-stream` answer, skipping comments (keep-alives).
struct SseReader {
    answer: reqwest::Response,
    text: String,
}

impl SseReader {
    fn new(answer: reqwest::Response) -> SseReader {
        SseReader {
            answer,
            text: String::new(),
        }
    }

    /// The next event, waiting up to 30 s.
    async fn next(&mut self) -> Sse {
        loop {
            if let Some(end) = self.text.find("\n\n") {
                let block: String = self.text.drain(..end + 2).collect();
                let (mut event, mut id, mut data) =
                    ("message".to_owned(), String::new(), String::new());
                for line in block.lines() {
                    match line.split_once(':') {
                        Some(("event", value)) => event = value.trim_start().to_owned(),
                        Some(("id", value)) => id = value.trim_start().to_owned(),
                        Some(("data", value)) => data.push_str(value.trim_start()),
                        _ => {}
                    }
                }
                if data.is_empty() {
                    continue; // a comment
                }
                let data =
                    serde_json::from_str(&data).unwrap_or_else(|error| panic!("{error}: {data}"));
                return Sse { event, id, data };
            }
            let chunk = tokio::time::timeout(Duration::from_secs(30), self.answer.chunk())
                .await
                .expect("an event within 30 s")
                .expect("the stream reads")
                .expect("the stream goes on");
            self.text
                .push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
        }
    }

    /// The next `count` events.
    async fn take(&mut self, count: usize) -> Vec<Sse> {
        let mut events = Vec::with_capacity(count);
        for _ in 0..count {
            events.push(self.next().await);
        }
        events
    }
}
