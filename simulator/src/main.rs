//! The simulator binary: runs one scenario against a running mesh and prints the report.
//! Exit status 0 when the verification passed, 1 when it failed, 2 when the run could not
//! be made (the mesh unreachable, the topology refused).
//!
//! Run with: `cargo run --release --bin simulator -- sensors` (see `--help`).

// The simulator is a command-line tool whose report is its output on stdout.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;

use clap::Parser as _;
use simulator::Config;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    match simulator::run(&config).await {
        Ok(report) => {
            if config.json {
                println!(
                    "{}",
                    serde_json::to_string(&report).expect("a report serializes")
                );
            } else {
                println!("{}", report.table());
            }
            if report.passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(error) => {
            eprintln!("simulator: {error:#}");
            ExitCode::from(2)
        }
    }
}
