//! The processor binary: the processor, until SIGTERM or Ctrl-C.
//!
//! Run with: `cargo run --release --bin processor`

use clap::Parser as _;
use processor::Config;
use protocol::roles::PROCESSOR;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _role_span = runtime::init_tracing(PROCESSOR);
    let config = Config::parse();
    let token = runtime::shutdown_token();
    processor::run(config, token).await
}
