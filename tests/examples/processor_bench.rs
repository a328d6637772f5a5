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

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mesh_tests::graph::Graph;
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
    let mut children: Vec<Child> =
        (0..args.processors)
            .map(|_| {
                Command::new(&args.processor)
                    .env_clear()
                    .env("REDIS_URL", &args.url)
                    .env("GORGON_PARTITIONS", args.partitions.to_string())
                    .env("RUST_LOG", "warn")
                    // GORGON_BATCH_SIZE, GORGON_REPLAY_BUFFER and the like pass through.
                    .envs(std::env::vars().filter(|(name, _)| {
                        name.starts_with("GORGON_") && name != "GORGON_PARTITIONS"
                    }))
                    .stdout(Stdio::null())
                    .spawn()
                    .expect("start the processor binary (build it with cargo build --release)")
            })
            .collect();
    // Watch the queues, not the nodes: cheap enough not to slow the processors down.
    let queues: Vec<redpill::Queue> = (0..args.partitions)
        .map(|partition| layout::input_queue(&client, partition))
        .collect();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let depths = futures_util::future::join_all(queues.iter().map(redpill::Queue::depth)).await;
        let held: u64 = depths
            .into_iter()
            .map(|depth| depth.map(|depth| depth.held).unwrap_or(u64::MAX))
            .sum();
        eprint!("\r{held} messages left      ");
        if held == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "not done within 10 minutes"
        );
    }
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
        profile.print(total);
    }
}

/// Where Redis spends its time while the processors run: `SLOWLOG` at threshold 0 logs every
/// command with its execution time.
struct Profile {
    conn: redis::aio::MultiplexedConnection,
    cpu_before: f64,
}

/// What one profiled run found.
struct Profiled {
    /// Per command sent (per script for EVALSHA): calls and microseconds, busiest first.
    rows: Vec<(String, u64, u64)>,
    /// The commands the scripts ran, as `script <name>: <COMMAND>`, busiest first.
    inner: Vec<(String, u64, u64)>,
    /// Redis's CPU time over the run, from `INFO cpu`, in microseconds.
    cpu_us: f64,
    /// Whether the log filled up (it then drops its oldest entries, and the rows undercount).
    full: bool,
}

/// Entries the slow log may hold: far more than a run's commands.
const SLOWLOG_ENTRIES: u64 = 5_000_000;

impl Profile {
    async fn start(url: &str) -> Profile {
        let mut conn = redis::Client::open(url)
            .expect("a Redis URL")
            .get_multiplexed_async_connection()
            .await
            .expect("connect to Redis for the profile");
        // The log of a large run is millions of entries: reading it takes seconds.
        conn.set_response_timeout(std::time::Duration::from_secs(300));
        let cluster: String = redis::cmd("INFO")
            .arg("cluster")
            .query_async(&mut conn)
            .await
            .expect("INFO cluster");
        assert!(
            !cluster.contains("cluster_enabled:1"),
            "--profile reads one server's SLOWLOG: run it on a single Redis"
        );
        let _: () = redis::pipe()
            .cmd("CONFIG")
            .arg("SET")
            .arg("slowlog-max-len")
            .arg(SLOWLOG_ENTRIES)
            .ignore()
            .cmd("CONFIG")
            .arg("SET")
            .arg("slowlog-log-slower-than")
            .arg(0)
            .ignore()
            .cmd("SLOWLOG")
            .arg("RESET")
            .ignore()
            .query_async(&mut conn)
            .await
            .expect("set the slow log up");
        let cpu_before = redis_cpu(&mut conn).await;
        Profile { conn, cpu_before }
    }

