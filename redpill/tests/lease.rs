//! Leases and fenced writes against a real redis-server.

mod common;

use std::time::Duration;

use common::client;
use redpill::testing::TestBackend;
use redpill::{Acquired, Client, Delivery, Error, Grant, Lease, Queue, Tag};

/// Lease `owner` of `tag`, granted, and queue `in` of `tag` with messages "a" and "b" pulled
/// and held in flight by `client`.
async fn holding_a_and_b(client: &Client, tag: &Tag) -> (Lease, Grant, Queue) {
    let lease = Lease::new(client, tag, "owner");
    let grant = granted(lease.acquire("proc", Duration::from_secs(5)).await.unwrap());
    let queue = Queue::new(client, tag, "in");
    queue
        .push_with_ids(&[("a", b"1".as_slice()), ("b", b"2".as_slice())])
        .await
        .unwrap();
    assert_eq!(queue.pull(10).await.unwrap().len(), 2);
    (lease, grant, queue)
}

fn ids_and_attempts(deliveries: &[Delivery]) -> Vec<(&str, u32)> {
    deliveries
        .iter()
        .map(|delivery| (delivery.id.as_str(), delivery.attempts))
        .collect()
}

fn granted(acquired: Acquired) -> Grant {
    match acquired {
        Acquired::Granted(grant) => grant,
        Acquired::HeldBy(holder, _) => panic!("expected a grant, held by {holder:?}"),
    }
}

/// One holder at a time; after expiry another owner takes over with a larger epoch; a write
/// with the old epoch is rejected inside Redis and changes nothing.
#[tokio::test]
async fn one_holder_takeover_and_fencing() {
    let redis = TestBackend::start();
    let client = client(&redis).await;
    let tag = Tag::partition(7);
    let lease = Lease::new(&client, &tag, "owner");
    let state = client.keys().tagged(&tag, "state");

    let first = granted(
        lease
            .acquire("proc-a", Duration::from_millis(300))
            .await
            .unwrap(),
    );
    match lease
        .acquire("proc-b", Duration::from_millis(300))
        .await
        .unwrap()
    {
        Acquired::HeldBy(holder, left) => {
            assert_eq!(holder, first);
            assert!(left <= Duration::from_millis(300));
        }
        other => panic!("second owner got {other:?}"),
    }
    lease
        .fenced(&first)
        .hash_set(&state, &[("by", "written by a")])
        .commit()
        .await
        .unwrap();

    tokio::time::sleep(Duration::from_millis(400)).await;
    // Expired and not yet taken: the old holder can no longer write either.
    let err = lease
        .fenced(&first)
        .hash_set(&state, &[("by", "late a")])
        .commit()
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::StaleEpoch { epoch, .. } if epoch == first.epoch),
        "{err:?}"
    );

    let second = granted(
        lease
            .acquire("proc-b", Duration::from_secs(5))
            .await
            .unwrap(),
    );
    assert!(second.epoch > first.epoch);
    assert_eq!(lease.holder().await.unwrap().unwrap().0, second);
    let err = lease
        .fenced(&first)
        .hash_set(&state, &[("by", "zombie a")])
        .hash_set(&client.keys().tagged(&tag, "attrs"), &[("count", 99)])
        .commit()
        .await
        .unwrap_err();
    assert!(!err.is_retryable());
    assert!(!lease.renew(&first, Duration::from_secs(5)).await.unwrap());
    assert!(!lease.release(&first).await.unwrap());
    assert_eq!(
        redis.command_for("t:{p7}:state", &["HGET", "t:{p7}:state", "by"]),
        "$12\r\nwritten by a\r\n"
    );
    assert_eq!(
        redis.command_for("t:{p7}:attrs", &["EXISTS", "t:{p7}:attrs"]),
        ":0\r\n"
    );

    lease
        .fenced(&second)
        .hash_set(&state, &[("by", "written by b")])
        .commit()
        .await
        .unwrap();
    assert!(lease.renew(&second, Duration::from_secs(5)).await.unwrap());
    assert!(lease.release(&second).await.unwrap());
    let third = granted(
        lease
            .acquire("proc-a", Duration::from_secs(5))
            .await
            .unwrap(),
    );
    assert!(third.epoch > second.epoch);
}

