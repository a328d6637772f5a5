//! One SUBSCRIBE connection per client: wake-up hints and live channels, re-subscribed after
//! every reconnect.
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
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_util::sync::CancellationToken;

/// Handle to the subscriber task.
pub(crate) struct Bus {
    shared: Arc<Shared>,
    commands: mpsc::UnboundedSender<Command>,
}

#[derive(Default)]
struct Shared {
    channels: Mutex<HashMap<String, Channel>>,
    /// Live messages dropped because a receiver was full.
    dropped: AtomicU64,
    /// Completed (re)connections, for tests and stats.
    connections: AtomicU64,
}

#[derive(Default)]
struct Channel {
    wake: Option<Arc<Notify>>,
    live: Vec<mpsc::Sender<Bytes>>,
}

/// Channels are never unsubscribed: a client keeps what it subscribed until it closes.
enum Command {
    Subscribe(String, oneshot::Sender<()>),
}

impl Bus {
    pub(crate) fn start(
        client: redis::Client,
        max_delay: Duration,
        ping_timeout: Duration,
        token: CancellationToken,
    ) -> Bus {
        let shared = Arc::new(Shared::default());
        let (commands, receiver) = mpsc::unbounded_channel();
        tokio::spawn(run(
            client,
            Arc::clone(&shared),
            receiver,
            max_delay,
            ping_timeout,
            token,
        ));
        Bus { shared, commands }
    }

    /// The notifier woken whenever something is published on `channel`, subscribing on first use.
    pub(crate) async fn wake(&self, channel: &str) -> Arc<Notify> {
        let (notify, new) = {
            let mut channels = self.shared.channels.lock().expect("bus lock");
            let entry = channels.entry(channel.to_owned()).or_default();
            let new = entry.wake.is_none() && entry.live.is_empty();
            (
                Arc::clone(entry.wake.get_or_insert_with(|| Arc::new(Notify::new()))),
                new,
            )
        };
        if new {
            self.subscribe(channel).await;
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
            let new = entry.wake.is_none() && entry.live.is_empty();
            entry.live.push(sender);
            new
        };
        if new {
            self.subscribe(channel).await;
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
    async fn subscribe(&self, channel: &str) {
        let (done, confirmed) = oneshot::channel();
        if self
            .commands
            .send(Command::Subscribe(channel.to_owned(), done))
            .is_ok()
        {
            let _ = confirmed.await;
        }
    }
}

async fn run(
    client: redis::Client,
    shared: Arc<Shared>,
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
        let names: Vec<String> = shared
            .channels
            .lock()
            .expect("bus lock")
            .keys()
            .cloned()
            .collect();
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
        wake_all(&shared);

        let mut keepalive = tokio::time::interval(Duration::from_secs(5).min(ping_timeout * 2));
        keepalive.tick().await;
        loop {
            tokio::select! {
                _ = token.cancelled() => return,
                command = commands.recv() => {
                    let Some(command) = command else { return };
                    let Command::Subscribe(name, done) = command;
                    let result = sink.subscribe(&name).await;
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
                    dispatch(&shared, message.get_channel_name(), message.get_payload_bytes());
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
    if let Some(wake) = &entry.wake {
        wake.notify_waiters();
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
    for entry in channels.values() {
        if let Some(wake) = &entry.wake {
            wake.notify_waiters();
        }
    }
}
