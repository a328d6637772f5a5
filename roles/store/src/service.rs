//! The topology service: takes change requests off the store's request queue in batches,
//! applies each topology's share under that topology's lease, and sends the node changes to
//! the partitions through the topology's outbox.
//!
//! One batch, per topology: validate whole documents (no lease is needed for that, and it is
//! most of the work), take the lease (waiting while another store holds it) and keep it
//! renewed, deliver whatever a store that died left in the outbox, read the document, apply
//! the requests in order, then one fenced write of the new document, its rev and every node
//! change (appended to the outbox), delivery of the outbox, and the replies. A store that dies
//! anywhere in between leaves either nothing or a committed change whose outbox the next
//! holder of the lease delivers; a store paused past its lease cannot commit (the write is
//! fenced, and renewals pause with the store).
//!
//! The work is linear in the size of the topology, and the CPU-bound parts run off the
//! runtime's threads, so a document of 100 000 nodes neither starves the lease's renewals nor
//! the archive.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures_util::future::join_all;
use layout::{StoredTopology, TopologyHandles, TopologyWrite};
use protocol::store::{ApiError, Applied, Change, StoreReply, StoreRequest};
use protocol::{merge_patch, partition_of, Body, Envelope, Limits, ENVELOPE_VERSION};
use redpill::{Acquired, Client, Grant, Lease, Queue, Request};
use serde_json::{Map, Value};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::changes::{apply_prepared, prepare, Current, Functions, Prepared};

/// The most requests one batch takes.
const BATCH: usize = 256;

/// The most lease times one change may hold a topology's lease for; see [`keep_renewed`].
const MAX_HOLD: u32 = 30;

/// How the service runs.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The deployment's partition count.
    pub partitions: u32,
    /// Limits on documents.
    pub limits: Limits,
    /// How long a topology's lease lasts; a store that dies holding one blocks changes to
    /// that topology this long.
    pub lease_time: Duration,
    /// How often outboxes left by a store that died are looked for.
    pub sweep_interval: Duration,
}

/// Serves change requests until `token` is cancelled.
pub async fn serve(
    client: Client,
    settings: Settings,
    token: CancellationToken,
) -> anyhow::Result<()> {
    let responder = layout::store_service(&client);
    let owner = client.consumer_id().to_owned();
    // The sweep takes leases under a name of its own: an owner that acquires a lease it holds
    // gets a new grant, which would fence off this store's own change in progress.
    let sweeper = tokio::spawn(sweep(
        client.clone(),
        settings.clone(),
        format!("{owner}-sweep"),
        token.clone(),
    ));
    loop {
        let batch = tokio::select! {
            _ = token.cancelled() => break,
            batch = responder.next(BATCH, Duration::from_secs(1)) => batch,
        };
        let requests = match batch {
            Ok(requests) => requests,
            Err(error) if error.is_retryable() => {
                tracing::warn!(%error, "could not take requests; retrying");
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue;
            }
            Err(error) => return Err(error).context("taking store requests failed"),
        };
        if requests.is_empty() {
            continue;
        }
        let replies = handle(&client, &settings, &owner, requests).await;
        if let Err(error) = responder.reply(replies).await {
            // The requests stay in flight and come back after this store's heartbeat lapses;
            // their callers will have timed out and they are dropped then.
            tracing::warn!(%error, "could not send replies");
        }
    }
    sweeper.abort();
    Ok(())
}

/// Applies a batch of requests and returns one reply per request.
async fn handle(
    client: &Client,
    settings: &Settings,
    owner: &str,
    requests: Vec<Request>,
) -> Vec<(Request, redpill::Reply)> {
    // A whole document is megabytes of JSON: read it off the runtime's threads.
    let (mut replies, by_topology) = tokio::task::spawn_blocking(move || sort(requests))
        .await
        .expect("reading requests does not panic");
    if by_topology.is_empty() {
        return replies;
    }
    let functions = match read_functions(client).await {
        Ok(functions) => Arc::new(functions),
        Err(error) => {
            tracing::warn!(%error, "could not read the function registry");
            let failure = unavailable(&error);
            for (request, _) in by_topology.into_values().flatten() {
                replies.push((request, encode(&Err(failure.clone()))));
            }
            return replies;
        }
    };
    let groups = by_topology.into_iter().map(|(topology, group)| {
        apply_group(
            client,
            settings,
            owner,
            Arc::clone(&functions),
            topology,
            group,
        )
    });
    for group in join_all(groups).await {
        replies.extend(group);
    }
    replies
}

