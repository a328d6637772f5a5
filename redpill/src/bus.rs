//! One subscriber connection per client: wake-up hints and live channels, re-subscribed after
//! every reconnect. On a single Redis it is one SUBSCRIBE connection; on a Redis Cluster it
//! is sharded pub/sub (SSUBSCRIBE) through a cluster connection, which subscribes each channel
//! on the shard that owns its slot and follows it through failovers and reshards.
//!
//! Redis pub/sub is fire-and-forget: whatever is published while this connection is down is
//! gone. So nothing that must arrive travels here. Wake-ups only shorten the wait of a puller
//! that would otherwise poll, and after every reconnect all waiters are woken to poll once,
//! in case a hint was missed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use redis::{PushInfo, PushKind, Value};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_util::sync::CancellationToken;

use crate::conn::Connector;

/// Handle to the subscriber task.
pub(crate) struct Bus {
    shared: Arc<Shared>,
    commands: mpsc::UnboundedSender<Command>,
}

#[derive(Default)]
struct Shared {
    channels: Mutex<HashMap<String, Channel>>,
    /// The waiters on a set of channels (joined by newlines), each woken by any of them.
    wake_sets: Mutex<HashMap<String, Arc<Wake>>>,
    /// Live messages dropped because a receiver was full.
    dropped: AtomicU64,
    /// Completed (re)connections, for tests and stats.
    connections: AtomicU64,
}

#[derive(Default)]
struct Channel {
    wakes: Vec<Arc<Wake>>,
    live: Vec<mpsc::Sender<Bytes>>,
}

/// The wake-up of a set of channels: woken by a message on any of them, and counting those
/// messages, so that a puller can tell whether anything was published since it last looked.
#[derive(Default)]
pub(crate) struct Wake {
    notify: Notify,
    raised: AtomicU64,
}

impl Wake {
    /// Counts a message (or a reconnect, after which a message may have been missed) and wakes
    /// every waiter.
    fn raise(&self) {
        self.raised.fetch_add(1, Ordering::AcqRel);
        self.notify.notify_waiters();
    }

    /// How many times it was raised so far. Read after arming [`Wake::notified`], a count
    /// that has not moved when the wait begins means that nothing was published in between.
    pub(crate) fn raised(&self) -> u64 {
        self.raised.load(Ordering::Acquire)
    }

    /// A future that completes at the next raise.
    pub(crate) fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify.notified()
    }
}

/// Channels are never unsubscribed: a client keeps what it subscribed until it closes.
enum Command {
    Subscribe(Vec<String>, oneshot::Sender<()>),
}

impl Bus {
    pub(crate) fn start(
        connector: Arc<Connector>,
        max_delay: Duration,
        ping_timeout: Duration,
        token: CancellationToken,
    ) -> Bus {
        let shared = Arc::new(Shared::default());
        let (commands, receiver) = mpsc::unbounded_channel();
        tokio::spawn(run(
            connector,
            Arc::clone(&shared),
            receiver,
            max_delay,
            ping_timeout,
            token,
        ));
        Bus { shared, commands }
    }

    /// The wake-up raised whenever something is published on any of `channels`,
    /// subscribing on first use.
    pub(crate) async fn wake(&self, channels: &[String]) -> Arc<Wake> {
        let (notify, new) = {
            let notify = Arc::clone(
                self.shared
                    .wake_sets
                    .lock()
                    .expect("bus lock")
                    .entry(channels.join("\n"))
                    .or_default(),
            );
            let mut registered = self.shared.channels.lock().expect("bus lock");
            let mut new = Vec::new();
            for channel in channels {
                let entry = registered.entry(channel.clone()).or_default();
                if entry.wakes.is_empty() && entry.live.is_empty() {
                    new.push(channel.clone());
                }
                if !entry.wakes.iter().any(|wake| Arc::ptr_eq(wake, &notify)) {
                    entry.wakes.push(Arc::clone(&notify));
                }
            }
            (notify, new)
        };
        if !new.is_empty() {
            self.subscribe(new).await;
        }
        notify
    }

