//! Which partitions this processor owns: fenced leases, a fair share of the partitions among
//! the live processors, take-over of a dead processor's partitions, hand-over on shutdown.
//!
//! There is no master. Every processor, every third of the lease time:
//! 1. renews the leases of its partitions (a lost lease stops that partition's worker);
//! 2. counts the live processors `n` (members of the `processors` group whose heartbeat key
//!    exists) and computes its fair share, `ceil(partitions / n)`;
//! 3. above its share, hands over its highest-numbered partitions (each after its current
//!    batch); below it, acquires partitions that have no holder, starting from a point that
//!    differs per processor so that newcomers do not all race for the same ones.
//!
//! A dead processor's leases expire after the lease time; its heartbeat key expires with them
//! (the processor's consumer TTL is its lease time), so the others' shares grow and they take
//! its partitions within the lease time plus one tick.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use redpill::{Acquired, Client, Grant, Lease, Members};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::partition::{Exit, Partition, Settings};
use crate::registry::Registry;

/// An owned partition's worker.
struct Owned {
    lease: Lease,
    grant: Grant,
    stop: CancellationToken,
    worker: JoinHandle<Exit>,
}

/// Coordinates this processor's partitions until `token` is cancelled, then hands every one
/// over (each after its current batch) and leaves the group.
pub async fn run(
    client: Client,
    registry: Arc<Registry>,
    settings: Arc<Settings>,
    lease_time: Duration,
    token: CancellationToken,
) -> anyhow::Result<()> {
    let members = layout::processors(&client);
    let tick = (lease_time / 3).max(Duration::from_millis(100));
    let mut owned: BTreeMap<u32, Owned> = BTreeMap::new();
    let partitions = settings.partitions;
    let start = start_offset(client.consumer_id(), partitions);
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = token.cancelled() => break,
            _ = ticker.tick() => {}
        }
        if let Err(err) = rebalance(
            &client, &members, &registry, &settings, lease_time, start, &mut owned,
        )
        .await
        {
            tracing::warn!(error = %err, "partition ownership not refreshed this round; retrying");
        }
    }
    tracing::info!(partitions = owned.len(), "handing partitions over");
    for partition in owned.values() {
        partition.stop.cancel();
    }
    for (number, partition) in owned {
        // Keep renewing while the worker finishes its batch, so the lease cannot lapse.
        let mut worker = partition.worker;
        loop {
            tokio::select! {
                exit = &mut worker => {
                    tracing::debug!(partition = number, ?exit, "worker ended");
                    break;
                }
                _ = tokio::time::sleep(tick) => {
                    let _ = partition.lease.renew(&partition.grant, lease_time).await;
                }
            }
        }
    }
    if let Err(err) = members.leave().await {
        tracing::debug!(error = %err, "could not leave the processors group; the heartbeat expiry removes this processor");
    }
    Ok(())
}

