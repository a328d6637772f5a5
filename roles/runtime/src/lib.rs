//! runtime: start-up plumbing shared by every Gorgon role binary, and nothing else.
//!
//! Each role's `main.rs` calls, in order: [`init_tracing`], its own `Config::parse()` (which
//! flattens [`RedisArgs`]), [`shutdown_token`], then `<role>::run(config, token)`, and `run`
//! calls [`connect`]. Roles record metrics with the `metrics` macros; [`install_metrics`] and
//! [`spawn_stats`] make them the role's `/metrics` and its once-a-second stats report.
//! Anything a single role needs lives in that role; message shapes and names live in
//! `protocol`; everything that speaks Redis lives in `redpill`.
//!
//! Layout: `redis_args.rs` (the Redis flags every role shares), `sensitive.rs` (values whose
//! `Debug` hides secrets), `logging.rs`, `shutdown.rs`, `connect.rs`, `listen.rs` (the
//! address an HTTP role binds), `stats.rs` (the metrics recorder and the stats publisher).

#![cfg_attr(not(test), warn(clippy::print_stdout))]

mod connect;
mod listen;
mod logging;
mod redis_args;
mod sensitive;
mod shutdown;
mod stats;

pub use connect::{check_partitions, connect, publish_functions};
pub use listen::listen_address;
pub use logging::init_tracing;
pub use redis_args::RedisArgs;
pub use sensitive::{ConnectionUrl, Secret};
pub use shutdown::shutdown_token;
pub use stats::{install_metrics, spawn_stats, stats_topic, Metrics, StatsTask, STATS_RING_BOUND};
