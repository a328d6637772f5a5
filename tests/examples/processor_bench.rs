//! Processor throughput: node-messages processed per second for `count` nodes.
//!
//! Creates the nodes, pushes every message into the partition queues first (batches of 1000,
//! straight through redpill), then starts the processor processes and times how long they
//! take until every count is exact. Prints the figures, with the CPU time the processors and
//! the Redis processes named by `--redis-pid` spent per node-message while the processors
//! ran (from `/proc/<pid>/stat`).
//!
//! With `--profile` (one Redis server only), it also says where Redis spent its time while the
//! processors ran: every command is logged in `SLOWLOG` (threshold 0), grouped by command and,
//! for `EVALSHA`, by redpill script, and set beside Redis's whole CPU time (`INFO cpu`). The
//! log costs Redis a little time of its own, so a profiled run's throughput is not the
//! benchmark's figure.
//!
//! Run with (see `bench/processor.sh`, which starts Redis and builds the release binaries):
//! `cargo run --release -p mesh-tests --example processor_bench -- --url redis://127.0.0.1:6379 --processor target/release/processor`

#![allow(clippy::print_stdout)] // A benchmark reports on stdout.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mesh_tests::graph::Graph;
use mesh_tests::profile::Profile;
use redpill::{Client, Config};
use serde_json::json;

/// Processor throughput for `count` nodes against a running Redis.
#[derive(clap::Parser)]
struct Args {
    /// The Redis to use.
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    url: String,
    /// The processor binary to start.
    #[arg(long, default_value = "target/release/processor")]
    processor: String,
    /// `count` nodes to create.
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// Messages in all, spread evenly over the nodes.
    #[arg(long, default_value_t = 300_000)]
    messages: usize,
    /// Processor processes to start.
    #[arg(long, default_value_t = 1)]
    processors: usize,
    /// The deployment's partition count.
    #[arg(long, default_value_t = 64)]
    partitions: u32,
    /// A Redis server process whose CPU time to count (repeat it for each node of a cluster).
    #[arg(long)]
    redis_pid: Vec<u32>,
    /// Print where Redis spent its time, per command and per script (one server only).
    #[arg(long)]
    profile: bool,
    /// Make the nodes before the timed run (processors started, every node made, processors
    /// stopped), so the figure is the messages' alone; the timed run then includes the
    /// processors' start and their loading of every node. By default the nodes' upserts are
    /// queued ahead of the messages and made within the timed run.
    #[arg(long)]
    nodes_first: bool,
}

/// CPU time (user + system) process `pid` has used so far, in seconds; 0 once it is gone.
fn cpu_seconds(pid: u32) -> f64 {
    redpill::testing::cpu_time(pid).map_or(0.0, |time| time.as_secs_f64())
}

#[tokio::main]
async fn main() {
    let args = <Args as clap::Parser>::parse();
    let client = Client::connect(Config::default().set_url(&args.url))
        .await
        .expect("connect to Redis");
    let graph = Graph::new(&client, "bench", args.partitions);
    let names: Vec<String> = (0..args.nodes).map(|i| format!("n{i}")).collect();
    let nodes: Vec<(&str, &str, &[&str], serde_json::Value)> = names
        .iter()
        .map(|name| (name.as_str(), "count", &[][..], json!({})))
        .collect();
    graph.create(&nodes).await;
    let queues: Vec<redpill::Queue> = (0..args.partitions)
        .map(|partition| layout::input_queue(&client, partition))
        .collect();
    if args.nodes_first {
        let started = Instant::now();
        let mut children = start_processors(&args);
        drain(&queues, started).await;
        for child in &mut children {
            // SIGTERM: each hands its partitions over and exits.
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let _ = child.wait();
        }
        eprintln!(
            "\rmade {} nodes in {:.2} s; processors stopped",
            args.nodes,
            started.elapsed().as_secs_f64()
        );
    }

    let per_node = args.messages / args.nodes;
    let total = per_node * args.nodes;
    let started = Instant::now();
    let all: Vec<&String> = (0..per_node).flat_map(|_| names.iter()).collect();
    for (index, chunk) in all.chunks(1000).enumerate() {
        let messages: Vec<(&str, serde_json::Value)> = chunk
            .iter()
            .map(|name| (name.as_str(), json!({"v": 1})))
            .collect();
        graph.inject(&messages).await;
        if index % 50 == 0 {
            eprint!("\rpushed {} of {total}", index * 1000);
        }
    }
    let push_rate = total as f64 / started.elapsed().as_secs_f64();
    eprintln!(
        "\rpushed {total} messages at {push_rate:.0}/s; starting {} processor(s)",
        args.processors
    );

    let profile = if args.profile {
        Some(Profile::start(&args.url).await)
    } else {
        None
    };
    let redis_before: f64 = args.redis_pid.iter().map(|&pid| cpu_seconds(pid)).sum();
    let started = Instant::now();
    let mut children = start_processors(&args);
    drain(&queues, started).await;
    let elapsed = started.elapsed();
    let redis_cpu = args
        .redis_pid
        .iter()
        .map(|&pid| cpu_seconds(pid))
        .sum::<f64>()
        - redis_before;
    let processor_cpu: f64 = children.iter().map(|child| cpu_seconds(child.id())).sum();
    let profiled = match profile {
        Some(profile) => Some(profile.finish().await),
        None => None,
    };
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let counts = graph.counts(&refs).await;
    for child in &mut children {
        let _ = child.kill();
        let _ = child.wait();
    }
    let exact = counts.iter().all(|&count| count == per_node as u64);
    eprintln!();
    let per_message_us = |seconds: f64| seconds * 1e6 / total as f64;
    let redis_us = if args.redis_pid.is_empty() {
        "".to_owned()
    } else {
        format!("{:.2}", per_message_us(redis_cpu))
    };
    println!(
        "| {} processor(s), {} count nodes, {} messages | {:.0} node-messages/s | {:.2} s | counts exact: {} | {:.2} | {} |",
        args.processors,
        args.nodes,
        total,
        total as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64(),
        if exact { "yes" } else { "NO" },
        per_message_us(processor_cpu),
        redis_us,
    );
    if let Some(profile) = profiled {
        profile.print("while the processors ran", total, "node-message");
    }
}

/// Starts `args.processors` processor processes.
fn start_processors(args: &Args) -> Vec<Child> {
    (0..args.processors)
        .map(|_| {
            Command::new(&args.processor)
                .env_clear()
                .env("REDIS_URL", &args.url)
                .env("GORGON_PARTITIONS", args.partitions.to_string())
                .env("RUST_LOG", "warn")
                // GORGON_BATCH_SIZE, GORGON_REPLAY_BUFFER and the like pass through, and the
                // allocator's settings (MIMALLOC_*).
                .envs(std::env::vars().filter(|(name, _)| {
                    (name.starts_with("GORGON_") && name != "GORGON_PARTITIONS")
                        || name.starts_with("MIMALLOC_")
                }))
                .stdout(Stdio::null())
                .spawn()
                .expect("start the processor binary (build it with cargo build --release)")
        })
        .collect()
}

/// Waits until every queue is empty, nothing in flight. Watches the queues, not the nodes:
/// cheap enough not to slow the processors down.
async fn drain(queues: &[redpill::Queue], started: Instant) {
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let depths = futures_util::future::join_all(queues.iter().map(redpill::Queue::depth)).await;
        let held: u64 = depths
            .into_iter()
            .map(|depth| depth.map(|depth| depth.held).unwrap_or(u64::MAX))
            .sum();
        eprint!("\r{held} messages left      ");
        if held == 0 {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "not done within 10 minutes"
        );
    }
}