async fn rebalance(
    client: &Client,
    members: &Members,
    registry: &Arc<Registry>,
    settings: &Arc<Settings>,
    lease_time: Duration,
    start: u32,
    owned: &mut BTreeMap<u32, Owned>,
) -> Result<(), redpill::Error> {
    // 1. Renew, and forget partitions whose worker ended or whose lease is gone.
    let renewals = futures_util::future::join_all(
        owned
            .values()
            .map(|partition| partition.lease.renew(&partition.grant, lease_time)),
    )
    .await;
    let numbers: Vec<u32> = owned.keys().copied().collect();
    for (number, renewed) in numbers.into_iter().zip(renewals) {
        let finished = owned
            .get(&number)
            .is_some_and(|partition| partition.worker.is_finished());
        match renewed {
            Ok(true) if !finished => {}
            Ok(_) => {
                if let Some(partition) = owned.remove(&number) {
                    if !partition.stop.is_cancelled() {
                        tracing::warn!(
                            partition = number,
                            "partition lost (lease expired or worker stopped)"
                        );
                    }
                    partition.stop.cancel();
                }
            }
            Err(err) => return Err(err),
        }
    }

    // 2. The fair share.
    members.join().await?;
    let live = members.alive().await?.len().max(1) as u32;
    let share = partitions_share(settings.partitions, live);

    // 3. Hand over the excess, or acquire free partitions up to the share.
    let handing_over = owned
        .values()
        .filter(|partition| partition.stop.is_cancelled())
        .count();
    let keeping = owned.len() - handing_over;
    let (mut acquired, mut released) = (Vec::new(), Vec::new());
    if keeping > share as usize {
        for (number, partition) in owned
            .iter()
            .rev()
            .filter(|(_, p)| !p.stop.is_cancelled())
            .take(keeping - share as usize)
        {
            tracing::debug!(
                partition = number,
                share,
                live,
                "handing over a partition above the fair share"
            );
            released.push(*number);
            partition.stop.cancel();
        }
    } else if keeping < share as usize {
        let mut wanted = share as usize - keeping;
        for step in 0..settings.partitions {
            if wanted == 0 {
                break;
            }
            let number = (start + step) % settings.partitions;
            if owned.contains_key(&number) {
                continue;
            }
            let lease = layout::partition_lease(client, number);
            if lease.holder().await?.is_some() {
                continue;
            }
            if let Acquired::Granted(grant) =
                lease.acquire(client.consumer_id(), lease_time).await?
            {
                tracing::debug!(
                    partition = number,
                    epoch = grant.epoch,
                    share,
                    live,
                    "partition acquired"
                );
                acquired.push(number);
                let stop = CancellationToken::new();
                let worker = tokio::spawn(
                    Partition::new(
                        client,
                        number,
                        lease.clone(),
                        grant.clone(),
                        Arc::clone(registry),
                        Arc::clone(settings),
                    )
                    .run(stop.clone()),
                );
                owned.insert(
                    number,
                    Owned {
                        lease,
                        grant,
                        stop,
                        worker,
                    },
                );
                wanted -= 1;
            }
        }
    }
    if !acquired.is_empty() || !released.is_empty() {
        let keeping: Vec<u32> = owned
            .iter()
            .filter(|(_, partition)| !partition.stop.is_cancelled())
            .map(|(number, _)| *number)
            .collect();
        tracing::info!(
            acquired = %ranges(&acquired),
            handing_over = %ranges(&released),
            owned = %ranges(&keeping),
            count = keeping.len(),
            share,
            live,
            "partition ownership changed"
        );
    }
    Ok(())
}

/// Partition numbers as ranges, `0-3,7,9-10`, or `-` for none.
fn ranges(numbers: &[u32]) -> String {
    let mut sorted = numbers.to_vec();
    sorted.sort_unstable();
    let mut parts: Vec<String> = Vec::new();
    let mut index = 0;
    while index < sorted.len() {
        let first = sorted[index];
        let mut last = first;
        while index + 1 < sorted.len() && sorted[index + 1] == last + 1 {
            index += 1;
            last = sorted[index];
        }
        parts.push(if first == last {
            first.to_string()
        } else {
            format!("{first}-{last}")
        });
        index += 1;
    }
    if parts.is_empty() {
        "-".to_owned()
    } else {
        parts.join(",")
    }
}

/// `ceil(partitions / live)`.
pub fn partitions_share(partitions: u32, live: u32) -> u32 {
    partitions.div_ceil(live.max(1))
}

/// Where this processor starts looking for free partitions.
fn start_offset(consumer: &str, partitions: u32) -> u32 {
    protocol::partition_of("processor", consumer, partitions)
}

#[cfg(test)]
mod tests {
    use super::{partitions_share, ranges};

    /// Partition lists in the log read as ranges.
    #[test]
    fn ranges_of_partitions() {
        assert_eq!(ranges(&[]), "-");
        assert_eq!(ranges(&[5]), "5");
        assert_eq!(ranges(&[3, 0, 1, 2, 7, 9, 10]), "0-3,7,9-10");
    }

    /// Shares round up, so the live processors always cover every partition.
    #[test]
    fn shares_cover_every_partition() {
        assert_eq!(partitions_share(64, 1), 64);
        assert_eq!(partitions_share(64, 3), 22);
        assert_eq!(partitions_share(64, 64), 1);
        assert_eq!(partitions_share(4, 8), 1);
        for live in 1..=70 {
            assert!(partitions_share(64, live) * live >= 64);
        }
    }
}
