//! Processors as real processes against a real Redis: exact counts, per-node order, and what
//! happens when processors die, pause, join and leave.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use mesh_tests::graph::Graph;
use mesh_tests::{eventually, RoleProcess};
use protocol::roles::PROCESSOR;
use protocol::OutputEvent;
use redpill::testing::TestBackend;
use redpill::{Client, StartFrom};
use serde_json::json;

const PARTITIONS: u32 = 8;
const LEASE_MS: u64 = 1000;

fn processor(redis: &TestBackend, extra: &[(&str, &str)]) -> RoleProcess {
    let mut env = vec![
        ("REDIS_URL", redis.url()),
        ("GORGON_PARTITIONS", PARTITIONS.to_string()),
        ("GORGON_LEASE_MS", LEASE_MS.to_string()),
    ];
    env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    RoleProcess::spawn(PROCESSOR, &env)
}

async fn client(redis: &TestBackend) -> Client {
    Client::connect(redis.config().set_prefix("gorgon"))
        .await
        .unwrap()
}

/// The holder (consumer id) of each partition's lease, `None` where there is none.
async fn owners(client: &Client) -> Vec<Option<String>> {
    let mut owners = Vec::new();
    for partition in 0..PARTITIONS {
        let lease = layout::partition_lease(client, partition);
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
    let group = layout::output_topic(client, PARTITIONS)
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
        for entry in &entries {
            events.extend(serde_json::from_slice::<Vec<OutputEvent>>(&entry.body).unwrap());
        }
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
    let redis = TestBackend::start();
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

/// Injects `total` messages spread over `names` in chunks of 500 from a task of its own, with
/// a short pause between chunks, so that faults land while messages flow.
fn inject_in_background(
    graph: Graph,
    names: Vec<String>,
    per_node: usize,
) -> tokio::task::JoinHandle<HashMap<String, Vec<String>>> {
    tokio::spawn(async move {
        let mut order: HashMap<String, Vec<String>> = HashMap::new();
        let all: Vec<String> = (0..per_node).flat_map(|_| names.iter().cloned()).collect();
        for chunk in all.chunks(500) {
            let messages: Vec<(&str, serde_json::Value)> =
                chunk.iter().map(|name| (name.as_str(), json!(1))).collect();
            let ids = graph.inject(&messages).await;
            for (name, id) in chunk.iter().zip(ids) {
                order.entry(name.clone()).or_default().push(id);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        order
    })
}

/// 100 count nodes in topology `sensors`, and `per_node` messages each being injected from a
/// task of its own: the graph, the node names, and the task (which returns the inject order).
async fn counters_under_load(
    client: &Client,
    per_node: usize,
) -> (
    Graph,
    Vec<String>,
    tokio::task::JoinHandle<HashMap<String, Vec<String>>>,
) {
    let graph = Graph::new(client, "sensors", PARTITIONS);
    let names = node_names(100);
    create_counters(&graph, &names).await;
    let injecting = inject_in_background(
        Graph::new(client, "sensors", PARTITIONS),
        names.clone(),
        per_node,
    );
    (graph, names, injecting)
}

/// A processor killed with SIGKILL in the middle of the flow: its partitions are taken over
/// within the lease time plus one second, and every count is exact — nothing lost, nothing
/// applied twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_a_processor_loses_and_repeats_nothing() {
    let redis = TestBackend::start();
    let client = client(&redis).await;
    let mut victim = processor(&redis, &[]);
    let _survivor = processor(&redis, &[]);
    all_owned(&client, 2, Duration::from_secs(20)).await;
    let (graph, names, injecting) = counters_under_load(&client, 200).await;

    // Once a good part has been counted, kill one processor mid-batch.
    wait_for_total(&graph, &names, 4_000, Duration::from_secs(60)).await;
    victim.signal("KILL");
    let killed_at = Instant::now();
    victim.wait_for_exit(Duration::from_secs(5)).await;
    let takeover = all_owned(&client, 1, Duration::from_secs(10)).await;
    println!(
        "takeover after SIGKILL: {} ms",
        killed_at.elapsed().as_millis()
    );
    assert!(
        takeover <= Duration::from_millis(LEASE_MS + 1000),
        "took {takeover:?}"
    );

    let order = injecting.await.unwrap();
    let counts = wait_for_total(&graph, &names, 20_000, Duration::from_secs(60)).await;
    let lost: u64 = counts.iter().map(|&c| 200u64.saturating_sub(c)).sum();
    let twice: u64 = counts.iter().map(|&c| c.saturating_sub(200)).sum();
    println!("after SIGKILL: lost {lost}, applied twice {twice}");
    assert_eq!((lost, twice), (0, 0), "{counts:?}");
    check_order(&all_outputs(&client, 20_000).await, &order);
}

/// A processor that dies between a commit and the delivery of its outbox (a failpoint aborts
/// it there): the next owner delivers the outbox, and downstream counts are exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_between_commit_and_outbox_delivery() {
    let redis = TestBackend::start();
    let client = client(&redis).await;
    let graph = Graph::new(&client, "chain", PARTITIONS);
    // Sources and their downstream counters in other partitions.
    let pairs: Vec<(String, String)> = (0..20)
        .map(|i| {
            let source = format!("s{i}");
            let target = (0..)
                .map(|j| format!("c{i}x{j}"))
                .find(|target| graph.partition(target) != graph.partition(&source))
                .unwrap();
            (source, target)
        })
        .collect();
    let mut nodes: Vec<(&str, &str, &[&str], serde_json::Value)> = Vec::new();
    let sources: Vec<[&str; 1]> = pairs.iter().map(|(source, _)| [source.as_str()]).collect();
    for ((source, target), listed) in pairs.iter().zip(&sources) {
        nodes.push((source.as_str(), "pass", &[][..], json!({})));
        nodes.push((target.as_str(), "count", &listed[..], json!({})));
    }
    graph.create(&nodes).await;
    let messages: Vec<(&str, serde_json::Value)> = (0..50)
        .flat_map(|_| pairs.iter().map(|(source, _)| (source.as_str(), json!(1))))
        .collect();
    graph.inject(&messages).await;

    let mut crashing = processor(&redis, &[("GORGON_FAILPOINT", "after_commit")]);
    let (status, output) = crashing.wait_for_exit(Duration::from_secs(30)).await;
    assert!(
        !status.success(),
        "the failpoint aborted the process:\n{output}"
    );
    assert!(output.contains("failpoint after_commit"), "{output}");

    let _healthy = processor(&redis, &[]);
    let targets: Vec<String> = pairs.iter().map(|(_, target)| target.clone()).collect();
    let counts = wait_for_total(&graph, &targets, 1000, Duration::from_secs(30)).await;
    assert!(counts.iter().all(|&count| count == 50), "{counts:?}");
    // No late extra arrives either.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let refs: Vec<&str> = targets.iter().map(String::as_str).collect();
    assert_eq!(graph.counts(&refs).await.iter().sum::<u64>(), 1000);
}

/// A processor paused with SIGSTOP past its lease, then resumed: its partitions were taken
/// over, its commits are rejected by the fence (it says so, and stops those partitions), and
/// no count is off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_processor_is_fenced_off() {
    let redis = TestBackend::start();
    let client = client(&redis).await;
    // Batches of the paused processor wait 200 ms before their commit, so the pause lands
    // between running a batch and committing it.
    let mut paused = processor(&redis, &[("GORGON_FAILPOINT", "batch_delay_ms:200")]);
    let _other = processor(&redis, &[]);
    all_owned(&client, 2, Duration::from_secs(20)).await;
    let (graph, names, injecting) = counters_under_load(&client, 150).await;

    wait_for_total(&graph, &names, 3_000, Duration::from_secs(60)).await;
    paused.signal("STOP");
    let takeover = all_owned(&client, 1, Duration::from_secs(10)).await;
    println!("takeover after SIGSTOP: {} ms", takeover.as_millis());
    tokio::time::sleep(Duration::from_millis(500)).await;
    paused.signal("CONT");
    paused
        .wait_for_output("lease lost", Duration::from_secs(10))
        .await;
    let rejected = paused.count("lease lost");
    println!("commits rejected after SIGCONT: {rejected}");
    assert!(rejected > 0);

    injecting.await.unwrap();
    let counts = wait_for_total(&graph, &names, 15_000, Duration::from_secs(60)).await;
    assert!(counts.iter().all(|&count| count == 150), "{counts:?}");
    paused.signal("TERM");
    let (status, output) = paused.wait_for_exit(Duration::from_secs(10)).await;
    assert!(status.success(), "{output}");
}

/// Processors 1 → 3 → 1 under load: each change is followed by every partition owned again
/// within the bound, and every count is exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_one_three_one_under_load() {
    let redis = TestBackend::start();
    let client = client(&redis).await;
    let _first = processor(&redis, &[]);
    all_owned(&client, 1, Duration::from_secs(20)).await;
    let (graph, names, injecting) = counters_under_load(&client, 200).await;

    wait_for_total(&graph, &names, 2_000, Duration::from_secs(60)).await;
    let mut second = processor(&redis, &[]);
    let mut third = processor(&redis, &[]);
    let spread = all_owned(&client, 3, Duration::from_secs(15)).await;
    println!(
        "1 → 3 processors: spread over all three in {} ms",
        spread.as_millis()
    );

    wait_for_total(&graph, &names, 10_000, Duration::from_secs(60)).await;
    second.signal("TERM");
    third.signal("TERM");
    assert!(second
        .wait_for_exit(Duration::from_secs(10))
        .await
        .0
        .success());
    assert!(third
        .wait_for_exit(Duration::from_secs(10))
        .await
        .0
        .success());
    let back = all_owned(&client, 1, Duration::from_secs(10)).await;
    println!(
        "3 → 1 processors: all partitions back with one in {} ms",
        back.as_millis()
    );
    assert!(
        back <= Duration::from_millis(LEASE_MS + 1000),
        "took {back:?}"
    );

    let order = injecting.await.unwrap();
    let counts = wait_for_total(&graph, &names, 20_000, Duration::from_secs(60)).await;
    assert!(counts.iter().all(|&count| count == 200), "{counts:?}");
    check_order(&all_outputs(&client, 20_000).await, &order);
}

