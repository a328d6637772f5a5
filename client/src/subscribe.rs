//! [`Subscription`]: a topology's or a node's outputs from the notifier's Server-Sent Events,
//! resumed after every dropped connection with `Last-Event-ID` naming each node's last seq,
//! and with whatever the replay buffer no longer holds read from history.

use std::collections::{BTreeMap, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt as _};
use protocol::api::HistoryParams;
use protocol::notify::{event_id, Resync, OUTPUT_EVENT, POSITIONS_EVENT, RESYNC_EVENT};
use protocol::OutputEvent;
use reqwest::header::{ACCEPT, AUTHORIZATION};

use crate::sse::{SseEvent, SseReader};
use crate::{answer_error, node_path, topology_path, Client, Error, Result};

/// The longest wait between reconnects.
const MAX_RECONNECT_WAIT: Duration = Duration::from_secs(5);

/// Where a subscription starts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum StartAt {
    /// With the outputs made from now on.
    #[default]
    Now,
    /// After this seq, for every node (`0`: everything the replay buffers and history hold).
    AfterSeq(u64),
    /// Each named node after its seq (the last one a program received before it stopped);
    /// nodes not named from now.
    Positions(BTreeMap<String, u64>),
}

/// The output events of a topology (every node, later ones too) or of one node, in `seq`
/// order per node, each once: a [`Stream`] of `Result<OutputEvent>`.
///
/// When the connection to the notifier drops (a network failure, a notifier restart, a
/// stream quiet for longer than [`ClientBuilder::stream_idle_timeout`](crate::ClientBuilder::stream_idle_timeout)),
/// it reconnects, waiting longer after each failure up to 5 s, and resumes each node after
/// the last seq it gave. Outputs the notifier's replay buffer no longer holds (it says so
/// with a `resync`) are read from the node's history; outputs that history does not hold
/// either come as one [`Error::Gap`] item, and the stream goes on. A node deleted and made
/// anew counts from 1 again, and the stream follows it from there.
///
/// [`Client::subscribe`] returns it once the notifier has taken the subscription (or with the
/// error that kept it from doing so), so outputs made after that call returns all come. Once
/// open, it keeps trying to reconnect for as long as it is polled; [`Counters`] say how it
/// is going. It ends (`None` after an `Err` item) only when the notifier refuses it for good:
/// an unknown topology or node (`not_found`), a token it does not take (`unauthorized`), a
/// bad request. Dropping it closes the connection.
pub struct Subscription {
    inner: BoxStream<'static, Result<OutputEvent>>,
    counters: Arc<Counters>,
}

/// What a subscription has done so far; see [`Subscription::counters`].
#[derive(Debug, Default)]
pub struct Counters {
    connects: AtomicU64,
    failed_connects: AtomicU64,
    filled: AtomicU64,
    repeats: AtomicU64,
}

impl Counters {
    /// Connections opened (1 until the first reconnect).
    pub fn connects(&self) -> u64 {
        self.connects.load(Ordering::Relaxed)
    }

    /// Connections that failed (the notifier unreachable, or busy): the stream goes on
    /// trying, waiting longer each time up to 5 s, and this says it is.
    pub fn failed_connects(&self) -> u64 {
        self.failed_connects.load(Ordering::Relaxed)
    }

    /// Outputs read from history to fill gaps.
    pub fn filled_from_history(&self) -> u64 {
        self.filled.load(Ordering::Relaxed)
    }

    /// Outputs the notifier sent again after a reconnect, dropped.
    pub fn repeats_dropped(&self) -> u64 {
        self.repeats.load(Ordering::Relaxed)
    }
}

