//! The simulator binary. Not implemented yet: it says so and exits with status 2.
//!
//! Run with: `cargo run --release --bin simulator`

// The simulator is a command-line tool whose report is its output on stdout.
#![allow(clippy::print_stdout)]

use std::process::ExitCode;

use clap::Parser as _;
use simulator::Config;

fn main() -> ExitCode {
    let _config = Config::parse();
    println!("the simulator arrives with its own issue; nothing to do yet");
    ExitCode::from(2)
}