/// A fenced write applies all its writes in order, including a push onto a queue of the
/// same tag, and returns each reply.
#[tokio::test]
async fn fenced_write_applies_everything_at_once() {
    let redis = TestBackend::start();
    let client = client(&redis).await;
    let tag = Tag::partition(9);
    let lease = Lease::new(&client, &tag, "owner");
    let grant = granted(lease.acquire("proc", Duration::from_secs(5)).await.unwrap());
    let queue = Queue::new(&client, &tag, "out");
    let replies = lease
        .fenced(&grant)
        .hash_set(
            &client.keys().tagged(&tag, "node:a"),
            &[("count", "3"), ("mean", "1.5")],
        )
        .set_add(&client.keys().tagged(&tag, "seen:a"), &["x", "y", "z"])
        .push(
            &queue,
            &[("m1", b"one".as_slice()), ("m2", b"two".as_slice())],
        )
        .commit()
        .await
        .unwrap();
    // HSET, SADD, the push (messages queued) and its wake-up PUBLISH.
    assert_eq!(replies.len(), 4);
    assert_eq!(replies[0], redis::Value::Int(2));
    assert_eq!(replies[1], redis::Value::Int(3));
    assert_eq!(replies[2], redis::Value::Int(2));
    let pulled = queue.pull(10).await.unwrap();
    assert_eq!(
        pulled.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        ["m1", "m2"]
    );

    // A push of ids still pending queues nothing, as a plain push would not: each id is
    // delivered once, whichever path queued it.
    queue
        .push_with_ids(&[("m3", b"three".as_slice())])
        .await
        .unwrap();
    let replies = lease
        .fenced(&grant)
        .push(
            &queue,
            &[
                ("m2", b"again".as_slice()),
                ("m3", b"again".as_slice()),
                ("m4", b"four".as_slice()),
            ],
        )
        .commit()
        .await
        .unwrap();
    assert_eq!(replies[0], redis::Value::Int(1), "only m4 was new");
    let pulled = queue.pull(10).await.unwrap();
    assert_eq!(
        pulled
            .iter()
            .map(|d| (d.id.as_str(), &d.body[..]))
            .collect::<Vec<_>>(),
        [("m3", b"three".as_slice()), ("m4", b"four".as_slice())]
    );
}

/// A fenced retry gives messages back for another attempt after the backoff, counting the
/// attempt, in the same all-or-nothing batch as the acks.
#[tokio::test]
async fn fenced_retry_counts_an_attempt_and_waits_out_the_backoff() {
    let redis = TestBackend::start();
    let client = common::client_with(
        redis
            .config()
            .set_retry_backoff(Duration::from_millis(300), Duration::from_secs(1)),
    )
    .await;
    let tag = Tag::partition(6);
    let (lease, grant, queue) = holding_a_and_b(&client, &tag).await;
    lease
        .fenced(&grant)
        .ack(&queue, &["a"])
        .retry(&queue, &["b"])
        .commit()
        .await
        .unwrap();
    let depth = queue.depth().await.unwrap();
    assert_eq!((depth.waiting, depth.held, depth.delayed), (0, 1, 1));
    assert!(
        queue.pull(10).await.unwrap().is_empty(),
        "still backing off"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let again = queue.pull(10).await.unwrap();
    assert_eq!(ids_and_attempts(&again), [("b", 1)]);
    // "a" is held no more (acked above): a batch retrying it applies nothing.
    let err = lease
        .fenced(&grant)
        .hash_set(&client.keys().tagged(&tag, "state"), &[("by", "retry")])
        .retry(&queue, &["a"])
        .commit()
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::NotHeld { ref id } if id == "a"),
        "{err:?}"
    );
    assert_eq!(
        redis.command_for("t:{p6}:state", &["EXISTS", "t:{p6}:state"]),
        ":0\r\n"
    );
}

