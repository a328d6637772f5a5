//! runtime: start-up plumbing shared by every Gorgon role binary, and nothing else.
//!
//! Each role's `main.rs` calls, in order: its own `Config::parse()` (which flattens
//! [`RedisArgs`] and [`LogArgs`]), [`init_tracing`], [`shutdown_token`], then
//! `<role>::run(config, token)`; `run` calls [`start`] (metrics recorder, [`connect`],
//! [`check_partitions`], stats publisher), does its own work with the [`Started`] client, and
//! ends with [`Started::finish`]. Roles record metrics with the `metrics` macros;
//! [`install_metrics`] and [`spawn_stats`] make them the role's `/metrics` and its
//! once-a-second stats report. Every HTTP role answers `/readyz` with [`readyz`].
//! Anything a single role needs lives in that role; message shapes and names live in
//! `protocol`; everything that speaks Redis lives in `redpill`.
//!
//! Layout: `redis_args.rs` (the Redis flags every role shares), `sensitive.rs` (values whose
//! `Debug` hides secrets), `logging.rs` (the log flags and the tracing subscriber),
//! `shutdown.rs`, `connect.rs`, `start.rs` (the start and end every role shares), `listen.rs`
//! (the address an HTTP role binds), `ready.rs` (`/readyz`), `stats.rs` (the metrics recorder
//! and the stats publisher).

#![cfg_attr(not(test), warn(clippy::print_stdout))]

mod connect;
mod listen;
mod logging;
mod ready;
mod redis_args;
mod sensitive;
mod shutdown;
mod start;
mod stats;

pub use connect::{check_partitions, connect};
pub use listen::listen_address;
pub use logging::{init_tracing, LogArgs};
pub use ready::readyz;
pub use redis_args::RedisArgs;
pub use sensitive::{ConnectionUrl, Secret};
pub use shutdown::shutdown_token;
pub use start::{start, Started};
pub use stats::{install_metrics, spawn_stats, Metrics, StatsTask};
