//! `scripts/up` brings the whole mesh up from the Procfile under foreman, on a Redis and a
//! MongoDB given by URL: every role runs and works together, the simulator's chain and
//! sensors scenarios pass their verification against it (0 lost, 0 duplicated, 0 out of
//! order), a second `scripts/up` only prints the URLs, and SIGTERM stops every process it
//! started; `scripts/up --cluster` does the same on a local Redis Cluster of its own.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mesh_tests::mesh::{get_json, healthy_roles, inject_numbers};
use mesh_tests::mongo::TestMongo;
use redpill::testing::{free_port, TestRedis};
use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `scripts/up` with `env` added, its output gathered.
fn up(env: &[(String, String)], output: Arc<Mutex<String>>) -> tokio::process::Child {
    up_with(&[], env, output)
}

/// `scripts/up` with `args` and `env` added, its output gathered.
fn up_with(
    args: &[&str],
    env: &[(String, String)],
    output: Arc<Mutex<String>>,
) -> tokio::process::Child {
    let mut child = tokio::process::Command::new(repository().join("scripts/up"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run scripts/up");
    for stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn tokio::io::AsyncRead + Send + Unpin>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let output = Arc::clone(&output);
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut output = output.lock().unwrap();
                output.push_str(&line);
                output.push('\n');
            }
        });
    }
    child
}

/// Runs the simulator with `args` against the mesh and returns its `--json` report, after
/// checking it exited 0 (verification passed).
async fn simulate(api: &str, notifier: &str, args: &[&str]) -> serde_json::Value {
    let output = tokio::process::Command::new(mesh_tests::role_binary("simulator"))
        .args(["--api", api, "--notifier", notifier, "--json", "--quiet"])
        .args(["--settle-timeout-s", "60"])
        .args(args)
        .output()
        .await
        .expect("run the simulator");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("no JSON report ({error}); stderr:\n{stderr}"));
    assert!(output.status.success(), "{report:#}\n{stderr}");
    report
}

/// The verification figures of a report that must all be zero.
fn faults(report: &serde_json::Value) -> serde_json::Value {
    let verdict = &report["verdict"];
    json!({
        "lost": verdict["lost"],
        "duplicated": verdict["duplicated"],
        "out_of_order": verdict["out_of_order"],
        "unexpected": verdict["unexpected"],
        "effect_mismatches": verdict["effect_mismatches"],
        "errors": report["errors"],
    })
}

/// Makes topology `feed` (`a` → `total`, a count), injects 100 messages into `a` and waits
/// until `total` has counted exactly 100: the roles work together.
async fn count_a_hundred(http: &reqwest::Client, api: &str) {
    let doc = json!({"node": [
        {"id": "a", "function": "pass"},
        {"id": "total", "function": "count", "sources": ["a"]},
    ]});
    let put = http
        .put(format!("{api}/v1/topologies/feed"))
        .json(&doc)
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success(), "{}", put.text().await.unwrap());
    let injected = inject_numbers(http, api, "feed", "a", 0..100).await;
    assert_eq!(injected, StatusCode::ACCEPTED);
    mesh_tests::eventually(
        Duration::from_secs(30),
        "the count to reach 100",
        || async {
            let output = get_json(
                http,
                &format!("{api}/v1/topologies/feed/nodes/total/output"),
            )
            .await?;
            (output["seq"] == 100).then_some(())
        },
    )
    .await;
}

/// Waits until `scripts/up` has printed the mesh's URLs, and returns what it printed.
async fn printed_urls(output: &Mutex<String>) -> String {
    mesh_tests::eventually(
        Duration::from_secs(300),
        "scripts/up to print the mesh's URLs",
        || {
            let output = output.lock().unwrap().clone();
            std::future::ready(output.contains("Ctrl-C stops it all").then_some(output))
        },
    )
    .await
}

/// Sends SIGTERM to `scripts/up`, checks it exits with 143 within 60 s, and returns all it
/// printed.
async fn terminate(mut running: tokio::process::Child, output: &Mutex<String>) -> String {
    let pid = running.id().unwrap().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = tokio::time::timeout(Duration::from_secs(60), running.wait())
        .await
        .expect("scripts/up stops within 60 s of SIGTERM")
        .unwrap();
    let output = output.lock().unwrap().clone();
    assert_eq!(status.code(), Some(143), "{output}");
    output
}