    async fn finish(mut self) -> Profiled {
        let cpu_us = (redis_cpu(&mut self.conn).await - self.cpu_before) * 1e6;
        // The log first, then the settings back to Redis's defaults.
        let (entries, length): (Vec<redis::Value>, u64) = redis::pipe()
            .cmd("SLOWLOG")
            .arg("GET")
            .arg(-1)
            .cmd("SLOWLOG")
            .arg("LEN")
            .query_async(&mut self.conn)
            .await
            .expect("read the slow log");
        let _: () = redis::pipe()
            .cmd("CONFIG")
            .arg("SET")
            .arg("slowlog-log-slower-than")
            .arg(10_000)
            .ignore()
            .cmd("CONFIG")
            .arg("SET")
            .arg("slowlog-max-len")
            .arg(128)
            .ignore()
            .cmd("SLOWLOG")
            .arg("RESET")
            .ignore()
            .query_async(&mut self.conn)
            .await
            .expect("restore the slow log settings");
        let scripts: std::collections::HashMap<String, &str> =
            redpill::script_hashes().into_iter().collect();
        // Oldest first: a script's own commands are logged (from the script's client, with
        // no address) just before the script itself, and nothing runs in between.
        let mut logged: Vec<(i64, u64, Vec<String>, String)> = entries
            .iter()
            .filter_map(|entry| {
                let redis::Value::Array(fields) = entry else {
                    return None;
                };
                let text = |value: &redis::Value| match value {
                    redis::Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
                    redis::Value::SimpleString(text) => text.clone(),
                    _ => String::new(),
                };
                match (fields.first(), fields.get(2), fields.get(3), fields.get(4)) {
                    (
                        Some(redis::Value::Int(id)),
                        Some(redis::Value::Int(micros)),
                        Some(redis::Value::Array(words)),
                        Some(client),
                    ) => Some((
                        *id,
                        *micros as u64,
                        words.iter().map(text).collect(),
                        text(client),
                    )),
                    _ => None,
                }
            })
            .collect();
        logged.sort_by_key(|entry| entry.0);
        let mut top: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        let mut inside: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
        let mut pending: Vec<(String, u64)> = Vec::new();
        for (_, micros, words, client) in logged {
            let command = words
                .first()
                .map_or(String::new(), |word| word.to_uppercase());
            if client == "?:0" {
                pending.push((command, micros));
                continue;
            }
            if command == "SLOWLOG" {
                // The profile's own reads of the log.
                continue;
            }
            let name = match command.as_str() {
                "EVALSHA" => match words.get(1).and_then(|sha| scripts.get(sha)) {
                    Some(script) => format!("script {script}"),
                    None => "EVALSHA (not redpill's)".to_owned(),
                },
                _ => command,
            };
            for (inner, inner_micros) in pending.drain(..) {
                let row = inside.entry((name.clone(), inner)).or_default();
                row.0 += 1;
                row.1 += inner_micros;
            }
            let row = top.entry(name).or_default();
            row.0 += 1;
            row.1 += micros;
        }
        let sorted = |mut rows: Vec<(String, u64, u64)>| {
            rows.sort_by_key(|row| std::cmp::Reverse(row.2));
            rows
        };
        let rows = sorted(
            top.into_iter()
                .map(|(name, (calls, micros))| (name, calls, micros))
                .collect(),
        );
        let inner = sorted(
            inside
                .into_iter()
                .map(|((script, command), (calls, micros))| {
                    (format!("{script}: {command}"), calls, micros)
                })
                .collect(),
        );
        Profiled {
            rows,
            inner,
            cpu_us,
            full: length >= SLOWLOG_ENTRIES,
        }
    }
}

impl Profiled {
    fn print(&self, node_messages: usize) {
        let per = |micros: u64| micros as f64 / node_messages as f64;
        let commands: u64 = self.rows.iter().map(|row| row.2).sum();
        let share = |micros: u64, of: u64| 100.0 * micros as f64 / of.max(1) as f64;
        println!();
        println!("| Redis, while the processors ran | calls | time, ms | µs / node-message | share of command time |");
        println!("|---|---|---|---|---|");
        for (name, calls, micros) in &self.rows {
            println!(
                "| {name} | {calls} | {:.1} | {:.3} | {:.1} % |",
                *micros as f64 / 1000.0,
                per(*micros),
                share(*micros, commands),
            );
        }
        println!(
            "| every command (SLOWLOG) | | {:.1} | {:.3} | 100 % |",
            commands as f64 / 1000.0,
            per(commands)
        );
        println!(
            "| Redis CPU (INFO cpu): commands, networking, parsing, AOF, the log itself | | {:.1} | {:.3} | |",
            self.cpu_us / 1000.0,
            self.cpu_us / node_messages as f64
        );
        println!();
        println!("| inside the scripts | calls | time, ms | µs / node-message | share of the script's time |");
        println!("|---|---|---|---|---|");
        for (script, _, script_micros) in
            self.rows.iter().filter(|row| row.0.starts_with("script "))
        {
            let prefix = format!("{script}: ");
            let mut commands_micros = 0;
            for (name, calls, micros) in self.inner.iter().filter(|row| row.0.starts_with(&prefix))
            {
                commands_micros += micros;
                println!(
                    "| {name} | {calls} | {:.1} | {:.3} | {:.1} % |",
                    *micros as f64 / 1000.0,
                    per(*micros),
                    share(*micros, *script_micros),
                );
            }
            let own = script_micros.saturating_sub(commands_micros);
            println!(
                "| {script}: Lua and the script's own work | | {:.1} | {:.3} | {:.1} % |",
                own as f64 / 1000.0,
                per(own),
                share(own, *script_micros),
            );
        }
        if self.full {
            println!(
                "\nThe slow log filled up and dropped its oldest entries: the rows undercount."
            );
        }
    }
}

/// Redis's CPU time so far (`used_cpu_sys` + `used_cpu_user`), in seconds.
async fn redis_cpu(conn: &mut redis::aio::MultiplexedConnection) -> f64 {
    let info: String = redis::cmd("INFO")
        .arg("cpu")
        .query_async(conn)
        .await
        .expect("INFO cpu");
    info.lines()
        .filter_map(|line| {
            let (name, value) = line.split_once(':')?;
            matches!(name, "used_cpu_sys" | "used_cpu_user")
                .then(|| value.trim().parse::<f64>().ok())?
        })
        .sum()
}
