//! One socket.io client following every node of the topology, as a dashboard would: it
//! subscribes with `after_seq`, records every `output` in arrival order with its end-to-end
//! latency, resumes after a reconnect from the last seq it has of each node, and keeps the
//! `resync`s the notifier sends so the gaps can be read from history at the end.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use futures_util::FutureExt as _;
use hdrhistogram::Histogram;
use protocol::notify::{Ack, AfterSeq, Resync, Subscription, OUTPUT_EVENT, RESYNC_EVENT};
use protocol::stats::new_histogram as histogram;
use protocol::OutputEvent;
use rust_socketio::asynchronous::{Client, ClientBuilder};
use rust_socketio::{Payload, TransportType};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use crate::api::parse_id;
use crate::ledger::Seen;

/// How long a subscribe may wait for its acknowledgement.
const ACK_TIMEOUT: Duration = Duration::from_secs(30);

/// What a client has received so far.
pub struct Record {
    /// Every output, in arrival order.
    pub seen: Vec<Seen>,
    /// Per node, the highest seq received (where to resume after a reconnect).
    pub last_seq: Vec<u64>,
    /// The resyncs received.
    pub resyncs: Vec<Resync>,
    /// Inject → delivery, in microseconds, of every output received live.
    pub latency: Histogram<u64>,
    /// The same for the outputs of terminal nodes: the whole trip through the graph.
    pub terminal_latency: Histogram<u64>,
    /// When the last output arrived.
    pub last_arrival: Option<Instant>,
    /// Events that could not be read, or of nodes not in the plan.
    pub malformed: u64,
    /// Connections made (1 plus the reconnects).
    pub connects: u64,
}

/// A connected client and what it received.
pub struct Follower {
    client: Client,
    /// What it received, shared with the socket's callbacks.
    pub record: Arc<Mutex<Record>>,
    resubscriber: tokio::task::JoinHandle<()>,
}

impl Record {
    fn new(nodes: usize) -> Record {
        Record {
            seen: Vec::new(),
            last_seq: vec![0; nodes],
            resyncs: Vec::new(),
            latency: histogram(),
            terminal_latency: histogram(),
            last_arrival: None,
            malformed: 0,
            connects: 0,
        }
    }
}

/// The first argument of an event or an ack. Events arrive as a list of their arguments; an
/// ack's arguments arrive as one JSON array inside that list.
fn first_value<T: DeserializeOwned>(payload: &Payload) -> Option<T> {
    let Payload::Text(values) = payload else {
        return None;
    };
    let value = match values.first()? {
        serde_json::Value::Array(arguments) => arguments.first()?,
        value => value,
    };
    T::deserialize(value).ok()
}

/// The current time in Unix microseconds.
fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_micros() as i64)
}

impl Follower {
    /// Connects to `notifier` and subscribes to every node of `topology` from seq 0 (the
    /// topology is new, so that is all of them). Returns once the subscription is
    /// acknowledged. `nodes` are the plan's node ids; `terminal` marks where trips end.
    pub async fn start(
        notifier: &str,
        token: Option<&str>,
        topology: &str,
        nodes: Arc<Vec<String>>,
        terminal: Arc<Vec<bool>>,
    ) -> anyhow::Result<Follower> {
        let index: Arc<HashMap<String, u32>> = Arc::new(
            nodes
                .iter()
                .enumerate()
                .map(|(i, id)| (id.clone(), i as u32))
                .collect(),
        );
        let record = Arc::new(Mutex::new(Record::new(nodes.len())));
        let (connected_tx, mut connected_rx) = mpsc::unbounded_channel::<()>();
        let on_output = {
            let record = Arc::clone(&record);
            move |payload: Payload, _: Client| {
                let event: Option<OutputEvent> = first_value(&payload);
                let mut record = record.lock().expect("record lock");
                let known = event.and_then(|event| {
                    let node = *index.get(&event.node)?;
                    let input = parse_id(&event.input_id)?;
                    Some((event, node, input))
                });
                match known {
                    Some((event, node, input)) => {
                        let latency = (now_us() - event.injected_at.unix_ms() * 1000).max(1) as u64;
                        record.latency.saturating_record(latency);
                        if terminal[node as usize] {
                            record.terminal_latency.saturating_record(latency);
                        }
                        let last = &mut record.last_seq[node as usize];
                        *last = (*last).max(event.seq);
                        record.seen.push(Seen {
                            node,
                            seq: event.seq,
                            input,
                            recovered: false,
                        });
                        record.last_arrival = Some(Instant::now());
                    }
                    None => record.malformed += 1,
                }
                async {}.boxed()
            }
        };
        let on_resync = {
            let record = Arc::clone(&record);
            move |payload: Payload, _: Client| {
                let mut record = record.lock().expect("record lock");
                match first_value::<Resync>(&payload) {
                    Some(resync) => record.resyncs.push(resync),
                    None => record.malformed += 1,
                }
                async {}.boxed()
            }
        };
        let on_connect = move |_: Payload, _: Client| {
            let _ = connected_tx.send(());
            async {}.boxed()
        };
        let mut builder = ClientBuilder::new(notifier)
            .transport_type(TransportType::Websocket)
            .reconnect(true)
            .reconnect_on_disconnect(true)
            .reconnect_delay(100, 2_000)
            .max_reconnect_attempts(255)
            .on(OUTPUT_EVENT, on_output)
            .on(RESYNC_EVENT, on_resync)
            .on("open", on_connect);
        if let Some(token) = token {
            builder = builder.auth(serde_json::json!({ "token": token }));
        }
        let client = builder
            .connect()
            .await
            .with_context(|| format!("could not connect to the notifier at {notifier}"))?;
        let first = tokio::time::timeout(ACK_TIMEOUT, connected_rx.recv())
            .await
            .map_err(|_| anyhow!("the notifier at {notifier} did not accept the connection"))?;
        if first.is_none() {
            bail!("the connection to {notifier} closed");
        }
        subscribe(&client, topology, AfterSeq::All(0)).await?;
        record.lock().expect("record lock").connects = 1;

        // Every later connect is a reconnect: resume each node after the last seq received.
        let resubscriber = {
            let client = client.clone();
            let record = Arc::clone(&record);
            let topology = topology.to_owned();
            tokio::spawn(async move {
                while connected_rx.recv().await.is_some() {
                    let positions: BTreeMap<String, u64> = {
                        let mut record = record.lock().expect("record lock");
                        record.connects += 1;
                        nodes
                            .iter()
                            .zip(&record.last_seq)
                            .map(|(node, seq)| (node.clone(), *seq))
                            .collect()
                    };
                    if let Err(error) =
                        subscribe(&client, &topology, AfterSeq::PerNode(positions)).await
                    {
                        eprintln!("simulator: resubscribing after a reconnect failed: {error:#}");
                    }
                }
            })
        };
        Ok(Follower {
            client,
            record,
            resubscriber,
        })
    }

