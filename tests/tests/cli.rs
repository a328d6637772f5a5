//! The `gorgon` command against a real mesh: each command's exact output and exit code, the
//! documented exit codes of refusals, and errors that say what to do.

use std::process::Stdio;
use std::time::Duration;

use mesh_tests::mesh::Mesh;
use mesh_tests::socketio::Notifier;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt as _;

/// What a run of the command gave: exit code, stdout, stderr.
#[derive(Debug)]
struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

/// The command with the mesh's addresses and `token` in its environment.
struct Gorgon {
    env: Vec<(String, String)>,
}

impl Gorgon {
    fn new(mesh: &Mesh, token: Option<&str>) -> Gorgon {
        let mut env = vec![("GORGON_URL".to_owned(), mesh.base.clone())];
        if let Some(token) = token {
            env.push(("GORGON_TOKEN".to_owned(), token.to_owned()));
        }
        Gorgon { env }
    }

    fn with(mut self, name: &str, value: &str) -> Gorgon {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Runs `gorgon args...` with `stdin` and waits for it, at most 120 s (then it is killed).
    async fn run(&self, args: &[&str], stdin: &str) -> Ran {
        let mut child = tokio::process::Command::new(mesh_tests::role_binary("gorgon"))
            .args(args)
            .env_clear()
            .envs(self.env.clone())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("gorgon starts");
        let mut input = child.stdin.take().expect("stdin");
        let stdin = stdin.to_owned();
        // Written beside the wait, so a command that reads slowly cannot block the test.
        let writer = tokio::spawn(async move {
            let _ = input.write_all(stdin.as_bytes()).await;
        });
        let output = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("gorgon {args:?} did not end within 120 s"))
            .expect("gorgon ends");
        writer.await.expect("stdin written");
        Ran {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Runs and expects exit 0 and nothing on stderr; the stdout.
    async fn ok(&self, args: &[&str]) -> String {
        let ran = self.run(args, "").await;
        assert_eq!(
            (ran.code, ran.stderr.as_str()),
            (0, ""),
            "gorgon {args:?}: {ran:?}"
        );
        ran.stdout
    }
}

const PLANT: &str = r#"description = "a plant"

[[node]]
id = "a"
function = "pass"

[[node]]
id = "total"
function = "count"
sources = ["a"]
"#;

/// Whether `text` is an id the API makes: 32 lowercase hex digits.
fn is_id(text: &str) -> bool {
    text.len() == 32 && text.bytes().all(|byte| byte.is_ascii_hexdigit())
}

/// apply (with its dry-run diff), get, export, graph, inject (one, and ndjson from stdin),
/// nodes, node, patch, history, tail, dead-letters (list and replay), delete, completions:
/// each one's output exact, exit 0.
#[tokio::test]
async fn every_command_does_what_it_says() {
    let mesh = Mesh::start(1, &[("GORGON_MAX_ATTEMPTS", "1")]).await;
    let notifier = Notifier::start(&mesh, &[]).await;
    let gorgon = Gorgon::new(&mesh, None).with("GORGON_NOTIFIER_URL", &notifier.url);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plant.toml");
    std::fs::write(&file, PLANT).unwrap();
    let path = file.to_str().unwrap();

    // apply: the topology is named after the file.
    assert_eq!(
        gorgon.ok(&["apply", path]).await,
        "applied plant: rev 1, 2 changes\n+ a  function pass\n+ total  function count, sources a\n"
    );
    let changed = PLANT.replace("sources = [\"a\"]", "sources = [\"a\", \"b\"]")
        + "\n[[node]]\nid = \"b\"\nfunction = \"pass\"\n";
    std::fs::write(&file, &changed).unwrap();
    assert_eq!(
        gorgon.ok(&["apply", path, "--dry-run"]).await,
        "plan for plant at rev 1 (dry run, nothing changed): 2 changes\n\
         + b  function pass\n\
         ~ total\n    sources: a → a, b\n"
    );
    assert_eq!(
        gorgon.ok(&["get"]).await,
        "ID     NODES  REV\nplant  2      1\n"
    );
    let listed: Value = serde_json::from_str(&gorgon.ok(&["get", "-o", "json"]).await).unwrap();
    assert_eq!(
        listed,
        json!({"topologies": [{"id": "plant", "nodes": 2, "rev": 1}]})
    );
    let toml = gorgon.ok(&["get", "plant"]).await;
    assert!(toml.starts_with("description = \"a plant\"\n"), "{toml}");
    let exported = dir.path().join("exported.toml");
    let ran = gorgon
        .run(&["export", "plant", "-f", exported.to_str().unwrap()], "")
        .await;
    assert_eq!(ran.code, 0, "{ran:?}");
    assert_eq!(ran.stderr, format!("wrote {}\n", exported.display()));
    assert_eq!(std::fs::read_to_string(&exported).unwrap(), toml);
    // The exported document applies back with no change.
    assert_eq!(
        gorgon
            .ok(&["apply", exported.to_str().unwrap(), "-t", "plant"])
            .await,
        "applied plant: rev 1, 0 changes\n"
    );
    assert_eq!(
        gorgon.ok(&["graph", "plant"]).await,
        "flowchart LR\n    a[\"a<br/>pass\"]\n    total[\"total<br/>count\"]\n    a --> total\n"
    );

    // inject: one message, then 2 500 lines of ndjson in requests of 1 000.
    let one = gorgon.ok(&["inject", "plant", "a", r#"{"v": 0}"#]).await;
    assert!(is_id(one.trim_end()) && one.ends_with('\n'), "{one:?}");
    let lines: String = (1..=2500).map(|v| format!("{{\"v\": {v}}}\n")).collect();
    let ran = gorgon
        .run(&["inject", "plant", "a", "--batch", "1000"], &lines)
        .await;
    assert_eq!(ran.code, 0, "{ran:?}");
    let ids: Vec<&str> = ran.stdout.lines().collect();
    assert_eq!(ids.len(), 2500);
    assert!(ids.iter().all(|id| is_id(id)));
    assert!(
        ran.stderr
            .starts_with("injected 2500 messages into plant/a in 3 requests ("),
        "{}",
        ran.stderr
    );

    // nodes and node, once all 2 501 are counted.
    mesh_tests::eventually(Duration::from_secs(60), "2 501 counted", || async {
        let nodes = gorgon.ok(&["nodes", "plant"]).await;
        nodes
            .lines()
            .any(|line| line.starts_with("total ") && line.contains(" 2501  ok"))
            .then_some(())
    })
    .await;
    assert_eq!(
        gorgon.ok(&["nodes", "plant"]).await,
        "ID     FUNCTION  SOURCES  SEQ   STATE  DEAD\n\
         a      pass      -        2501  ok     0\n\
         total  count     a        2501  ok     0\n"
    );
    let node = gorgon.ok(&["node", "plant", "total"]).await;
    let node_lines: Vec<&str> = node.lines().collect();
    assert_eq!(
        node_lines[..6],
        [
            "id            total",
            "function      count",
            "sources       a",
            "state         ok",
            "dead letters  0",
            "attrs         {\"count\":2501}",
        ]
    );
    assert!(
        node_lines[6].starts_with("output        #2501 at 20")
            && node_lines[6].ends_with(": {\"count\":2501}"),
        "{node}"
    );
    let patched = gorgon
        .ok(&["patch", "plant", "total", "--attrs", r#"{"note": "kept"}"#])
        .await;
    assert!(
        patched.contains("attrs         {\"count\":2501,\"note\":\"kept\"}\n"),
        "{patched}"
    );

    // history: a page, newest first, and where the next one is.
    let history = gorgon.ok(&["history", "plant", "a", "--limit", "2"]).await;
    let rows: Vec<Vec<&str>> = history
        .lines()
        .map(|line| {
            line.split("  ")
                .map(str::trim)
                .filter(|cell| !cell.is_empty())
                .collect()
        })
        .collect();
    assert_eq!(rows[0], ["SEQ", "TS", "NODE", "INPUT", "DATA"]);
    assert_eq!(
        (rows[1][0], rows[1][2], rows[1][4]),
        ("2501", "a", "{\"v\":2500}")
    );
    assert_eq!(
        (rows[2][0], rows[2][2], rows[2][4]),
        ("2500", "a", "{\"v\":2499}")
    );
    assert_eq!(
        rows[3].join("  "),
        "more: /v1/topologies/plant/nodes/a/history?limit=2&order=desc&before_seq=2500 (--all reads every page)"
    );
    let all: Value = serde_json::from_str(
        &gorgon
            .ok(&[
                "history",
                "plant",
                "a",
                "--after-seq",
                "2495",
                "--order",
                "asc",
                "--limit",
                "2",
                "--all",
                "-o",
                "json",
            ])
            .await,
    )
    .unwrap();
    let seqs: Vec<u64> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [2496, 2497, 2498, 2499, 2500, 2501]);

    // tail: from a seq, as many as asked for, one JSON event a line.
    let tailed = gorgon
        .ok(&[
            "tail",
            "plant",
            "total",
            "--after-seq",
            "2499",
            "--count",
            "2",
            "-o",
            "json",
        ])
        .await;
    let events: Vec<Value> = tailed
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(events.len(), 2);
    assert_eq!(
        (
            events[0]["seq"].clone(),
            events[1]["seq"].clone(),
            events[1]["data"].clone()
        ),
        (json!(2500), json!(2501), json!({"count": 2501}))
    );

    // dead-letters: a message its function cannot take, listed, then replayed once fixed.
    let dl = dir.path().join("dl.json");
    std::fs::write(
        &dl,
        r#"{"node": [{"id": "avg", "function": "average", "attrs": {"field": "/celsius"}}]}"#,
    )
    .unwrap();
    gorgon.ok(&["apply", dl.to_str().unwrap()]).await;
    let id = gorgon
        .ok(&[
            "inject",
            "dl",
            "avg",
            r#"{"celsius": "warm", "kelvin": 300}"#,
        ])
        .await;
    let id = id.trim_end();
    mesh_tests::eventually(Duration::from_secs(30), "the dead letter", || async {
        let listed = gorgon.ok(&["dead-letters", "dl"]).await;
        (listed.lines().count() == 2).then_some(listed)
    })
    .await;
    let listed = gorgon.ok(&["dead-letters", "dl", "-o", "json"]).await;
    let listed: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed["items"][0]["id"], id);
    assert_eq!(listed["items"][0]["node"], "avg");
    assert_eq!(listed["items"][0]["attempts"], 1);
    gorgon
        .ok(&["patch", "dl", "avg", "--attrs", r#"{"field": "/kelvin"}"#])
        .await;
    assert_eq!(
        gorgon.ok(&["dead-letters", "dl", "--replay"]).await,
        format!("replayed 1 messages\n{id}\n")
    );
    assert_eq!(
        gorgon.ok(&["dead-letters", "dl"]).await,
        "ID  NODE  ATTEMPTS  AT  ERROR\n"
    );

    // delete: a node with dependents needs --force; then the topology.
    let refused = gorgon.run(&["delete", "plant", "a"], "").await;
    assert_eq!(refused.code, 5, "{refused:?}");
    assert_eq!(
        refused.stderr,
        "error: node \"a\" is a source of total; remove it from their sources first, or delete \
         with ?force=true to remove those edges too (has_dependents, HTTP 409)\n\
         hint: other nodes receive from it: --force deletes it and removes those edges\n"
    );
    assert_eq!(
        gorgon.ok(&["delete", "plant", "a", "--force"]).await,
        "deleted node a of plant\n"
    );
    assert_eq!(
        gorgon.ok(&["delete", "plant"]).await,
        "deleted topology plant\n"
    );
    let gone = gorgon.run(&["get", "plant"], "").await;
    assert_eq!(gone.code, 3, "{gone:?}");

    let completions = gorgon.ok(&["completions", "bash"]).await;
    assert!(completions.contains("_gorgon()"), "{completions}");
}

/// Refusals exit with their documented codes and say what to do: no token (6), a reader
/// writing (6), an unknown topology (3), a stale rev (5), an invalid document (4), input
/// that is not JSON (4), nothing listening (7), a bad command line (2). `status` reads the
/// stats role.
#[tokio::test]
async fn refusals_exit_with_their_codes_and_say_what_to_do() {
    let mesh = Mesh::start(1, &[("GORGON_API_TOKENS", "adm=admin,reader=ro:plant")]).await;
    let admin = Gorgon::new(&mesh, Some("adm"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plant.toml");
    std::fs::write(&file, PLANT).unwrap();
    let path = file.to_str().unwrap();
    admin.ok(&["apply", path]).await;

    let anonymous = Gorgon::new(&mesh, None).run(&["get"], "").await;
    assert_eq!(anonymous.code, 6);
    assert_eq!(
        anonymous.stderr,
        "error: send a token in an Authorization: Bearer <token> header (unauthorized, HTTP 401)\n\
         hint: set GORGON_TOKEN (or pass --token) to a token of GORGON_API_TOKENS\n"
    );
    let reader = Gorgon::new(&mesh, Some("reader"));
    assert_eq!(
        reader.ok(&["get"]).await,
        "ID     NODES  REV\nplant  2      1\n"
    );
    let writing = reader.run(&["inject", "plant", "a", "1"], "").await;
    assert_eq!(writing.code, 6, "{writing:?}");
    assert!(
        writing
            .stderr
            .ends_with("(forbidden, HTTP 403)\nhint: this token may only read here: use a token with rw or admin scope\n"),
        "{}",
        writing.stderr
    );
    let unknown = admin.run(&["nodes", "nope"], "").await;
    assert_eq!(unknown.code, 3);
    assert_eq!(
        unknown.stderr,
        "error: there is no topology \"nope\" (not_found, HTTP 404)\n\
         hint: `gorgon get` lists the topologies this token can see\n"
    );
    let stale = admin.run(&["apply", path, "--if-match", "9"], "").await;
    assert_eq!(stale.code, 5, "{stale:?}");
    std::fs::write(&file, "[[node]]\nid = \"x\"\nfunction = \"nope\"\n").unwrap();
    let invalid = admin.run(&["apply", path], "").await;
    assert_eq!(invalid.code, 4, "{invalid:?}");
    assert!(
        invalid.stderr.contains("(unknown_function, HTTP 422)"),
        "{}",
        invalid.stderr
    );
    let not_json = admin.run(&["inject", "plant", "a", "{v: 1}"], "").await;
    assert_eq!(not_json.code, 4);
    assert!(
        not_json
            .stderr
            .starts_with("error: the message is not JSON ("),
        "{}",
        not_json.stderr
    );
    let bad_line = admin
        .run(
            &["inject", "plant", "a"],
            "{\"v\": 1}\n{\"v\": 2}\nnot json\n",
        )
        .await;
    assert_eq!(bad_line.code, 4);
    assert!(
        bad_line
            .stderr
            .starts_with("error: line 3 of stdin is not JSON ("),
        "{}",
        bad_line.stderr
    );
    assert!(
        bad_line
            .stderr
            .ends_with("0 messages before line 1 were injected\n"),
        "{}",
        bad_line.stderr
    );
    let port = redpill::testing::free_port();
    let nobody = Gorgon::new(&mesh, Some("adm"))
        .with("GORGON_URL", &format!("http://127.0.0.1:{port}"))
        .run(&["get"], "")
        .await;
    assert_eq!(nobody.code, 7, "{nobody:?}");
    assert!(
        nobody.stderr.starts_with(&format!(
            "error: could not reach http://127.0.0.1:{port}/v1/topologies: "
        )) && nobody.stderr.ends_with(
            "hint: set GORGON_URL (or --url) to web_face's address; `gorgon status` checks the roles\n"
        ),
        "{}",
        nobody.stderr
    );
    let usage = admin.run(&["nodes"], "").await;
    assert_eq!(usage.code, 2);

    // new function: a crate made (its build and test are the cli crate's own test), a name
    // that is not a slug refused as invalid, a checkout that is not one refused.
    let crates = dir.path().to_str().unwrap();
    let made = admin
        .run(&["new", "function", "heat-index", "--dir", crates], "")
        .await;
    let crate_dir = dir.path().join("heat-index");
    assert_eq!(
        (made.code, made.stdout.as_str(), made.stderr.as_str()),
        (
            0,
            format!(
                "made {}\nnext: cd {} && cargo test, then put its Procfile line in place of \
                 `processor`\n",
                crate_dir.display(),
                crate_dir.display()
            )
            .as_str(),
            ""
        )
    );
    assert!(crate_dir.join("src/lib.rs").is_file() && crate_dir.join("Procfile").is_file());
    let bad_name = admin
        .run(&["new", "function", "Heat", "--dir", crates], "")
        .await;
    assert_eq!(bad_name.code, 4, "{bad_name:?}");
    assert!(
        bad_name
            .stderr
            .starts_with("error: function name \"Heat\" is not usable: "),
        "{}",
        bad_name.stderr
    );
    let nowhere = admin
        .with("GORGON_SOURCE", "/nowhere")
        .run(&["new", "function", "other", "--dir", crates], "")
        .await;
    assert_eq!(nowhere.code, 1, "{nowhere:?}");
    assert!(
        nowhere
            .stderr
            .starts_with("error: /nowhere does not look like a Gorgon source checkout"),
        "{}",
        nowhere.stderr
    );
    let admin = Gorgon::new(&mesh, Some("adm"));

    // status: the roles, the partitions and the archive from the stats role.
    let port = redpill::testing::free_port().to_string();
    let stats = mesh.spawn_with("stats", &[("GORGON_STATS_PORT", port.as_str())]);
    stats
        .wait_for_output("serving the stats dashboard", Duration::from_secs(30))
        .await;
    let admin = admin.with("GORGON_STATS_URL", &format!("http://127.0.0.1:{port}"));
    let status =
        mesh_tests::eventually(Duration::from_secs(30), "every role reporting", || async {
            let text = admin.ok(&["status"]).await;
            ["web_face", "store", "processor", "stats"]
                .iter()
                .all(|role| {
                    text.lines()
                        .any(|line| line.starts_with(role) && line.contains("healthy"))
                })
                .then_some(text)
        })
        .await;
    let lines: Vec<&str> = status.lines().collect();
    assert!(lines[0].starts_with("ROLE "), "{status}");
    // The partitions by owner: the one processor holds all 8, nothing waits.
    let owners = lines
        .iter()
        .position(|line| line.starts_with("OWNER"))
        .expect("a partitions table");
    assert_eq!(
        lines[owners].split_whitespace().collect::<Vec<_>>(),
        [
            "OWNER",
            "PARTITIONS",
            "WAITING",
            "IN",
            "FLIGHT",
            "DELAYED",
            "DEAD",
            "OLDEST"
        ]
    );
    let held: Vec<&str> = lines[owners + 1].split_whitespace().collect();
    assert!(held[0].starts_with("processor-"), "{status}");
    let partitions = mesh_tests::mesh::PARTITIONS.to_string();
    assert_eq!(
        held[1..],
        [partitions.as_str(), "0", "0", "0", "0", "-"],
        "{status}"
    );
    assert_eq!(lines[owners + 2], "", "{status}");
    assert!(status.ends_with("dead letters: 0\n"), "{status}");
    let refused = reader
        .with("GORGON_STATS_URL", &format!("http://127.0.0.1:{port}"))
        .run(&["status"], "")
        .await;
    assert_eq!(refused.code, 6, "{refused:?}");
}