    /// A receiver of every message published on `channel` from now on, while connected.
    /// When the receiver lags `capacity` messages behind, newer ones are dropped and counted.
    pub(crate) async fn live(&self, channel: &str, capacity: usize) -> mpsc::Receiver<Bytes> {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        let new = {
            let mut channels = self.shared.channels.lock().expect("bus lock");
            let entry = channels.entry(channel.to_owned()).or_default();
            let new = entry.wakes.is_empty() && entry.live.is_empty();
            entry.live.push(sender);
            new
        };
        if new {
            self.subscribe(vec![channel.to_owned()]).await;
        }
        receiver
    }

    /// Live messages dropped so far because a receiver was full.
    pub(crate) fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// How many times the subscriber connection has been (re)established.
    pub(crate) fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// Waits until the subscription is confirmed by Redis, or the connection is down (it is
    /// then made on reconnect).
    async fn subscribe(&self, channels: Vec<String>) {
        let (done, confirmed) = oneshot::channel();
        if self
            .commands
            .send(Command::Subscribe(channels, done))
            .is_ok()
        {
            let _ = confirmed.await;
        }
    }
}

async fn run(
    connector: Arc<Connector>,
    shared: Arc<Shared>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    max_delay: Duration,
    ping_timeout: Duration,
    token: CancellationToken,
) {
    // What the client talks to decides how it subscribes; until Redis answers, subscribe
    // commands are parked (their channels are subscribed once connected).
    let mut delay = Duration::from_millis(50);
    let cluster = loop {
        match connector.conn().await {
            Ok(conn) => break conn.is_cluster(),
            Err(err) => {
                tracing::debug!(error = %err, "subscriber: Redis not reachable yet; retrying in {delay:?}");
                if !backoff(&token, &mut commands, &mut delay, max_delay).await {
                    return;
                }
            }
        }
    };
    if cluster {
        run_sharded(&connector, &shared, commands, max_delay, token).await;
    } else {
        run_single(
            connector.single_client(),
            &shared,
            commands,
            max_delay,
            ping_timeout,
            token,
        )
        .await;
    }
}

/// SUBSCRIBE on one connection to a single Redis; after a reconnect, everything again.
async fn run_single(
    client: &redis::Client,
    shared: &Shared,
    mut commands: mpsc::UnboundedReceiver<Command>,
    max_delay: Duration,
    ping_timeout: Duration,
    token: CancellationToken,
) {
    let mut delay = Duration::from_millis(50);
    let mut pending: Vec<oneshot::Sender<()>> = Vec::new();
    loop {
        let connected = tokio::select! {
            _ = token.cancelled() => return,
            connected = tokio::time::timeout(ping_timeout, client.get_async_pubsub()) => connected,
        };
        let pubsub = match connected {
            Ok(Ok(pubsub)) => pubsub,
            Ok(Err(err)) => {
                tracing::debug!(error = %err, "subscriber connection failed; retrying in {delay:?}");
                if !backoff(&token, &mut commands, &mut delay, max_delay).await {
                    return;
                }
                continue;
            }
            Err(_) => {
                tracing::debug!("subscriber connection timed out; retrying in {delay:?}");
                if !backoff(&token, &mut commands, &mut delay, max_delay).await {
                    return;
                }
                continue;
            }
        };
        let (mut sink, mut stream) = pubsub.split();
        let names = channel_names(shared);
        if !names.is_empty() {
            if let Err(err) = sink.subscribe(&names).await {
                tracing::debug!(error = %err, "re-subscribe failed; reconnecting");
                continue;
            }
        }
        delay = Duration::from_millis(50);
        let generation = shared.connections.fetch_add(1, Ordering::Relaxed) + 1;
        if generation > 1 {
            tracing::info!(
                "subscriber connection re-established; {} channels re-subscribed",
                names.len()
            );
        }
        for done in pending.drain(..) {
            let _ = done.send(());
        }
        wake_all(shared);

        let mut keepalive = tokio::time::interval(Duration::from_secs(5).min(ping_timeout * 2));
        keepalive.tick().await;
        loop {
            tokio::select! {
                _ = token.cancelled() => return,
                command = commands.recv() => {
                    let Some(command) = command else { return };
                    let Command::Subscribe(names, done) = command;
                    let result = sink.subscribe(&names).await;
                    if result.is_ok() {
                        let _ = done.send(());
                    } else {
                        pending.push(done);
                    }
                    if let Err(err) = result {
                        tracing::debug!(error = %err, "subscribe command failed; reconnecting");
                        break;
                    }
                }
                message = stream.next() => {
                    let Some(message) = message else {
                        tracing::debug!("subscriber connection closed; reconnecting");
                        break;
                    };
                    dispatch(shared, message.get_channel_name(), message.get_payload_bytes());
                }
                _ = keepalive.tick() => {
                    let alive = tokio::time::timeout(ping_timeout, sink.ping::<redis::Value>()).await;
                    if !matches!(alive, Ok(Ok(_))) {
                        tracing::debug!("subscriber connection did not answer PING; reconnecting");
                        break;
                    }
                }
            }
        }
    }
}

