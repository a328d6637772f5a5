//! The store binary: the topology store and MongoDB archive, until SIGTERM or Ctrl-C.
//!
//! Run with: `cargo run --release --bin store`

use clap::Parser as _;
use protocol::roles::STORE;
use store::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let _role_span = runtime::init_tracing(STORE, &config.log);
    let token = runtime::shutdown_token();
    store::run(config, token).await
}
