//! The stats binary: the stats monitor, until SIGTERM or Ctrl-C.
//!
//! Run with: `cargo run --release --bin stats`

use clap::Parser as _;
use protocol::roles::STATS;
use stats::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let _role_span = runtime::init_tracing(STATS, &config.log);
    let token = runtime::shutdown_token();
    stats::run(config, token).await
}