/// SSUBSCRIBE through a cluster connection (RESP3, messages arrive as pushes). The cluster
/// connection subscribes each channel on the master that owns its slot, and subscribes again
/// after it reconnects to a node or finds a slot moved. A channel the server unsubscribes
/// (its slot moved to another shard) is subscribed again here, at its new owner.
async fn run_sharded(
    connector: &Connector,
    shared: &Shared,
    mut commands: mpsc::UnboundedReceiver<Command>,
    max_delay: Duration,
    token: CancellationToken,
) {
    let (pushes_in, mut pushes) = mpsc::unbounded_channel::<PushInfo>();
    let mut delay = Duration::from_millis(50);
    let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
    let mut losses = connector.losses();
    // Made again (from every node seen) when it has lost every node, or when the client's
    // own connection has (this one may not notice: it makes no calls while it waits):
    // redis-rs's recovery of it would retry without pause for as long as the cluster is away.
    'connect: loop {
        let Some(mut conn) = connect_sharded(
            connector,
            &pushes_in,
            &token,
            &mut commands,
            &mut delay,
            max_delay,
        )
        .await
        else {
            return;
        };
        delay = Duration::from_millis(50);
        // Channels to subscribe (again): all of them at first, then whatever failed or was
        // unsubscribed by the server; tried again every retry interval until they hold.
        let mut unsubscribed: Vec<String> = channel_names(shared);
        // Whether channels held before are among them: messages may have been missed, which
        // the next subscription made counts as a new connection (live readers catch up then).
        let mut gap = false;
        let mut retry = tokio::time::interval(Duration::from_millis(200).min(max_delay));
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        shared.connections.fetch_add(1, Ordering::Relaxed);
        loop {
            if !unsubscribed.is_empty() {
                unsubscribed.sort();
                unsubscribed.dedup();
                match ssubscribe(&mut conn, &unsubscribed).await {
                    Ok(()) => {
                        unsubscribed.clear();
                        for done in waiting.drain(..) {
                            let _ = done.send(());
                        }
                        if std::mem::take(&mut gap) {
                            shared.connections.fetch_add(1, Ordering::Relaxed);
                            tracing::info!(
                                "sharded subscriptions made again after a failover or a moved slot"
                            );
                        }
                        // A hint may have been missed while a channel was not subscribed.
                        wake_all(shared);
                    }
                    Err(err) if crate::conn::lost_every_node(&err) => {
                        tracing::debug!(error = %err, "the sharded subscriber connection lost every node; connecting again");
                        drop(conn);
                        if !backoff(&token, &mut commands, &mut delay, max_delay).await {
                            return;
                        }
                        continue 'connect;
                    }
                    Err(err) => {
                        tracing::debug!(error = %err, channels = unsubscribed.len(), "SSUBSCRIBE failed; retrying");
                    }
                }
            } else {
                for done in waiting.drain(..) {
                    let _ = done.send(());
                }
            }
            tokio::select! {
                _ = token.cancelled() => return,
                command = commands.recv() => {
                    let Some(Command::Subscribe(names, done)) = command else { return };
                    unsubscribed.extend(names);
                    waiting.push(done);
                }
                push = pushes.recv() => {
                    let Some(push) = push else { return };
                    match push.kind {
                        PushKind::SMessage | PushKind::Message => {
                            if let [channel, payload] = push.data.as_slice() {
                                if let (Some(channel), Some(payload)) = (bytes_of(channel), bytes_of(payload)) {
                                    dispatch(shared, &String::from_utf8_lossy(channel), payload);
                                }
                            }
                        }
                        PushKind::SUnsubscribe => {
                            // The server dropped the subscription: the slot moved (a reshard or a
                            // failover). Subscribe again, at the slot's new owner.
                            if let Some(channel) = push.data.first().and_then(bytes_of) {
                                let channel = String::from_utf8_lossy(channel).into_owned();
                                if shared.channels.lock().expect("bus lock").contains_key(&channel) {
                                    tracing::debug!(%channel, "shard channel unsubscribed by the server; subscribing again");
                                    unsubscribed.push(channel);
                                    gap = true;
                                }
                            }
                        }
                        PushKind::Disconnection => {
                            // A node went away (killed, restarted, failed over): subscribe every
                            // channel again, which reaches each slot's owner once the cluster
                            // connection knows it (SSUBSCRIBE of a channel held is a no-op).
                            unsubscribed = channel_names(shared);
                            gap = true;
                            wake_all(shared);
                        }
                        _ => {}
                    }
                }
                _ = retry.tick() => {}
                changed = losses.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    tracing::debug!("the client's cluster connection lost every node; making the subscriber's again");
                    drop(conn);
                    if !backoff(&token, &mut commands, &mut delay, max_delay).await {
                        return;
                    }
                    continue 'connect;
                }
            }
        }
    }
}