/// A poison message (its function fails every time) is dead-lettered after max_attempts with
/// the error, the node shows it, and the partition's other messages are all processed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_message_is_dead_lettered_and_the_rest_flows() {
    let redis = TestBackend::start();
    let client = client(&redis).await;
    let _processor = processor(&redis, &[("GORGON_MAX_ATTEMPTS", "3")]);
    all_owned(&client, 1, Duration::from_secs(20)).await;
    let graph = Graph::new(&client, "sensors", PARTITIONS);
    graph
        .create(&[
            ("hot", "threshold", &[], json!({"field": "/c", "above": 30})),
            ("count", "count", &[], json!({})),
        ])
        .await;
    let mut messages: Vec<(&str, serde_json::Value)> = Vec::new();
    for i in 0..100 {
        messages.push(("hot", json!({"c": i})));
        messages.push(("count", json!(i)));
        if i == 10 {
            messages.push(("hot", json!({"c": "very hot"})));
        }
    }
    let ids = graph.inject(&messages).await;
    let poison_id = ids[22].clone();

    let counts = wait_for_total(&graph, &["count".to_owned()], 100, Duration::from_secs(30)).await;
    assert_eq!(counts, [100]);
    let queue = layout::input_queue(&client, graph.partition("hot"));
    let dead = eventually(
        Duration::from_secs(10),
        "the poison message dead-lettered",
        || async {
            let dead = queue.dead_letters(0, 10).await.unwrap();
            (!dead.is_empty()).then_some(dead)
        },
    )
    .await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id, poison_id);
    assert_eq!(dead[0].attempts, 3);
    assert!(
        dead[0].error.starts_with("function_error: field \"/c\""),
        "{}",
        dead[0].error
    );
    let hot = eventually(
        Duration::from_secs(10),
        "the other 100 threshold messages",
        || async {
            let state = graph.node("hot").await.unwrap();
            (state.attrs.get("state") == Some(&json!("above")) && state.status.dead_letters == 1)
                .then_some(state)
        },
    )
    .await;
    assert_eq!(hot.status.state, protocol::NodeState::Error);
    assert_eq!(
        hot.status.last_error.as_deref(),
        Some(dead[0].error.as_str())
    );
    // threshold outputs only on changes: normal (first), then above at 31.
    assert_eq!(hot.seq, 2);
}

