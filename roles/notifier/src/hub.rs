//! The hub: one live subscription per topology that any socket follows, and the fan-out of
//! each batch of outputs to the sockets following that topology.
//!
//! The hub never waits on a socket: a socket whose backlog is full misses the batch and is
//! marked lagged, and catches up from the replay buffers itself. Live messages lost on the
//! way from Redis (a reconnect, a full subscription) are noticed by [`watch_losses`], which
//! marks every socket lagged.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redpill::Live;
use serde::Deserialize;
use serde_json::value::RawValue;
use socketioxide::socket::Sid;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

/// Live messages one topology's subscription holds before newer ones are dropped (and the
/// sockets caught up from Redis).
const LIVE_CAPACITY: usize = 4096;

/// How often [`watch_losses`] looks at the live channel's loss counters.
const LOSS_CHECK: Duration = Duration::from_millis(100);

/// One output event as it travels: the fields the notifier orders by, and the JSON itself.
#[derive(Debug)]
pub struct Event {
    /// The node.
    pub node: String,
    /// The node's output seq.
    pub seq: u64,
    /// The whole event, as the processor wrote it.
    pub raw: Box<RawValue>,
}

/// The fields of an output event the notifier reads.
#[derive(Deserialize)]
struct Head {
    topology: String,
    node: String,
    seq: u64,
}

impl Event {
    /// Reads one output event's JSON text; `None` (logged) if it is not one.
    pub fn parse(text: &str) -> Option<(String, Event)> {
        let raw = RawValue::from_string(text.to_owned()).ok()?;
        Event::from_raw(raw)
    }

    fn from_raw(raw: Box<RawValue>) -> Option<(String, Event)> {
        match serde_json::from_str::<Head>(raw.get()) {
            Ok(head) => Some((
                head.topology,
                Event {
                    node: head.node,
                    seq: head.seq,
                    raw,
                },
            )),
            Err(error) => {
                tracing::warn!(%error, "an output event without topology, node or seq; skipped");
                None
            }
        }
    }
}

/// The outputs of one live message: one processor batch's outputs of one topology, in
/// commit order.
#[derive(Debug)]
pub struct Batch {
    /// The topology.
    pub topology: String,
    /// Its events.
    pub events: Vec<Event>,
}

impl Batch {
    /// Reads a live message: a JSON array of output events of one topology.
    fn parse(topology: &str, payload: &[u8]) -> Option<Batch> {
        let raws: Vec<Box<RawValue>> = match serde_json::from_slice(payload) {
            Ok(raws) => raws,
            Err(error) => {
                tracing::warn!(%topology, %error, "a live message that is not a JSON array; skipped");
                return None;
            }
        };
        let events = raws
            .into_iter()
            .filter_map(Event::from_raw)
            .filter(|(of, _)| of == topology)
            .map(|(_, event)| event)
            .collect();
        Some(Batch {
            topology: topology.to_owned(),
            events,
        })
    }
}

/// Set when a socket may have missed outputs; the socket's task catches up when it sees it.
#[derive(Default)]
pub struct Lag {
    flag: AtomicBool,
    notify: Notify,
}

impl Lag {
    /// Marks the socket as having missed something and wakes its task.
    pub fn mark(&self) {
        self.flag.store(true, Ordering::Release);
        self.notify.notify_one();
    }

    /// Whether it was marked since the last call; clears the mark.
    pub fn take(&self) -> bool {
        self.flag.swap(false, Ordering::AcqRel)
    }

    /// Waits until marked.
    pub async fn marked(&self) {
        self.notify.notified().await;
    }
}

/// What the hub holds of one socket.
#[derive(Clone)]
pub struct Follower {
    /// The socket.
    pub id: Sid,
    /// Where its batches go; bounded.
    pub batches: mpsc::Sender<Arc<Batch>>,
    /// Its lag mark.
    pub lag: Arc<Lag>,
}

/// The live subscriptions and who follows each topology. Cloning shares it.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    live: Live,
    /// Per topology, the sockets following it.
    followers: Mutex<HashMap<String, HashMap<Sid, Follower>>>,
    /// Topologies with a live subscription (and a task reading it). Subscriptions are kept
    /// for the life of the process, as redpill keeps channels: a topology followed once is
    /// read until the notifier stops.
    subscribed: tokio::sync::Mutex<HashSet<String>>,
    token: CancellationToken,
}

impl Hub {
    /// A hub on `live`, whose tasks stop with `token`.
    pub fn new(live: Live, token: CancellationToken) -> Hub {
        Hub {
            inner: Arc::new(Inner {
                live,
                followers: Mutex::new(HashMap::new()),
                subscribed: tokio::sync::Mutex::new(HashSet::new()),
                token,
            }),
        }
    }

