//! The Rust client (`gorgon_client`) against a real mesh: every route typed, errors typed by
//! their codes, injects that are queued once however often they are sent, and a subscription
//! that resumes across a notifier killed with SIGKILL with nothing missing, repeated or out of
//! order, filling from history what the replay buffer no longer holds.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::StreamExt as _;
use gorgon_client::protocol::api::{
    Applied, HistoryParams, ListQuery, NodePatch, OutputsParams, TopologySummary,
};
use gorgon_client::protocol::{ErrorCode, NodeSpec};
use gorgon_client::{ApplyOptions, Client, Document, Error, Retry, StartAt};
use mesh_tests::mesh::Mesh;
use mesh_tests::mongo::TestMongo;
use mesh_tests::socketio::Notifier;
use serde_json::{json, Map, Value};

const PLANT: &str = r#"description = "a plant"

[[node]]
id = "a"
function = "pass"

[[node]]
id = "total"
function = "count"
sources = ["a"]
"#;

/// The API's code and status of an error, or a panic naming what came instead.
fn code_of<T: std::fmt::Debug>(result: Result<T, Error>) -> (ErrorCode, u16) {
    match result {
        Err(Error::Api { code, status, .. }) => (code, status),
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn applied(rev: u64, created: &[&str], updated: &[&str], deleted: &[&str]) -> Applied {
    let names = |ids: &[&str]| ids.iter().map(|id| (*id).to_owned()).collect();
    Applied {
        id: "plant".into(),
        rev,
        created: names(created),
        updated: names(updated),
        deleted: names(deleted),
    }
}

/// Each route through the client, its answer exact; refusals come as `Error::Api` with
/// their codes and statuses.
#[tokio::test]
async fn every_route_answers_typed_and_refusals_carry_their_codes() {
    let mongo = TestMongo::start();
    let uri = mongo.uri();
    let mesh = Mesh::start(
        1,
        &[
            ("GORGON_API_TOKENS", "adm=admin,reader=ro:plant"),
            ("MONGODB_URI", uri.as_str()),
            ("GORGON_MONGODB_TIMEOUT_MS", "1000"),
        ],
    )
    .await;
    let admin = Client::builder(&mesh.base).token("adm").build().unwrap();
    let doc = Document::toml(PLANT);

    // The function registry, read into the server's own types.
    let functions = admin.functions().await.unwrap();
    let count = functions
        .iter()
        .find(|function| function.name == "count")
        .expect("the built-in count");
    assert!(!count.params.is_empty(), "{count:?}");

    // Topologies.
    let plan = admin
        .apply(
            "plant",
            &doc,
            ApplyOptions {
                dry_run: true,
                ..ApplyOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(plan, applied(0, &["a", "total"], &[], &[]));
    assert_eq!(admin.topologies().await.unwrap().topologies, vec![]);
    let created = admin
        .apply("plant", &doc, ApplyOptions::default())
        .await
        .unwrap();
    assert_eq!(created, applied(1, &["a", "total"], &[], &[]));
    assert_eq!(
        admin.topologies().await.unwrap().topologies,
        vec![TopologySummary {
            id: "plant".into(),
            nodes: 2,
            rev: 1
        }]
    );
    let topology = admin.topology("plant").await.unwrap();
    assert_eq!(topology.rev, 1);
    assert_eq!(topology.doc.description.as_deref(), Some("a plant"));
    let stale = ApplyOptions {
        if_match: Some(7),
        ..ApplyOptions::default()
    };
    assert_eq!(
        code_of(admin.apply("plant", &doc, stale).await),
        (ErrorCode::RevMismatch, 412)
    );
    let toml = admin.topology_toml("plant").await.unwrap();
    assert!(toml.contains("id = \"total\""), "{toml}");
    let graph = admin.graph("plant").await.unwrap();
    assert!(graph.starts_with("flowchart LR"), "{graph}");
    let unknown = Document::json(r#"{"node": [{"id": "x", "function": "nope"}]}"#);
    assert_eq!(
        code_of(
            admin
                .apply("plant", &unknown, ApplyOptions::default())
                .await
        ),
        (ErrorCode::UnknownFunction, 422)
    );

    // Nodes.
    let b = NodeSpec {
        id: "b".into(),
        function: "pass".into(),
        sources: vec!["a".into()],
        attrs: Map::new(),
        archive: None,
    };
    let made = admin.create_node("plant", &b).await.unwrap();
    assert_eq!(
        (made.id.as_str(), made.sources.clone()),
        ("b", vec!["a".to_owned()])
    );
    assert_eq!(
        code_of(admin.create_node("plant", &b).await),
        (ErrorCode::AlreadyExists, 409)
    );
    let all = admin.nodes("plant", &ListQuery::default()).await.unwrap();
    let ids: Vec<&str> = all.nodes.iter().map(|node| node.id.as_str()).collect();
    assert_eq!(ids, ["a", "total", "b"]);
    let chosen = admin
        .nodes(
            "plant",
            &ListQuery {
                ids: Some("total,zz".into()),
                ..ListQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(chosen.nodes.len(), 1);
    assert_eq!(chosen.missing, Some(vec!["zz".to_owned()]));
    let patched = admin
        .patch_node(
            "plant",
            "b",
            &NodePatch {
                sources: Some(vec![]),
                ..NodePatch::default()
            },
        )
        .await
        .unwrap();
    assert!(patched.sources.is_empty());
    let mut note = Map::new();
    note.insert("note".into(), json!("kept"));
    let attrs = admin.patch_attrs("plant", "total", &note).await.unwrap();
    assert_eq!(attrs["note"], "kept");

    // Injects: a repeat with the same key is queued once; the key with another body is refused.
    let first = admin.inject("plant", "a", &json!({"v": 1})).await.unwrap();
    let keyed = admin
        .inject_with_key("plant", "a", &json!({"v": 2}), "order-2")
        .await
        .unwrap();
    let again = admin
        .inject_with_key("plant", "a", &json!({"v": 2}), "order-2")
        .await
        .unwrap();
    assert_eq!(keyed, again);
    assert_eq!(
        code_of(
            admin
                .inject_with_key("plant", "a", &json!({"v": 3}), "order-2")
                .await
        ),
        (ErrorCode::IdempotencyKeyReused, 422)
    );
    let many = admin
        .inject_many("plant", "a", &[json!({"v": 3}), json!({"v": 4})])
        .await
        .unwrap();
    assert_eq!(many.msg_ids.len(), 2);
    assert_eq!(
        code_of(admin.inject("plant", "nope", &json!(1)).await),
        (ErrorCode::NotFound, 404)
    );

    // Outputs: four messages made four outputs of `total`, counted once each.
    mesh_tests::eventually(Duration::from_secs(30), "total's 4th output", || async {
        let output = admin.output("plant", "total").await.unwrap()?;
        (output.seq == 4).then_some(())
    })
    .await;
    assert_eq!(admin.output("plant", "b").await.unwrap(), None);
    let node = admin.node("plant", "total").await.unwrap();
    assert_eq!(node.attrs["count"], 4);
    assert_eq!(node.output_event().unwrap().unwrap().seq, 4);
    let history = admin
        .history(
            "plant",
            "a",
            &HistoryParams {
                order: Some("asc".into()),
                limit: Some(3),
                ..HistoryParams::default()
            },
        )
        .await
        .unwrap();
    let data: Vec<&Value> = history.items.iter().map(|event| &event.data).collect();
    assert_eq!(data, [&json!({"v": 1}), &json!({"v": 2}), &json!({"v": 3})]);
    let rest = admin
        .next_page(history.next.as_deref().expect("a next page"))
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 1);
    assert_eq!(rest.items[0].data, json!({"v": 4}));
    let caused = admin
        .caused(
            "plant",
            &OutputsParams {
                input_id: Some(first.msg_id.clone()),
                node: Some("a".into()),
                ..OutputsParams::default()
            },
        )
        .await
        .unwrap();
    let mut nodes: Vec<&str> = caused
        .items
        .iter()
        .map(|event| event.node.as_str())
        .collect();
    nodes.sort_unstable();
    assert_eq!(nodes, ["a", "total"]);
    assert!(caused
        .items
        .iter()
        .all(|event| event.input_id == first.msg_id));
    assert!(admin
        .dead_letters("plant", None)
        .await
        .unwrap()
        .items
        .is_empty());
    assert!(admin
        .replay_dead_letters("plant", Some("a"))
        .await
        .unwrap()
        .replayed
        .is_empty());
    assert_eq!(
        code_of(admin.delete_node("plant", "a", false).await),
        (ErrorCode::HasDependents, 409)
    );

    // Tokens: a reader reads and may not write, another topology does not exist for it, a
    // wrong token is refused.
    let reader = Client::builder(&mesh.base).token("reader").build().unwrap();
    assert_eq!(
        reader.topology("plant").await.unwrap(),
        admin.topology("plant").await.unwrap()
    );
    assert_eq!(
        code_of(reader.inject("plant", "a", &json!(1)).await),
        (ErrorCode::Forbidden, 403)
    );
    assert_eq!(
        code_of(reader.graph("other").await),
        (ErrorCode::NotFound, 404)
    );
    let stranger = Client::builder(&mesh.base).token("nope").build().unwrap();
    assert_eq!(
        code_of(stranger.topologies().await),
        (ErrorCode::Unauthorized, 401)
    );
    assert!(matches!(
        admin.node("plant", "Not A Slug").await,
        Err(Error::Invalid(_))
    ));

    // Every route of the server's OpenAPI document is one the client calls, and no other.
    let openapi = admin.openapi().await.unwrap();
    let mut served: Vec<(String, String)> = openapi["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, methods)| {
            methods
                .as_object()
                .unwrap()
                .keys()
                .map(|method| (method.to_uppercase(), path.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    served.sort();
    let mut called: Vec<(String, String)> = gorgon_client::ROUTES
        .iter()
        .map(|(method, path)| ((*method).to_owned(), (*path).to_owned()))
        .collect();
    called.sort();
    assert_eq!(
        called, served,
        "gorgon_client::ROUTES and /openapi.json differ"
    );
    assert_eq!(admin.health().await.unwrap(), json!({"status": "ok"}));
    assert_eq!(admin.ready().await.unwrap(), json!({"status": "ready"}));
    assert!(admin.metrics().await.unwrap().contains("# TYPE "));

    // Deletes.
    admin.delete_node("plant", "a", true).await.unwrap();
    admin.delete_topology("plant", None).await.unwrap();
    assert_eq!(
        code_of(admin.topology("plant").await),
        (ErrorCode::NotFound, 404)
    );

    // Nobody listening: a transport error after the tries, saying where it tried.
    let port = redpill::testing::free_port();
    let gone = Client::builder(format!("http://127.0.0.1:{port}"))
        .retry(Retry {
            attempts: 2,
            first_wait: Duration::from_millis(10),
            max_wait: Duration::from_millis(10),
        })
        .build()
        .unwrap();
    match gone.topologies().await {
        Err(error @ Error::Transport { .. }) => {
            assert!(error.to_string().contains(&port.to_string()), "{error}");
        }
        other => panic!("expected a transport error, got {other:?}"),
    }
}

/// 20 000 outputs of a topology followed by one subscription while its notifier is killed
/// with SIGKILL and started again 1.5 s later: every output once, in seq order per node,
/// those the replay buffer (20 per node) lost read from history.
#[tokio::test]
async fn a_subscription_resumes_across_a_killed_notifier_with_nothing_missing() {
    let mongo = TestMongo::start();
    let uri = mongo.uri();
    let mesh = Mesh::start(
        2,
        &[
            ("MONGODB_URI", uri.as_str()),
            ("GORGON_MONGODB_TIMEOUT_MS", "1000"),
            ("GORGON_REPLAY_BUFFER", "20"),
        ],
    )
    .await;
    let mut notifier = Notifier::start(&mesh, &[]).await;
    let client = Client::builder(&mesh.base)
        .notifier_url(&notifier.url)
        .build()
        .unwrap();
    let fan_in = r#"
[[node]]
id = "s1"
function = "pass"

[[node]]
id = "s2"
function = "pass"

[[node]]
id = "total"
function = "count"
sources = ["s1", "s2"]
"#;
    client
        .apply("plant", &Document::toml(fan_in), ApplyOptions::default())
        .await
        .unwrap();
    let per_source = 5_000u64;
    let expected = BTreeMap::from([
        ("s1".to_owned(), per_source),
        ("s2".to_owned(), per_source),
        ("total".to_owned(), 2 * per_source),
    ]);
    let mut outputs = client.subscribe("plant", None, StartAt::Now).await.unwrap();
    let counters = outputs.counters();
    let reader = tokio::spawn(async move {
        let mut seqs: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        let total: u64 = 4 * per_source;
        let mut received = 0;
        while received < total {
            let event = tokio::time::timeout(Duration::from_secs(120), outputs.next())
                .await
                .expect("an output within 120 s")
                .expect("the stream goes on")
                .expect("no error item");
            seqs.entry(event.node).or_default().push(event.seq);
            received += 1;
        }
        // Nothing more comes after the last one.
        let extra = tokio::time::timeout(Duration::from_secs(1), outputs.next()).await;
        (seqs, extra.is_ok())
    });
    // 50 rounds of 100 per source, one request each, about 10 s in all; the notifier is
    // away for rounds 15 to 25.
    for round in 0..50u64 {
        for source in ["s1", "s2"] {
            let messages: Vec<Value> = (0..100).map(|i| json!({"i": round * 100 + i})).collect();
            client
                .inject_many("plant", source, &messages)
                .await
                .unwrap();
        }
        if round == 15 {
            notifier.kill().await;
        }
        if round == 25 {
            notifier.restart(&mesh).await;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let (seqs, extra) = reader.await.unwrap();
    let mut missing = 0;
    let mut duplicated = 0;
    let mut reordered = 0;
    for (node, count) in &expected {
        let got = seqs.get(node).cloned().unwrap_or_default();
        let mut sorted = got.clone();
        sorted.sort_unstable();
        reordered += got.windows(2).filter(|pair| pair[0] > pair[1]).count();
        sorted.dedup();
        duplicated += got.len() - sorted.len();
        missing += (1..=*count)
            .filter(|seq| sorted.binary_search(seq).is_err())
            .count();
    }
    println!(
        "client stream across a notifier SIGKILL: {} outputs, missing {missing}, duplicated \
         {duplicated}, out of order {reordered}; connects {}, filled from history {}, repeats \
         dropped {}",
        seqs.values().map(Vec::len).sum::<usize>(),
        counters.connects(),
        counters.filled_from_history(),
        counters.repeats_dropped()
    );
    assert_eq!((missing, duplicated, reordered), (0, 0, 0));
    assert!(!extra, "nothing after the last output");
    assert!(counters.connects() >= 2, "it reconnected");
    assert!(
        counters.filled_from_history() > 0,
        "the buffer of 20 could not hold 10 rounds: history filled the gap"
    );
}