/// Reads each request and groups them by topology, in order; returns the replies to those
/// that are not store requests or name no valid topology, and the groups.
fn sort(requests: Vec<Request>) -> (Vec<(Request, redpill::Reply)>, Groups) {
    let mut replies = Vec::new();
    let mut by_topology: Groups = BTreeMap::new();
    for mut request in requests {
        // The body is read once; it can be megabytes, so it is not kept until the reply.
        let body = std::mem::take(&mut request.body);
        match serde_json::from_slice::<StoreRequest>(&body) {
            // A topology id must be a slug before it becomes part of a key.
            Ok(parsed) if protocol::validate_slug(&parsed.topology).is_err() => {
                let error = ApiError::new(
                    protocol::ErrorCode::InvalidSlug,
                    format!("{:?} is not a topology id", parsed.topology),
                );
                replies.push((request, encode(&Err(error))));
            }
            Ok(parsed) => by_topology
                .entry(parsed.topology.clone())
                .or_default()
                .push((request, parsed)),
            Err(error) => {
                let reply = Err(format!("not a store request: {error}"));
                replies.push((request, reply));
            }
        }
    }
    (replies, by_topology)
}

/// Requests by topology, each group in the order they were taken.
type Groups = BTreeMap<String, Vec<(Request, StoreRequest)>>;

/// Applies one topology's requests: validates whole documents first, with no lease held
/// (it does not depend on the stored topology, and it is what takes long), then applies the
/// group under the topology's lease.
async fn apply_group(
    client: &Client,
    settings: &Settings,
    owner: &str,
    functions: Arc<Functions>,
    topology: String,
    group: Vec<(Request, StoreRequest)>,
) -> Vec<(Request, redpill::Reply)> {
    let (requests, parsed): (Vec<Request>, Vec<StoreRequest>) = group.into_iter().unzip();
    let changes = {
        let (functions, limits) = (Arc::clone(&functions), settings.limits.clone());
        tokio::task::spawn_blocking(move || {
            parsed
                .into_iter()
                .map(|request| {
                    let prepared = prepare(request.change, &functions, &limits);
                    (request.if_match, prepared)
                })
                .collect::<Vec<_>>()
        })
        .await
        .expect("preparing changes does not panic")
    };
    match apply_locked(client, settings, owner, functions, &topology, changes).await {
        Ok(replies) => requests
            .into_iter()
            .zip(replies)
            .map(|(request, reply)| (request, encode(&reply)))
            .collect(),
        Err(error) => {
            tracing::warn!(%topology, error = format!("{error:#}"), "could not apply changes");
            let failure = unavailable(&error);
            requests
                .into_iter()
                .map(|request| (request, encode(&Err(failure.clone()))))
                .collect()
        }
    }
}

async fn apply_locked(
    client: &Client,
    settings: &Settings,
    owner: &str,
    functions: Arc<Functions>,
    topology: &str,
    changes: Vec<(Option<u64>, Prepared)>,
) -> anyhow::Result<Vec<StoreReply>> {
    let keys = layout::topology(client, topology);
    let grant = acquire(&keys.lease, owner, settings.lease_time).await?;
    let renewal = keep_renewed(&keys.lease, &grant, settings.lease_time, topology);
    let outcome = apply_held(
        client, settings, functions, topology, changes, &keys, &grant,
    )
    .await;
    drop(renewal);
    if let Err(error) = keys.lease.release(&grant).await {
        tracing::debug!(%error, %topology, "could not release the topology lease; it expires");
    }
    outcome
}