async fn answers(url: &str) -> bool {
    reqwest::get(url)
        .await
        .is_ok_and(|response| response.status().is_success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_up_runs_every_role_and_stops_them_all() {
    assert!(
        std::process::Command::new("foreman")
            .arg("version")
            .output()
            .is_ok_and(|output| output.status.success()),
        "foreman not found: apt-get install ruby-foreman (.ci/run does)"
    );
    // The debug role binaries, built as every mesh test builds them; scripts/up's own build
    // (the same packages) then has nothing to do.
    mesh_tests::role_binary("web_face");
    let redis = TestRedis::start();
    let mongo = TestMongo::start();
    let var = tempfile::tempdir().unwrap();
    let (web, notifier, stats) = (free_port(), free_port(), free_port());
    let env: Vec<(String, String)> = [
        ("REDIS_URL", redis.url()),
        ("MONGODB_URI", mongo.uri()),
        ("GORGON_PARTITIONS", "8".to_owned()),
        ("GORGON_WEB_PORT", web.to_string()),
        ("GORGON_NOTIFIER_PORT", notifier.to_string()),
        ("GORGON_STATS_PORT", stats.to_string()),
        ("GORGON_UP_VAR", var.path().display().to_string()),
        ("GORGON_UP_PROFILE", "dev".to_owned()),
        ("GORGON_UP_FORMATION", "all=1,processor=2".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let output = Arc::new(Mutex::new(String::new()));
    let running = up(&env, Arc::clone(&output));
    let api = format!("http://127.0.0.1:{web}");
    let dashboard = format!("http://127.0.0.1:{stats}");
    let printed = printed_urls(&output).await;
    assert!(
        printed.contains(&format!("REST API        {api}/v1")),
        "{printed}"
    );
    assert!(
        printed.contains(&format!("dashboard       {dashboard}/")),
        "{printed}"
    );
    mesh_tests::eventually(
        Duration::from_secs(60),
        "every HTTP role to answer",
        || async {
            (answers(&format!("{api}/readyz")).await
                && answers(&format!("http://127.0.0.1:{notifier}/readyz")).await
                && answers(&format!("{dashboard}/readyz")).await)
                .then_some(())
        },
    )
    .await;

    // The roles work together: a topology, 100 injects, a count of exactly 100.
    let http = reqwest::Client::new();
    count_a_hundred(&http, &api).await;
    // The simulator's scenarios, small: every output of every node arrives exactly once.
    let zero = json!({"lost": 0, "duplicated": 0, "out_of_order": 0, "unexpected": 0,
                      "effect_mismatches": 0, "errors": 0});
    let notifier_url = format!("http://127.0.0.1:{notifier}");
    let chain = simulate(
        &api,
        &notifier_url,
        &[
            "--messages",
            "500",
            "--batch",
            "50",
            "--clients",
            "2",
            "chain",
            "--length",
            "10",
        ],
    )
    .await;
    assert_eq!(faults(&chain), zero, "{chain:#}");
    assert_eq!(chain["sent"], 500);
    // 500 messages through 10 links, to each of the 2 clients.
    assert_eq!(chain["verdict"]["expected"], 2 * 500 * 10);
    assert_eq!(chain["verdict"]["received"], 2 * 500 * 10);
    assert_eq!(chain["node_messages"], 500 * 10);
    assert_eq!(chain["passed"], true);
    let sensors = simulate(
        &api,
        &notifier_url,
        &[
            "--messages",
            "2000",
            "--readers",
            "2",
            "sensors",
            "--sensors",
            "200",
            "--rooms",
            "10",
            "--zones",
            "2",
        ],
    )
    .await;
    assert_eq!(faults(&sensors), zero, "{sensors:#}");
    assert_eq!(sensors["sent"], 2000);
    assert_eq!(sensors["nodes"], 200 + 10 + 2 + 1);
    // Each message outputs at its sensor and its room, plus whatever the zones and the site
    // latched.
    assert!(
        sensors["verdict"]["expected"].as_u64().unwrap() >= 2 * 2000,
        "{sensors:#}"
    );
    assert_eq!(
        sensors["verdict"]["received"],
        sensors["verdict"]["expected"]
    );
    assert_eq!(sensors["history_statuses"]["500"], serde_json::Value::Null);
    // Notes with history behind them: a prefill verified with the load, readers pausing
    // between reads, half of them of a user's oldest page.
    let notes = simulate(
        &api,
        &notifier_url,
        &[
            "--prefill",
            "400",
            "--messages",
            "300",
            "--rate",
            "300",
            "--readers",
            "4",
            "--reader-interval-ms",
            "20",
            "--deep-share",
            "0.5",
            "notes",
            "--users",
            "20",
        ],
    )
    .await;
    assert_eq!(faults(&notes), zero, "{notes:#}");
    assert_eq!(
        (notes["prefilled"].as_u64(), notes["sent"].as_u64()),
        (Some(400), Some(300))
    );
    assert_eq!(notes["verdict"]["expected"], 700, "{notes:#}");
    assert_eq!(notes["verdict"]["received"], 700, "{notes:#}");
    assert_eq!(notes["node_messages"], 300, "{notes:#}");
    assert!(notes["history_ms"]["count"].as_u64() > Some(0), "{notes:#}");
    assert!(
        notes["history_deep_ms"]["count"].as_u64() > Some(0),
        "{notes:#}"
    );

    // Every process of the formation reports to the monitor.
    mesh_tests::eventually(
        Duration::from_secs(30),
        "every role on the dashboard",
        || async {
            let snapshot =
                get_json(&http, &format!("{dashboard}/api/v1/snapshot?window=10")).await?;
            (healthy_roles(&snapshot)
                == [
                    "notifier",
                    "processor",
                    "processor",
                    "stats",
                    "store",
                    "web_face",
                ])
            .then_some(())
        },
    )
    .await;

    // A second scripts/up while the first runs only prints the URLs.
    let second_output = Arc::new(Mutex::new(String::new()));
    let second = up(&env, Arc::clone(&second_output)).wait().await.unwrap();
    assert!(second.success());
    let second_output = second_output.lock().unwrap().clone();
    assert!(second_output.contains("already running"), "{second_output}");

    // SIGTERM: every role stops, and scripts/up with them.
    let output = terminate(running, &output).await;
    for port in [web, notifier, stats] {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "port {port} still answers after the stop:\n{output}"
        );
    }
    assert!(output.contains("up: stopping the roles"), "{output}");
    // It started no Redis or MongoDB of its own: it was given both.
    assert!(
        !output.contains("starting Redis") && !output.contains("starting nx-27017"),
        "{output}"
    );
    assert!(!var.path().join("up.pid").exists());
}

/// The first free port of `count` consecutive ones whose bus ports (10 000 higher) are free
/// too, from a random place in 20 000..40 000.
fn free_run(count: u16) -> u16 {
    let free = |port: u16| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok();
    loop {
        let base = 20_000 + rand::random::<u16>() % 20_000;
        if (base..base + count).all(|port| free(port) && free(port + 10_000)) {
            return base;
        }
    }
}

/// `scripts/up --cluster` starts a Redis Cluster of 3 masters and 3 replicas under its
/// `var` directory and runs the mesh on it: the roles find the cluster from one node's
/// address, a count over two partitions comes out exact, and SIGTERM stops the roles and
/// every node it started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_up_cluster_runs_the_mesh_on_a_local_cluster() {
    mesh_tests::role_binary("web_face");
    let mongo = TestMongo::start();
    let var = tempfile::tempdir().unwrap();
    let base = free_run(6);
    let (web, notifier, stats) = (free_port(), free_port(), free_port());
    let env: Vec<(String, String)> = [
        ("MONGODB_URI", mongo.uri()),
        ("GORGON_PARTITIONS", "8".to_owned()),
        ("GORGON_WEB_PORT", web.to_string()),
        ("GORGON_NOTIFIER_PORT", notifier.to_string()),
        ("GORGON_STATS_PORT", stats.to_string()),
        ("GORGON_UP_REDIS_PORT", base.to_string()),
        ("GORGON_UP_VAR", var.path().display().to_string()),
        ("GORGON_UP_PROFILE", "dev".to_owned()),
        ("GORGON_UP_FORMATION", "all=1,processor=2".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let output = Arc::new(Mutex::new(String::new()));
    let running = up_with(&["--cluster"], &env, Arc::clone(&output));
    let printed = printed_urls(&output).await;
    assert!(
        printed.contains(&format!("Redis           redis://127.0.0.1:{base}")),
        "{printed}"
    );
    assert!(printed.contains("Redis Cluster of 3 masters"), "{printed}");
    let api = format!("http://127.0.0.1:{web}");
    mesh_tests::eventually(Duration::from_secs(60), "the API to answer", || async {
        answers(&format!("{api}/readyz")).await.then_some(())
    })
    .await;
    let http = reqwest::Client::new();
    count_a_hundred(&http, &api).await;
    // The roles found the cluster from the one address they were given.
    let logged = output.lock().unwrap().clone();
    assert!(logged.contains("Redis Cluster found"), "{logged}");

    let output = terminate(running, &output).await;
    assert!(output.contains("stopped the Redis Cluster"), "{output}");
    for port in base..base + 6 {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "cluster node {port} still answers after the stop:\n{output}"
        );
    }
}
