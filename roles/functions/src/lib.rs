//! functions: the node-function interface, the function registry and the built-in functions.
//!
//! A node function turns one message and a node's attributes into zero, one or many outputs
//! (`function.rs`: [`Function`], [`Input`], [`NodeContext`], [`FunctionError`]). A [`Registry`]
//! holds the functions a processor can run, by name, and describes them for the API
//! ([`Registry::describe`]); `builtins/` holds the functions of SPEC §7, one file per function
//! (`docs/functions.md`).
//!
//! It is a library below the roles, not a role: it does no I/O and knows nothing of Redis,
//! partitions or commits. The processor runs these functions (and re-exports this crate, so a
//! custom processor names them `processor::…`); the store only reads the built-ins'
//! descriptions to publish them. What a function declares (its parameters and the attribute
//! check) is in `protocol::function`, shared with the API.

#![cfg_attr(not(test), warn(clippy::print_stdout))]
// A function runs inside a processor's batch: it fails with a `FunctionError`, never a panic.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

pub mod builtins;
pub mod function;
pub mod registry;

pub use function::{Function, FunctionError, Input, NodeContext, Param, ParamKind};
pub use protocol::FunctionDescription;
pub use registry::{Registry, RegistryError};
