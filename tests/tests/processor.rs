//! Processors as real processes against a real Redis: exact counts, per-node order, and what
//! happens when processors die, pause, join and leave.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use mesh_tests::graph::Graph;
use mesh_tests::{eventually, RoleProcess};
use protocol::roles::PROCESSOR;
use protocol::{names, OutputEvent};
use redpill::testing::TestRedis;
use redpill::{Client, Lease, StartFrom, Tag, Topic};
use serde_json::json;

const PARTITIONS: u32 = 8;
const LEASE_MS: u64 = 1000;

fn processor(redis: &TestRedis, extra: &[(&str, &str)]) -> RoleProcess {
    let mut env = vec![
        ("REDIS_URL", redis.url()),
        ("GORGON_PARTITIONS", PARTITIONS.to_string()),
        ("GORGON_LEASE_MS", LEASE_MS.to_string()),
    ];
    env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    RoleProcess::spawn(PROCESSOR, &env)
}

async fn client(redis: &TestRedis) -> Client {
    Client::connect(redis.config().set_prefix("gorgon"))
        .await
        .unwrap()
}

/// The holder (consumer id) of each partition's lease, `None` where there is none.
async fn owners(client: &Client) -> Vec<Option<String>> {
    let mut owners = Vec::new();
    for partition in 0..PARTITIONS {
        let lease = Lease::new(client, &Tag::partition(partition), names::PARTITION_LEASE);
        owners.push(lease.holder().await.unwrap().map(|(grant, _)| grant.owner));
    }
    owners
}

/// Waits until every partition is owned by one of `expected` processors (any, if 0 given);
/// returns how long that took.
async fn all_owned(client: &Client, distinct: usize, timeout: Duration) -> Duration {
    let started = Instant::now();
    eventually(
        timeout,
        &format!("every partition owned, by {distinct} processors"),
        || async {
            let owners = owners(client).await;
            let mut holders: Vec<&String> = owners.iter().flatten().collect();
            holders.sort();
            holders.dedup();
            (owners.iter().all(Option::is_some) && (distinct == 0 || holders.len() == distinct))
                .then_some(())
        },
    )
    .await;
    started.elapsed()
}

fn node_names(count: usize) -> Vec<String> {
    (0..count).map(|i| format!("n{i}")).collect()
}

async fn create_counters(graph: &Graph, names: &[String]) {
    let nodes: Vec<(&str, &str, &[&str], serde_json::Value)> = names
        .iter()
        .map(|name| (name.as_str(), "count", &[][..], json!({})))
        .collect();
    graph.create(&nodes).await;
}

/// Injects `per_node` messages into each node, round robin, in chunks; returns the input ids
/// per node in inject order.
async fn inject_round_robin(
    graph: &Graph,
    names: &[String],
    per_node: usize,
) -> HashMap<String, Vec<String>> {
    let mut order: HashMap<String, Vec<String>> = HashMap::new();
    let all: Vec<&String> = (0..per_node).flat_map(|_| names.iter()).collect();
    for chunk in all.chunks(1000) {
        let messages: Vec<(&str, serde_json::Value)> = chunk
            .iter()
            .map(|name| (name.as_str(), json!({"v": 1})))
            .collect();
        let ids = graph.inject(&messages).await;
        for (name, id) in chunk.iter().zip(ids) {
            order.entry((*name).clone()).or_default().push(id);
        }
    }
    order
}

async fn wait_for_total(
    graph: &Graph,
    names: &[String],
    total: u64,
    timeout: Duration,
) -> Vec<u64> {
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    eventually(timeout, &format!("{total} messages counted"), || async {
        let counts = graph.counts(&refs).await;
        (counts.iter().sum::<u64>() >= total).then_some(counts)
    })
    .await
}

/// Reads every output event from the output topic with a group of its own.
async fn all_outputs(client: &Client, expected: usize) -> Vec<OutputEvent> {
    let group = Topic::partitioned(client, names::OUTPUT_TOPIC, PARTITIONS)
        .group("test-check", StartFrom::Beginning)
        .await
        .unwrap();
    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while events.len() < expected {
        assert!(
            Instant::now() < deadline,
            "only {} of {expected} outputs in the topic",
            events.len()
        );
        let entries = group
            .read_wait(1000, Duration::from_millis(200))
            .await
            .unwrap();
        group.ack(&entries).await.unwrap();
        events.extend(
            entries
                .iter()
                .map(|entry| serde_json::from_slice::<OutputEvent>(&entry.body).unwrap()),
        );
    }
    events
}

/// Per node: seqs 1..=n without gaps or repeats, and the inputs in inject order.
fn check_order(events: &[OutputEvent], order: &HashMap<String, Vec<String>>) {
    let mut by_node: HashMap<&str, Vec<&OutputEvent>> = HashMap::new();
    for event in events {
        by_node.entry(event.node.as_str()).or_default().push(event);
    }
    for (node, inputs) in order {
        let mut got = by_node.remove(node.as_str()).unwrap_or_default();
        got.sort_by_key(|event| event.seq);
        let seqs: Vec<u64> = got.iter().map(|event| event.seq).collect();
        assert_eq!(
            seqs,
            (1..=inputs.len() as u64).collect::<Vec<_>>(),
            "seqs of {node}"
        );
        let got_inputs: Vec<&str> = got.iter().map(|event| event.input_id.as_str()).collect();
        assert_eq!(
            got_inputs,
            inputs.iter().map(String::as_str).collect::<Vec<_>>(),
            "input order of {node}"
        );
    }
}

/// 3 processors, 200 count nodes, 50 000 messages: every count exact, every node's outputs
/// numbered 1..250 with their inputs in inject order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_counts_and_order_with_three_processors() {
    let redis = TestRedis::start();
    let client = client(&redis).await;
    let processors: Vec<RoleProcess> = (0..3).map(|_| processor(&redis, &[])).collect();
    all_owned(&client, 3, Duration::from_secs(20)).await;
    let graph = Graph::new(&client, "sensors", PARTITIONS);
    let names = node_names(200);
    create_counters(&graph, &names).await;
    let order = inject_round_robin(&graph, &names, 250).await;
    let counts = wait_for_total(&graph, &names, 50_000, Duration::from_secs(120)).await;
    assert!(counts.iter().all(|&count| count == 250), "{counts:?}");
    let events = all_outputs(&client, 50_000).await;
    assert_eq!(events.len(), 50_000);
    check_order(&events, &order);
    for process in &processors {
        assert_eq!(process.count("lease lost"), 0, "{}", process.output());
    }
}
