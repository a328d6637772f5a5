//! simulator: the Gorgon load generator and verifier, a client of the mesh like any other.
//!
//! It drives a running mesh only through the REST API and socket.io, as users would: builds a
//! scenario topology ([`scenario`]), follows every node with socket.io clients ([`live`]),
//! injects at a target rate or flat out while history readers query, waits for the outputs to
//! settle, and checks what arrived against what was injected ([`ledger`]): lost, duplicated,
//! out of order, and whether each node's latched seq matches the messages that reached it.
//! [`run`] ties it together and makes the report.
//!
//! It is not a benchmark harness of its own: `bench/` runs it beside the peers and the Redis
//! ceiling. It does not talk to Redis or MongoDB.
//!
//! Layout: `config.rs` (the command line), `scenario.rs`, `api.rs` (REST), `live.rs`
//! (socket.io), `ledger.rs` (the verification), `run.rs`, `main.rs`.

pub mod api;
pub mod config;
pub mod ledger;
pub mod live;
pub mod run;
pub mod scenario;

pub use config::{Config, Load, Scenario};
pub use run::{run, Report};
