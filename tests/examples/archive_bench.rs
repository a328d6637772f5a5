//! Archive throughput: output documents written to MongoDB per second by one store or more.
//!
//! Creates `count` nodes, pushes the messages (straight through redpill), lets a processor
//! turn them into outputs while no store runs (so the outputs wait in the output topic), then
//! starts the stores at once and times how long it takes until MongoDB holds one document per
//! output.
//! Prints the figures.
//!
//! Run with (see `bench/archive.sh`, which starts Redis and a MongoDB server and builds the
//! release binaries):
//! `cargo run --release -p mesh-tests --example archive_bench -- --url redis://127.0.0.1:6379 --mongodb mongodb://127.0.0.1:27017/bench`

#![allow(clippy::print_stdout)] // A benchmark reports on stdout.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mesh_tests::graph::Graph;
use mongodb::bson::{doc, Document};
use redpill::{Client, Config};
use serde_json::json;

/// Archive throughput against a running Redis and MongoDB.
#[derive(clap::Parser)]
struct Args {
    /// The Redis to use.
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    url: String,
    /// The MongoDB database to archive to (emptied first).
    #[arg(long, default_value = "mongodb://127.0.0.1:27017/bench")]
    mongodb: String,
    /// The processor binary.
    #[arg(long, default_value = "target/release/processor")]
    processor: String,
    /// The store binary.
    #[arg(long, default_value = "target/release/store")]
    store: String,
    /// Outputs to archive (one per message), spread over 100 count nodes.
    #[arg(long, default_value_t = 50_000)]
    messages: usize,
    /// Documents per archive write (GORGON_ARCHIVE_BATCH).
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// The archive write concern (GORGON_ARCHIVE_WRITE_CONCERN).
    #[arg(long, default_value = "journaled")]
    write_concern: String,
    /// How many stores archive together (members of the archive group, sharing its shards).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=16))]
    stores: u32,
}

const PARTITIONS: u32 = 64;
const NODES: usize = 100;

fn spawn(binary: &str, env: &[(&str, String)]) -> Child {
    Command::new(binary)
        .env_clear()
        .env("RUST_LOG", "warn")
        .envs(env.iter().map(|(key, value)| (*key, value.as_str())))
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|error| {
            panic!("start {binary} (build it with cargo build --release): {error}")
        })
}

#[tokio::main]
async fn main() {
    let args = <Args as clap::Parser>::parse();
    let client = Client::connect(Config::default().set_url(&args.url))
        .await
        .expect("connect to Redis");
    let options = mongodb::options::ClientOptions::parse(&args.mongodb)
        .await
        .expect("a MongoDB URI");
    let database = options
        .default_database
        .clone()
        .unwrap_or_else(|| "bench".to_owned());
    let outputs = mongodb::Client::with_options(options)
        .expect("a MongoDB client")
        .database(&database)
        .collection::<Document>("outputs");
    outputs.drop().await.expect("empty the archive collection");

    let graph = Graph::new(&client, "bench", PARTITIONS);
    let names: Vec<String> = (0..NODES).map(|i| format!("n{i}")).collect();
    let nodes: Vec<(&str, &str, &[&str], serde_json::Value)> = names
        .iter()
        .map(|name| (name.as_str(), "count", &[][..], json!({})))
        .collect();
    graph.create(&nodes).await;
    let per_node = args.messages / NODES;
    let total = per_node * NODES;
    let all: Vec<&String> = (0..per_node).flat_map(|_| names.iter()).collect();
    for chunk in all.chunks(1000) {
        let messages: Vec<(&str, serde_json::Value)> = chunk
            .iter()
            .map(|name| (name.as_str(), json!({"v": 1})))
            .collect();
        graph.inject(&messages).await;
    }
    eprintln!("pushed {total} messages; processing them with no store running");
    let env = [
        ("REDIS_URL", args.url.clone()),
        ("GORGON_PARTITIONS", PARTITIONS.to_string()),
        ("MONGODB_URI", args.mongodb.clone()),
        ("GORGON_ARCHIVE_BATCH", args.batch.to_string()),
        ("GORGON_ARCHIVE_WRITE_CONCERN", args.write_concern.clone()),
    ];
    let mut processor = spawn(&args.processor, &env);
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let done: u64 = graph.counts(&refs).await.iter().sum();
        eprint!("\rprocessed {done} of {total}   ");
        if done == total as u64 {
            break;
        }
    }
    eprintln!();

    let started = Instant::now();
    let mut stores: Vec<Child> = (0..args.stores).map(|_| spawn(&args.store, &env)).collect();
    let mut archived;
    loop {
        // Counting is a scan on some servers: look once a second, not to slow the writes.
        tokio::time::sleep(Duration::from_secs(1)).await;
        archived = outputs.count_documents(doc! {}).await.unwrap_or(0);
        eprint!("\rarchived {archived} of {total}   ");
        if archived >= total as u64 || started.elapsed() > Duration::from_secs(900) {
            break;
        }
    }
    let elapsed = started.elapsed();
    eprintln!();
    for child in std::iter::once(&mut processor).chain(stores.iter_mut()) {
        let _ = child.kill();
        let _ = child.wait();
    }
    println!(
        "| {total} outputs, {} store(s), batch {}, write concern {} | {:.0} documents/s | {:.1} s | exact: {} |",
        args.stores,
        args.batch,
        args.write_concern,
        archived as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64(),
        if archived == total as u64 {
            "yes"
        } else {
            "NO"
        }
    );
}