/// A batch usually settles the head of its in-flight list in pull order; one that settles
/// ids out of that order, or only some of them, leaves exactly the others held, in order.
/// A retried message's attempt count is forgotten with its ack: the same id pushed again
/// starts from 0.
#[tokio::test]
async fn fenced_settles_in_any_order_and_keeps_the_rest_in_order() {
    let redis = TestBackend::start();
    let client = common::client_with(
        redis
            .config()
            .set_retry_backoff(Duration::from_millis(50), Duration::from_millis(50)),
    )
    .await;
    let tag = Tag::partition(7);
    let lease = Lease::new(&client, &tag, "owner");
    let grant = granted(lease.acquire("proc", Duration::from_secs(5)).await.unwrap());
    let queue = Queue::new(&client, &tag, "in");
    let fly = format!("t:{{p7}}:q:in:fly:{}", client.consumer_id());
    let held = || redis.command_for(&fly, &["LRANGE", &fly, "0", "-1"]);
    let messages: Vec<(String, Vec<u8>)> = ["a", "b", "c", "d", "e", "f", "g"]
        .iter()
        .map(|id| (id.to_string(), id.as_bytes().to_vec()))
        .collect();
    let messages: Vec<(&str, &[u8])> = messages
        .iter()
        .map(|(id, body)| (id.as_str(), body.as_slice()))
        .collect();
    queue.push_with_ids(&messages).await.unwrap();
    assert_eq!(queue.pull(10).await.unwrap().len(), 7);

    // Out of order: neither write settles the head.
    lease
        .fenced(&grant)
        .ack(&queue, &["c", "a"])
        .retry(&queue, &["d"])
        .commit()
        .await
        .unwrap();
    assert_eq!(held(), "*4\r\n$1\r\nb\r\n$1\r\ne\r\n$1\r\nf\r\n$1\r\ng\r\n");
    // The head, then one past a gap.
    lease
        .fenced(&grant)
        .ack(&queue, &["b", "e"])
        .retry(&queue, &["g"])
        .commit()
        .await
        .unwrap();
    assert_eq!(held(), "*1\r\n$1\r\nf\r\n");
    lease
        .fenced(&grant)
        .ack(&queue, &["f"])
        .commit()
        .await
        .unwrap();
    assert_eq!(held(), "*0\r\n");

    tokio::time::sleep(Duration::from_millis(100)).await;
    let again = queue.pull(10).await.unwrap();
    assert_eq!(ids_and_attempts(&again), [("d", 1), ("g", 1)]);
    lease
        .fenced(&grant)
        .ack(&queue, &["d", "g"])
        .commit()
        .await
        .unwrap();
    let depth = queue.depth().await.unwrap();
    assert_eq!((depth.waiting, depth.held, depth.delayed), (0, 0, 0));
    assert_eq!(
        redis.command_for("t:{p7}:q:in:att", &["EXISTS", "t:{p7}:q:in:att"]),
        ":0\r\n",
        "no attempt count outlives its message"
    );
    queue
        .push_with_ids(&[("d", b"d".as_slice())])
        .await
        .unwrap();
    assert_eq!(ids_and_attempts(&queue.pull(10).await.unwrap()), [("d", 0)]);
}

