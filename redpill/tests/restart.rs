//! Redis restarts under load: nothing lost, clients reconnect by themselves.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::client;
use redpill::testing::eventually;
use redpill::testing::TestRedis;
use redpill::{Live, Queue, Tag};

const TOTAL: usize = 5000;

/// Redis (AOF, fsync always) is killed with SIGKILL and restarted in the middle of a
/// push/pull workload: every pushed message is delivered, in push order, and the clients
/// reconnect without help. The only repeats allowed are of a batch whose push failed with
/// its outcome unknown and was retried under the same ids after its first copy had already
/// been consumed; they carry the same id, so a consumer recognises them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_mid_workload_loses_nothing() {
    let mut redis = TestRedis::start_with_aof();
    let pusher_client = client(&redis).await;
    let puller_client = client(&redis).await;
    let tag = Tag::partition(11);
    let pushes = Queue::new(&pusher_client, &tag, "in");
    let pulls = Queue::new(&puller_client, &tag, "in");
    let pulled = Arc::new(AtomicUsize::new(0));
    let push_errors = Arc::new(AtomicUsize::new(0));
    let pull_errors = Arc::new(AtomicUsize::new(0));

    let pusher = {
        let errors = Arc::clone(&push_errors);
        tokio::spawn(async move {
            let mut retried: HashSet<String> = HashSet::new();
            for start in (0..TOTAL).step_by(50) {
                let ids: Vec<String> = (start..start + 50).map(|i| format!("id{i:05}")).collect();
                let bodies: Vec<String> = (start..start + 50).map(|i| format!("m{i}")).collect();
                let batch: Vec<(&str, &[u8])> = ids
                    .iter()
                    .zip(&bodies)
                    .map(|(id, body)| (id.as_str(), body.as_bytes()))
                    .collect();
                // A push whose reply was lost is retried with the same ids: never duplicated.
                loop {
                    match pushes.push_with_ids(&batch).await {
                        Ok(_) => break,
                        Err(err) => {
                            assert!(err.is_retryable(), "{err}");
                            errors.fetch_add(1, Ordering::Relaxed);
                            retried.extend(ids.iter().cloned());
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            retried
        })
    };
    let puller = {
        let pulled = Arc::clone(&pulled);
        let errors = Arc::clone(&pull_errors);
        tokio::spawn(async move {
            let mut seen: Vec<String> = Vec::new();
            let mut ids_seen: Vec<String> = Vec::new();
            let mut distinct: HashSet<String> = HashSet::new();
            while distinct.len() < TOTAL {
                let batch = match pulls.pull_wait(100, Duration::from_millis(200)).await {
                    Ok(batch) => batch,
                    Err(err) => {
                        assert!(err.is_retryable(), "{err}");
                        errors.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let ids: Vec<String> = batch.iter().map(|d| d.id.clone()).collect();
                loop {
                    match pulls.ack(&ids).await {
                        Ok(_) => break,
                        Err(err) => {
                            assert!(err.is_retryable(), "{err}");
                            errors.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
                distinct.extend(ids.iter().cloned());
                ids_seen.extend(ids);
                seen.extend(
                    batch
                        .into_iter()
                        .map(|d| String::from_utf8(d.body.to_vec()).unwrap()),
                );
                pulled.store(seen.len(), Ordering::Relaxed);
            }
            (ids_seen, seen)
        })
    };

    eventually(
        Duration::from_secs(20),
        "a fifth of the messages pulled",
        || {
            let pulled = Arc::clone(&pulled);
            async move { (pulled.load(Ordering::Relaxed) >= TOTAL / 5).then_some(()) }
        },
    )
    .await;
    redis.restart();

    let retried = pusher.await.unwrap();
    let (ids, seen) = tokio::time::timeout(Duration::from_secs(30), puller)
        .await
        .expect("the puller got everything within 30 s")
        .unwrap();
    // Keep the first copy of each id; every later copy must be of a retried push.
    let mut first_copies = Vec::new();
    let mut unique = HashSet::new();
    let mut repeats = 0;
    for (id, body) in ids.iter().zip(&seen) {
        if unique.insert(id.clone()) {
            first_copies.push(body.clone());
        } else {
            assert!(
                retried.contains(id),
                "{id} delivered twice though its push never failed"
            );
            repeats += 1;
        }
    }
    let expected: Vec<String> = (0..TOTAL).map(|i| format!("m{i}")).collect();
    assert_eq!(unique.len(), TOTAL, "lost {}", TOTAL - unique.len());
    assert_eq!(first_copies, expected, "delivered out of order");
    assert!(
        repeats <= retried.len(),
        "{repeats} repeats but only {} retried ids",
        retried.len()
    );
    let errors = push_errors.load(Ordering::Relaxed) + pull_errors.load(Ordering::Relaxed);
    assert!(errors > 0, "the restart was noticed by the clients");
    assert_eq!(
        Queue::new(&puller_client, &tag, "in")
            .depth()
            .await
            .unwrap()
            .held,
        0
    );
}

/// A live-channel subscriber receives again after a Redis restart, without re-subscribing.
#[tokio::test]
async fn live_subscriber_receives_after_restart() {
    let mut redis = TestRedis::start();
    let subscriber_client = client(&redis).await;
    let publisher_client = client(&redis).await;
    let live = Live::new(&subscriber_client);
    let mut subscription = live.subscribe("news", 100).await.unwrap();
    let publisher = Live::new(&publisher_client);
    assert_eq!(publisher.publish("news", "before").await.unwrap(), 1);
    assert_eq!(&subscription.recv().await.unwrap()[..], b"before");
    assert_eq!(live.connections(), 1);

    redis.restart();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut n = 0;
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no message after the restart"
        );
        n += 1;
        let _ = publisher.publish("news", format!("after {n}")).await;
        if let Ok(Some(message)) =
            tokio::time::timeout(Duration::from_millis(100), subscription.recv()).await
        {
            assert!(message.starts_with(b"after "));
            break;
        }
    }
    assert_eq!(live.connections(), 2, "exactly one reconnect");
    // Messages while connected arrive in order.
    for i in 0..20 {
        publisher.publish("news", format!("n{i}")).await.unwrap();
    }
    let mut got = Vec::new();
    while got.len() < 20 {
        let message = subscription.recv().await.unwrap();
        if message.starts_with(b"n") {
            got.push(String::from_utf8(message.to_vec()).unwrap());
        }
    }
    assert_eq!(got, (0..20).map(|i| format!("n{i}")).collect::<Vec<_>>());
}
