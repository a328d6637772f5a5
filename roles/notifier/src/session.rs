//! One connected socket, or one Server-Sent Events stream: its subscriptions, the last seq
//! it was sent per node, and the task that sends it each output once, in `seq` order per node.
//! Both transports share everything here but the last step, [`Outlet`].
//!
//! Everything a socket receives goes through its one task, in order: subscribe and
//! unsubscribe commands (from its event handlers), batches of live outputs (from the hub),
//! and catch-ups (when the hub or the live channel may have dropped something). A live
//! output whose seq is not the next one for its node is a gap: the task reads the node's
//! replay buffer and sends what is missing first, or a `resync` when the buffer no longer
//! holds it. A seq already sent is dropped. So a socket gets no gaps it is not told of, no
//! repeats and nothing out of order, however live messages are lost or delayed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse;
use protocol::auth::Grants;
use protocol::notify::{
    self, Ack, Resync, Subscription, OUTPUT_EVENT, POSITIONS_EVENT, RESYNC_EVENT,
};
use protocol::ErrorCode;
use serde::Serialize;
use socketioxide::extract::{AckSender, SocketRef};
use socketioxide::socket::Sid;
use socketioxide::{SendError, SocketError, SocketIo};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::hub::{Batch, Event, Follower, Hub, Lag};
use crate::replay::{Member, Reader};
use crate::Slot;

/// Requests of one socket that may wait for their answers; the next is refused as `busy`.
pub const COMMAND_QUEUE: usize = 64;

/// How long a socket waits before trying again when its socket.io buffer is full.
const FULL_BUFFER_WAIT: Duration = Duration::from_millis(2);

/// How long a catch-up waits before trying again while Redis is unreachable.
const RETRY_WAIT: Duration = Duration::from_millis(250);

/// What a socket's event handlers (or a stream's request) send its task.
pub enum Command {
    /// `subscribe`, with where to answer.
    Subscribe(Subscription, Reply),
    /// `unsubscribe`, with where to answer.
    Unsubscribe(Subscription, Reply),
}

impl Command {
    /// Where it is answered.
    pub fn into_reply(self) -> Reply {
        match self {
            Command::Subscribe(_, reply) | Command::Unsubscribe(_, reply) => reply,
        }
    }
}

/// Where a command is answered: a socket.io acknowledgement, or the request that opens a
/// stream (which answers with an HTTP error, or with the stream).
pub enum Reply {
    /// A socket.io acknowledgement.
    Ack(AckSender),
    /// The request of a stream.
    Request(oneshot::Sender<Ack>),
}

impl Reply {
    /// Sends `answer`; `Err` when a socket's buffer would not take it, with socket.io's
    /// error.
    pub fn send(self, answer: &Ack) -> Result<(), SendError> {
        match self {
            Reply::Ack(ack) => ack.send(answer),
            // A request that went away wants no answer; its stream's end ends the task.
            Reply::Request(request) => {
                request.send(answer.clone()).ok();
                Ok(())
            }
        }
    }
}

/// Where a session's events go.
pub enum Outlet {
    /// A socket.io socket: `output` and `resync` events.
    Socket(SocketRef),
    /// A Server-Sent Events stream, through its bounded channel: `output` events with the
    /// id `node:seq`, `resync` and `positions` events without one. `Sid` names it in the hub.
    Stream(mpsc::Sender<sse::Event>, Sid),
}

impl Outlet {
    fn id(&self) -> Sid {
        match self {
            Outlet::Socket(socket) => socket.id,
            Outlet::Stream(_, id) => *id,
        }
    }
}

/// What every socket's task shares.
pub struct Shared {
    /// The Redis reads.
    pub reader: Reader,
    /// The live fan-out.
    pub hub: Hub,
    /// The socket.io server, to look sockets up in their namespace.
    pub io: SocketIo,
    /// The most subscriptions per socket.
    pub max_subscriptions: usize,
    /// How often a socket's task checks that its socket is still there.
    pub liveness_check: Duration,
}

/// The socket has gone: its task ends.
struct Gone;

/// One socket's (or stream's) state, owned by its task.
pub struct Session {
    outlet: Outlet,
    /// Cancelled when the socket disconnects or the notifier stops.
    closed: CancellationToken,
    /// The socket's place in the connection count, given back when the task ends.
    _slot: Slot,
    grants: Arc<Grants>,
    shared: Arc<Shared>,
    follower: Follower,
    /// Whole-topology subscriptions.
    topologies: HashSet<String>,
    /// Single-node subscriptions.
    nodes: HashSet<Member>,
    /// Per node covered by a subscription: the last seq sent (or resumed after). A node of
    /// a followed topology without an entry was made after the subscription: it starts at 0.
    cursors: HashMap<Member, u64>,
    /// Events emitted, counted once per event: the handle is looked up once per socket.
    events_sent: metrics::Counter,
}

