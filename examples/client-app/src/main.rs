//! client-app: an application that embeds `gorgon_client`. It applies the topology
//! `greenhouse` (readings pass through `temperature` into `average`, the running mean of their
//! `celsius`), follows the outputs of `average`, injects a batch of readings, prints each
//! output they cause and the final average, and exits.
//!
//! It shows the order that misses no output: read the seq the node's outputs stand at,
//! subscribe after it (`subscribe` returns once the notifier has taken the subscription), and
//! only then inject. Run it again and the apply changes nothing while the readings, the average and its
//! seqs go on from where the last run stopped.
//!
//! Run with a mesh running (web_face, store, a processor and the notifier; `scripts/up`):
//! `cargo run -p client-app -- --readings 50`.
//! Where: `GORGON_URL` (default `http://127.0.0.1:8080`), `GORGON_NOTIFIER_URL` (default
//! web_face's host, port 8081), and `GORGON_TOKEN` when the mesh has `GORGON_API_TOKENS`.

use std::time::Duration;

use anyhow::{anyhow, Context as _};
use clap::Parser;
use futures_util::{Stream, StreamExt as _};
use gorgon_client::protocol::api::Applied;
use gorgon_client::protocol::OutputEvent;
use gorgon_client::{ApplyOptions, Client, Document, StartAt};
use serde_json::{json, Value};

/// The topology this example applies and feeds.
const TOPOLOGY: &str = "greenhouse";
/// The node readings are injected into.
const INPUT_NODE: &str = "temperature";
/// The node whose outputs are followed.
const AVERAGE_NODE: &str = "average";

/// The topology: `temperature` passes each reading on to `average`, which keeps the running
/// mean of their `celsius` and outputs `{"mean", "count"}`.
const DOCUMENT: &str = r#"
description = "Greenhouse temperature readings and their running average"

[[node]]
id = "temperature"
function = "pass"

[[node]]
id = "average"
function = "average"
sources = ["temperature"]
attrs = { field = "/celsius" }
"#;

/// How long to wait for the next output before giving up (no processor is running, say).
const OUTPUT_WAIT: Duration = Duration::from_secs(30);

/// Applies the greenhouse topology, injects temperature readings and prints the running
/// average they make.
#[derive(Parser)]
#[command(name = "client-app", version, about)]
struct Config {
    /// web_face's URL.
    #[arg(long, env = "GORGON_URL", default_value = "http://127.0.0.1:8080")]
    url: String,

    /// The notifier's URL (default: web_face's host, port 8081).
    #[arg(long, env = "GORGON_NOTIFIER_URL")]
    notifier_url: Option<String>,

    /// The API token, when the mesh has GORGON_API_TOKENS.
    #[arg(long, env = "GORGON_TOKEN", hide_env_values = true)]
    token: Option<String>,

    /// How many readings to inject (one request takes at most 10 000).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    readings: u32,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let mut builder = Client::builder(&config.url);
    if let Some(token) = config.token {
        builder = builder.token(token);
    }
    if let Some(url) = config.notifier_url {
        builder = builder.notifier_url(url);
    }
    let client = builder.build()?;

    let applied = client
        .apply(TOPOLOGY, &Document::toml(DOCUMENT), ApplyOptions::default())
        .await
        .with_context(|| format!("cannot apply topology {TOPOLOGY} at {}", client.url()))?;
    println!("{}", plan_line(&applied));

    // Subscribing after the latched output's seq is race-free: the outputs after it come from
    // the notifier's replay buffer if they are made before the stream connects.
    let after_seq = client
        .output(TOPOLOGY, AVERAGE_NODE)
        .await
        .with_context(|| format!("cannot read the output of {TOPOLOGY}/{AVERAGE_NODE}"))?
        .map_or(0, |output| output.seq);
    // `subscribe` returns once the notifier has taken the subscription, so the readings
    // injected after it are all followed; a notifier that cannot be reached is an error here.
    let mut outputs = client
        .subscribe(TOPOLOGY, Some(AVERAGE_NODE), StartAt::AfterSeq(after_seq))
        .await
        .with_context(|| {
            format!(
                "cannot follow {TOPOLOGY}/{AVERAGE_NODE} at the notifier {} (set \
                 GORGON_NOTIFIER_URL if it is not on web_face's host at port 8081)",
                client.notifier_url()
            )
        })?;
    println!("following {TOPOLOGY}/{AVERAGE_NODE} after seq {after_seq}");

    // One output of `average` per reading so far: the next reading is number `after_seq`.
    let readings: Vec<Value> = (after_seq..after_seq + u64::from(config.readings))
        .map(|number| json!({ "celsius": reading(number) }))
        .collect();
    let injected = client
        .inject_many(TOPOLOGY, INPUT_NODE, &readings)
        .await
        .with_context(|| format!("cannot inject into {TOPOLOGY}/{INPUT_NODE}"))?;
    let last_input = injected
        .msg_ids
        .last()
        .context("the inject answered no message ids")?;
    println!(
        "injected {} readings into {TOPOLOGY}/{INPUT_NODE}",
        injected.msg_ids.len()
    );

    let last = follow_until(&mut outputs, last_input).await?;
    println!(
        "final average: {} °C over {} readings (average #{})",
        last.data["mean"], last.data["count"], last.seq
    );
    Ok(())
}

/// Reading `number` (counting from 0 over every run), in °C: 20.0, 20.125, 20.25, ... A
/// steady warming by a power of two keeps every running mean exact in binary floating point
/// (20.0625 rather than 20.150000000000002), so the output is the same wherever it runs.
fn reading(number: u64) -> f64 {
    20.0 + number as f64 / 8.0
}

/// What the apply did, in one line.
fn plan_line(applied: &Applied) -> String {
    if applied.changes() == 0 {
        return format!("applied {} (rev {}): no change", applied.id, applied.rev);
    }
    format!(
        "applied {} (rev {}): created {}; updated {}; deleted {}",
        applied.id,
        applied.rev,
        names(&applied.created),
        names(&applied.updated),
        names(&applied.deleted)
    )
}

/// Node ids joined with commas, or `none`.
fn names(ids: &[String]) -> String {
    if ids.is_empty() {
        "none".to_owned()
    } else {
        ids.join(", ")
    }
}

/// Prints each output of `outputs` until the one caused by the message `last_input`, and
/// returns that one.
async fn follow_until(
    outputs: &mut (impl Stream<Item = gorgon_client::Result<OutputEvent>> + Unpin),
    last_input: &str,
) -> anyhow::Result<OutputEvent> {
    loop {
        let item = tokio::time::timeout(OUTPUT_WAIT, outputs.next())
            .await
            .map_err(|_| {
                anyhow!(
                    "no output from {TOPOLOGY}/{AVERAGE_NODE} for {OUTPUT_WAIT:?}; \
                     is a processor running?"
                )
            })?
            .context("the notifier ended the subscription")?;
        let output = item
            .with_context(|| format!("cannot follow the outputs of {TOPOLOGY}/{AVERAGE_NODE}"))?;
        println!("average #{}: {}", output.seq, output.data);
        if output.input_id == last_input {
            return Ok(output);
        }
    }
}
