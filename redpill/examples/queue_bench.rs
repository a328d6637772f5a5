//! Queue throughput: batch push, batch pull + ack, and both at once, against a running Redis.
//!
//! Run with: `cargo run --release -p redpill --example queue_bench -- --url redis://127.0.0.1:6379`
//! (see `bench/queue.sh`, which starts its own Redis and runs redis-benchmark beside it).
//! It uses its own key prefix and deletes its keys afterwards.

#![allow(clippy::print_stdout)] // A benchmark reports on stdout.

use std::time::{Duration, Instant};

use redpill::{Client, Config, Queue, Tag};

/// Queue throughput against a running Redis.
#[derive(clap::Parser)]
struct Args {
    /// The Redis to measure.
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    url: String,
    /// Messages per phase.
    #[arg(long, default_value_t = 200_000)]
    messages: usize,
    /// Messages per push and per pull.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Batches in flight per side.
    #[arg(long, default_value_t = 4)]
    tasks: usize,
    /// Body size in bytes.
    #[arg(long, default_value_t = 64)]
    body: usize,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> Result<(), redpill::Error> {
    let args = <Args as clap::Parser>::parse();
    let prefix = format!("bench{}", std::process::id());
    let config = Config::default().set_url(&args.url).set_prefix(&prefix);
    let body = vec![b'x'; args.body];
    println!(
        "queue_bench: {} messages of {} B, batches of {}, {} tasks in flight, one connection per side",
        args.messages, args.body, args.batch, args.tasks
    );

    let pusher = Client::connect(config.clone().set_name("bench-push")).await?;
    let puller = Client::connect(config.clone().set_name("bench-pull")).await?;
    let tag = Tag::named("bench");

    let push_rate = push_all(&pusher, &tag, "phased", &args, &body).await?;
    let pull_rate = pull_all(&puller, &tag, "phased", &args).await?;
    let started = Instant::now();
    let (pushed, pulled) = tokio::join!(
        push_all(&pusher, &tag, "together", &args, &body),
        pull_all(&puller, &tag, "together", &args)
    );
    pushed?;
    pulled?;
    let together = args.messages as f64 / started.elapsed().as_secs_f64();

    println!("| phase | messages/s |");
    println!("|---|---|");
    println!("| push (batches of {}) | {:.0} |", args.batch, push_rate);
    println!(
        "| pull + ack (batches of {}) | {:.0} |",
        args.batch, pull_rate
    );
    println!("| push and pull + ack at once, end to end | {together:.0} |");

    let mut conn = redis::Client::open(args.url.as_str())?
        .get_multiplexed_async_connection()
        .await?;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut conn)
        .await?;
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await?;
    }
    Ok(())
}

async fn push_all(
    client: &Client,
    tag: &Tag,
    name: &str,
    args: &Args,
    body: &[u8],
) -> Result<f64, redpill::Error> {
    let started = Instant::now();
    let per_task = args.messages / args.tasks;
    let mut tasks = Vec::new();
    for _ in 0..args.tasks {
        let queue = Queue::new(client, tag, name);
        let bodies = vec![body.to_vec(); args.batch];
        let batch = args.batch;
        tasks.push(tokio::spawn(async move {
            let mut sent = 0;
            while sent < per_task {
                let n = batch.min(per_task - sent);
                queue.push(&bodies[..n]).await?;
                sent += n;
            }
            Ok::<_, redpill::Error>(())
        }));
    }
    for task in tasks {
        task.await.expect("push task")?;
    }
    Ok((per_task * args.tasks) as f64 / started.elapsed().as_secs_f64())
}

async fn pull_all(
    client: &Client,
    tag: &Tag,
    name: &str,
    args: &Args,
) -> Result<f64, redpill::Error> {
    let started = Instant::now();
    let total = (args.messages / args.tasks) * args.tasks;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..args.tasks {
        let queue = Queue::new(client, tag, name);
        let done = std::sync::Arc::clone(&done);
        let batch = args.batch;
        tasks.push(tokio::spawn(async move {
            while done.load(std::sync::atomic::Ordering::Relaxed) < total {
                let deliveries = queue.pull_wait(batch, Duration::from_millis(50)).await?;
                if deliveries.is_empty() {
                    continue;
                }
                let ids: Vec<&str> = deliveries.iter().map(|d| d.id.as_str()).collect();
                queue.ack(&ids).await?;
                done.fetch_add(deliveries.len(), std::sync::atomic::Ordering::Relaxed);
            }
            Ok::<_, redpill::Error>(())
        }));
    }
    for task in tasks {
        task.await.expect("pull task")?;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}
