//! A processor binary with the `fahrenheit` function beside the built-ins: run it instead of
//! `processor` (same flags and environment).
//!
//! Run with: `cargo run --release -p custom-processor`

use clap::Parser as _;
use processor::Config;
use protocol::roles::PROCESSOR;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let _role_span = runtime::init_tracing(PROCESSOR, &config.log);
    let token = runtime::shutdown_token();
    processor::run_with(config, custom_processor::registry(), token).await
}