/// Writes with more arguments than Lua can unpack at once (about 8 000) go through in
/// chunks with the replies of single commands: a 10 000-member SADD, a 10 000-field HSET and
/// a 10 000-message push; and acks with 9 000 messages in flight, plain and fenced.
#[tokio::test]
async fn fenced_writes_of_ten_thousand_arguments() {
    let redis = TestBackend::start();
    let client = client(&redis).await;
    let tag = Tag::partition(4);
    let lease = Lease::new(&client, &tag, "owner");
    let grant = granted(lease.acquire("proc", Duration::from_secs(5)).await.unwrap());
    let queue = Queue::new(&client, &tag, "big");
    let members: Vec<String> = (0..10_000).map(|i| format!("n{i}")).collect();
    let fields: Vec<(&str, &str)> = members.iter().map(|m| (m.as_str(), "1")).collect();
    let bodies: Vec<(String, Vec<u8>)> = members
        .iter()
        .map(|m| (m.clone(), m.as_bytes().to_vec()))
        .collect();
    let messages: Vec<(&str, &[u8])> = bodies
        .iter()
        .map(|(id, body)| (id.as_str(), body.as_slice()))
        .collect();
    let replies = lease
        .fenced(&grant)
        .set_add(&client.keys().tagged(&tag, "set"), &members)
        .hash_set(&client.keys().tagged(&tag, "hash"), &fields)
        .list_append(&client.keys().tagged(&tag, "list"), &members)
        .push(&queue, &messages)
        .commit()
        .await
        .unwrap();
    assert_eq!(replies[..4], vec![redis::Value::Int(10_000); 4]);
    assert_eq!(
        redis.command_for("t:{p4}:set", &["SCARD", "t:{p4}:set"]),
        ":10000\r\n"
    );
    assert_eq!(
        redis.command_for("t:{p4}:hash", &["HLEN", "t:{p4}:hash"]),
        ":10000\r\n"
    );
    assert_eq!(
        redis.command_for("t:{p4}:list", &["LINDEX", "t:{p4}:list", "9999"]),
        "$5\r\nn9999\r\n"
    );

    // Ten pulls of at most 1 000 leave 10 000 in flight; a plain ack of the first 1 000
    // keeps 9 000 in flight, and a fenced ack takes those 9 000 at once.
    let mut ids = Vec::new();
    for _ in 0..10 {
        ids.extend(queue.pull(1_000).await.unwrap().into_iter().map(|d| d.id));
    }
    assert_eq!(ids.len(), 10_000);
    assert_eq!(ids[9_999], "n9999");
    let missing = queue.ack(&ids[..1_000]).await.unwrap();
    assert!(missing.is_empty(), "{missing:?}");
    lease
        .fenced(&grant)
        .ack(&queue, &ids[1_000..])
        .commit()
        .await
        .unwrap();
    assert_eq!(queue.pull(10).await.unwrap().len(), 0);
    assert_eq!(
        redis.command_each(&["EVAL", "return #redis.call('KEYS', '*:body')", "0"]),
        vec![":0\r\n"; redis.command_each(&["PING"]).len()],
        "every body was deleted by the ack"
    );
}

/// An owner name with a space would corrupt the holder record, so it is refused.
#[tokio::test]
async fn owner_names_are_checked() {
    let redis = TestBackend::start();
    let client = client(&redis).await;
    let lease = Lease::new(&client, &Tag::partition(1), "owner");
    assert!(matches!(
        lease.acquire("two words", Duration::from_secs(1)).await,
        Err(Error::Invalid(_))
    ));
}

/// A fenced batch acks its inputs only if this client still holds every one of them; a
/// dead letter written in a batch reads back like one from nack.
#[tokio::test]
async fn fenced_ack_requires_the_messages_to_be_held() {
    let redis = TestBackend::start();
    let client = client(&redis).await;
    let other = common::client_with(redis.config()).await;
    let tag = Tag::partition(5);
    let (lease, grant, queue) = holding_a_and_b(&client, &tag).await;

    // Another consumer takes "b" over: the batch acking both must not apply at all.
    let thief = Queue::new(&other, &tag, "in");
    assert_eq!(thief.take_over().await.unwrap(), 2);
    let err = lease
        .fenced(&grant)
        .hash_set(&client.keys().tagged(&tag, "state"), &[("by", "applied")])
        .ack(&queue, &["a", "b"])
        .commit()
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::NotHeld { ref id } if id == "a"),
        "{err:?}"
    );
    assert_eq!(
        redis.command_for("t:{p5}:state", &["EXISTS", "t:{p5}:state"]),
        ":0\r\n"
    );

    // Re-queued, they come back to the next puller, even one that held them before.
    let again = queue.pull(10).await.unwrap();
    assert_eq!(ids_and_attempts(&again), [("a", 1), ("b", 1)]);
    lease
        .fenced(&grant)
        .ack(&queue, &["a", "b"])
        .dead_letter(&queue, "b", b"2", 2, "node_deleted")
        .commit()
        .await
        .unwrap();
    let depth = thief.depth().await.unwrap();
    assert_eq!((depth.held, depth.dead), (0, 1));
    let dead = queue.dead_letters(0, 10).await.unwrap();
    assert_eq!(
        (
            dead[0].id.as_str(),
            &dead[0].body[..],
            dead[0].error.as_str()
        ),
        ("b", &b"2"[..], "node_deleted")
    );
}