async fn apply_held(
    client: &Client,
    settings: &Settings,
    functions: Arc<Functions>,
    topology: &str,
    changes: Vec<(Option<u64>, Prepared)>,
    keys: &TopologyHandles,
    grant: &Grant,
) -> anyhow::Result<Vec<StoreReply>> {
    deliver(keys, grant).await?;
    let stored = keys.read().await?;
    let staged = {
        let (settings, topology) = (settings.clone(), topology.to_owned());
        tokio::task::spawn_blocking(move || {
            stage(&settings, &functions, &topology, &stored, changes)
        })
        .await
        .expect("applying changes does not panic")?
    };
    let Staged {
        mut replies,
        patches,
        write,
    } = staged;
    let Some(write) = write else {
        return Ok(replies);
    };
    if write.created {
        // Listed before it exists: readers skip a listed topology without a document, but
        // an unlisted one would be lost to lists if this store died after the commit.
        layout::list_topology(client, topology).await?;
    }
    let deleted = write.doc.is_none();
    commit(client, topology, keys, grant, write).await?;
    // Committed: the changes are applied whatever happens next, so what follows only
    // logs its failures. Undelivered node changes wait in the outbox for the next change
    // or the sweep; a stale index entry is skipped by readers and removed by the sweep.
    if let Err(error) = deliver(keys, grant).await {
        tracing::warn!(%topology, error = format!("{error:#}"), "node changes committed but not yet delivered; the sweep will");
    }
    if deleted {
        if let Err(error) = layout::unlist_topology(client, topology).await {
            tracing::warn!(%topology, %error, "could not remove a deleted topology from the index");
        }
    }
    if let Err(error) = fill_patched_attrs(client, settings, topology, &mut replies, &patches).await
    {
        tracing::warn!(%topology, error = format!("{error:#}"), "answering attribute patches with the document's attributes");
    }
    Ok(replies)
}

/// What applying a group of changes to the stored topology gives, before anything is written.
struct Staged {
    /// One reply per change.
    replies: Vec<StoreReply>,
    /// For each change, the node it patched the attributes of and its patches so far.
    patches: Vec<Option<Patched>>,
    /// What to write, when the changes changed the topology.
    write: Option<Write>,
}

/// The content of the fenced write of a changed topology.
struct Write {
    /// The new document as JSON and its node count; `None` when the topology was deleted.
    doc: Option<(String, usize)>,
    /// The new rev.
    rev: u64,
    /// Whether the topology did not exist before.
    created: bool,
    /// The node changes: partition, message id and envelope.
    messages: Vec<(u32, String, Vec<u8>)>,
}

/// Applies `changes` in order to the topology as `stored` and prepares the write,
/// without I/O: the CPU-bound part of a change made under the lease, linear in the size of
/// the topology.
fn stage(
    settings: &Settings,
    functions: &Functions,
    topology: &str,
    stored: &StoredTopology,
    changes: Vec<(Option<u64>, Prepared)>,
) -> anyhow::Result<Staged> {
    let mut current = Current {
        doc: stored
            .record()
            .map_err(|error| {
                anyhow::anyhow!("the stored document of {topology} is unreadable: {error}")
            })?
            .map(|record| record.doc),
        rev: stored.rev(),
    };
    let (existed, rev_before) = (current.doc.is_some(), current.rev);
    let mut replies = Vec::with_capacity(changes.len());
    let mut sends = Vec::new();
    // For attribute patches: the node and every patch of it so far in this batch.
    let mut patches: Vec<Option<Patched>> = Vec::with_capacity(changes.len());
    let mut patched_so_far: HashMap<String, Vec<Map<String, Value>>> = HashMap::new();
    for (if_match, prepared) in changes {
        let patch = match prepared.change() {
            Change::PatchAttrs { node, patch } => Some((node.clone(), patch.clone())),
            _ => None,
        };
        let outcome = apply_prepared(
            topology,
            &mut current,
            if_match,
            prepared,
            functions,
            &settings.limits,
        );
        match outcome {
            Ok(outcome) => {
                sends.extend(outcome.sends);
                patches.push(patch.map(|(node, patch)| {
                    let so_far = patched_so_far.entry(node.clone()).or_default();
                    so_far.push(patch);
                    (node, so_far.clone())
                }));
                replies.push(Ok(outcome.applied));
            }
            Err(error) => {
                patches.push(None);
                replies.push(Err(error));
            }
        }
    }
    // Every change that changes the topology moves its rev.
    let write = (current.rev != rev_before).then(|| {
        let Current { doc, rev } = current;
        let created = doc.is_some() && !existed;
        let doc = doc.map(|doc| {
            let json = serde_json::to_string(&doc).expect("a document always serializes");
            (json, doc.node.len())
        });
        let messages = envelopes(topology, settings.partitions, sends);
        Write {
            doc,
            rev,
            created,
            messages,
        }
    });
    Ok(Staged {
        replies,
        patches,
        write,
    })
}

