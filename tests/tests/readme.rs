//! The README's quick start, pasted as a new user would: its curl lines run by bash against a
//! real mesh, its socket.io snippet run by Node with the official client, and its stream
//! followed by `curl -N`; and the same quick start through the `gorgon` command. A README
//! edit that breaks any of them fails here.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use mesh_tests::mesh::Mesh;
use mesh_tests::socketio::Notifier;
use reqwest::Method;
use serde_json::Value;
use tokio::io::AsyncReadExt as _;
use tokio::process::Command;

fn readme() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    std::fs::read_to_string(&path).expect("README.md")
}

/// The first fenced block of `language` after the line containing `marker`.
fn block_after(text: &str, marker: &str, language: &str) -> String {
    let start = text
        .find(marker)
        .unwrap_or_else(|| panic!("the README has no {marker:?}"));
    let fence = format!("```{language}\n");
    let open = start
        + text[start..]
            .find(&fence)
            .unwrap_or_else(|| panic!("no ```{language} block after {marker:?}"))
        + fence.len();
    let close = open + text[open..].find("```").expect("a closing fence");
    text[open..close].to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_quick_start_works_when_pasted() {
    let mesh = Mesh::start(1, &[]).await;
    let notifier = Notifier::start(&mesh, &[]).await;
    let text = readme();
    let web = mesh.base.trim_start_matches("http://").to_owned();
    let curls = block_after(&text, "The same with curl", "sh").replace("localhost:8080", &web);
    let watch = block_after(&text, "Every output live", "js")
        .replace("http://127.0.0.1:8081", &notifier.url);
    assert!(curls.contains(&web) && watch.contains(&notifier.url));

    // The curl lines, as one pasted block.
    let shell = run_bash(&curls).await;
    // Each curl prints one JSON body: the PUT's plan, the inject's id, then the output (or
    // no_output when the processor had not got there yet).
    let bodies: Vec<Value> = serde_json::Deserializer::from_str(&shell)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|error| {
            panic!("curl printed something other than JSON ({error}): {shell}")
        });
    assert_eq!(bodies.len(), 3, "{shell}");
    assert_eq!(
        bodies[0]["created"],
        serde_json::json!(["readings", "total"]),
        "{shell}"
    );
    assert!(
        bodies[1]["msg_id"].is_string(),
        "the inject was refused: {shell}"
    );
    let output = total_output(&mesh, 1).await;
    assert_eq!(output["input_id"], bodies[1]["msg_id"]);

    // The socket.io snippet, from a file beside the pinned socket.io-client so that its
    // import resolves as it does after `npm install socket.io-client`.
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("socketio");
    assert!(
        dir.join("node_modules/socket.io-client").is_dir(),
        "socket.io-client is not installed: run scripts/deps test (scripts/test does)"
    );
    let script = dir.join(format!("readme-watch-{}.mjs", std::process::id()));
    std::fs::write(&script, &watch).expect("write the snippet");
    let mut node = Command::new("node")
        .arg(&script)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run node");
    let mut stdout = node.stdout.take().expect("stdout");
    let mut printed = String::new();
    read_until(&mut stdout, &mut printed, "ok: true").await;
    // Subscribed: the block's inject once more reaches the snippet from both nodes.
    let inject = curls
        .replace("\\\n", " ")
        .lines()
        .find(|line| line.contains("/messages"))
        .expect("an inject line")
        .to_owned();
    run_bash(&inject).await;
    total_output(&mesh, 2).await;
    // Outputs come in order per node; the two nodes' may arrive either way round.
    read_until(&mut stdout, &mut printed, "total 2").await;
    read_until(&mut stdout, &mut printed, "readings 2").await;
    node.kill().await.ok();
    std::fs::remove_file(&script).ok();
    assert!(printed.contains("{ ok: true"), "{printed}");
    assert!(printed.contains("readings 2 { celsius: 21 }"), "{printed}");
    assert!(printed.contains("total 2 { count: 2 }"), "{printed}");

    // The stream, followed by curl -N while the inject runs once more.
    let follow = block_after(&text, "Or without socket.io", "sh")
        .replace("localhost:8081", notifier.url.trim_start_matches("http://"));
    let mut curl = Command::new("bash")
        .arg("-c")
        .arg(follow.trim())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run curl");
    let mut stdout = curl.stdout.take().expect("stdout");
    let mut streamed = String::new();
    read_until(&mut stdout, &mut streamed, "event: positions").await;
    run_bash(&inject).await;
    read_until(&mut stdout, &mut streamed, "id: total:3").await;
    curl.kill().await.ok();
    // What curl said, for when the stream was not what it should be.
    let mut said = String::new();
    if let Some(mut stderr) = curl.stderr.take() {
        stderr.read_to_string(&mut said).await.ok();
    }
    for wanted in [
        "event: positions\ndata: {\"readings\":2,\"total\":2}\n",
        "event: output\nid: readings:3\n",
        "event: output\nid: total:3\n",
    ] {
        assert!(
            streamed.contains(wanted),
            "{wanted:?} not in the stream: {streamed}\ncurl said: {said}"
        );
    }
}

