//! Request/reply over queues: requests go through a reliable queue per service, replies come
//! back on a list per requester, matched by correlation id, with a timeout on the caller side.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use redis::Value;
use tokio::sync::oneshot;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::client::{cmd, Client};
use crate::conn::Routed;
use crate::error::{Error, Result};
use crate::keys::Tag;
use crate::queue::{new_id, Queue};

/// How long an unread reply list survives its last reply: a requester that died leaves no garbage.
const REPLY_TTL_MS: u64 = 60_000;

/// Sends requests and waits for their replies. Clone it to share one reply listener.
#[derive(Clone)]
pub struct Requester {
    client: Client,
    replies_key: String,
    pending: Arc<Mutex<HashMap<String, oneshot::Sender<Reply>>>>,
    _listener: Arc<DropGuard>,
}

/// A reply as a responder sends it: a body, or an error message the caller receives as
/// [`Error::Remote`].
pub type Reply = std::result::Result<Bytes, String>;

impl Requester {
    /// A requester with its own reply list and a listener task that stops when the last
    /// clone is dropped.
    pub fn new(client: &Client) -> Requester {
        let replies_key =
            client
                .keys()
                .replies(&format!("{}-{}", client.consumer_id(), &new_id()[24..]));
        let pending: Arc<Mutex<HashMap<String, oneshot::Sender<Reply>>>> = Arc::default();
        let token = client.shutdown_token().child_token();
        tokio::spawn(listen(
            client.clone(),
            replies_key.clone(),
            Arc::clone(&pending),
            token.clone(),
        ));
        Requester {
            client: client.clone(),
            replies_key,
            pending,
            _listener: Arc::new(token.drop_guard()),
        }
    }

    /// Sends `body` to `service` and waits up to `timeout` for the reply.
    ///
    /// Fails with [`Error::Timeout`] (retryable) when no reply came in time — the request may
    /// still be handled later — and with [`Error::Remote`] when the service answered with an error.
    pub async fn request(&self, service: &str, body: &[u8], timeout: Duration) -> Result<Bytes> {
        let correlation = new_id();
        let deadline_ms = unix_ms() + timeout.as_millis() as u64;
        let mut envelope = format!("{}\n{deadline_ms}\n", self.replies_key).into_bytes();
        envelope.extend_from_slice(body);
        let (sender, receiver) = oneshot::channel();
        self.pending
            .lock()
            .expect("pending replies")
            .insert(correlation.clone(), sender);
        let queue = request_queue(&self.client, service);
        if let Err(err) = queue
            .push_with_ids(&[(correlation.as_str(), envelope.as_slice())])
            .await
        {
            self.pending
                .lock()
                .expect("pending replies")
                .remove(&correlation);
            return Err(err);
        }
        let outcome = tokio::time::timeout(timeout, receiver).await;
        self.pending
            .lock()
            .expect("pending replies")
            .remove(&correlation);
        match outcome {
            Ok(Ok(Ok(body))) => Ok(body),
            Ok(Ok(Err(message))) => Err(Error::Remote {
                service: service.to_owned(),
                message,
            }),
            Ok(Err(_)) => Err(Error::Closed),
            Err(_) => Err(Error::Timeout {
                what: format!("request to {service}"),
                after: timeout,
            }),
        }
    }
}

/// Takes requests for one service and answers them. Several responders of one service share
/// the requests; a responder that dies before answering has its requests re-delivered, so
/// handlers should be idempotent.
#[derive(Clone)]
pub struct Responder {
    client: Client,
    queue: Queue,
}

/// One request taken by a [`Responder`].
#[derive(Clone, Debug)]
pub struct Request {
    /// The correlation id.
    pub id: String,
    /// The request body.
    pub body: Bytes,
    reply_to: String,
    deadline_ms: u64,
}

impl Responder {
    /// A responder for `service`.
    pub fn new(client: &Client, service: &str) -> Responder {
        Responder {
            client: client.clone(),
            queue: request_queue(client, service),
        }
    }

    /// Waits up to `wait` for requests and takes up to `max`. Requests whose caller has
    /// already given up are dropped.
    pub async fn next(&self, max: usize, wait: Duration) -> Result<Vec<Request>> {
        let deliveries = self.queue.pull_wait(max, wait).await?;
        let now = unix_ms();
        let mut requests = Vec::with_capacity(deliveries.len());
        let mut expired = Vec::new();
        for delivery in deliveries {
            match decode_request(&delivery.id, &delivery.body) {
                Some(request) if request.deadline_ms >= now => requests.push(request),
                Some(_) => expired.push(delivery.id),
                None => {
                    tracing::warn!(id = %delivery.id, "dropping a malformed request");
                    expired.push(delivery.id);
                }
            }
        }
        if !expired.is_empty() {
            tracing::debug!(
                count = expired.len(),
                "dropping requests whose callers gave up"
            );
            self.queue.ack(&expired).await?;
        }
        Ok(requests)
    }

