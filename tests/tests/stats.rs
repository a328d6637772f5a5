//! The stats monitor with the roles running as processes: every instance listed, one killed
//! with SIGKILL shown unhealthy within 3 s, counters and histograms that add up to exactly
//! the messages sent, the admin token, and the dashboard in headless Chromium.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mesh_tests::mesh::{healthy_roles, inject_numbers, Mesh, PARTITIONS};
use mesh_tests::mongo::TestMongo;
use mesh_tests::socketio::Notifier;
use mesh_tests::RoleProcess;
use redpill::testing::free_port;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Messages injected in the counting test.
const MESSAGES: u64 = 1_000;

/// A mesh archiving to a MongoDB of its own, with two processors.
async fn mesh(mongo: &TestMongo) -> Mesh {
    let uri = mongo.uri();
    Mesh::start(
        2,
        &[
            ("MONGODB_URI", uri.as_str()),
            ("GORGON_MONGODB_TIMEOUT_MS", "1000"),
        ],
    )
    .await
}

/// A stats monitor for `mesh` on a free port with `extra` environment; its base URL.
async fn start_stats(mesh: &Mesh, extra: &[(&str, &str)]) -> (RoleProcess, String) {
    let port = free_port().to_string();
    let mut env = vec![("GORGON_STATS_PORT", port.as_str())];
    env.extend_from_slice(extra);
    let stats = mesh.spawn_with("stats", &env);
    stats
        .wait_for_output("serving the stats dashboard", Duration::from_secs(30))
        .await;
    (stats, format!("http://127.0.0.1:{port}"))
}

async fn get(url: &str, token: Option<&str>) -> (StatusCode, reqwest::header::HeaderMap, String) {
    let mut request = reqwest::Client::new().get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("the monitor answers");
    let status = response.status();
    let headers = response.headers().clone();
    (status, headers, response.text().await.expect("a body"))
}

async fn snapshot(base: &str) -> Value {
    let (status, _, text) = get(&format!("{base}/api/v1/snapshot"), None).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    serde_json::from_str(&text).expect("the snapshot is JSON")
}

/// Topology `feed`: `a` (pass) → `total` (count): two outputs per message injected.
async fn feed(mesh: &Mesh) {
    let doc = json!({"node": [
        {"id": "a", "function": "pass"},
        {"id": "total", "function": "count", "sources": ["a"]},
    ]});
    let answer = mesh.call(Method::PUT, "/v1/topologies/feed", &doc).await;
    assert!(answer.status.is_success(), "{}", answer.text);
}

/// Injects `count` messages into `feed/a`, 100 per ndjson request.
async fn inject(mesh: &Mesh, count: u64) {
    for first in (0..count).step_by(100) {
        let body: String = (first..(first + 100).min(count))
            .map(|i| format!("{{\"i\":{i}}}\n"))
            .collect();
        let answer = mesh
            .send(
                mesh.request(Method::POST, "/v1/topologies/feed/nodes/a/messages")
                    .header("content-type", "application/x-ndjson")
                    .body(body),
            )
            .await;
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text);
    }
}

/// The total of counter `name` of `role` in a snapshot, over all its label sets that have
/// `labels`.
fn total(snapshot: &Value, role: &str, name: &str, labels: &[(&str, &str)]) -> u64 {
    snapshot["counters"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["role"] == role && c["name"] == name)
        .filter(|c| labels.iter().all(|(k, v)| c["labels"][*k] == *v))
        .map(|c| c["value"].as_u64().unwrap())
        .sum()
}

fn sum(values: &Value) -> u64 {
    values
        .as_array()
        .map(|values| values.iter().filter_map(Value::as_u64).sum())
        .unwrap_or(0)
}