    /// Makes `follower` receive every batch of `topology` from now on. Returns once the live
    /// subscription is confirmed by Redis (or, with Redis away, once it is due on reconnect,
    /// which marks every socket lagged).
    pub async fn follow(&self, topology: &str, follower: Follower) -> redpill::Result<()> {
        {
            let mut subscribed = self.inner.subscribed.lock().await;
            if !subscribed.contains(topology) {
                let subscription = self
                    .inner
                    .live
                    .subscribe(&layout::live_outputs(topology), LIVE_CAPACITY)
                    .await?;
                subscribed.insert(topology.to_owned());
                tokio::spawn(read_topology(
                    self.clone(),
                    topology.to_owned(),
                    subscription,
                ));
            }
        }
        self.inner
            .followers
            .lock()
            .expect("hub lock")
            .entry(topology.to_owned())
            .or_default()
            .insert(follower.id, follower);
        Ok(())
    }

    /// Stops sending `topology`'s batches to socket `id`.
    pub fn unfollow(&self, topology: &str, id: Sid) {
        let mut followers = self.inner.followers.lock().expect("hub lock");
        if let Some(sockets) = followers.get_mut(topology) {
            sockets.remove(&id);
            if sockets.is_empty() {
                followers.remove(topology);
            }
        }
    }

    /// Marks every socket lagged: something may have been lost on the way from Redis.
    pub fn mark_all_lagged(&self) {
        let followers = self.inner.followers.lock().expect("hub lock");
        for sockets in followers.values() {
            for follower in sockets.values() {
                follower.lag.mark();
            }
        }
    }

    /// Hands `batch` to every follower of its topology, without waiting on any.
    fn fan_out(&self, batch: Batch) {
        let batch = Arc::new(batch);
        let followers = self.inner.followers.lock().expect("hub lock");
        let Some(sockets) = followers.get(&batch.topology) else {
            return;
        };
        for follower in sockets.values() {
            if follower.batches.try_send(Arc::clone(&batch)).is_err() {
                // Full (the socket is slow) or closed (it is going away): either way it reads
                // what it missed from Redis if it goes on.
                metrics::counter!("gorgon_notifier_socket_lags_total").increment(1);
                follower.lag.mark();
            }
        }
    }
}

/// Reads one topology's live channel until the hub stops.
async fn read_topology(hub: Hub, topology: String, mut subscription: redpill::Subscription) {
    loop {
        let message = tokio::select! {
            _ = hub.inner.token.cancelled() => return,
            message = subscription.recv() => message,
        };
        let Some(payload) = message else { return };
        if let Some(batch) = Batch::parse(&topology, &payload) {
            hub.fan_out(batch);
        }
    }
}

/// Marks every socket lagged whenever the live channels may have lost a message: the
/// subscriber connection came back (messages published meanwhile are gone) or a
/// subscription was full. Runs until `token` is cancelled.
pub async fn watch_losses(hub: Hub, token: CancellationToken) {
    let live = hub.inner.live.clone();
    let mut seen = (live.connections(), live.dropped());
    let mut tick = tokio::time::interval(LOSS_CHECK);
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = (live.connections(), live.dropped());
        if now != seen {
            if now.0 != seen.0 {
                tracing::info!(
                    connections = now.0,
                    "the live subscriber connection came back: catching every socket up"
                );
            } else {
                tracing::debug!(
                    dropped = now.1,
                    "live messages were dropped: catching every socket up"
                );
            }
            metrics::gauge!("gorgon_notifier_live_dropped").set(now.1 as f64);
            hub.mark_all_lagged();
            seen = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A live message reads as its events, in order, with their raw JSON kept exactly.
    #[test]
    fn batches_parse() {
        let payload = br#"[{"topology":"t","node":"a","seq":1,"data":{"x":1}},{"topology":"t","node":"b","seq":7,"data":null}]"#;
        let batch = Batch::parse("t", payload).unwrap();
        assert_eq!(batch.events.len(), 2);
        assert_eq!(
            (batch.events[0].node.as_str(), batch.events[0].seq),
            ("a", 1)
        );
        assert_eq!(
            (batch.events[1].node.as_str(), batch.events[1].seq),
            ("b", 7)
        );
        assert_eq!(
            batch.events[0].raw.get(),
            r#"{"topology":"t","node":"a","seq":1,"data":{"x":1}}"#
        );
        assert!(Batch::parse("t", b"not json").is_none());
        let other = Batch::parse("u", payload).unwrap();
        assert!(
            other.events.is_empty(),
            "events of another topology are not its"
        );
        assert!(Event::parse(r#"{"node":"a"}"#).is_none());
    }
}
