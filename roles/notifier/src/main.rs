//! The notifier binary: the socket.io server, until SIGTERM or Ctrl-C.
//!
//! Run with: `cargo run --release --bin notifier`

use clap::Parser as _;
use notifier::Config;
use protocol::roles::NOTIFIER;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let _role_span = runtime::init_tracing(NOTIFIER, &config.log);
    let token = runtime::shutdown_token();
    notifier::run(config, token).await
}
