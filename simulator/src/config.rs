//! The command line: where the mesh is, which scenario, how much load, how to report.

use std::time::Duration;

/// Everything the simulator reads at start-up.
#[derive(clap::Parser, Debug, Clone)]
#[command(
    name = "simulator",
    version,
    about = "Gorgon load generator and verifier: builds a scenario topology through the REST API, \
             injects at a target rate or flat out, follows every output over socket.io, reads \
             history, and reports throughput, latency and what was lost, duplicated or reordered"
)]
pub struct Config {
    /// The base URL of the web_face REST API.
    #[arg(long, env = "GORGON_API", default_value = "http://127.0.0.1:8080")]
    pub api: String,

    /// The base URL of a notifier (socket.io).
    #[arg(long, env = "GORGON_NOTIFIER", default_value = "http://127.0.0.1:8081")]
    pub notifier: String,

    /// An API token (admin, or rw on the scenario's topology), sent to the API and the
    /// notifier; leave unset when the mesh has no tokens.
    #[arg(long, env = "GORGON_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// The topology the scenario builds (default `sim-<scenario>`). It is deleted first if it
    /// exists, so that every node counts from seq 1.
    #[arg(long)]
    pub topology: Option<String>,

    /// Messages to inject in all (default: per scenario).
    #[arg(long)]
    pub messages: Option<u64>,

    /// Stop injecting after this many seconds even if `--messages` are not all sent.
    #[arg(long)]
    pub duration_s: Option<f64>,

    /// Target inject rate in messages/s; 0 injects flat out (default: per scenario).
    #[arg(long)]
    pub rate: Option<f64>,

    /// Messages per inject request (ndjson; 1 sends one JSON message) (default: per scenario).
    #[arg(long)]
    pub batch: Option<u64>,

    /// Inject requests in flight at once; each entry node is driven by one of them, so its
    /// messages enter in a known order (default: per scenario).
    #[arg(long)]
    pub concurrency: Option<usize>,

    /// socket.io clients, each following every node of the topology and verified on its own.
    #[arg(long, default_value_t = 1)]
    pub clients: usize,

    /// History readers: each reads `?limit=10` of a random entry node's history in a loop
    /// while messages are injected (default: per scenario).
    #[arg(long)]
    pub readers: Option<usize>,

    /// Each history reader pauses this long between its reads, in milliseconds (0: reads
    /// back to back), as a person reading would.
    #[arg(long, default_value_t = 0)]
    pub reader_interval_ms: u64,

    /// The share of history reads (0 to 1) that ask for a node's oldest page
    /// (`order=asc&limit=10`) instead of its newest: beyond the replay buffer of a node with
    /// more outputs than the buffer holds, so read from the archive. Reported apart.
    #[arg(long, default_value_t = 0.0)]
    pub deep_share: f64,

    /// Before the measured load, inject this many messages flat out, spread evenly over the
    /// entry nodes, and wait until every output has arrived and the archive has written them
    /// all (web_face's `gorgon_archive_backlog_entries` at 0): a mesh with history behind it,
    /// as one that has run a while has. Verified with the rest; not counted in the figures.
    #[arg(long, default_value_t = 0)]
    pub prefill: u64,

    /// How long to wait after the last inject for every output to arrive, in seconds.
    #[arg(long, default_value_t = 60.0)]
    pub settle_timeout_s: f64,

    /// Leave the topology in place at the end (it is deleted by default).
    #[arg(long)]
    pub keep: bool,

    /// Print the report as one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,

    /// No progress lines on stderr.
    #[arg(long, short)]
    pub quiet: bool,

    /// The scenario to run.
    #[command(subcommand)]
    pub scenario: Scenario,
}

/// The scenarios, with their own sizes.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum Scenario {
    /// Sensor fan-in: sensors (`pass`) → rooms (`average` of /celsius) → zones (`threshold`
    /// on /mean) → one `merge`. Each room has sensors/rooms sources, so the store's
    /// GORGON_MAX_SOURCES must allow that many (100 with the defaults).
    Sensors {
        /// Sensor nodes, the entry points.
        #[arg(long, default_value_t = 10_000)]
        sensors: usize,
        /// Room nodes; sensors are split evenly among them.
        #[arg(long, default_value_t = 100)]
        rooms: usize,
        /// Zone nodes; rooms are split evenly among them.
        #[arg(long, default_value_t = 10)]
        zones: usize,
    },
    /// A chain of `pass` nodes; every message goes through all of them.
    Chain {
        /// Nodes in the chain.
        #[arg(long, default_value_t = 100)]
        length: usize,
    },
    /// Notes: one `pass` node per user; inserts of notes into random users at about
    /// 1 000/s while readers fetch a random user's recent notes from history.
    Notes {
        /// User nodes.
        #[arg(long, default_value_t = 10_000)]
        users: usize,
    },
}

impl Scenario {
    /// The scenario's name, as on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            Scenario::Sensors { .. } => "sensors",
            Scenario::Chain { .. } => "chain",
            Scenario::Notes { .. } => "notes",
        }
    }
}

/// The load settings after per-scenario defaults are applied.
#[derive(Debug, Clone)]
pub struct Load {
    /// Messages in all.
    pub messages: u64,
    /// Stop injecting after this long.
    pub duration: Option<Duration>,
    /// Messages/s; `None` is flat out.
    pub rate: Option<f64>,
    /// Messages per request.
    pub batch: u64,
    /// Requests in flight.
    pub concurrency: usize,
    /// History readers.
    pub readers: usize,
    /// Each reader's pause between reads.
    pub reader_interval: Duration,
    /// The share of reads of a node's oldest page.
    pub deep_share: f64,
    /// Messages injected flat out before the measured load.
    pub prefill: u64,
}

impl Config {
    /// The topology id.
    pub fn topology(&self) -> String {
        self.topology
            .clone()
            .unwrap_or_else(|| format!("sim-{}", self.scenario.name()))
    }

    /// The load, from the flags and the scenario's defaults: sensors 100 000 messages flat
    /// out in batches of 10 (ten per sensor); chain 5 000 flat out in batches of 100; notes
    /// 30 000 at 1 000/s one per request with 50 readers (the seed's test).
    pub fn load(&self) -> Load {
        let (messages, rate, batch, concurrency, readers) = match self.scenario {
            Scenario::Sensors { .. } => (100_000, 0.0, 10, 8, 2),
            Scenario::Chain { .. } => (5_000, 0.0, 100, 1, 2),
            Scenario::Notes { .. } => (30_000, 1_000.0, 1, 16, 50),
        };
        let rate = self.rate.unwrap_or(rate);
        Load {
            messages: self.messages.unwrap_or(messages),
            duration: self.duration_s.map(Duration::from_secs_f64),
            rate: (rate > 0.0).then_some(rate),
            batch: self.batch.unwrap_or(batch).max(1),
            concurrency: self.concurrency.unwrap_or(concurrency).max(1),
            readers: self.readers.unwrap_or(readers),
            reader_interval: Duration::from_millis(self.reader_interval_ms),
            deep_share: self.deep_share.clamp(0.0, 1.0),
            prefill: self.prefill,
        }
    }
}
