//! The chaos harness: runs each named scenario (or `all`) on a mesh of its own and prints one
//! JSON line of figures per scenario on stdout (`docs/reliability.md` reads them).
//!
//! Exit status 0 when every scenario in which Redis keeps what it acknowledged showed nothing
//! lost, duplicated, reordered or unexpected and a complete archive; 1 otherwise; 2 on a bad
//! command line.
//!
//! Run with: `cargo run --release -p mesh-tests --bin chaos -- all` (see `--help`). It needs
//! `redis-server` on the PATH and `mongod` or nx-27017 (see `.ci/run`).

// A command-line tool whose rows are its output on stdout and whose progress goes to stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser as _;
use mesh_tests::chaos::{self, Fault, Settings};
use serde_json::Value;

/// Chaos scenarios against a whole mesh, one JSON row of figures each.
#[derive(clap::Parser, Debug)]
#[command(version)]
struct Args {
    /// Scenarios to run, in order: `all`, or any of processor-kill, processor-pause,
    /// processors-join-leave, redis-kill-always, redis-kill-everysec, redis-restart,
    /// mongodb-down, store-kill, notifier-kill, poison-message, malformed-requests.
    #[arg(required = true)]
    scenarios: Vec<String>,
    /// Messages per second the simulator injects into the chain.
    #[arg(long, default_value_t = 100)]
    rate: u64,
    /// How long MongoDB stays down in mongodb-down, in seconds.
    #[arg(long, default_value_t = 30)]
    outage_s: u64,
    /// Print what each scenario does, and the simulator's output when it fails, on stderr.
    #[arg(long)]
    verbose: bool,
}

/// Whether `row`, of a scenario in which Redis keeps what it acknowledged, shows a loss.
fn failed(row: &Value) -> bool {
    chaos::MUST_BE_ZERO
        .iter()
        .any(|figure| row[figure].as_u64() != Some(0))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let mut faults = Vec::new();
    for name in &args.scenarios {
        if name == "all" {
            faults.extend(Fault::ALL);
        } else if let Some(fault) = Fault::named(name) {
            faults.push(fault);
        } else {
            let names: Vec<&str> = Fault::ALL.iter().map(|fault| fault.name()).collect();
            eprintln!(
                "chaos: no scenario named {name:?}; name `all` or any of: {}",
                names.join(", ")
            );
            return ExitCode::from(2);
        }
    }
    let settings = Settings {
        rate: args.rate,
        outage: Duration::from_secs(args.outage_s),
        verbose: args.verbose,
    };
    let mut failures = Vec::new();
    for (index, fault) in faults.iter().enumerate() {
        eprintln!(
            "chaos: [{}/{}] {} ...",
            index + 1,
            faults.len(),
            fault.name()
        );
        let row = chaos::run(*fault, &settings).await;
        println!("{row}");
        if fault.keeps_acknowledged() && failed(&row) {
            failures.push(fault.name());
        }
    }
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "chaos: acknowledged messages were lost, duplicated or reordered in: {}",
            failures.join(", ")
        );
        ExitCode::from(1)
    }
}
