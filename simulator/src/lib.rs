//! simulator: the Gorgon load generator and verifier, a client of the mesh like any other.
//!
//! In this version it has only its configuration; the load and the checks arrive with its own
//! issue.
//!
//! Layout: `lib.rs` ([`Config`]), `main.rs`.

/// Everything the simulator reads at start-up.
#[derive(clap::Parser, Debug)]
#[command(
    name = "simulator",
    version,
    about = "Gorgon load generator and verifier"
)]
pub struct Config {
    /// The base URL of the web_face REST API to drive.
    #[arg(long, env = "GORGON_API", default_value = "http://127.0.0.1:8080")]
    pub api: String,
}