    /// Sends the replies and acknowledges their requests, in two round trips for the batch.
    /// `Err(message)` reaches the caller as [`Error::Remote`].
    pub async fn reply(&self, replies: Vec<(Request, Reply)>) -> Result<()> {
        if replies.is_empty() {
            return Ok(());
        }
        let conn = self.client.conn().await?;
        let mut routed = Routed::new(&conn);
        for (request, reply) in &replies {
            let (status, body): (&str, &[u8]) = match reply {
                Ok(body) => ("0", body),
                Err(message) => ("1", message.as_bytes()),
            };
            let mut message = format!("{}\n{status}\n", request.id).into_bytes();
            message.extend_from_slice(body);
            let to = request.reply_to.as_str();
            let mut push = cmd("RPUSH", to);
            push.arg(message);
            let mut expire = cmd("PEXPIRE", to);
            expire.arg(REPLY_TTL_MS);
            let mut wake = cmd(conn.publish_command(), &self.client.keys().wake(to));
            wake.arg("1");
            routed.add(to, push).add(to, expire).add(to, wake);
        }
        routed.query::<Value>(&conn).await?;
        let ids: Vec<&str> = replies
            .iter()
            .map(|(request, _)| request.id.as_str())
            .collect();
        self.queue.ack(&ids).await?;
        Ok(())
    }
}

fn request_queue(client: &Client, service: &str) -> Queue {
    Queue::new(client, &Tag::service(service), "requests")
}

async fn listen(
    client: Client,
    replies_key: String,
    pending: Arc<Mutex<HashMap<String, oneshot::Sender<Reply>>>>,
    token: CancellationToken,
) {
    let wake = client
        .inner
        .bus
        .wake(&[client.keys().wake(&replies_key)])
        .await;
    let poll = client.config().poll_interval;
    let connector = Arc::clone(&client.inner.connector);
    drop(client);
    loop {
        let notified = wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let popped: Result<Option<Vec<Vec<u8>>>> = async {
            let mut conn = connector.conn().await?;
            Ok(redis::cmd("LPOP")
                .arg(&replies_key)
                .arg(100)
                .query_async(&mut conn)
                .await?)
        }
        .await;
        let count = match popped {
            Ok(Some(replies)) => {
                let count = replies.len();
                let mut pending = pending.lock().expect("pending replies");
                for reply in replies {
                    if let Some((id, reply)) = decode_reply(&reply) {
                        if let Some(sender) = pending.remove(&id) {
                            let _ = sender.send(reply);
                        }
                    }
                }
                count
            }
            Ok(None) => 0,
            Err(err) => {
                tracing::debug!(error = %err, "reading replies failed; retrying");
                0
            }
        };
        if count == 100 {
            continue;
        }
        tokio::select! {
            _ = token.cancelled() => return,
            _ = &mut notified => {}
            _ = tokio::time::sleep(poll) => {}
        }
    }
}

fn decode_request(id: &str, envelope: &[u8]) -> Option<Request> {
    let first = envelope.iter().position(|&b| b == b'\n')?;
    let second = first + 1 + envelope[first + 1..].iter().position(|&b| b == b'\n')?;
    Some(Request {
        id: id.to_owned(),
        reply_to: std::str::from_utf8(&envelope[..first]).ok()?.to_owned(),
        deadline_ms: std::str::from_utf8(&envelope[first + 1..second])
            .ok()?
            .parse()
            .ok()?,
        body: Bytes::copy_from_slice(&envelope[second + 1..]),
    })
}

fn decode_reply(message: &[u8]) -> Option<(String, Reply)> {
    let first = message.iter().position(|&b| b == b'\n')?;
    let id = std::str::from_utf8(&message[..first]).ok()?.to_owned();
    let rest = &message[first + 1..];
    let (status, body) = (rest.first()?, rest.get(2..)?);
    let reply = match status {
        b'0' => Ok(Bytes::copy_from_slice(body)),
        _ => Err(String::from_utf8_lossy(body).into_owned()),
    };
    Some((id, reply))
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Requests and replies decode to what was encoded, bodies with newlines included.
    #[test]
    fn envelopes_round_trip() {
        let request =
            decode_request("c1", b"gorgon:{r.x}:replies\n1700000000000\nline1\nline2").unwrap();
        assert_eq!(request.reply_to, "gorgon:{r.x}:replies");
        assert_eq!(request.deadline_ms, 1_700_000_000_000);
        assert_eq!(&request.body[..], b"line1\nline2");
        assert_eq!(
            decode_reply(b"c1\n0\nok\n").unwrap(),
            ("c1".to_owned(), Ok(Bytes::from_static(b"ok\n")))
        );
        assert_eq!(
            decode_reply(b"c1\n1\nbad input").unwrap(),
            ("c1".to_owned(), Err("bad input".to_owned()))
        );
        assert!(decode_request("c1", b"no newline").is_none());
    }
}