/// The sharded subscriber's connection (RESP3, its pushes to `pushes`), made again with
/// backoff until it is; `None` when the task must stop.
async fn connect_sharded(
    connector: &Connector,
    pushes: &mpsc::UnboundedSender<PushInfo>,
    token: &CancellationToken,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    delay: &mut Duration,
    max_delay: Duration,
) -> Option<redis::cluster_async::ClusterConnection> {
    loop {
        let connected = match connector
            .cluster_builder()
            .use_protocol(redis::ProtocolVersion::RESP3)
            .push_sender(pushes.clone())
            .build()
        {
            Ok(client) => client.get_async_connection().await,
            Err(err) => Err(err),
        };
        match connected {
            Ok(conn) => return Some(conn),
            Err(err) => {
                tracing::debug!(error = %err, "sharded subscriber connection failed; retrying in {delay:?}");
                if !backoff(token, commands, delay, max_delay).await {
                    return None;
                }
            }
        }
    }
}

async fn ssubscribe(
    conn: &mut redis::cluster_async::ClusterConnection,
    channels: &[String],
) -> redis::RedisResult<()> {
    // One SSUBSCRIBE per channel: a command's channels must share one slot.
    for channel in channels {
        conn.ssubscribe(channel).await?;
    }
    Ok(())
}

fn bytes_of(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(bytes) => Some(bytes),
        Value::SimpleString(text) => Some(text.as_bytes()),
        _ => None,
    }
}

fn channel_names(shared: &Shared) -> Vec<String> {
    shared
        .channels
        .lock()
        .expect("bus lock")
        .keys()
        .cloned()
        .collect()
}

/// Sleeps for the backoff while still accepting (and parking) subscribe commands.
/// Returns false when the task must stop.
async fn backoff(
    token: &CancellationToken,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    delay: &mut Duration,
    max_delay: Duration,
) -> bool {
    let sleep = tokio::time::sleep(*delay);
    tokio::pin!(sleep);
    *delay = (*delay * 2).min(max_delay);
    loop {
        tokio::select! {
            _ = token.cancelled() => return false,
            _ = &mut sleep => return true,
            command = commands.recv() => match command {
                None => return false,
                // The channel is already in the shared map; it is subscribed on reconnect.
                Some(Command::Subscribe(_, done)) => {
                    let _ = done.send(());
                }
            },
        }
    }
}

fn dispatch(shared: &Shared, channel: &str, payload: &[u8]) {
    let mut channels = shared.channels.lock().expect("bus lock");
    let Some(entry) = channels.get_mut(channel) else {
        return;
    };
    for wake in &entry.wakes {
        wake.raise();
    }
    if !entry.live.is_empty() {
        let payload = Bytes::copy_from_slice(payload);
        entry
            .live
            .retain(|sender| match sender.try_send(payload.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    shared.dropped.fetch_add(1, Ordering::Relaxed);
                    true
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
    }
}

fn wake_all(shared: &Shared) {
    let channels = shared.channels.lock().expect("bus lock");
    for wake in channels.values().flat_map(|entry| &entry.wakes) {
        wake.raise();
    }
}
