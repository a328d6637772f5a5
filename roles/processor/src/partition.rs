//! One owned partition: pull a batch, run it, commit it in one fenced script, deliver the
//! outbox, publish the outputs live; until the lease is lost or the partition is handed over.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use layout::{NodeRecord, OUTPUT_TOPIC_BOUND};
use redpill::{Client, Grant, Lease, Live, Outbox, Queue, Topic};
use tokio_util::sync::CancellationToken;

use crate::batch::{self, Plan};
use crate::registry::Registry;

/// Settings every partition of a processor shares.
pub struct Settings {
    /// The deployment's partition count.
    pub partitions: u32,
    /// The most messages per batch.
    pub batch_size: usize,
    /// Deliveries before a failing message is dead-lettered.
    pub max_attempts: u32,
    /// The most recent outputs kept per node for socket.io clients that resume (0: none).
    pub replay_buffer: usize,
    /// Test-only: abort the process right after the first commit that has something for the
    /// outbox, before delivering it (`GORGON_FAILPOINT=after_commit`).
    pub abort_after_commit: bool,
    /// Test-only: wait this long between running a batch and committing it
    /// (`GORGON_FAILPOINT=batch_delay_ms:<n>`), so a pause lands between the two.
    pub batch_delay: Option<Duration>,
}

/// How a partition worker ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Exit {
    /// Asked to stop: it finished its batch, handed back what it held and released the lease.
    HandedOver,
    /// Its lease was lost (expired or taken): it stopped without writing anything more.
    Lost,
}

/// A partition this processor owns.
pub struct Partition {
    client: Client,
    number: u32,
    queue: Queue,
    lease: Lease,
    grant: Grant,
    outbox: Outbox,
    outputs: Topic,
    live: Live,
    registry: Arc<Registry>,
    settings: Arc<Settings>,
    nodes: HashMap<String, NodeRecord>,
    /// Whether every node of `nodes` runs a built-in function (see [`INLINE_BATCH`]).
    builtin_only: bool,
    /// Entries this partition may still append to its output shard before checking again.
    room: u64,
}

/// A batch of at most this many messages, to nodes that all run built-in functions (short
/// and bounded calls), and making no node (a node made in the batch could run a function of
/// the deployment's own), runs on the async thread that pulled it; any other batch runs on
/// a blocking thread, so a slow function delays nothing but its own partition. At low rates
/// batches hold a message or two, and the hand-off to a blocking thread and back cost the
/// processor more than the batch itself (a third of its CPU at 5 000 messages/s).
const INLINE_BATCH: usize = 64;

/// Why a step failed.
enum Failure {
    /// The lease is gone: stop at once.
    Lost,
    /// Redis trouble: try again after a pause, from what Redis holds.
    Retry(redpill::Error),
}

impl From<redpill::Error> for Failure {
    fn from(err: redpill::Error) -> Self {
        match err {
            redpill::Error::StaleEpoch { .. } => Failure::Lost,
            other => Failure::Retry(other),
        }
    }
}

impl Partition {
    /// Partition `number`, held with `grant` of `lease`.
    pub fn new(
        client: &Client,
        number: u32,
        lease: Lease,
        grant: Grant,
        registry: Arc<Registry>,
        settings: Arc<Settings>,
    ) -> Partition {
        Partition {
            client: client.clone(),
            number,
            queue: layout::input_queue(client, number).fenced_by(&lease, &grant),
            outbox: layout::partition_outbox(client, number),
            outputs: layout::output_topic(client, settings.partitions),
            builtin_only: false,
            room: 0,
            live: Live::new(client),
            lease,
            grant,
            registry,
            settings,
            nodes: HashMap::new(),
        }
    }

