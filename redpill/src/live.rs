//! Live channels: fire-and-forget PUBLISH/SUBSCRIBE for data where loss is acceptable.
//!
//! A message published while a subscriber is disconnected is lost, by design. Subscriptions
//! come back by themselves after a reconnect.

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::client::{cmd, Client};
use crate::conn::Routed;
use crate::error::Result;

/// Publishes to and subscribes to live channels.
#[derive(Clone)]
pub struct Live {
    client: Client,
}

/// A subscription to one live channel. Messages arrive in publish order; when the receiver
/// falls `capacity` messages behind, newer ones are dropped (and counted by
/// [`Live::dropped`]) rather than buffered without bound.
pub struct Subscription {
    receiver: mpsc::Receiver<Bytes>,
}

impl Subscription {
    /// The next message, or `None` once the client has shut down.
    pub async fn recv(&mut self) -> Option<Bytes> {
        self.receiver.recv().await
    }

    /// A message if one is waiting, without waiting.
    pub fn try_recv(&mut self) -> Option<Bytes> {
        self.receiver.try_recv().ok()
    }
}

impl Live {
    /// Live channels of `client`.
    pub fn new(client: &Client) -> Live {
        Live {
            client: client.clone(),
        }
    }

    /// Publishes `message` on channel `name`. Returns how many subscriber connections got it.
    pub async fn publish(&self, name: &str, message: impl AsRef<[u8]>) -> Result<u64> {
        let mut conn = self.client.conn().await?;
        let receivers: u64 = redis::cmd(conn.publish_command())
            .arg(self.client.keys().live(name))
            .arg(message.as_ref())
            .query_async(&mut conn)
            .await?;
        Ok(receivers)
    }

    /// Publishes many `(channel, message)` pairs in one round trip.
    pub async fn publish_many<N: AsRef<str>, M: AsRef<[u8]>>(
        &self,
        messages: &[(N, M)],
    ) -> Result<()> {
        if messages.is_empty() {
            return Ok(());
        }
        let conn = self.client.conn().await?;
        let channels: Vec<String> = messages
            .iter()
            .map(|(name, _)| self.client.keys().live(name.as_ref()))
            .collect();
        let mut routed = Routed::new(&conn);
        for (channel, (_, message)) in channels.iter().zip(messages) {
            let mut publish = cmd(conn.publish_command(), channel);
            publish.arg(message.as_ref());
            routed.add(channel, publish);
        }
        routed.query::<redis::Value>(&conn).await?;
        Ok(())
    }

    /// Subscribes to channel `name`. Returns once Redis has confirmed the subscription (or,
    /// while Redis is unreachable, at once: it is made on reconnect).
    pub async fn subscribe(&self, name: &str, capacity: usize) -> Result<Subscription> {
        let receiver = self
            .client
            .inner
            .bus
            .live(&self.client.keys().live(name), capacity)
            .await;
        Ok(Subscription { receiver })
    }

    /// Live messages dropped so far because a subscriber fell behind.
    pub fn dropped(&self) -> u64 {
        self.client.inner.bus.dropped()
    }

    /// How many times the subscriber connection has been established (1 after the first
    /// connect, +1 per reconnect; on a cluster, +1 each time the subscriptions were made
    /// again after a node went away or a slot moved). Messages may have been missed before
    /// each increase: a reader that must not miss any catches up from what Redis keeps.
    pub fn connections(&self) -> u64 {
        self.client.inner.bus.connections()
    }
}