impl Session {
    /// Starts the task of `outlet`, which may do what `grants` allow, reads what its
    /// handlers send on `commands`, and holds `slot` for as long as it runs. The task ends
    /// when `closed` is cancelled (the socket disconnected, or the notifier stops), when
    /// `commands` closes, or when it finds the outlet gone: closed when it sends, or (a
    /// socket) no longer in its namespace when it looks, which it does at once and then
    /// every `Shared::liveness_check`.
    pub fn start(
        outlet: Outlet,
        grants: Arc<Grants>,
        shared: Arc<Shared>,
        backlog: usize,
        slot: Slot,
        closed: CancellationToken,
        commands: mpsc::Receiver<Command>,
    ) {
        let (batches, batch_receiver) = mpsc::channel(backlog);
        let follower = Follower {
            id: outlet.id(),
            batches,
            lag: Arc::new(Lag::default()),
        };
        let session = Session {
            outlet,
            closed,
            _slot: slot,
            grants,
            shared,
            follower,
            topologies: HashSet::new(),
            nodes: HashSet::new(),
            cursors: HashMap::new(),
            events_sent: metrics::counter!(protocol::stats::NOTIFIER_EVENTS),
        };
        tokio::spawn(session.run(commands, batch_receiver));
    }

    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut batches: mpsc::Receiver<Arc<Batch>>,
    ) {
        let lag = Arc::clone(&self.follower.lag);
        let token = self.closed.clone();
        // The first tick is at once: the socket may have gone before the task started. The
        // disconnect handler cancels `token` whenever socket.io runs it; these checks end the
        // task, and give the slot back, should a socket ever go without it.
        let mut liveness = tokio::time::interval(self.shared.liveness_check);
        liveness.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let step = tokio::select! {
                biased;
                _ = token.cancelled() => break,
                _ = liveness.tick() => if self.present() { Ok(()) } else { Err(Gone) },
                command = commands.recv() => match command {
                    Some(command) => self.command(command).await,
                    None => break,
                },
                _ = lag.marked() => {
                    if lag.take() {
                        self.catch_up(&token).await
                    } else {
                        Ok(())
                    }
                }
                batch = batches.recv() => match batch {
                    Some(batch) => self.deliver(&batch).await,
                    None => break,
                },
            };
            if step.is_err() {
                break;
            }
        }
        for topology in self.followed() {
            self.shared.hub.unfollow(&topology, self.outlet.id());
        }
        metrics::gauge!("gorgon_notifier_subscriptions")
            .decrement((self.topologies.len() + self.nodes.len()) as f64);
    }

    async fn command(&mut self, command: Command) -> Result<(), Gone> {
        match command {
            Command::Subscribe(subscription, reply) => self.subscribe(subscription, reply).await,
            Command::Unsubscribe(subscription, ack) => {
                let answer = self.unsubscribe(&subscription);
                self.answer(ack, &answer)
            }
        }
    }

    /// Checks and records a subscription, answers it with the positions (a stream: sends
    /// them as its first event), then replays what it asked for.
    async fn subscribe(&mut self, subscription: Subscription, ack: Reply) -> Result<(), Gone> {
        let refused = |code: ErrorCode, message: String| Ack::refused(code, message);
        let topology = subscription.topology.clone();
        let node = subscription.node.clone();
        if protocol::validate_slug(&topology).is_err() || !self.grants.reads(&topology) {
            let answer = refused(ErrorCode::NotFound, format!("no topology {topology:?}"));
            return self.answer(ack, &answer);
        }
        if let Some(node) = node
            .as_deref()
            .filter(|node| protocol::validate_slug(node).is_err())
        {
            let answer = refused(
                ErrorCode::NotFound,
                format!("no node {node:?} in topology {topology}"),
            );
            return self.answer(ack, &answer);
        }
        let known = match &node {
            None => self.topologies.contains(&topology),
            Some(node) => self.nodes.contains(&(topology.clone(), node.clone())),
        };
        if !known && self.topologies.len() + self.nodes.len() >= self.shared.max_subscriptions {
            let answer = refused(
                ErrorCode::TooManySubscriptions,
                format!(
                    "this socket already holds {} subscriptions, the most allowed \
                     (GORGON_NOTIFIER_MAX_SUBSCRIPTIONS); unsubscribe from one first",
                    self.shared.max_subscriptions
                ),
            );
            return self.answer(ack, &answer);
        }
        let ids = match self.shared.reader.nodes(&[&topology]).await {
            Ok(mut found) => found.pop().flatten(),
            Err(error) => return self.answer(ack, &unavailable(&error)),
        };
        let Some(ids) = ids else {
            let answer = refused(ErrorCode::NotFound, format!("no topology {topology:?}"));
            return self.answer(ack, &answer);
        };
        let covered: Vec<Member> = match &node {
            Some(node) if !ids.contains(node) => {
                let answer = refused(
                    ErrorCode::NotFound,
                    format!("no node {node:?} in topology {topology}"),
                );
                return self.answer(ack, &answer);
            }
            Some(node) => vec![(topology.clone(), node.clone())],
            None => ids.into_iter().map(|id| (topology.clone(), id)).collect(),
        };
        // Follow first, read positions second: an output committed in between arrives live
        // and is dropped as already covered, rather than falling between the two.
        if let Err(error) = self
            .shared
            .hub
            .follow(&topology, self.follower.clone())
            .await
        {
            return self.answer(ack, &unavailable(&error));
        }
        let seqs = match self.shared.reader.seqs(&covered).await {
            Ok(seqs) => seqs,
            Err(error) => {
                if !self.covers_topology(&topology) {
                    self.shared.hub.unfollow(&topology, self.outlet.id());
                }
                return self.answer(ack, &unavailable(&error));
            }
        };
        if !known {
            metrics::gauge!("gorgon_notifier_subscriptions").increment(1.0);
        }
        let mut positions = BTreeMap::new();
        let mut replay: Vec<(Member, u64)> = Vec::new();
        for (member, latest) in covered.into_iter().zip(seqs) {
            let latest = latest.unwrap_or(0);
            let start = if self.covers(&member) {
                // Already covered by another subscription of this socket: it goes on.
                self.cursor(&member)
            } else {
                let start = subscription
                    .after_seq
                    .as_ref()
                    .and_then(|after| after.for_node(&member.1))
                    .unwrap_or(latest);
                self.cursors.insert(member.clone(), start);
                if start != latest {
                    replay.push((member.clone(), latest));
                }
                start
            };
            positions.insert(member.1.clone(), start);
        }
        match &node {
            None => self.topologies.insert(topology.clone()),
            Some(node) => self.nodes.insert((topology.clone(), node.clone())),
        };
        if let Outlet::Stream(sender, _) = &self.outlet {
            let event = sse::Event::default()
                .event(POSITIONS_EVENT)
                .json_data(&positions)
                .expect("positions encode");
            self.send_stream(sender, event).await?;
        }
        self.answer(ack, &Ack::done(Some(positions)))?;
        self.replay(&replay).await
    }

    /// Ends a subscription; nodes no other subscription covers are forgotten.
    fn unsubscribe(&mut self, subscription: &Subscription) -> Ack {
        let topology = &subscription.topology;
        let removed = match &subscription.node {
            None => self.topologies.remove(topology),
            Some(node) => self.nodes.remove(&(topology.clone(), node.clone())),
        };
        if removed {
            metrics::gauge!("gorgon_notifier_subscriptions").decrement(1.0);
        }
        let (topologies, nodes) = (&self.topologies, &self.nodes);
        self.cursors
            .retain(|member, _| topologies.contains(&member.0) || nodes.contains(member));
        if !self.covers_topology(topology) {
            self.shared.hub.unfollow(topology, self.outlet.id());
        }
        Ack::done(None)
    }

    /// Sends the outputs of one live batch that this socket follows, filling gaps first.
    async fn deliver(&mut self, batch: &Batch) -> Result<(), Gone> {
        for event in &batch.events {
            let member = (batch.topology.clone(), event.node.clone());
            if !self.covers(&member) {
                continue;
            }
            let cursor = self.cursor(&member);
            if event.seq <= cursor {
                continue;
            }
            if event.seq > cursor + 1 {
                let want = [(member.clone(), cursor, event.seq)];
                match self.shared.reader.buffers(&want).await {
                    Ok(mut buffers) => {
                        let buffer = buffers.pop().unwrap_or_default();
                        self.fill(&member, buffer, event.seq).await?;
                    }
                    Err(error) => {
                        // Not now: the catch-up retries until Redis answers.
                        tracing::debug!(%error, "replay buffer unreadable; catching up later");
                        self.follower.lag.mark();
                        continue;
                    }
                }
            }
            if event.seq == self.cursor(&member) + 1 {
                self.emit_output(event).await?;
                self.cursors.insert(member, event.seq);
            }
        }
        Ok(())
    }

    /// Sends every node this socket covers whatever it has not been sent: for when live
    /// outputs may have been lost. Tries again while Redis is unreachable.
    async fn catch_up(&mut self, token: &CancellationToken) -> Result<(), Gone> {
        metrics::counter!("gorgon_notifier_catch_ups_total").increment(1);
        loop {
            match self.try_catch_up().await {
                Ok(result) => return result,
                Err(error) => {
                    tracing::debug!(%error, "catch-up failed; trying again");
                    tokio::select! {
                        _ = token.cancelled() => return Err(Gone),
                        _ = tokio::time::sleep(RETRY_WAIT) => {}
                    }
                    if !self.present() {
                        return Err(Gone);
                    }
                }
            }
        }
    }

    async fn try_catch_up(&mut self) -> redpill::Result<Result<(), Gone>> {
        let topologies: Vec<&str> = self.topologies.iter().map(String::as_str).collect();
        let found = self.shared.reader.nodes(&topologies).await?;
        let mut members: HashSet<Member> = self.nodes.clone();
        for (topology, ids) in topologies.iter().zip(found) {
            for id in ids.unwrap_or_default() {
                members.insert(((*topology).to_owned(), id));
            }
        }
        let members: Vec<Member> = members.into_iter().collect();
        let seqs = self.shared.reader.seqs(&members).await?;
        let behind: Vec<(Member, u64)> = members
            .into_iter()
            .zip(seqs)
            .filter_map(|(member, latest)| {
                let latest = latest?;
                (latest != self.cursor(&member)).then_some((member, latest))
            })
            .collect();
        self.replay_or_fail(&behind).await
    }

    /// Sends each node's outputs after its cursor up to `latest`, from its replay buffer.
    async fn replay(&mut self, nodes: &[(Member, u64)]) -> Result<(), Gone> {
        match self.replay_or_fail(nodes).await {
            Ok(result) => result,
            Err(error) => {
                tracing::debug!(%error, "replay buffers unreadable; catching up later");
                self.follower.lag.mark();
                Ok(())
            }
        }
    }

    async fn replay_or_fail(
        &mut self,
        nodes: &[(Member, u64)],
    ) -> redpill::Result<Result<(), Gone>> {
        if nodes.is_empty() {
            return Ok(Ok(()));
        }
        let wants: Vec<(Member, u64, u64)> = nodes
            .iter()
            .map(|(member, latest)| (member.clone(), self.cursor(member), *latest))
            .collect();
        let buffers = self.shared.reader.buffers(&wants).await?;
        for ((member, latest), buffer) in nodes.iter().zip(buffers) {
            if let Err(gone) = self.fill(member, buffer, latest + 1).await {
                return Ok(Err(gone));
            }
        }
        Ok(Ok(()))
    }

    /// Sends `member` what `buffer` holds after its cursor. When the buffer does not reach
    /// back to the cursor (or the node counts from 1 again), first a `resync` naming what
    /// will not come. `resume_at` is where the node is known to go on when the buffer is
    /// empty: the seq of the live output that showed the gap, or the latest seq plus one.
    async fn fill(
        &mut self,
        member: &Member,
        buffer: Vec<Event>,
        resume_at: u64,
    ) -> Result<(), Gone> {
        let cursor = self.cursor(member);
        let available_from = buffer.first().map_or(resume_at, |event| event.seq);
        let newest = buffer
            .last()
            .map_or(resume_at.saturating_sub(1), |event| event.seq);
        let restarted = newest < cursor;
        let mut sent = cursor;
        if restarted || available_from > cursor + 1 {
            let resync = Resync {
                topology: member.0.clone(),
                node: member.1.clone(),
                after_seq: cursor,
                next_seq: available_from,
            };
            self.emit_resync(&resync).await?;
            metrics::counter!("gorgon_notifier_resyncs_total").increment(1);
            sent = available_from.saturating_sub(1);
        }
        for event in &buffer {
            if event.seq > sent {
                self.emit_output(event).await?;
                metrics::counter!("gorgon_notifier_outputs_replayed_total").increment(1);
                sent = event.seq;
            }
        }
        self.cursors.insert(member.clone(), sent);
        Ok(())
    }

    fn covers(&self, member: &Member) -> bool {
        self.topologies.contains(&member.0) || self.nodes.contains(member)
    }

    fn covers_topology(&self, topology: &str) -> bool {
        self.topologies.contains(topology) || self.nodes.iter().any(|(of, _)| of == topology)
    }

    /// The topologies this socket follows in the hub.
    fn followed(&self) -> HashSet<String> {
        self.topologies
            .iter()
            .cloned()
            .chain(self.nodes.iter().map(|(topology, _)| topology.clone()))
            .collect()
    }

    /// Whether the socket is still connected to its namespace (or the stream's body still
    /// read). socket.io takes a socket out of its namespace whenever it goes (it clears the
    /// flag first), whether or not it ran the disconnect handler, so a socket that is not
    /// there is gone for good.
    fn present(&self) -> bool {
        match &self.outlet {
            Outlet::Socket(socket) => {
                socket.connected()
                    && self
                        .shared
                        .io
                        .of(socket.ns())
                        .and_then(|namespace| namespace.get_socket(socket.id))
                        .is_some()
            }
            Outlet::Stream(sender, _) => !sender.is_closed(),
        }
    }

    fn cursor(&self, member: &Member) -> u64 {
        self.cursors.get(member).copied().unwrap_or(0)
    }

    async fn emit_output(&self, event: &Event) -> Result<(), Gone> {
        match &self.outlet {
            Outlet::Socket(socket) => self.emit(socket, OUTPUT_EVENT, &*event.raw).await?,
            Outlet::Stream(sender, _) => {
                let sent = sse::Event::default()
                    .event(OUTPUT_EVENT)
                    .id(notify::event_id(&event.node, event.seq))
                    .data(event.raw.get());
                self.send_stream(sender, sent).await?;
            }
        }
        self.events_sent.increment(1);
        Ok(())
    }

    async fn emit_resync(&self, resync: &Resync) -> Result<(), Gone> {
        match &self.outlet {
            Outlet::Socket(socket) => self.emit(socket, RESYNC_EVENT, resync).await,
            Outlet::Stream(sender, _) => {
                let sent = sse::Event::default()
                    .event(RESYNC_EVENT)
                    .json_data(resync)
                    .expect("a resync encodes");
                self.send_stream(sender, sent).await
            }
        }
    }

    /// Sends `event` down a stream, waiting while its client does not read (and the stream is
    /// still open, and the notifier not stopping).
    async fn send_stream(
        &self,
        sender: &mpsc::Sender<sse::Event>,
        event: sse::Event,
    ) -> Result<(), Gone> {
        tokio::select! {
            sent = sender.send(event) => sent.map_err(|_| Gone),
            _ = self.closed.cancelled() => Err(Gone),
        }
    }

    /// Emits `event` on `socket`, waiting while its buffer is full (and the socket still
    /// there).
    async fn emit<T: Serialize + ?Sized>(
        &self,
        socket: &SocketRef,
        event: &str,
        data: &T,
    ) -> Result<(), Gone> {
        loop {
            match socket.emit(event, data) {
                Ok(()) => return Ok(()),
                Err(SendError::Socket(SocketError::InternalChannelFull)) => {
                    if self.closed.is_cancelled() || !self.present() {
                        return Err(Gone);
                    }
                    tokio::time::sleep(FULL_BUFFER_WAIT).await;
                }
                Err(SendError::Socket(SocketError::Closed)) => return Err(Gone),
                Err(SendError::Serialize(error)) => {
                    tracing::error!(%error, event, "an event could not be encoded; not sent");
                    return Ok(());
                }
            }
        }
    }

    /// Answers `reply` with `answer`. socket.io cannot keep an acknowledgement for later, so
    /// one that meets a full socket buffer is dropped (and logged); the client's ack times
    /// out and it may subscribe again.
    fn answer(&self, reply: Reply, answer: &Ack) -> Result<(), Gone> {
        match reply.send(answer) {
            Ok(()) => Ok(()),
            Err(SendError::Socket(SocketError::Closed)) => Err(Gone),
            Err(error) => {
                metrics::counter!("gorgon_notifier_acks_dropped_total").increment(1);
                tracing::warn!(socket = %self.outlet.id(), %error, "an acknowledgement was not sent (raise GORGON_NOTIFIER_SOCKET_BUFFER if the buffer was full)");
                Ok(())
            }
        }
    }
}

fn unavailable(error: &redpill::Error) -> Ack {
    tracing::warn!(%error, "a subscription could not be made: Redis did not answer");
    Ack::refused(
        ErrorCode::Unavailable,
        "the notifier cannot reach Redis just now; subscribe again in a moment",
    )
}