    /// Works the partition until `stop` is cancelled (then hands it over) or the lease is lost.
    pub async fn run(mut self, stop: CancellationToken) -> Exit {
        let mut pause = Duration::from_millis(100);
        loop {
            match self.recover().await {
                Ok(()) => break,
                Err(Failure::Lost) => return Exit::Lost,
                Err(Failure::Retry(err)) => {
                    tracing::warn!(partition = self.number, error = %err, "cannot take up the partition yet; retrying in {pause:?}");
                    if sleep_or_stop(&stop, &mut pause).await {
                        return self.hand_over().await;
                    }
                }
            }
        }
        tracing::debug!(
            partition = self.number,
            epoch = self.grant.epoch,
            nodes = self.nodes.len(),
            "partition taken up"
        );
        let mut pause = Duration::from_millis(100);
        while !stop.is_cancelled() {
            match self.step().await {
                Ok(()) => pause = Duration::from_millis(100),
                Err(Failure::Lost) => {
                    tracing::warn!(
                        partition = self.number,
                        epoch = self.grant.epoch,
                        "lease lost; stopping without writing anything more"
                    );
                    return Exit::Lost;
                }
                Err(Failure::Retry(err)) => {
                    tracing::warn!(partition = self.number, error = %err, "batch not committed; retrying in {pause:?} from what Redis holds");
                    if sleep_or_stop(&stop, &mut pause).await {
                        break;
                    }
                    if let Err(Failure::Lost) = self.recover().await {
                        return Exit::Lost;
                    }
                }
            }
        }
        self.hand_over().await
    }

    /// Makes the cached state what Redis holds: re-queues what a previous holder (or this
    /// one, before a failed commit) had in flight, reloads the nodes, delivers the outbox.
    async fn recover(&mut self) -> Result<(), Failure> {
        // Taking over the queue is not fenced by the lease: make sure it is still ours, or a
        // processor that lost the partition while Redis was away would disturb its new owner.
        match self.lease.holder().await? {
            Some((holder, _)) if holder == self.grant => {}
            _ => return Err(Failure::Lost),
        }
        self.queue.release().await?;
        self.queue.take_over().await?;
        let nodes = layout::read_partition_nodes(&self.client, self.number).await?;
        self.nodes.clear();
        for (member, record) in nodes {
            match record {
                Some(state) => {
                    self.nodes.insert(member, state);
                }
                None => {
                    tracing::error!(partition = self.number, node = %member, "node state in Redis is unreadable; the node is skipped until it is written again")
                }
            }
        }
        self.check_builtin_only();
        self.deliver_outbox().await
    }

    fn check_builtin_only(&mut self) {
        self.builtin_only = self
            .nodes
            .values()
            .all(|node| self.registry.is_builtin(&node.function));
    }