impl Subscription {
    /// Opens the first connection (retried as the client retries reads), so that once this
    /// returns the notifier has taken the subscription: every output made from then on
    /// reaches the stream.
    pub(crate) async fn open(
        client: Client,
        topology: &str,
        node: Option<&str>,
        start: StartAt,
    ) -> Result<Subscription> {
        let counters = Arc::new(Counters::default());
        let mut follower = Follower {
            client,
            topology: topology.to_owned(),
            node: node.map(str::to_owned),
            start: Some(start),
            cursors: BTreeMap::new(),
            connected_before: false,
            body: None,
            reader: SseReader::default(),
            ready: VecDeque::new(),
            failures: 0,
            done: false,
            counters: counters.clone(),
        };
        let retry = follower.client.retry;
        let mut attempt = 1;
        loop {
            match follower.connect().await {
                Ok(body) => {
                    follower.body = Some(body);
                    counters.connects.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Err(error) if attempt < retry.attempts && error.is_transient() => {
                    counters.failed_connects.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(retry.wait(attempt, &error)).await;
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }
        let inner = futures_util::stream::unfold(follower, |mut follower| async move {
            let item = follower.next().await?;
            Some((item, follower))
        })
        .boxed();
        Ok(Subscription { inner, counters })
    }

    /// What it has done so far: connections, outputs filled from history, repeats dropped.
    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }
}

impl Stream for Subscription {
    type Item = Result<OutputEvent>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.poll_next_unpin(cx)
    }
}

struct Follower {
    client: Client,
    topology: String,
    node: Option<String>,
    /// Where the first connection starts; taken by it.
    start: Option<StartAt>,
    /// Per node, the last seq given (or where its outputs start).
    cursors: BTreeMap<String, u64>,
    connected_before: bool,
    body: Option<BoxStream<'static, reqwest::Result<Bytes>>>,
    reader: SseReader,
    ready: VecDeque<Result<OutputEvent>>,
    failures: u32,
    done: bool,
    counters: Arc<Counters>,
}

impl Follower {
    async fn next(&mut self) -> Option<Result<OutputEvent>> {
        loop {
            if let Some(item) = self.ready.pop_front() {
                return Some(item);
            }
            if self.done {
                return None;
            }
            let Some(body) = &mut self.body else {
                if self.failures > 0 {
                    tokio::time::sleep(reconnect_wait(self.failures)).await;
                }
                match self.connect().await {
                    Ok(body) => {
                        self.counters.connects.fetch_add(1, Ordering::Relaxed);
                        self.body = Some(body);
                    }
                    Err(error) if error.is_transient() => {
                        self.counters
                            .failed_connects
                            .fetch_add(1, Ordering::Relaxed);
                        self.failures += 1;
                    }
                    Err(error) => {
                        self.done = true;
                        return Some(Err(error));
                    }
                }
                continue;
            };
            match tokio::time::timeout(self.client.stream_idle, body.next()).await {
                Ok(Some(Ok(bytes))) => {
                    self.failures = 0;
                    let mut events = Vec::new();
                    self.reader.feed(&bytes, &mut events);
                    for event in events {
                        self.handle(event).await;
                    }
                }
                // Ended, failed or silent for too long: gone; reconnect where it stopped.
                _ => {
                    self.body = None;
                    self.reader.reset();
                    self.failures += 1;
                }
            }
        }
    }

    /// Opens the stream: the first time where [`StartAt`] says, then after each node's last
    /// seq.
    async fn connect(&mut self) -> Result<BoxStream<'static, reqwest::Result<Bytes>>> {
        let path = match &self.node {
            Some(node) => node_path(&self.topology, node)?,
            None => topology_path(&self.topology)?,
        };
        let mut url = format!("{}{path}/stream", self.client.notifier);
        let mut resume_after = self.cursors.clone();
        if let Some(start) = &self.start {
            match start {
                StartAt::Now => {}
                StartAt::AfterSeq(seq) => url.push_str(&format!("?after_seq={seq}")),
                StartAt::Positions(positions) => resume_after.extend(positions.clone()),
            }
        }
        let mut request = self
            .client
            .http
            .get(&url)
            .header(ACCEPT, "text/event-stream");
        if let Some(token) = &self.client.token {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        if !resume_after.is_empty() {
            let id: Vec<String> = resume_after
                .iter()
                .map(|(node, seq)| event_id(node, *seq))
                .collect();
            request = request.header("last-event-id", id.join(","));
        }
        let response = request
            .send()
            .await
            .map_err(|error| Error::transport(&url, &error))?;
        if !response.status().is_success() {
            return Err(answer_error(response).await);
        }
        // The start is the first connection's; from now on the cursors say where each node
        // resumes (and a node the stream has not seen yet comes from history, from 1).
        if let Some(StartAt::Positions(positions)) = self.start.take() {
            self.cursors.extend(positions);
        }
        Ok(response.bytes_stream().boxed())
    }

