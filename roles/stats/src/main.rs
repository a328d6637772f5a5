//! The stats binary: the stats monitor, until SIGTERM or Ctrl-C.
//!
//! Run with: `cargo run --release --bin stats`

use clap::Parser as _;
use protocol::roles::STATS;
use stats::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _role_span = runtime::init_tracing(STATS);
    let config = Config::parse();
    let token = runtime::shutdown_token();
    stats::run(config, token).await
}
