//! The REST API in-process: a Redis of its own, and web_face ([`web_face::serve`]), the
//! store and processors (their library `run`) as tasks on the test's runtime, with an HTTP
//! client for the API. No role process is started, so a test pays for no binary and no
//! process start; a test that kills or restarts roles, or reads their logs, uses
//! [`crate::mesh::Mesh`].
//!
//! Every role of one test process shares its metrics recorder, so `/metrics` figures are the
//! sum over the tests running at once: exact counts need a [`crate::mesh::Mesh`].

use std::ops::Deref;
use std::time::Duration;

use clap::Parser as _;
use redpill::testing::TestBackend;
use redpill::Client;
use reqwest::Method;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::http::Http;
use crate::mesh::PARTITIONS;

/// What runs beside web_face, and the flags each role is started with.
#[derive(Clone, Copy, Debug, Default)]
pub struct Setup<'a> {
    /// Runs the store (topology changes need it).
    pub store: bool,
    /// How many processors run.
    pub processors: usize,
    /// web_face's flags, e.g. `["--body-limit", "4096"]`.
    pub web: &'a [&'a str],
    /// Each processor's flags.
    pub processor: &'a [&'a str],
}

/// Redis, and web_face with the roles of a [`Setup`] in-process; dropped, it stops them.
pub struct Api {
    /// The mesh's Redis.
    pub redis: TestBackend,
    /// A redpill client on it.
    pub client: Client,
    api: Http,
    token: CancellationToken,
    roles: Vec<JoinHandle<anyhow::Result<()>>>,
}

impl Api {
    /// web_face alone, with `flags`: the routes that only read Redis or refuse a request.
    pub async fn web(flags: &[&str]) -> Api {
        Api::start(Setup {
            web: flags,
            ..Setup::default()
        })
        .await
    }

    /// web_face and the store, and `processors` processors, with default flags.
    pub async fn mesh(processors: usize) -> Api {
        Api::start(Setup {
            store: true,
            processors,
            ..Setup::default()
        })
        .await
    }

    /// Starts what `setup` asks for, and waits until the API answers (and the store
    /// published the built-in functions, when it runs).
    pub async fn start(setup: Setup<'_>) -> Api {
        // The first recorder installed is the process's; web_face's `/metrics` needs it to
        // keep Prometheus text, whichever role starts first.
        let metrics = runtime::install_metrics(true);
        let redis = TestBackend::start();
        let url = redis.url();
        let partitions = PARTITIONS.to_string();
        let flags = |role: &'static str, extra: &[&str]| -> Vec<String> {
            [role, "--redis-url", &url, "--partitions", &partitions]
                .iter()
                .chain(extra)
                .map(|flag| (*flag).to_owned())
                .collect()
        };
        let token = CancellationToken::new();
        let mut roles = Vec::new();

        let config = web_face::Config::try_parse_from(flags("web_face", setup.web))
            .expect("web_face's flags");
        let web_client = Client::connect(config.redis.redpill_config("web_face"))
            .await
            .expect("connect web_face to the test Redis");
        let state = web_face::AppState::from_config(&config, web_client, metrics.prometheus)
            .expect("web_face's settings");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port for the API");
        let base = format!("http://{}", listener.local_addr().expect("its address"));
        roles.push(tokio::spawn(web_face::serve(
            listener,
            state,
            token.child_token(),
        )));
        if setup.store {
            let config =
                store::Config::try_parse_from(flags("store", &[])).expect("the store's flags");
            roles.push(tokio::spawn(store::run(config, token.child_token())));
        }
        for _ in 0..setup.processors {
            let config = processor::Config::try_parse_from(flags(
                "processor",
                &[&["--lease-ms", "1000"], setup.processor].concat(),
            ))
            .expect("the processor's flags");
            roles.push(tokio::spawn(processor::run(config, token.child_token())));
        }
        let client = Client::connect(redis.config().set_prefix("gorgon"))
            .await
            .expect("connect to the test Redis");
        let api = Api {
            redis,
            client,
            api: Http::new(base),
            token,
            roles,
        };
        api.wait_until_ready().await;
        if setup.store {
            crate::eventually(
                Duration::from_secs(10),
                "the store to publish the functions",
                || async {
                    let functions = api.call(Method::GET, "/v1/functions", &Value::Null).await;
                    (functions.json["functions"].as_array().map(Vec::len) > Some(0)).then_some(())
                },
            )
            .await;
        }
        api
    }

    /// How many messages each partition queue holds, waiting, in flight or delayed, plus
    /// the dead letters: a fingerprint of what was enqueued.
    pub async fn queue_lengths(&self) -> Vec<(u64, u64)> {
        crate::mesh::queue_lengths(&self.client).await
    }

    /// Whether every role started is still running (none returned, failed or panicked).
    pub fn all_running(&self) -> bool {
        self.roles.iter().all(|role| !role.is_finished())
    }
}

impl Deref for Api {
    type Target = Http;

    fn deref(&self) -> &Http {
        &self.api
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        self.token.cancel();
    }
}
