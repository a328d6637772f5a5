//! The store role's configuration: flags, each with an environment variable.

use clap::Parser;
use runtime::{ConnectionUrl, RedisArgs};

/// Everything store reads at start-up; built once in `main` and passed to [`crate::run`].
#[derive(Parser, Debug)]
#[command(
    name = "store",
    version,
    about = "Gorgon topology store: applies topology changes and archives outputs to MongoDB"
)]
pub struct Config {
    /// Redis and the settings shared by every role.
    #[command(flatten)]
    pub redis: RedisArgs,

    /// The MongoDB database outputs are archived to. The password is masked in logs.
    #[arg(
        long,
        env = "MONGODB_URI",
        default_value = "mongodb://127.0.0.1:27017/gorgon"
    )]
    pub mongodb_uri: ConnectionUrl,
}
