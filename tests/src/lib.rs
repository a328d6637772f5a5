//! mesh-tests: the integration harness of Gorgon. The scenarios in `tests/*.rs` start a real
//! Redis (redpill's `TestRedis`), later a MongoDB-wire server, and the roles, and watch what
//! the roles do from the outside.
//!
//! Layout: `lib.rs` ([`role_binary`]; [`eventually`] is redpill's, re-exported),
//! `process.rs` ([`RoleProcess`]: a role binary as a child process), `graph.rs` (acting as
//! the store and the API towards processors: creating nodes and injecting messages through
//! redpill, reading node state back), `http.rs` ([`http::Http`]: a client of the REST API,
//! and its [`http::Answer`]s), `mesh.rs` ([`mesh::Mesh`]: Redis, store, processors and
//! web_face as processes, with an HTTP client for the API), `api.rs` ([`api::Api`]: Redis,
//! and web_face, the store and processors in-process, for route tests), `hostile.rs` (the
//! generator of hostile requests for the write routes), `hosts.rs` ([`hosts::Hosts`]: network
//! namespaces as hosts of their own, whose links can be cut), `mongo.rs` ([`mongo::TestMongo`]: a
//! MongoDB-wire server of the test's own, `mongod` or nx-27017), `profile.rs` ([`profile::Profile`]:
//! where Redis spends its time, from its `SLOWLOG`, for the benchmarks), `socketio.rs` (notifier
//! processes and the Node socket.io clients of `socketio/clients.mjs`), `chaos.rs` (the chaos
//! scenarios: one fault under the simulator's load, one row of figures), and the `chaos`
//! binary that runs them (`src/bin/chaos.rs`).

#![cfg_attr(not(test), warn(clippy::print_stdout))]

pub mod api;
pub mod chaos;
pub mod graph;
pub mod hostile;
pub mod hosts;
pub mod http;
pub mod mesh;
pub mod mongo;
mod process;
pub mod profile;
pub mod socketio;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub use process::RoleProcess;
pub use redpill::testing::eventually;

/// The path of role binary `name` (one of `protocol::roles::ALL`, the simulator or `gorgon`),
/// built by cargo for the profile this test runs under: `target/<profile>/<name>`, beside
/// the `deps/` directory that holds the test executable.
///
/// Cargo builds the binaries of other packages for no integration test, so the first call in
/// a test process runs `cargo build` for every role binary (a no-op when they are up to date),
/// which keeps the binaries as fresh as the test.
///
/// # Panics
///
/// If the build fails, or the binary is still not there afterwards.
pub fn role_binary(name: &str) -> PathBuf {
    let profile_dir = profile_dir();
    build_role_binaries(&profile_dir);
    let binary = profile_dir.join(name);
    assert!(
        binary.is_file(),
        "no role binary at {}; run `cargo build --workspace` first",
        binary.display()
    );
    binary
}

/// `target/<profile>`: the parent of the `deps/` directory the test executable runs from.
fn profile_dir() -> PathBuf {
    let executable = std::env::current_exe().expect("locate the test executable");
    let exe_dir = executable
        .parent()
        .expect("the test executable is in a directory");
    let profile_dir = if exe_dir.file_name().is_some_and(|name| name == "deps") {
        exe_dir.parent().expect("deps/ is inside target/<profile>/")
    } else {
        exe_dir
    };
    profile_dir.to_path_buf()
}

/// Runs `cargo build` once per test process for the binaries of all roles, the simulator
/// and the `gorgon` command, into the target
/// directory and profile of the running test.
fn build_role_binaries(profile_dir: &Path) {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("mesh-tests is inside the workspace");
        let mut build = Command::new(cargo);
        build.current_dir(workspace).arg("build").arg("--bins");
        for package in protocol::roles::ALL
            .iter()
            .chain([&protocol::roles::SIMULATOR, &"gorgon"])
        {
            build.args(["-p", package]);
        }
        match profile_dir.file_name().and_then(|name| name.to_str()) {
            Some("debug") | None => {}
            Some(profile) => {
                build.args(["--profile", profile]);
            }
        }
        if let Some(target_dir) = profile_dir.parent() {
            build.env("CARGO_TARGET_DIR", target_dir);
        }
        let output = build
            .output()
            .expect("run cargo to build the role binaries");
        assert!(
            output.status.success(),
            "building the role binaries failed ({}); run `cargo build --workspace` first:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    });
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    use super::eventually;

    /// `eventually` returns the first `Some`, after as many checks as it takes.
    #[tokio::test]
    async fn eventually_returns_the_first_some() {
        let calls = AtomicU32::new(0);
        let value = eventually(Duration::from_secs(5), "the third call", || async {
            let call = calls.fetch_add(1, Ordering::SeqCst) + 1;
            (call == 3).then_some(call)
        })
        .await;
        assert_eq!(value, 3);
    }

    /// `eventually` gives up at its deadline.
    #[tokio::test]
    #[should_panic(expected = "timed out after 100ms waiting for nothing")]
    async fn eventually_panics_after_the_deadline() {
        eventually(Duration::from_millis(100), "nothing", || async {
            None::<()>
        })
        .await;
    }
}
