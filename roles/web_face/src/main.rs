//! The web_face binary: the REST API, until SIGTERM or Ctrl-C.
//!
//! Run with: `cargo run --release --bin web_face`

use clap::Parser as _;
use protocol::roles::WEB_FACE;
use web_face::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let _role_span = runtime::init_tracing(WEB_FACE, &config.log);
    let token = runtime::shutdown_token();
    web_face::run(config, token).await
}
