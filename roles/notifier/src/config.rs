//! The notifier role's configuration: flags, each with an environment variable.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use clap::builder::TypedValueParser as _;
use clap::Parser;
use runtime::{LogArgs, RedisArgs, Secret};

/// Everything notifier reads at start-up; built once in `main` and passed to [`crate::run`].
#[derive(Parser, Debug)]
#[command(
    name = "notifier",
    version,
    about = "Gorgon notifier: streams live node outputs to socket.io clients"
)]
pub struct Config {
    /// Redis and the settings shared by every role.
    #[command(flatten)]
    pub redis: RedisArgs,

    /// What the role logs and how.
    #[command(flatten)]
    pub log: LogArgs,

    /// The address the socket.io server listens on.
    #[arg(long, env = "GORGON_BIND", default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub bind: IpAddr,

    /// The port the socket.io server listens on.
    #[arg(long, env = "GORGON_NOTIFIER_PORT", default_value_t = 8081)]
    pub port: u16,

    /// API tokens and what each may do: `token1=admin,token2=rw:<topology>,token3=ro:<topology>`.
    /// Clients give theirs in the handshake, `auth: {"token": "..."}`. Unset, anyone may
    /// subscribe to anything and only 127.0.0.1 is bound. Masked in logs.
    #[arg(long, env = "GORGON_API_TOKENS")]
    pub api_tokens: Option<Secret>,

    /// Origins browsers may connect from, comma-separated (`https://app.example.com,...`).
    /// A request whose `Origin` header is not listed is refused with 403; requests without an
    /// `Origin` (clients that are not browsers) are let in. Unset: no check.
    #[arg(long, env = "GORGON_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// The most sockets connected at once; the next handshake is refused.
    #[arg(
        long,
        env = "GORGON_NOTIFIER_MAX_CONNECTIONS",
        default_value_t = 10_000
    )]
    pub max_connections: usize,

    /// The most subscriptions one socket may hold at once.
    #[arg(long, env = "GORGON_NOTIFIER_MAX_SUBSCRIPTIONS", default_value_t = 100)]
    pub max_subscriptions: usize,

    /// Batches of live outputs waiting for one socket before it stops taking them and, once
    /// it has caught up, reads what it missed from the replay buffers instead.
    #[arg(
        long,
        env = "GORGON_NOTIFIER_SOCKET_BACKLOG",
        default_value_t = 256,
        value_parser = clap::value_parser!(u64).range(1..=65_536).map(|n| n as usize)
    )]
    pub socket_backlog: usize,

    /// Packets socket.io buffers per socket before an emit has to wait.
    #[arg(long, env = "GORGON_NOTIFIER_SOCKET_BUFFER", default_value_t = 1024)]
    pub socket_buffer: usize,

    /// How often engine.io pings each socket, and a Server-Sent Events stream sends a
    /// keep-alive comment (a stream whose client has gone is found at the second one), in
    /// milliseconds.
    #[arg(
        long,
        env = "GORGON_NOTIFIER_PING_INTERVAL_MS",
        default_value_t = 25_000,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub ping_interval_ms: u64,

    /// How long a socket has to answer a ping, in milliseconds. One that does not is closed
    /// and its connection slot given back; so is one whose connection takes no data for
    /// the ping interval and timeout together (a client that stopped reading).
    #[arg(
        long,
        env = "GORGON_NOTIFIER_PING_TIMEOUT_MS",
        default_value_t = 20_000,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub ping_timeout_ms: u64,
}

impl Config {
    /// How often engine.io pings each socket.
    pub fn ping_interval(&self) -> Duration {
        Duration::from_millis(self.ping_interval_ms)
    }

    /// How long a socket has to answer a ping.
    pub fn ping_timeout(&self) -> Duration {
        Duration::from_millis(self.ping_timeout_ms)
    }
}