/// Runs `script` with bash (`set -e`) and returns what it printed; panics when it fails.
async fn run_bash(script: &str) -> String {
    let shell = Command::new("bash")
        .arg("-c")
        .arg(format!("set -e\n{script}"))
        .output()
        .await
        .expect("run bash");
    let out = String::from_utf8_lossy(&shell.stdout).into_owned();
    assert!(
        shell.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&shell.stderr)
    );
    out
}

/// The `total` node's output once it counted `count` messages.
async fn total_output(mesh: &Mesh, count: u64) -> Value {
    mesh_tests::eventually(Duration::from_secs(20), "the total's output", || async {
        let answer = mesh
            .call(
                Method::GET,
                "/v1/topologies/demo/nodes/total/output",
                &Value::Null,
            )
            .await;
        (answer.json["data"]["count"] == count).then_some(answer.json)
    })
    .await
}

/// Reads `stdout` into `printed` until it contains `wanted`, for at most 20 s.
async fn read_until(stdout: &mut tokio::process::ChildStdout, printed: &mut String, wanted: &str) {
    let mut buffer = vec![0; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !printed.contains(wanted) {
        match tokio::time::timeout_at(deadline, stdout.read(&mut buffer)).await {
            Ok(Ok(read)) if read > 0 => printed.push_str(&String::from_utf8_lossy(&buffer[..read])),
            _ => break,
        }
    }
}

/// The quick start through the `gorgon` command, pasted into bash with the command on the
/// PATH: the apply's plan, the inject's id, the two outputs it caused and the nodes, exact
/// but for the id and the times.
#[tokio::test(flavor = "multi_thread")]
async fn the_cli_quick_start_works_when_pasted() {
    let mesh = Mesh::start(1, &[]).await;
    let notifier = Notifier::start(&mesh, &[]).await;
    let block = block_after(&readme(), "A first topology", "sh");
    assert!(block.contains("gorgon apply demo.toml"), "{block}");
    let gorgon = mesh_tests::role_binary("gorgon");
    let dir = tempfile::tempdir().expect("a directory");
    let path = format!(
        "{}:{}",
        gorgon.parent().expect("target/<profile>").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let shell = Command::new("bash")
        .arg("-c")
        .arg(format!("set -e\n{block}"))
        .current_dir(dir.path())
        .env("PATH", path)
        .env("GORGON_URL", &mesh.base)
        .env("GORGON_NOTIFIER_URL", &notifier.url)
        .output();
    let shell = tokio::time::timeout(Duration::from_secs(60), shell)
        .await
        .expect("the block ends within 60 s")
        .expect("run bash");
    let out = String::from_utf8_lossy(&shell.stdout).into_owned();
    let err = String::from_utf8_lossy(&shell.stderr).into_owned();
    assert!(shell.status.success(), "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 9, "{out}");
    assert_eq!(
        lines[..3],
        [
            "applied demo: rev 1, 2 changes",
            "+ readings  function pass",
            "+ total  function count, sources readings",
        ]
    );
    let id = lines[3];
    assert!(
        id.len() == 32 && id.bytes().all(|byte| byte.is_ascii_hexdigit()),
        "{out}"
    );
    // `<ts>  <node>  #<seq>  <data>`: the outputs without their times, in either order.
    let mut outputs: Vec<&str> = lines[4..6]
        .iter()
        .map(|line| line.split_once("  ").map_or(*line, |(_, rest)| rest))
        .collect();
    outputs.sort_unstable();
    assert_eq!(
        outputs,
        ["readings  #1  {\"celsius\":21}", "total  #1  {\"count\":1}"]
    );
    assert_eq!(
        lines[6..],
        [
            "ID        FUNCTION  SOURCES   SEQ  STATE  DEAD",
            "readings  pass      -         1    ok     0",
            "total     count     readings  1    ok     0",
        ]
    );
    assert_eq!(err, "", "nothing on stderr");
}
