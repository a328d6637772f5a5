//! Replica acknowledgements (`Config::set_replica_acks`): every acknowledged write waits, in
//! its own round trip, for that many replicas of the master that took it.

mod common;

use std::time::{Duration, Instant};

use redpill::testing::TestRedis;
use redpill::{Acquired, Error, Lease, PushedOnce, Queue, Tag};

/// With no replica, a push, a keyed push and its repeat, and a fenced commit fail as retryable,
/// naming 0 of 1 replicas, after the wait (the commit after waiting five times); the write is
/// on the master all the same. Once a replica follows the
/// master, the same calls succeed, and what they wrote is on the replica when they return.
#[tokio::test]
async fn writes_wait_for_their_replicas() {
    let master = TestRedis::start();
    let timeout = Duration::from_millis(300);
    let client = common::client_with(master.config().set_replica_acks(1, timeout)).await;
    let tag = Tag::partition(2);
    let queue = Queue::new(&client, &tag, "in");

    let started = Instant::now();
    match queue.push_with_ids(&[("a", b"1".as_slice())]).await {
        Err(
            err @ Error::Unreplicated {
                wanted: 1, got: 0, ..
            },
        ) => {
            assert!(err.is_retryable() && err.is_unavailable(), "{err}");
        }
        other => panic!("expected Unreplicated, got {other:?}"),
    }
    assert!(started.elapsed() >= timeout, "{:?}", started.elapsed());
    assert_eq!(
        queue.depth().await.unwrap().waiting,
        1,
        "the push is on the master"
    );

    // A push with a key, then its repeat: the repeat is answered from the key's record,
    // acknowledged only once the replicas have what the master has (the first push among
    // it), so without a replica it fails the same way.
    let keyed = [("c", b"3".as_slice())];
    for _ in 0..2 {
        let pushed = queue
            .push_once("k", Duration::from_secs(60), "the record", &keyed)
            .await;
        assert!(
            matches!(
                pushed,
                Err(Error::Unreplicated {
                    wanted: 1,
                    got: 0,
                    ..
                })
            ),
            "{pushed:?}"
        );
    }

    let lease = Lease::new(&client, &tag, "owner");
    let Acquired::Granted(grant) = lease.acquire("me", Duration::from_secs(10)).await.unwrap()
    else {
        panic!("the lease is free");
    };
    let state = client.keys().tagged(&tag, "state");
    // A commit applied on the master waits again for its replica, five times in all.
    let started = Instant::now();
    let fenced = lease
        .fenced(&grant)
        .hash_set(&state, &[("k", "v")])
        .commit()
        .await;
    assert!(
        matches!(
            fenced,
            Err(Error::Unreplicated {
                wanted: 1,
                got: 0,
                ..
            })
        ),
        "{fenced:?}"
    );
    assert!(started.elapsed() >= 5 * timeout, "{:?}", started.elapsed());

    let replica = TestRedis::start();
    let port = master.port().to_string();
    assert!(replica
        .command(&["REPLICAOF", "127.0.0.1", &port])
        .starts_with("+OK"));
    // What WAIT counts: the replica has synced and acknowledged since (see
    // `wait_for_replicas`).
    master.wait_for_replicas(1, Duration::from_secs(20));
    // With a replica, the same writes succeed; a client that waits longer for it, so a busy
    // machine's slow replication cannot fail them.
    let client =
        common::client_with(master.config().set_replica_acks(1, Duration::from_secs(10))).await;
    let queue = Queue::new(&client, &tag, "in");
    let lease = Lease::new(&client, &tag, "owner");
    assert_eq!(
        queue
            .push_with_ids(&[("b", b"2".as_slice())])
            .await
            .unwrap(),
        1
    );
    // Acknowledged: on the replica already, nothing to wait for; and the keyed push's
    // repeat is answered from its record now that the replica has it.
    let waiting = client.keys().queue(&tag, "in");
    assert_eq!(
        replica.command(&["LRANGE", &waiting, "0", "-1"]),
        "*3\r\n$1\r\na\r\n$1\r\nc\r\n$1\r\nb\r\n"
    );
    assert_eq!(
        queue
            .push_once("k", Duration::from_secs(60), "the record", &keyed)
            .await
            .unwrap(),
        PushedOnce::Repeated("the record".to_owned())
    );
    lease
        .fenced(&grant)
        .hash_set(&state, &[("k", "w")])
        .commit()
        .await
        .unwrap();
    assert_eq!(replica.command(&["HGET", &state, "k"]), "$1\r\nw\r\n");
}