/// Every role instance is listed; counters, per-second throughput and histogram counts add
/// up to exactly what was sent; every partition has one of the two processors as owner;
/// a processor killed with SIGKILL is shown unhealthy within 3 s; `/metrics` says the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_snapshot_lists_every_instance_and_counts_every_message() {
    let mongo = TestMongo::start();
    let mut mesh = mesh(&mongo).await;
    let _notifier = Notifier::start(&mesh, &[]).await;
    let (_stats, base) = start_stats(&mesh, &[]).await;
    let expected_roles = [
        "notifier",
        "processor",
        "processor",
        "stats",
        "store",
        "web_face",
    ];
    mesh_tests::eventually(
        Duration::from_secs(20),
        "every instance healthy",
        || async { (healthy_roles(&snapshot(&base).await) == expected_roles).then_some(()) },
    )
    .await;

    feed(&mesh).await;
    inject(&mesh, MESSAGES).await;
    let outputs = 2 * MESSAGES;
    let counted =
        mesh_tests::eventually(Duration::from_secs(60), "every message counted", || async {
            let snapshot = snapshot(&base).await;
            let done = total(
                &snapshot,
                "processor",
                protocol::stats::OUTPUTS,
                &[("topology", "feed")],
            ) == outputs
                && total(&snapshot, "store", protocol::stats::ARCHIVED, &[]) == outputs
                && sum(&snapshot["heatmaps"]["e2e"]["count"]) == outputs
                && snapshot["archive"]["backlog"] == 0
                // The per-second series end with the last whole second, and each role's
                // last report may spread its counts into the second still filling: wait
                // for every series (a series that overshoots never matches, and fails).
                && sum(&snapshot["throughput"]["roles"]["web_face"]) == MESSAGES
                && sum(&snapshot["throughput"]["roles"]["processor"]) == outputs
                && sum(&snapshot["throughput"]["topologies"]["feed"]) == outputs
                && sum(&snapshot["throughput"]["roles"]["store"]) == outputs;
            done.then_some(snapshot)
        })
        .await;
    // Totals, the per-second series and the histograms tell the same story, exactly.
    assert_eq!(
        total(
            &counted,
            "web_face",
            protocol::stats::MESSAGES_INJECTED,
            &[]
        ),
        MESSAGES
    );
    // Messages in: the injected ones, the forwards from a to total, and the node changes.
    assert!(total(&counted, "processor", protocol::stats::MESSAGES_IN, &[]) >= outputs);
    assert_eq!(
        total(&counted, "processor", protocol::stats::DEAD_LETTERED, &[]),
        0
    );
    let injects = total(
        &counted,
        "web_face",
        protocol::stats::HTTP_REQUESTS,
        &[
            ("route", "/v1/topologies/{t}/nodes/{n}/messages"),
            ("status", "202"),
        ],
    );
    assert_eq!(injects, MESSAGES / 100);
    let e2e = &counted["heatmaps"]["e2e"];
    let cells: u64 = e2e["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c[2].as_u64().unwrap())
        .sum();
    assert_eq!(cells, outputs, "every output in exactly one heatmap cell");
    assert_eq!(e2e["buckets"].as_array().unwrap().len(), 25);
    // From the monitor's start (or its oldest report) to the last whole second.
    let seconds = counted["seconds"].as_array().unwrap().len();
    assert!(
        seconds >= 2 && seconds as u64 <= counted["window_s"].as_u64().unwrap(),
        "{seconds}"
    );
    for series in ["p50", "p99", "max", "count"] {
        assert_eq!(e2e[series].as_array().unwrap().len(), seconds, "{series}");
    }
    assert!(sum(&counted["heatmaps"]["batch_commit"]["count"]) > 0);
    assert!(sum(&counted["heatmaps"]["archive_write"]["count"]) > 0);
    // The REST heatmap counts every request web_face answered, as its counters do.
    let requests = total(&counted, "web_face", protocol::stats::HTTP_REQUESTS, &[]);
    let rest = sum(&counted["heatmaps"]["rest"]["count"]);
    assert!(
        rest <= requests && rest + 5 >= requests,
        "rest {rest} vs requests {requests}"
    );

    // The partition map: every partition owned by one of the two processors, both owning.
    let processors: BTreeSet<String> = counted["instances"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["role"] == "processor")
        .map(|i| i["instance"].as_str().unwrap().to_owned())
        .collect();
    let partitions = counted["partitions"].as_array().unwrap();
    assert_eq!(partitions.len(), PARTITIONS as usize);
    let owners: BTreeSet<String> = partitions
        .iter()
        .map(|p| {
            p["owner"]
                .as_str()
                .expect("every partition owned")
                .to_owned()
        })
        .collect();
    assert_eq!(owners, processors);
    assert!(partitions
        .iter()
        .all(|p| p["waiting"] == 0 && p["dead"] == 0 && p["oldest_age_ms"].is_null()));
    assert_eq!(counted["dead_letters"], 0);

    // SIGKILL a processor: within 3 s it is unhealthy, the rest stay healthy.
    let victim = mesh.processors.remove(0);
    let pid = victim.pid().unwrap();
    victim.signal("KILL");
    let killed_at = Instant::now();
    let shown = mesh_tests::eventually(
        Duration::from_secs(10),
        "the killed processor unhealthy",
        || async {
            let snapshot = snapshot(&base).await;
            let instance = snapshot["instances"]
                .as_array()
                .unwrap()
                .iter()
                .find(|i| i["pid"] == pid)
                .cloned()
                .expect("the killed processor is still listed");
            (instance["healthy"] == false).then_some((snapshot, instance))
        },
    )
    .await;
    let took = killed_at.elapsed();
    let (after, instance) = shown;
    assert!(
        took < Duration::from_secs(3),
        "shown unhealthy after {took:?}"
    );
    assert_eq!(instance["state"], "unhealthy");
    assert_eq!(
        healthy_roles(&after),
        ["notifier", "processor", "stats", "store", "web_face"]
    );
    eprintln!(
        "killed processor shown unhealthy after {} ms",
        took.as_millis()
    );

    // /metrics: the same figures in Prometheus text.
    let (status, headers, text) = get(&format!("{base}/metrics"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers[reqwest::header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    assert!(
        text.contains(&format!(
            "gorgon_messages_injected_total{{role=\"web_face\"}} {MESSAGES}"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "gorgon_outputs_total{{role=\"processor\",topology=\"feed\"}} {outputs}"
        )),
        "{text}"
    );
    let victim_id = instance["instance"].as_str().unwrap();
    assert!(
        text.contains(&format!(
            "gorgon_instance_up{{role=\"processor\",instance=\"{victim_id}\""
        )),
        "{text}"
    );
    let down = text
        .lines()
        .filter(|l| l.starts_with("gorgon_instance_up{") && l.ends_with(" 0"))
        .count();
    assert_eq!(down, 1, "{text}");
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        assert!(line.starts_with("gorgon_"), "{line}");
    }
}

/// With tokens configured the snapshot and `/metrics` want an admin token (401 without one
/// or with an unknown one, 403 with a read-only one); the page itself loads without.
/// The archive's drain time: caught up at first; with the store stopped (SIGSTOP) the
/// backlog grows and is not draining (entries added, none written); with the store back it
/// drains to caught up, having written what was added; `/metrics` says the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_archive_backlog_says_how_long_it_takes_to_drain() {
    let mongo = TestMongo::start();
    let mesh = mesh(&mongo).await;
    let (_stats, base) = start_stats(&mesh, &[]).await;
    feed(&mesh).await;
    inject(&mesh, 100).await;
    let archive = |snapshot: &Value| snapshot["archive"].clone();
    mesh_tests::eventually(Duration::from_secs(30), "caught up", || async {
        let archive = archive(&snapshot(&base).await);
        (archive["drain_s"] == json!(0.0) && archive["written_per_s"].is_number()).then_some(())
    })
    .await;

    mesh.store.signal("STOP");
    inject(&mesh, 500).await;
    let stalled = mesh_tests::eventually(Duration::from_secs(30), "a growing backlog", || async {
        let archive = archive(&snapshot(&base).await);
        (archive["backlog"].as_u64() > Some(0)
            && archive["added_per_s"].as_f64() > Some(0.0)
            && archive["written_per_s"] == json!(0.0))
        .then_some(archive)
    })
    .await;
    assert_eq!(stalled["drain_s"], Value::Null, "{stalled}");
    let (_, _, metrics) = get(&format!("{base}/metrics"), None).await;
    assert!(
        metrics
            .lines()
            .any(|line| line == "gorgon_stats_archive_written_entries_per_second 0"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("gorgon_stats_archive_drain_seconds"),
        "{metrics}"
    );

    mesh.store.signal("CONT");
    let drained = mesh_tests::eventually(Duration::from_secs(60), "drained", || async {
        let archive = archive(&snapshot(&base).await);
        (archive["backlog"] == 0 && archive["drain_s"] == json!(0.0)).then_some(archive)
    })
    .await;
    assert!(drained["written_per_s"].as_f64() > Some(0.0), "{drained}");
    let (_, _, metrics) = get(&format!("{base}/metrics"), None).await;
    assert!(
        metrics
            .lines()
            .any(|line| line == "gorgon_stats_archive_drain_seconds 0"),
        "{metrics}"
    );
}

#[tokio::test]
async fn the_monitor_wants_an_admin_token_when_tokens_are_set() {
    let mesh = Mesh::start(1, &[]).await;
    let tokens = "adm1n-token=admin,reader-token=ro:feed";
    let (_stats, base) = start_stats(
        &mesh,
        &[("GORGON_API_TOKENS", tokens), ("GORGON_BIND", "127.0.0.1")],
    )
    .await;
    let snapshot_url = format!("{base}/api/v1/snapshot");
    for url in [&snapshot_url, &format!("{base}/metrics")] {
        let (status, headers, text) = get(url, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{url}");
        assert_eq!(headers["www-authenticate"], "Bearer");
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["error"]["code"], "unauthorized");
        let (status, _, _) = get(url, Some("wrong")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{url}");
        let (status, _, text) = get(url, Some("reader-token")).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{url}");
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["error"]["code"], "forbidden");
        let (status, _, _) = get(url, Some("adm1n-token")).await;
        assert_eq!(status, StatusCode::OK, "{url}");
    }
    // /readyz wants no token and answers as every HTTP role's does.
    let (status, _, text) = get(&format!("{base}/readyz"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        json!({"status": "ready"})
    );
    let (status, _, text) = get(&format!("{snapshot_url}?window=oops"), Some("adm1n-token")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    // The window asked for, but no further back than the monitor's start.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (status, _, text) = get(&format!("{snapshot_url}?window=2"), Some("adm1n-token")).await;
    assert_eq!(status, StatusCode::OK);
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["seconds"].as_array().unwrap().len(), 2);
    let (_, _, text) = get(&format!("{snapshot_url}?window=600"), Some("adm1n-token")).await;
    let body: Value = serde_json::from_str(&text).unwrap();
    let seconds = body["seconds"].as_array().unwrap().len();
    assert!((3..60).contains(&seconds), "{seconds} seconds");
    for (path, content_type) in [
        ("/", "text/html; charset=utf-8"),
        ("/app.js", "text/javascript; charset=utf-8"),
        ("/vendor/echarts.min.js", "text/javascript; charset=utf-8"),
        ("/vendor/LICENSE-echarts.txt", "text/plain; charset=utf-8"),
    ] {
        let (status, headers, body) = get(&format!("{base}{path}"), None).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(headers["content-type"], content_type, "{path}");
        assert!(headers.contains_key("content-security-policy"), "{path}");
        assert!(!body.is_empty());
        // Asked again with its tag: 304 and no body.
        let etag = headers["etag"].to_str().unwrap().to_owned();
        let again = reqwest::Client::new()
            .get(format!("{base}{path}"))
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path}");
        assert!(again.bytes().await.unwrap().is_empty());
    }
    let (status, _, _) = get(&format!("{base}/nothing-here"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// The dashboard in headless Chromium while messages flow: it draws, the end-to-end heatmap
/// has cells, the role list is filled. The screenshot is left at
/// `target/screenshots/stats-dashboard.png`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_draws_heatmaps_and_instances_in_chromium() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    assert!(
        std::path::Path::new(&chromium).is_file(),
        "no Chromium at {chromium}: install Debian's chromium (.ci/run does) or set CHROMIUM"
    );
    let driver = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("browser");
    assert!(
        driver.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed: run `scripts/deps test` (scripts/test does)"
    );
    let mongo = TestMongo::start();
    let mesh = mesh(&mongo).await;
    let token = "dash-admin";
    let (_stats, base) =
        start_stats(&mesh, &[("GORGON_API_TOKENS", &format!("{token}=admin"))]).await;
    feed(&mesh).await;

    let flowing = {
        let stop = Arc::new(AtomicBool::new(false));
        let mesh_base = mesh.base.clone();
        let handle = tokio::spawn({
            let stop = stop.clone();
            async move {
                let http = reqwest::Client::new();
                let mut sent = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let status = inject_numbers(&http, &mesh_base, "feed", "a", 0..20).await;
                    assert_eq!(status, StatusCode::ACCEPTED);
                    sent += 20;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                sent
            }
        });
        (stop, handle)
    };

    // Some seconds of traffic first, so the screenshot shows heatmap columns over time.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let screenshot =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots/stats-dashboard.png");
    std::fs::create_dir_all(screenshot.parent().unwrap()).unwrap();
    let output = tokio::process::Command::new("node")
        .current_dir(&driver)
        .env("CHROMIUM", &chromium)
        .args([
            "dashboard.mjs",
            "--url",
            &format!("{base}/"),
            "--token",
            token,
            "--screenshot",
            screenshot.to_str().unwrap(),
            "--timeout-ms",
            "60000",
            "--min-instances",
            "4",
        ])
        .output()
        .await
        .expect("run node tests/browser/dashboard.mjs");
    flowing.0.store(true, Ordering::Relaxed);
    let sent = flowing.1.await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let result: Value = serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|_| panic!("no JSON from the driver:\n{stdout}\n{stderr}"));
    eprintln!(
        "dashboard: {result} ({sent} messages sent; screenshot {})",
        screenshot.display()
    );
    assert!(output.status.success(), "{result}\n{stderr}");
    assert_eq!(result["ok"], true);
    assert!(result["heatmap_cells"].as_u64().unwrap() > 0, "{result}");
    assert!(result["heatmap_count"].as_u64().unwrap() > 0, "{result}");
    assert!(result["rest_cells"].as_u64().unwrap() > 0, "{result}");
    assert_eq!(result["unhealthy"], 0, "{result}");
    assert_eq!(result["partitions"], PARTITIONS, "{result}");
    let roles: Vec<&str> = result["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        ["processor", "stats", "store", "web_face"],
        "{result}"
    );
    assert_eq!(result["console_errors"], json!([]), "{result}");
    assert!(std::fs::metadata(&screenshot).unwrap().len() > 10_000);
}