/// The node changes as messages of their partitions' queues: partition, message id and
/// envelope, in order.
fn envelopes(
    topology: &str,
    partitions: u32,
    sends: Vec<(String, Body)>,
) -> Vec<(u32, String, Vec<u8>)> {
    sends
        .into_iter()
        .map(|(node, body)| {
            let partition = partition_of(topology, &node, partitions);
            let envelope = Envelope {
                version: ENVELOPE_VERSION,
                topology: topology.to_owned(),
                node,
                body,
            };
            (partition, redpill::new_id(), envelope.to_bytes())
        })
        .collect()
}

/// The fenced write of the new document and the node changes.
async fn commit(
    client: &Client,
    topology: &str,
    keys: &TopologyHandles,
    grant: &Grant,
    write: Write,
) -> anyhow::Result<()> {
    let record = match &write.doc {
        Some((json, nodes)) => TopologyWrite::Document {
            json,
            nodes: *nodes,
            rev: write.rev,
        },
        None => TopologyWrite::Deleted { rev: write.rev },
    };
    let mut fenced = layout::write_topology(keys.lease.fenced(grant), keys, record);
    if !write.messages.is_empty() {
        // Settled again by the delivery.
        fenced = layout::unsettle_topology(fenced, keys);
    }
    let mut queues: HashMap<u32, Queue> = HashMap::new();
    for (partition, _, _) in &write.messages {
        queues
            .entry(*partition)
            .or_insert_with(|| layout::input_queue(client, *partition));
    }
    let entries: Vec<(&Queue, &str, &[u8])> = write
        .messages
        .iter()
        .map(|(partition, id, body)| (&queues[partition], id.as_str(), body.as_slice()))
        .collect();
    fenced = fenced.append(&keys.outbox, &entries);
    // The fenced write holds its own copy of everything: free the messages before it is sent.
    drop(entries);
    drop(write);
    fenced
        .commit()
        .await
        .with_context(|| format!("committing the change to topology {topology} failed"))?;
    Ok(())
}

/// Answers attribute patches with the node's attributes as its partition last wrote them,
/// with the patches of this batch applied: what they will be once the change is processed.
async fn fill_patched_attrs(
    client: &Client,
    settings: &Settings,
    topology: &str,
    replies: &mut [StoreReply],
    patches: &[Option<Patched>],
) -> anyhow::Result<()> {
    let wanted: Vec<(usize, &Patched)> = patches
        .iter()
        .enumerate()
        .filter_map(|(index, patch)| patch.as_ref().map(|patched| (index, patched)))
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let nodes: Vec<(&str, &str)> = wanted
        .iter()
        .map(|(_, (node, _))| (topology, node.as_str()))
        .collect();
    let records = layout::read_node_records(client, settings.partitions, &nodes).await?;
    for ((index, (_, so_far)), record) in wanted.iter().zip(records) {
        let Some(record) = record else {
            continue; // Not processed yet: the document's attributes are the answer.
        };
        if let Some(Ok(Applied {
            attrs: Some(attrs), ..
        })) = replies.get_mut(*index)
        {
            let mut now = record.attrs;
            for patch in so_far {
                merge_patch(&mut now, patch);
            }
            *attrs = now;
        }
    }
    Ok(())
}

/// Delivers everything in the topology's outbox while `grant` holds its lease, and records
/// when, if there was anything (`layout::settle_topology`).
async fn deliver(keys: &TopologyHandles, grant: &Grant) -> anyhow::Result<()> {
    let mut delivered = 0;
    loop {
        match keys.outbox.deliver(&keys.lease, grant).await? {
            0 => break,
            count => delivered += count,
        }
    }
    if delivered > 0 {
        let at = protocol::Timestamp::now().unix_ms();
        layout::settle_topology(keys.lease.fenced(grant), keys, at)
            .commit()
            .await?;
    }
    Ok(())
}