/// A function of the deployment's own that takes its time delays only its own partition: its
/// calls run on a blocking thread, never on the async threads the partitions share (here
/// there is one), while batches of built-in functions may run on them. `count` nodes in
/// other partitions keep counting while `sleepy` sleeps.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_slow_function_of_our_own_delays_only_its_partition() {
    use clap::Parser as _;
    use processor::{Function, FunctionError, Input, NodeContext, Param, Registry};

    struct Sleepy;
    impl Function for Sleepy {
        fn name(&self) -> &str {
            "sleepy"
        }
        fn description(&self) -> &str {
            "Sleeps 3 s, then passes its input on."
        }
        fn params(&self) -> Vec<Param> {
            Vec::new()
        }
        fn call(
            &self,
            input: &Input<'_>,
            _: &mut NodeContext<'_>,
        ) -> Result<Vec<serde_json::Value>, FunctionError> {
            std::thread::sleep(Duration::from_secs(3));
            Ok(vec![input.data.clone()])
        }
    }

    let redis = TestBackend::start();
    let config = processor::Config::try_parse_from([
        "processor",
        "--redis-url",
        &redis.url(),
        "--partitions",
        &PARTITIONS.to_string(),
        "--lease-ms",
        &LEASE_MS.to_string(),
    ])
    .expect("the processor's flags");
    let mut registry = Registry::builtins();
    registry.register(Sleepy).expect("a new name");
    let client = client(&redis).await;
    let graph = Graph::new(&client, "t", PARTITIONS);
    // Counters in every partition but the sleeper's.
    let sleeper = protocol::partition_of("t", "slow", PARTITIONS);
    let counters: Vec<String> = (0..40)
        .map(|i| format!("c{i}"))
        .filter(|name| protocol::partition_of("t", name, PARTITIONS) != sleeper)
        .collect();
    let mut nodes: Vec<(&str, &str, &[&str], serde_json::Value)> =
        vec![("slow", "sleepy", &[], json!({}))];
    nodes.extend(
        counters
            .iter()
            .map(|name| (name.as_str(), "count", &[][..], json!({}))),
    );
    // The sleeper is made and fed before the processor starts, so its partition's first
    // batch makes it and runs it; later it is fed again, as a node that exists. The
    // counters count each time while it sleeps.
    graph.create(&nodes).await;
    graph.inject(&[("slow", json!({"v": 1}))]).await;
    let token = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(processor::run_with(config, registry, token.child_token()));
    let names: Vec<&str> = counters.iter().map(String::as_str).collect();
    eventually(Duration::from_secs(20), "every counter made", || async {
        let made = graph.nodes(&names).await;
        made.iter().all(Option::is_some).then_some(())
    })
    .await;
    let injects: Vec<(&str, serde_json::Value)> =
        names.iter().map(|name| (*name, json!({"v": 1}))).collect();
    for round in 1..=2u64 {
        if round > 1 {
            graph.inject(&[("slow", json!({"v": round}))]).await;
        }
        // Give the sleeper's partition time to pull its message and start sleeping.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let started = Instant::now();
        graph.inject(&injects).await;
        eventually(
            Duration::from_secs(10),
            &format!("every counter counted {round}"),
            || async {
                let counts = graph.counts(&names).await;
                counts.iter().all(|&count| count == round).then_some(())
            },
        )
        .await;
        let counted = started.elapsed();
        let slept = graph.node("slow").await.map_or(0, |node| node.seq);
        assert_eq!(
            slept,
            round - 1,
            "round {round}: the counters were counted after the sleeper's call ended ({counted:?})"
        );
        assert!(
            counted < Duration::from_secs(2),
            "round {round}: the counters took {counted:?} while the sleeper slept"
        );
        eventually(Duration::from_secs(10), "the sleeper's output", || async {
            (graph.node("slow").await?.seq == round).then_some(())
        })
        .await;
    }
    token.cancel();
    let _ = running.await;
}