    /// How many outputs arrived, and how many the resyncs say will not.
    pub fn progress(&self) -> (u64, u64) {
        let record = self.record.lock().expect("record lock");
        let skipped = record
            .resyncs
            .iter()
            .map(|resync| resync.next_seq.saturating_sub(resync.after_seq + 1))
            .sum();
        (record.seen.len() as u64, skipped)
    }

    /// Disconnects, and returns what it received.
    pub async fn stop(self) -> Record {
        self.resubscriber.abort();
        let _ = self.client.disconnect().await;
        let mut record = self.record.lock().expect("record lock");
        let nodes = record.last_seq.len();
        std::mem::replace(&mut *record, Record::new(nodes))
    }
}

/// Sends `subscribe` for every node of `topology` and waits for the ack.
async fn subscribe(client: &Client, topology: &str, after: AfterSeq) -> anyhow::Result<()> {
    let subscription = Subscription {
        topology: topology.to_owned(),
        node: None,
        after_seq: Some(after),
    };
    let (ack_tx, mut ack_rx) = mpsc::unbounded_channel::<Option<Ack>>();
    client
        .emit_with_ack(
            protocol::notify::SUBSCRIBE_EVENT,
            serde_json::to_value(&subscription)?,
            ACK_TIMEOUT,
            move |payload: Payload, _: Client| {
                let _ = ack_tx.send(first_value::<Ack>(&payload));
                async {}.boxed()
            },
        )
        .await
        .context("send subscribe")?;
    let ack = tokio::time::timeout(ACK_TIMEOUT, ack_rx.recv())
        .await
        .map_err(|_| anyhow!("no acknowledgement of subscribe within {ACK_TIMEOUT:?}"))?
        .flatten()
        .ok_or_else(|| anyhow!("an acknowledgement of subscribe that could not be read"))?;
    if !ack.ok {
        let error = ack.error.map(|e| format!("{}: {}", e.code, e.message));
        bail!("subscribe refused: {}", error.unwrap_or_default());
    }
    Ok(())
}

/// Fills the gaps `resyncs` announced from the history API, as recovered outputs. The archive
/// may lag behind the outputs (MongoDB was down, a store restarts): a gap the history does not
/// hold whole yet is read again every half second until it does or `patience` is over, and
/// what it holds then is taken.
pub async fn recover(
    api: &crate::api::Api,
    nodes: &[String],
    record: &mut Record,
    patience: Duration,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + patience;
    let index: HashMap<&str, u32> = nodes
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i as u32))
        .collect();
    for resync in std::mem::take(&mut record.resyncs) {
        let Some(&node) = index.get(resync.node.as_str()) else {
            continue;
        };
        let missing = resync.next_seq.saturating_sub(resync.after_seq + 1) as usize;
        let events = loop {
            let events = api
                .history_range(&resync.node, resync.after_seq, resync.next_seq)
                .await?;
            if events.len() >= missing || tokio::time::Instant::now() >= deadline {
                break events;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        for event in events {
            record.seen.push(Seen {
                node,
                seq: event.seq,
                input: parse_id(&event.input_id).unwrap_or_default(),
                recovered: true,
            });
        }
        record.resyncs.push(resync);
    }
    Ok(())
}