/// Renews `grant` of `lease` every third of `ttl` until the guard returned is dropped, so a
/// change that takes longer than the lease (a document of 100 000 nodes, a slow Redis) keeps
/// it.
///
/// Fencing is unchanged: a renewal extends only a grant that still holds the lease, and every
/// write is fenced by the grant. A store paused past its lease is paused with its renewals, so
/// another store takes the lease with a larger epoch, and the paused one's commit is refused
/// when it wakes. Renewals stop after [`MAX_HOLD`] lease times, so a store stuck in a change
/// cannot keep the topology locked for ever.
fn keep_renewed(lease: &Lease, grant: &Grant, ttl: Duration, topology: &str) -> DropGuard {
    let stop = CancellationToken::new();
    let (lease, grant, topology) = (lease.clone(), grant.clone(), topology.to_owned());
    let stopped = stop.clone();
    tokio::spawn(async move {
        let every = ttl / 3;
        let give_up = tokio::time::Instant::now() + ttl * MAX_HOLD;
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stopped.cancelled() => return,
                _ = ticks.tick() => {}
            }
            if tokio::time::Instant::now() >= give_up {
                tracing::warn!(%topology, "a change held the topology lease for {MAX_HOLD} lease times; no longer renewing it");
                return;
            }
            match lease.renew(&grant, ttl).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(%topology, epoch = grant.epoch, "the topology lease was lost while a change was being applied; its commit will be refused");
                    return;
                }
                Err(error) => {
                    tracing::debug!(%topology, %error, "could not renew the topology lease; retrying");
                }
            }
        }
    });
    stop.drop_guard()
}

/// Takes `lease`, waiting while another store holds it (up to the lease time and a second).
async fn acquire(lease: &Lease, owner: &str, ttl: Duration) -> anyhow::Result<Grant> {
    let deadline = tokio::time::Instant::now() + ttl + Duration::from_secs(1);
    loop {
        match lease.acquire(owner, ttl).await? {
            Acquired::Granted(grant) => return Ok(grant),
            Acquired::HeldBy(holder, remaining) => {
                if tokio::time::Instant::now() >= deadline {
                    anyhow::bail!(
                        "the topology is being changed by {} and stayed locked",
                        holder.owner
                    );
                }
                tokio::time::sleep(
                    remaining.clamp(Duration::from_millis(2), Duration::from_millis(20)),
                )
                .await;
            }
        }
    }
}

/// Looks for outboxes a store that died left undelivered, and delivers them.
async fn sweep(client: Client, settings: Settings, owner: String, token: CancellationToken) {
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tokio::time::sleep(settings.sweep_interval) => {}
        }
        if let Err(error) = sweep_once(&client, &settings, &owner).await {
            tracing::debug!(
                error = format!("{error:#}"),
                "outbox sweep failed; retrying later"
            );
        }
    }
}

async fn sweep_once(client: &Client, settings: &Settings, owner: &str) -> anyhow::Result<()> {
    for topology in layout::list_topologies(client).await? {
        let keys = layout::topology(client, &topology);
        let outbox_empty = keys.outbox.is_empty().await?;
        let exists = keys.read().await?.exists();
        if outbox_empty && exists {
            continue;
        }
        let Acquired::Granted(grant) = keys.lease.acquire(owner, settings.lease_time).await? else {
            continue; // Someone is changing it, and delivers as they do.
        };
        let renewal = keep_renewed(&keys.lease, &grant, settings.lease_time, &topology);
        let outcome = tidy(client, &topology, &keys, &grant).await;
        drop(renewal);
        let _ = keys.lease.release(&grant).await;
        outcome?;
    }
    Ok(())
}

/// Under the topology's lease: delivers what its outbox holds, and takes a topology without a
/// document (deleted, or whose creation never committed) off the index.
async fn tidy(
    client: &Client,
    topology: &str,
    keys: &TopologyHandles,
    grant: &Grant,
) -> anyhow::Result<()> {
    if !keys.outbox.is_empty().await? {
        deliver(keys, grant).await?;
        tracing::info!(%topology, "delivered node changes a store left behind");
    }
    if !keys.read().await?.exists() {
        layout::unlist_topology(client, topology).await?;
    }
    Ok(())
}

/// The function registry as processors (and stores) published it.
async fn read_functions(client: &Client) -> anyhow::Result<Functions> {
    Ok(Functions::new(layout::read_functions(client).await?))
}

/// A node whose attributes a request patched, and every patch of it in the batch so far.
type Patched = (String, Vec<Map<String, Value>>);

/// The error for a change that could not be applied because Redis failed or the topology
/// stayed locked: the API answers 503 and the client may retry.
fn unavailable(error: &anyhow::Error) -> ApiError {
    ApiError::new(
        protocol::ErrorCode::Unavailable,
        format!("the change could not be applied ({error:#}); retry shortly"),
    )
}

fn encode(reply: &StoreReply) -> redpill::Reply {
    Ok(serde_json::to_vec(reply)
        .expect("a reply always serializes")
        .into())
}
