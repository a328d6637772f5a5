//! The processor binary: the processor, until SIGTERM or Ctrl-C.
//!
//! Run with: `cargo run --release --bin processor`

use clap::Parser as _;
use mimalloc::MiMalloc;
use processor::Config;
use protocol::roles::PROCESSOR;

// The processor allocates and frees many small buffers per message; glibc's allocator spent a
// third of its time on that (measured with perf), mimalloc a fraction of it.
#[global_allocator]
static ALLOCATOR: MiMalloc = MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let _role_span = runtime::init_tracing(PROCESSOR, &config.log);
    let token = runtime::shutdown_token();
    processor::run(config, token).await
}
