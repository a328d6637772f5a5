//! Where one Redis server spends its time while something else runs, for the shell
//! benchmarks (`bench/latency.sh`): sets `SLOWLOG` up to log every command, prints `profiling`
//! on stderr, waits until its standard input ends (or a line is read), then prints per command
//! and per redpill script the calls and time, divided by `--count` (µs per `--unit`), beside
//! Redis's whole CPU time. See `mesh_tests::profile`.
//!
//! `cargo run --release -p mesh-tests --example redis_profile -- --url redis://127.0.0.1:6379 --count 100000`

#![allow(clippy::print_stderr)] // Progress for the shell that runs it.

use mesh_tests::profile::Profile;

/// Profiles one Redis server until standard input ends.
#[derive(clap::Parser)]
struct Args {
    /// The Redis to profile (a single server, not a cluster).
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    url: String,
    /// What the time is divided by: messages, node-messages, events.
    #[arg(long, default_value_t = 1)]
    count: usize,
    /// The name of what `--count` counts, for the table's heading.
    #[arg(long, default_value = "message")]
    unit: String,
    /// When the profile was taken, for the table's heading.
    #[arg(long, default_value = "while the load ran")]
    when: String,
}

#[tokio::main]
async fn main() {
    let args = <Args as clap::Parser>::parse();
    let profile = Profile::start(&args.url).await;
    eprintln!("profiling");
    tokio::task::spawn_blocking(|| std::io::stdin().read_line(&mut String::new()))
        .await
        .expect("the read does not panic")
        .expect("read standard input");
    profile
        .finish()
        .await
        .print(&args.when, args.count.max(1), &args.unit);
}
