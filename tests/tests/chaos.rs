//! The fast subset of the chaos scenarios (1, 2, 4, 7, 10 and 13 of `docs/reliability.md`; on
//! a Redis Cluster a master killed with replica acknowledgements and a live reshard; and the
//! roles on three hosts, one of them cut off the network): each
//! one fault under the simulator's load on a mesh of its own, and nothing acknowledged lost,
//! duplicated, reordered or missing from the archive. The full set:
//! `cargo run --release -p mesh-tests --bin chaos -- all`.

use mesh_tests::chaos::{self, Fault, Settings, MAX_ATTEMPTS};
use serde_json::Value;
use tokio::sync::Mutex;

/// One scenario at a time: each runs a whole mesh and measures its recovery, which a second
/// mesh on the same two cores would distort.
static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// Runs `fault` and checks the figures every scenario must show, and that no request
/// failed: the row, for more checks.
async fn run_clean(fault: Fault) -> Value {
    let row = run_verified(fault).await;
    assert_eq!(row["errors"].as_u64(), Some(0), "errors in {row}");
    row
}

/// Runs `fault` and checks the figures every scenario must show.
async fn run_verified(fault: Fault) -> Value {
    let _turn = ONE_AT_A_TIME.lock().await;
    let row = chaos::run(fault, &Settings::default()).await;
    let sent = row["sent"].as_u64().expect("a sent count");
    assert!(sent > 0, "nothing was sent: {row}");
    assert_eq!(row["received"], row["expected"], "{row}");
    for figure in chaos::MUST_BE_ZERO {
        assert_eq!(row[figure].as_u64(), Some(0), "{figure} in {row}");
    }
    assert!(row["recover_ms"].as_u64().is_some(), "{row}");
    row
}

/// A processor killed with SIGKILL: the other takes its partitions within about a lease and
/// redelivers what the dead one had not committed, exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processor_kill_loses_nothing() {
    let row = run_clean(Fault::ProcessorKill).await;
    assert!(row["detect_ms"].as_u64().is_some(), "{row}");
}

/// A processor paused past its lease and resumed: its partitions move, and what it tries to
/// commit afterwards is refused by the fence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processor_pause_writes_nothing_stale() {
    let row = run_clean(Fault::ProcessorPause).await;
    assert!(
        row["stale_writes_refused"].as_u64().unwrap_or(0) > 0,
        "the resumed processor never found its lease gone: {row}"
    );
}

/// Redis killed with SIGKILL under `appendfsync always` and started again: every 202 was on
/// disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_kill_with_fsync_always_loses_nothing() {
    let row = run_clean(Fault::RedisKillAlways).await;
    assert!(row["detect_ms"].as_u64().is_some(), "{row}");
}

/// MongoDB down for 30 s: processing goes on, the archive catches up with every output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongodb_down_archives_everything_afterwards() {
    let row = run_clean(Fault::MongoDown).await;
    assert!(row["archived"].as_u64().unwrap_or(0) > 0, "{row}");
}

/// A message its function fails on: dead-lettered after the configured attempts, alone, while
/// the load goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_message_is_dead_lettered_alone() {
    let row = run_clean(Fault::Poison).await;
    assert_eq!(row["dead_lettered"].as_u64(), Some(1), "{row}");
    assert_eq!(row["dead_letter_is_the_poison"], true, "{row}");
    assert_eq!(
        row["attempts"].as_u64(),
        Some(u64::from(MAX_ATTEMPTS)),
        "{row}"
    );
}

/// Every process, Redis and MongoDB killed at once and started again in a random order: the
/// injects cut off are sent again under their keys and queued once. History reads fail while
/// web_face is down, so `errors` is not 0 here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_everything_loses_nothing() {
    let row = run_verified(Fault::KillEverything).await;
    assert_eq!(
        row["restart_order"].as_array().map(Vec::len),
        Some(7),
        "{row}"
    );
}

/// On a Redis Cluster with `GORGON_REPLICA_ACKS=1`: the master of the busiest partition
/// SIGKILLed under load; its replica takes over within a few node timeouts, the old master
/// comes back as a replica, and nothing acknowledged is lost or duplicated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_master_kill_with_replica_acks_loses_nothing() {
    let row = run_verified(Fault::ClusterMasterKillAcked).await;
    assert!(row["detect_ms"].as_u64().is_some(), "{row}");
}

/// On a Redis Cluster: every slot of the busiest partition's master moved to another master
/// by `redis-cli --cluster reshard` under load; clients follow MOVED and ASK, nothing is lost
/// or duplicated, and no request fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_reshard_under_load_loses_nothing() {
    let row = run_clean(Fault::ClusterReshard).await;
    assert!(row["slots_moved"].as_u64().unwrap_or(0) > 0, "{row}");
}

/// The roles on three hosts of their own and Redis Cluster on their network: the host of one
/// processor and one notifier cut off the network past its lease. The other hosts' processors
/// hold its partitions within the lease and a second; once it is back, the fence or the lease
/// renewal tells it the partitions are gone (whichever it reaches first), it takes its share
/// again, and nothing is lost or duplicated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_cut_moves_its_partitions_and_loses_nothing() {
    let row = run_clean(Fault::HostCut).await;
    let takeover = row["detect_ms"].as_u64().expect("a takeover time");
    assert!(
        takeover <= chaos::LEASE_MS + 1_000,
        "the partitions moved {takeover} ms after the cut: {row}"
    );
    let refused = row["stale_writes_refused"].as_u64().unwrap_or(0)
        + row["renewals_refused"].as_u64().unwrap_or(0);
    assert!(
        refused > 0,
        "the host's processor never found its lease gone: {row}"
    );
    assert!(row["rejoin_ms"].as_u64().is_some(), "{row}");
}