    async fn handle(&mut self, event: SseEvent) {
        match event.event.as_str() {
            POSITIONS_EVENT => {
                let positions: BTreeMap<String, u64> = match serde_json::from_str(&event.data) {
                    Ok(positions) => positions,
                    Err(error) => return self.unreadable(POSITIONS_EVENT, &error),
                };
                for (node, seq) in positions {
                    if self.cursors.contains_key(&node) {
                        continue;
                    }
                    // A node made while the stream was away starts at its latest seq on
                    // this connection: what it output before comes from history.
                    if self.connected_before && seq > 0 {
                        self.fill(&node, 0, seq + 1).await;
                    }
                    self.cursors.insert(node, seq);
                }
                self.connected_before = true;
            }
            OUTPUT_EVENT => {
                let output: OutputEvent = match serde_json::from_str(&event.data) {
                    Ok(output) => output,
                    Err(error) => return self.unreadable(OUTPUT_EVENT, &error),
                };
                if let Some(&cursor) = self.cursors.get(&output.node) {
                    if output.seq <= cursor {
                        self.counters.repeats.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    if output.seq > cursor + 1 {
                        self.fill(&output.node, cursor, output.seq).await;
                    }
                }
                self.cursors.insert(output.node.clone(), output.seq);
                self.ready.push_back(Ok(output));
            }
            RESYNC_EVENT => {
                let resync: Resync = match serde_json::from_str(&event.data) {
                    Ok(resync) => resync,
                    Err(error) => return self.unreadable(RESYNC_EVENT, &error),
                };
                let cursor = self
                    .cursors
                    .get(&resync.node)
                    .copied()
                    .unwrap_or(resync.after_seq);
                if resync.next_seq > cursor + 1 {
                    self.fill(&resync.node, cursor, resync.next_seq).await;
                }
                // After a fill, or a node that counts from 1 again: it goes on at next_seq.
                self.cursors
                    .insert(resync.node, resync.next_seq.saturating_sub(1));
            }
            _ => {}
        }
    }

    fn unreadable(&mut self, what: &str, error: &serde_json::Error) {
        self.ready.push_back(Err(Error::Unexpected {
            url: self.client.notifier.clone(),
            status: 200,
            detail: format!("a {what} event does not read: {error}"),
        }));
    }

    /// Queues the outputs of `node` after `after` and before `before`, read from history;
    /// what cannot be read, after a few tries, as one [`Error::Gap`].
    async fn fill(&mut self, node: &str, after: u64, before: u64) {
        let want = before.saturating_sub(after + 1);
        let mut found = Vec::new();
        let mut last_error = None;
        let deadline = tokio::time::Instant::now() + self.client.history_wait;
        let mut attempt = 1;
        loop {
            match read_range(&self.client, &self.topology, node, after, before).await {
                Ok(events) if events.len() as u64 == want => {
                    found = events;
                    last_error = None;
                    break;
                }
                Ok(events) => found = events,
                Err(error) => last_error = Some(error),
            }
            let wait = reconnect_wait(attempt).min(Duration::from_secs(1));
            if tokio::time::Instant::now() + wait > deadline {
                break;
            }
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
        self.counters
            .filled
            .fetch_add(found.len() as u64, Ordering::Relaxed);
        let complete = found.len() as u64 == want;
        self.ready.extend(found.into_iter().map(Ok));
        if let Some(error) = last_error {
            self.ready.push_back(Err(error));
        }
        if !complete {
            self.ready.push_back(Err(Error::Gap {
                topology: self.topology.clone(),
                node: node.to_owned(),
                after_seq: after,
                next_seq: before,
            }));
        }
    }
}

/// History's outputs of `node` with `after < seq < before`, oldest first, while they run on
/// with no gap from `after`.
async fn read_range(
    client: &Client,
    topology: &str,
    node: &str,
    after: u64,
    before: u64,
) -> Result<Vec<OutputEvent>> {
    let mut events: Vec<OutputEvent> = Vec::new();
    let mut page = client
        .history(
            topology,
            node,
            &HistoryParams {
                after_seq: Some(after),
                before_seq: Some(before),
                limit: Some(protocol::history::MAX_HISTORY_LIMIT),
                order: Some("asc".to_owned()),
                ..HistoryParams::default()
            },
        )
        .await?;
    loop {
        for event in page.items {
            let expected = events.last().map_or(after, |last| last.seq) + 1;
            if event.seq != expected {
                return Ok(events);
            }
            events.push(event);
        }
        match page.next {
            Some(next) => page = client.next_page(&next).await?,
            None => return Ok(events),
        }
    }
}

/// The wait before reconnect `failures` (counting from 1): 100 ms, doubling up to 5 s.
fn reconnect_wait(failures: u32) -> Duration {
    Duration::from_millis(100)
        .saturating_mul(1 << failures.saturating_sub(1).min(8))
        .min(MAX_RECONNECT_WAIT)
}