    /// One batch: pull, run, commit, deliver, publish.
    async fn step(&mut self) -> Result<(), Failure> {
        if self.room == 0 {
            let len = self.outputs.make_room(self.number as usize).await?;
            self.room = OUTPUT_TOPIC_BOUND.saturating_sub(len);
            if self.room == 0 {
                tracing::warn!(
                    partition = self.number,
                    bound = OUTPUT_TOPIC_BOUND,
                    "output topic shard full: waiting for the archive to catch up"
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
                return Ok(());
            }
        }
        let batch = self
            .queue
            .pull_wait(self.settings.batch_size, Duration::from_millis(250))
            .await?;
        if batch.is_empty() {
            return Ok(());
        }
        let pulled = batch.len() as u64;
        let context = batch::Context {
            partition: self.number,
            partitions: self.settings.partitions,
            max_attempts: self.settings.max_attempts,
            registry: Arc::clone(&self.registry),
            now_ms: protocol::Timestamp::now().unix_ms(),
        };
        let inline = self.builtin_only
            && batch.len() <= INLINE_BATCH
            && !batch
                .iter()
                .any(|delivery| protocol::Envelope::may_be_upsert(&delivery.body));
        let plan = if inline {
            batch::run(&self.nodes, &batch, &context)
        } else {
            // Functions run off the async threads, so a slow one delays nothing but this
            // partition.
            let nodes = std::mem::take(&mut self.nodes);
            let (nodes, plan) = tokio::task::spawn_blocking(move || {
                let plan = batch::run(&nodes, &batch, &context);
                (nodes, plan)
            })
            .await
            .expect("batch computation does not panic: functions run under catch_unwind");
            self.nodes = nodes;
            plan
        };
        if let Some(delay) = self.settings.batch_delay {
            tokio::time::sleep(delay).await;
        }
        if plan.outputs.iter().any(|output| output.archive) {
            self.room -= 1;
        }
        let commit_started = Instant::now();
        if let Err(failure) = self.commit(&plan).await {
            if let Failure::Lost = failure {
                tracing::warn!(
                    partition = self.number,
                    epoch = self.grant.epoch,
                    "commit rejected: the lease was lost, nothing of the batch was written"
                );
            }
            return Err(failure);
        }
        if self.settings.abort_after_commit && !plan.remote.is_empty() {
            tracing::error!(
                partition = self.number,
                "failpoint after_commit: aborting before the outbox is delivered"
            );
            std::process::abort();
        }
        record_batch(&plan, pulled, commit_started.elapsed());
        // A node made, deleted or given another function may change whether the partition
        // runs only built-ins.
        let mut functions_changed = false;
        for (key, state) in plan.dirty {
            match state {
                Some(state) => {
                    let before = self.nodes.get(&key);
                    functions_changed |=
                        before.is_none_or(|before| before.function != state.function);
                    let state = state.as_written(before, self.settings.replay_buffer > 0);
                    self.nodes.insert(key, state);
                }
                None => {
                    functions_changed |= self.nodes.remove(&key).is_some();
                }
            }
        }
        if functions_changed {
            self.check_builtin_only();
        }
        // Nothing else writes the outbox, so it holds something only when this batch (or one
        // before a failure, delivered by `recover`) appended to it.
        let delivered = if plan.remote.is_empty() {
            Ok(())
        } else {
            self.deliver_outbox().await
        };
        // The batch is committed whatever became of its delivery (`recover`, or the next
        // owner, delivers the outbox again), so its outputs go out live all the same: a node
        // whose last outputs were never published would leave clients without them until
        // its next output showed the gap.
        if !plan.outputs.is_empty() {
            // One live message per topology per batch: a JSON array of its output events.
            let mut by_topology: Vec<(String, Vec<&str>)> = Vec::new();
            for output in &plan.outputs {
                let channel = layout::live_outputs(&output.topology);
                match by_topology.iter_mut().find(|(name, _)| *name == channel) {
                    Some((_, texts)) => texts.push(&output.text),
                    None => by_topology.push((channel, vec![output.text.as_str()])),
                }
            }
            let messages: Vec<(String, String)> = by_topology
                .into_iter()
                .map(|(channel, texts)| (channel, json_array(&texts)))
                .collect();
            if let Err(err) = self.live.publish_many(&messages).await {
                tracing::debug!(partition = self.number, error = %err, "live outputs not published (they are archived all the same)");
            }
        }
        delivered
    }

    /// The batch's one fenced write of everything its plan holds: node records and replay
    /// buffers, the output topic entry, forwards, dead letters, retries and acks.
    async fn commit(&self, plan: &Plan) -> Result<(), Failure> {
        let writes = plan.node_writes(&self.nodes, self.settings.replay_buffer);
        let mut write = layout::write_nodes(
            self.lease.fenced(&self.grant),
            &self.client,
            self.number,
            &writes,
        );
        // One topic entry per batch: the JSON array of its output events that are archived.
        let texts: Vec<&str> = plan
            .outputs
            .iter()
            .filter(|output| output.archive)
            .map(|output| output.text.as_str())
            .collect();
        if !texts.is_empty() {
            let entry = json_array(&texts);
            write = write.publish_to_topic(&self.outputs, self.number as usize, &[entry]);
        }
        let local: Vec<(&str, &[u8])> = plan
            .local
            .iter()
            .map(|(id, body)| (id.as_str(), body.as_slice()))
            .collect();
        write = write.push(&self.queue, &local);
        let remote_queues: HashMap<u32, Queue> = plan
            .remote
            .iter()
            .map(|(partition, _, _)| (*partition, layout::input_queue(&self.client, *partition)))
            .collect();
        let remote: Vec<(&Queue, &str, &[u8])> = plan
            .remote
            .iter()
            .map(|(partition, id, body)| (&remote_queues[partition], id.as_str(), body.as_slice()))
            .collect();
        write = write.append(&self.outbox, &remote);
        for dead in &plan.dead {
            write = write.dead_letter(
                &self.queue,
                &dead.id,
                &dead.body,
                dead.attempts,
                &dead.error,
            );
        }
        let retries: Vec<&str> = plan.retries.iter().map(|(id, _)| id.as_str()).collect();
        write = write
            .ack(&self.queue, &plan.acks)
            .retry(&self.queue, &retries);
        if write.is_empty() {
            return Ok(());
        }
        match write.commit().await {
            Ok(_) => Ok(()),
            Err(redpill::Error::NotHeld { id }) => {
                tracing::warn!(partition = self.number, %id, "batch not applied: its messages were re-queued meanwhile");
                Err(Failure::Retry(redpill::Error::NotHeld { id }))
            }
            Err(err) => Err(err.into()),
        }
    }

    async fn deliver_outbox(&self) -> Result<(), Failure> {
        while self.outbox.deliver(&self.lease, &self.grant).await? == redpill::MAX_DELIVER {}
        Ok(())
    }

    /// Graceful end: deliver what is committed, hand back what is held, release the lease.
    async fn hand_over(self) -> Exit {
        let number = self.number;
        let result: Result<(), redpill::Error> = async {
            if let Err(Failure::Retry(err)) = self.deliver_outbox().await {
                return Err(err);
            }
            self.queue.release().await?;
            self.lease.release(&self.grant).await?;
            Ok(())
        }
        .await;
        match result {
            Ok(()) => tracing::debug!(partition = number, "partition handed over"),
            Err(err) => {
                tracing::warn!(partition = number, error = %err, "partition not handed over cleanly; its lease expires by itself")
            }
        }
        Exit::HandedOver
    }
}

/// The stats of a committed batch: messages in, outputs per topology, failures, the commit's
/// time and each output's end-to-end latency (inject accepted → output committed).
fn record_batch(plan: &Plan, pulled: u64, commit: Duration) {
    use protocol::stats;
    metrics::counter!(stats::MESSAGES_IN).increment(pulled);
    metrics::histogram!(stats::BATCH_COMMIT).record(commit.as_secs_f64());
    if plan.function_errors > 0 {
        metrics::counter!(stats::FUNCTION_ERRORS).increment(plan.function_errors);
    }
    if !plan.retries.is_empty() {
        metrics::counter!(stats::RETRIES).increment(plan.retries.len() as u64);
    }
    if !plan.dead.is_empty() {
        metrics::counter!(stats::DEAD_LETTERED).increment(plan.dead.len() as u64);
    }
    if plan.outputs.is_empty() {
        return;
    }
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|since| since.as_micros() as i64)
        .unwrap_or(0);
    let latency = metrics::histogram!(stats::E2E_LATENCY);
    let mut by_topology: Vec<(&str, u64)> = Vec::new();
    for output in &plan.outputs {
        latency.record((now_us - output.injected_at_ms * 1_000).max(0) as f64 / 1e6);
        match by_topology
            .iter_mut()
            .find(|(name, _)| *name == output.topology)
        {
            Some((_, count)) => *count += 1,
            None => by_topology.push((&output.topology, 1)),
        }
    }
    for (topology, count) in by_topology {
        metrics::counter!(stats::OUTPUTS, "topology" => topology.to_owned()).increment(count);
    }
}

/// `[a,b,c]` from JSON texts.
fn json_array(texts: &[&str]) -> String {
    let mut array =
        String::with_capacity(texts.iter().map(|text| text.len() + 1).sum::<usize>() + 2);
    array.push('[');
    for (index, text) in texts.iter().enumerate() {
        if index > 0 {
            array.push(',');
        }
        array.push_str(text);
    }
    array.push(']');
    array
}

/// Sleeps for `pause` (doubling it, up to 5 s) unless `stop` comes first; true if it did.
async fn sleep_or_stop(stop: &CancellationToken, pause: &mut Duration) -> bool {
    let stopped = tokio::select! {
        _ = stop.cancelled() => true,
        _ = tokio::time::sleep(*pause) => false,
    };
    *pause = (*pause * 2).min(Duration::from_secs(5));
    stopped
}