/// Messages appended to an outbox in a fenced batch reach their queues in order on delivery;
/// a stale grant cannot trim the outbox, and the new holder delivers what is left.
#[tokio::test]
async fn outbox_delivers_in_order_once_committed() {
    let redis = TestBackend::start();
    let client = client(&redis).await;
    let tag = Tag::partition(1);
    let lease = Lease::new(&client, &tag, "owner");
    let grant = granted(
        lease
            .acquire("proc-a", Duration::from_millis(300))
            .await
            .unwrap(),
    );
    let outbox = redpill::Outbox::new(&client, &tag, "out");
    let to_two = Queue::new(&client, &Tag::partition(2), "in");
    let to_three = Queue::new(&client, &Tag::partition(3), "in");
    lease
        .fenced(&grant)
        .append(
            &outbox,
            &[
                (&to_two, "m1", b"1".as_slice()),
                (&to_two, "m2", b"2".as_slice()),
                (&to_three, "m3", b"3".as_slice()),
                (&to_two, "m4", b"4".as_slice()),
            ],
        )
        .commit()
        .await
        .unwrap();
    assert_eq!(outbox.len().await.unwrap(), 4);
    assert_eq!(outbox.deliver(&lease, &grant).await.unwrap(), 4);
    assert!(outbox.is_empty().await.unwrap());
    let ids = |batch: Vec<redpill::Delivery>| batch.into_iter().map(|d| d.id).collect::<Vec<_>>();
    assert_eq!(ids(to_two.pull(10).await.unwrap()), ["m1", "m2", "m4"]);
    assert_eq!(ids(to_three.pull(10).await.unwrap()), ["m3"]);

    // Another batch, then the grant expires before delivery: nothing is trimmed.
    lease
        .fenced(&grant)
        .append(&outbox, &[(&to_three, "m5", b"5".as_slice())])
        .commit()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let err = outbox.deliver(&lease, &grant).await.unwrap_err();
    assert!(matches!(err, Error::StaleEpoch { .. }), "{err:?}");
    assert_eq!(outbox.len().await.unwrap(), 1, "kept for the next holder");
    let next = granted(
        lease
            .acquire("proc-b", Duration::from_secs(5))
            .await
            .unwrap(),
    );
    assert_eq!(outbox.deliver(&lease, &next).await.unwrap(), 1);
    // The stale holder's push already queued m5; the repeat was skipped as still pending.
    assert_eq!(ids(to_three.pull(10).await.unwrap()), ["m5"]);
}

/// Members whose heartbeat stopped drop out of the group.
#[tokio::test]
async fn members_alive_by_heartbeat() {
    let redis = TestBackend::start();
    let first = client(&redis).await;
    let second = client(&redis).await;
    let group = redpill::Members::new(&first, "processors");
    group.join().await.unwrap();
    redpill::Members::new(&second, "processors")
        .join()
        .await
        .unwrap();
    let mut both = vec![
        first.consumer_id().to_owned(),
        second.consumer_id().to_owned(),
    ];
    both.sort();
    assert_eq!(group.alive().await.unwrap(), both);
    second.close().await;
    assert_eq!(group.alive().await.unwrap(), [first.consumer_id()]);
    group.leave().await.unwrap();
    assert!(group.alive().await.unwrap().is_empty());
}

/// A queue fenced by a lease grant is pulled from only while the grant holds the lease: a
/// holder that lost it takes nothing.
#[tokio::test]
async fn fenced_pull_takes_nothing_after_the_lease_is_lost() {
    let redis = TestBackend::start();
    let client = client(&redis).await;
    let tag = Tag::partition(3);
    let lease = Lease::new(&client, &tag, "owner");
    let grant = granted(
        lease
            .acquire("proc-a", Duration::from_millis(200))
            .await
            .unwrap(),
    );
    let queue = Queue::new(&client, &tag, "in").fenced_by(&lease, &grant);
    queue.push(&["1", "2", "3"]).await.unwrap();
    assert_eq!(queue.pull(1).await.unwrap().len(), 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let err = queue.pull(10).await.unwrap_err();
    assert!(
        matches!(err, Error::StaleEpoch { epoch, .. } if epoch == grant.epoch),
        "{err:?}"
    );
    assert_eq!(queue.depth().await.unwrap().waiting, 2, "nothing was taken");
}
