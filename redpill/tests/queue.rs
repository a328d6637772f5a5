//! Queue behaviour against a real redis-server.

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{bodies, client, texts};
use redpill::testing::eventually;
use redpill::testing::TestBackend;
use redpill::{Error, PushedOnce, Queue, Tag};

/// Messages come out in the order they were pushed, across several pushes and pulls.
#[tokio::test]
async fn fifo_order_across_batches() {
    let redis = TestBackend::start();
    let client = client(&redis).await;
    let queue = Queue::new(&client, &Tag::partition(3), "in");
    queue.push(&bodies(0..250)).await.unwrap();
    queue.push(&bodies(250..300)).await.unwrap();

    let mut seen = Vec::new();
    loop {
        let batch = queue.pull(64).await.unwrap();
        if batch.is_empty() {
            break;
        }
        assert!(batch.len() <= 64);
        queue
            .ack(&batch.iter().map(|d| d.id.clone()).collect::<Vec<_>>())
            .await
            .unwrap();
        seen.extend(texts(&batch));
    }
    assert_eq!(seen, bodies(0..300));
    let depth = queue.depth().await.unwrap();
    assert_eq!(
        (depth.waiting, depth.held, depth.delayed, depth.dead),
        (0, 0, 0, 0)
    );
}

/// Competing pullers get disjoint messages, and together every one of them, each in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn competing_pullers_split_the_work() {
    let redis = TestBackend::start();
    let pusher = client(&redis).await;
    let queue = Queue::new(&pusher, &Tag::named("work"), "jobs");
    queue.push(&bodies(0..2000)).await.unwrap();

    let mut tasks = Vec::new();
    for _ in 0..4 {
        let puller = Queue::new(&client(&redis).await, &Tag::named("work"), "jobs");
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let batch = puller
                    .pull_wait(50, Duration::from_millis(300))
                    .await
                    .unwrap();
                if batch.is_empty() {
                    return got;
                }
                let ids: Vec<_> = batch.iter().map(|d| d.id.clone()).collect();
                assert!(puller.ack(&ids).await.unwrap().is_empty());
                got.extend(texts(&batch));
            }
        }));
    }
    let mut all = Vec::new();
    let mut pullers_with_work = 0;
    for task in tasks {
        let got = task.await.unwrap();
        // Each puller sees its share in queue order.
        let positions: Vec<usize> = got.iter().map(|b| b[1..].parse().unwrap()).collect();
        assert!(
            positions.windows(2).all(|w| w[0] < w[1]),
            "a puller saw its share out of order"
        );
        pullers_with_work += usize::from(!got.is_empty());
        all.extend(got);
    }
    assert_eq!(all.len(), 2000, "every message delivered exactly once");
    let unique: HashSet<_> = all.iter().collect();
    assert_eq!(unique.len(), 2000, "no message delivered twice");
    assert!(pullers_with_work >= 2, "the work was shared");
}

/// Not a test on its own: the entry point of the child process that
/// `killed_puller_messages_come_back_in_order` starts and kills.
#[tokio::test]
async fn child_puller_process() {
    let Ok(url) = std::env::var("REDPILL_CHILD_REDIS") else {
        return;
    };
    let config = redpill::Config::default()
        .set_url(url)
        .set_consumer_ttl(Duration::from_secs(1));
    let client = common::client_with(config).await;
    let queue = Queue::new(&client, &Tag::named("work"), "jobs");
    let batch = queue.pull(10).await.unwrap();
    println!("PULLED {}", texts(&batch).join(","));
    tokio::time::sleep(Duration::from_secs(60)).await;
}

/// A puller process killed with SIGKILL after pulling a batch: its messages go to another
/// puller, at the head of the queue and in their order; none lost, none duplicated.
#[tokio::test]
async fn killed_puller_messages_come_back_in_order() {
    let redis = TestBackend::start();
    let client = client(&redis).await;
    let queue = Queue::new(&client, &Tag::named("work"), "jobs");
    queue.push(&bodies(0..25)).await.unwrap();

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "child_puller_process",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("REDPILL_CHILD_REDIS", redis.url())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let pulled = stdout
        .lines()
        .map(Result::unwrap)
        .find_map(|line| line.split_once("PULLED ").map(|(_, ids)| ids.to_owned()))
        .expect("the child reports its batch");
    assert_eq!(pulled, bodies(0..10).join(","));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    // Meanwhile the others flow on.
    let first = queue.pull(5).await.unwrap();
    assert_eq!(texts(&first), bodies(10..15));
    queue
        .ack(&first.iter().map(|d| d.id.clone()).collect::<Vec<_>>())
        .await
        .unwrap();

    // Once the child's heartbeat (1 s TTL) expires, a reaper pass puts its ten back.
    eventually(
        Duration::from_secs(5),
        "the dead puller's messages re-queued",
        || {
            let queue = queue.clone();
            async move {
                let requeued = queue.reap().await.unwrap();
                (requeued > 0).then_some(requeued)
            }
        },
    )
    .await;
    let rest = queue.pull(100).await.unwrap();
    queue
        .ack(&rest.iter().map(|d| d.id.clone()).collect::<Vec<_>>())
        .await
        .unwrap();
    let mut expected = bodies(0..10);
    expected.extend(bodies(15..25));
    // The dead puller's ten come back at the head, in order, before 15..25.
    assert_eq!(texts(&rest), expected);
    assert!(
        rest[..10].iter().all(|d| d.attempts == 1),
        "one failed attempt counted"
    );
    assert!(rest[10..].iter().all(|d| d.attempts == 0));
    assert_eq!(queue.depth().await.unwrap().held, 0);
}

/// nack → retried after the backoff → dead-lettered on the last attempt, keeping the error;
/// other messages keep flowing while a retry waits out its backoff.
#[tokio::test]
async fn nack_retries_then_dead_letters_with_the_error() {
    let redis = TestBackend::start();
    let client = common::client_with(redis.config().set_max_attempts(3)).await;
    let queue = Queue::new(&client, &Tag::partition(0), "in");
    let ids = queue.push(&["poison", "fine"]).await.unwrap();

    for attempt in 0..3u32 {
        let batch = eventually(Duration::from_secs(3), "the poison message again", || {
            let queue = queue.clone();
            async move {
                let batch = queue.pull(1).await.unwrap();
                (!batch.is_empty()).then_some(batch)
            }
        })
        .await;
        assert_eq!(batch.len(), 1);
        assert_eq!(batch[0].id, ids[0]);
        assert_eq!(batch[0].attempts, attempt);
        let outcome = queue
            .nack(&[&batch[0].id], &format!("boom {attempt}"))
            .await
            .unwrap();
        assert_eq!(
            (outcome.retried, outcome.dead_lettered),
            if attempt < 2 { (1, 0) } else { (0, 1) }
        );
        if attempt == 0 {
            // While the poison message waits out its backoff, the next one is not held up.
            assert_eq!(queue.depth().await.unwrap().delayed, 1);
            let batch = queue.pull(10).await.unwrap();
            assert_eq!(texts(&batch), ["fine"]);
            queue.ack(&[&batch[0].id]).await.unwrap();
        }
    }
    let dead = queue.dead_letters(0, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id, ids[0]);
    assert_eq!(&dead[0].body[..], b"poison");
    assert_eq!(dead[0].attempts, 3);
    assert_eq!(dead[0].error, "boom 2");
    assert!(dead[0].at_ms > 1_700_000_000_000);
    let depth = queue.depth().await.unwrap();
    assert_eq!((depth.dead, depth.held, depth.delayed), (1, 0, 0));

    // A replayed dead letter is deliverable again with a fresh attempt count.
    assert_eq!(queue.replay_dead(10).await.unwrap(), vec![ids[0].clone()]);
    let batch = queue.pull(10).await.unwrap();
    assert_eq!(
        (texts(&batch), batch[0].attempts),
        (vec!["poison".to_owned()], 0)
    );
    let depth = queue.depth().await.unwrap();
    assert_eq!((depth.dead, depth.held), (0, 1));
}

/// Chosen dead letters are replayed, in the order given, and others stay; a letter already
/// replayed is skipped the second time.
#[tokio::test]
async fn replays_chosen_dead_letters() {
    let redis = TestBackend::start();
    let client = common::client_with(redis.config().set_max_attempts(1)).await;
    let queue = Queue::new(&client, &Tag::partition(0), "in");
    queue.push(&["a", "b", "c"]).await.unwrap();
    let batch = queue.pull(10).await.unwrap();
    let ids: Vec<&str> = batch.iter().map(|d| d.id.as_str()).collect();
    let outcome = queue.nack(&ids, "no").await.unwrap();
    assert_eq!(outcome.dead_lettered, 3);
    let dead = queue.dead_letters(0, 10).await.unwrap();
    let chosen = [dead[2].clone(), dead[0].clone()];
    assert_eq!(
        queue.replay_dead_letters(&chosen).await.unwrap(),
        vec![dead[2].id.clone(), dead[0].id.clone()]
    );
    assert!(queue.replay_dead_letters(&chosen).await.unwrap().is_empty());
    let left = queue.dead_letters(0, 10).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(&left[0].body[..], b"b");
    let replayed = queue.pull(10).await.unwrap();
    assert_eq!(texts(&replayed), ["c", "a"]);
    assert!(replayed.iter().all(|d| d.attempts == 0));
}

/// A pull that ran in Redis but whose reply never came back (here: the server was busy past
/// the response timeout) leaves its messages in flight; the next pull delivers them first,
/// then fresh ones, each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_whose_reply_is_lost_is_delivered_by_the_next() {
    let redis = TestBackend::start();
    let client = common::client_with(
        redis
            .config()
            .set_response_timeout(Duration::from_millis(200)),
    )
    .await;
    let tag = Tag::partition(9);
    let queue = Queue::new(&client, &tag, "in");
    queue
        .push_with_ids(&[
            ("a", b"1".as_slice()),
            ("b", b"2".as_slice()),
            ("c", b"3".as_slice()),
        ])
        .await
        .unwrap();
    // The pull script loaded first: a lost EVALSHA answered NOSCRIPT would not have run.
    let warm = Queue::new(&client, &tag, "warm");
    assert!(warm.pull(1).await.unwrap().is_empty());
    let waiting = "t:{p9}:q:in";
    let script = "local t = redis.call('TIME') local until_us = t[1] * 1e6 + t[2] + 600000 \
                  repeat t = redis.call('TIME') until t[1] * 1e6 + t[2] >= until_us return 1";
    tokio::task::block_in_place(|| {
        std::thread::scope(|scope| {
            // A script busy for 600 ms holds the pull back past its 200 ms timeout; the
            // pull runs once it ends.
            let busy = scope.spawn(|| redis.command_for(waiting, &["EVAL", script, "1", waiting]));
            std::thread::sleep(Duration::from_millis(100));
            let pulled = tokio::runtime::Handle::current().block_on(queue.pull(2));
            assert!(pulled.is_err(), "the reply timed out: {pulled:?}");
            assert_eq!(busy.join().unwrap(), ":1\r\n");
        });
    });
    // The lost pull ran: on a single Redis once (one message left waiting); a Redis Cluster
    // client may also have sent it again when it timed out (none left). Either way what it
    // took is in flight, and the next pull must deliver it, in order, once.
    let waiting = queue.depth().await.unwrap().waiting;
    assert!(waiting < 3, "the lost pull did not run: {waiting} waiting");
    let ids: Vec<String> = queue
        .pull(10)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(ids, ["a", "b", "c"]);
    assert!(queue.pull(10).await.unwrap().is_empty());
}

/// An id in the waiting list without a body (its message was settled meanwhile) is not
/// delivered and not left held: the pull drops it and delivers the others in order.
#[tokio::test]
async fn ids_without_a_body_are_dropped_by_the_pull() {
    let redis = TestBackend::start();
    let client = client(&redis).await;
    let tag = Tag::partition(8);
    let queue = Queue::new(&client, &tag, "in");
    queue
        .push_with_ids(&[("a", b"1".as_slice()), ("b", b"2".as_slice())])
        .await
        .unwrap();
    let waiting = "t:{p8}:q:in";
    assert_eq!(
        redis.command_for(waiting, &["LINSERT", waiting, "BEFORE", "b", "ghost"]),
        ":3\r\n"
    );
    let pulled = queue.pull(10).await.unwrap();
    let ids: Vec<&str> = pulled.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["a", "b"]);
    let fly = format!("t:{{p8}}:q:in:fly:{}", client.consumer_id());
    assert_eq!(
        redis.command_for(&fly, &["LRANGE", &fly, "0", "-1"]),
        "*2\r\n$1\r\na\r\n$1\r\nb\r\n"
    );
}

/// Pushing an id that is still pending is a no-op, so a retried push never duplicates.
#[tokio::test]
async fn push_is_idempotent_by_id_while_pending() {
    let redis = TestBackend::start();
    let client = client(&redis).await;
    let queue = Queue::new(&client, &Tag::partition(1), "in");
    let batch: [(&str, &[u8]); 2] = [("a", b"1"), ("b", b"2")];
    assert_eq!(queue.push_with_ids(&batch).await.unwrap(), 2);
    assert_eq!(queue.push_with_ids(&batch).await.unwrap(), 0);
    let pulled = queue.pull(10).await.unwrap();
    assert_eq!(
        pulled.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    // Still in flight, so still pending: no duplicate.
    assert_eq!(queue.push_with_ids(&batch[..1]).await.unwrap(), 0);
    assert_eq!(queue.ack(&["a", "b"]).await.unwrap(), Vec::<String>::new());
    // Acking again reports them as no longer held.
    assert_eq!(queue.ack(&["a"]).await.unwrap(), vec!["a".to_owned()]);
    assert!(matches!(
        queue.push_with_ids(&[("", b"x".as_slice())]).await,
        Err(Error::Invalid(_))
    ));
}

/// A push with a key happens once while its record lives: a repeat, even after the messages
/// were acked and even when the queue is full, adds nothing and returns the first push's
/// record; another key pushes; once the record expires the key pushes again.
#[tokio::test]
async fn push_once_pushes_a_key_once_while_its_record_lives() {
    let redis = TestBackend::start();
    let client = client(&redis).await;
    let queue = Queue::new(&client, &Tag::partition(1), "in").with_bound(2);
    let ttl = Duration::from_millis(300);
    let first: [(&str, &[u8]); 2] = [("a", b"1"), ("b", b"2")];
    assert_eq!(
        queue.push_once("k1", ttl, "a b", &first).await.unwrap(),
        PushedOnce::Queued(2)
    );
    let pulled = queue.pull(10).await.unwrap();
    assert_eq!(texts(&pulled), ["1", "2"]);
    queue.ack(&["a", "b"]).await.unwrap();
    // The retry carries fresh ids, as a client's resent request gets: still nothing queued.
    let retry: [(&str, &[u8]); 2] = [("c", b"1"), ("d", b"2")];
    assert_eq!(
        queue.push_once("k1", ttl, "c d", &retry).await.unwrap(),
        PushedOnce::Repeated("a b".to_owned())
    );
    assert_eq!(queue.depth().await.unwrap().held, 0);
    // A full queue still answers a repeat from its record, and refuses a new key.
    queue
        .push_with_ids(&[("x", b"x"), ("y", b"y")])
        .await
        .unwrap();
    assert_eq!(
        queue.push_once("k1", ttl, "c d", &retry).await.unwrap(),
        PushedOnce::Repeated("a b".to_owned())
    );
    assert!(matches!(
        queue.push_once("k2", ttl, "c d", &retry).await,
        Err(Error::Full { len: 2, max: 2, .. })
    ));
    queue.pull(10).await.unwrap();
    queue.ack(&["x", "y"]).await.unwrap();
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    assert_eq!(
        queue.push_once("k1", ttl, "c d", &retry).await.unwrap(),
        PushedOnce::Queued(2)
    );
    assert!(matches!(
        queue.push_once("", ttl, "", &retry).await,
        Err(Error::Invalid(_))
    ));
}

/// A bounded queue refuses a batch that would pass the bound, whole, with a retryable error.
#[tokio::test]
async fn bounded_queue_pushes_back() {
    let redis = TestBackend::start();
    let client = client(&redis).await;
    let queue = Queue::new(&client, &Tag::partition(2), "in").with_bound(10);
    queue.push(&bodies(0..8)).await.unwrap();
    let err = queue.push(&bodies(8..11)).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Full {
                len: 8,
                max: 10,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_retryable());
    assert_eq!(
        queue.depth().await.unwrap().waiting,
        8,
        "nothing of the refused batch was queued"
    );
    let batch = queue.pull(5).await.unwrap();
    // In flight still counts against the bound until acked.
    assert!(queue.push(&bodies(8..11)).await.is_err());
    queue
        .ack(&batch.iter().map(|d| d.id.clone()).collect::<Vec<_>>())
        .await
        .unwrap();
    queue.push(&bodies(8..11)).await.unwrap();
    assert_eq!(queue.depth().await.unwrap().held, 6);
}

/// release() hands in-flight messages back at the head, in order, without counting an attempt.
#[tokio::test]
async fn release_hands_messages_back_without_an_attempt() {
    let redis = TestBackend::start();
    let first = client(&redis).await;
    let second = client(&redis).await;
    let queue = Queue::new(&first, &Tag::partition(4), "in");
    queue.push(&bodies(0..6)).await.unwrap();
    assert_eq!(texts(&queue.pull(4).await.unwrap()), bodies(0..4));
    assert_eq!(queue.release().await.unwrap(), 4);
    first.close().await;

    let other = Queue::new(&second, &Tag::partition(4), "in");
    let batch = other.pull(10).await.unwrap();
    assert_eq!(texts(&batch), bodies(0..6));
    assert!(batch.iter().all(|d| d.attempts == 0));
}

/// A waiting puller is woken by a push well before its timeout.
#[tokio::test]
async fn pull_wait_wakes_on_push() {
    let redis = TestBackend::start();
    let client =
        common::client_with(redis.config().set_poll_interval(Duration::from_secs(10))).await;
    let queue = Queue::new(&client, &Tag::partition(5), "in");
    let pusher = queue.clone();
    let started = tokio::time::Instant::now();
    let push = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        pusher.push(&["hello"]).await.unwrap();
    });
    let batch = queue.pull_wait(10, Duration::from_secs(8)).await.unwrap();
    push.await.unwrap();
    assert_eq!(texts(&batch), ["hello"]);
    // Woken by the PUBLISH hint, not by the 10 s poll.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

/// After a pull that emptied the queue, the next wait asks Redis nothing until a push is
/// published: one script for the push, one for the pull, no empty pull between batches. A
/// message that comes back without a hint (a retry whose backoff ended) is still pulled by
/// the attempt after one poll interval.
#[tokio::test]
async fn a_drained_queue_is_asked_again_only_after_a_push() {
    let redis = TestBackend::start();
    let config = redis
        .config()
        .set_poll_interval(Duration::from_secs(2))
        .set_reap_interval(Duration::from_secs(600))
        .set_retry_backoff(Duration::from_millis(50), Duration::from_millis(50));
    let client = common::client_with(config).await;
    let queue = Queue::new(&client, &Tag::partition(6), "in");
    queue.push(&["a"]).await.unwrap();
    let batch = queue.pull_wait(10, Duration::from_secs(5)).await.unwrap();
    assert_eq!(texts(&batch), ["a"]);

    let scripts_before = scripts_run(&redis).await;
    let pusher = queue.clone();
    let push = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        pusher.push(&["b"]).await.unwrap();
    });
    let batch = queue.pull_wait(10, Duration::from_secs(5)).await.unwrap();
    push.await.unwrap();
    assert_eq!(texts(&batch), ["b"]);
    assert_eq!(
        scripts_run(&redis).await - scripts_before,
        2,
        "the push and the pull that took it; no empty pull before them"
    );

    // A retry comes back from the delayed set without a hint: found after one poll interval
    // (2 s: long beside the push 100 ms after the wait began above, so a slow machine cannot
    // make that wait poll before the push).
    queue.nack(&[&batch[0].id], "again").await.unwrap();
    let started = tokio::time::Instant::now();
    let batch = queue.pull_wait(10, Duration::from_secs(5)).await.unwrap();
    assert_eq!(texts(&batch), ["b"]);
    assert_eq!(batch[0].attempts, 1);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
}

/// How many scripts the test's Redis has run (`EVALSHA` calls in `INFO commandstats`, summed
/// over every node of a cluster).
async fn scripts_run(redis: &TestBackend) -> u64 {
    let urls = match redis {
        TestBackend::Single(server) => vec![server.url()],
        TestBackend::Cluster(cluster) => {
            (0..cluster.len()).map(|i| cluster.node(i).url()).collect()
        }
    };
    let mut calls = 0;
    for url in urls {
        let client = redis::Client::open(url).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut conn)
            .await
            .unwrap();
        calls += info
            .lines()
            .find_map(|line| line.strip_prefix("cmdstat_evalsha:calls="))
            .and_then(|rest| rest.split(',').next())
            .map_or(0, |count| count.parse::<u64>().unwrap());
    }
    calls
}

/// A new owner takes over what the previous holders of the queue have in flight, at the head,
/// each holder's messages in its pull order, one attempt counted, alive or not.
#[tokio::test]
async fn take_over_requeues_other_holders_in_pull_order() {
    let redis = TestBackend::start();
    let first = client(&redis).await;
    let second = client(&redis).await;
    let owner = client(&redis).await;
    let tag = Tag::partition(6);
    Queue::new(&first, &tag, "in")
        .push(&bodies(0..10))
        .await
        .unwrap();
    assert_eq!(
        texts(&Queue::new(&first, &tag, "in").pull(3).await.unwrap()),
        bodies(0..3)
    );
    assert_eq!(
        texts(&Queue::new(&second, &tag, "in").pull(2).await.unwrap()),
        bodies(3..5)
    );
    assert_eq!(
        texts(&Queue::new(&first, &tag, "in").pull(1).await.unwrap()),
        bodies(5..6)
    );

    let queue = Queue::new(&owner, &tag, "in");
    assert_eq!(queue.take_over().await.unwrap(), 6);
    let batch = queue.pull(100).await.unwrap();
    let first_held = ["m0", "m1", "m2", "m5"];
    let second_held = ["m3", "m4"];
    let got = texts(&batch);
    assert!(
        got[..6] == [&first_held[..], &second_held[..]].concat()
            || got[..6] == [&second_held[..], &first_held[..]].concat(),
        "{got:?}"
    );
    assert_eq!(got[6..], bodies(6..10));
    assert_eq!(
        batch.iter().map(|d| d.attempts).collect::<Vec<_>>(),
        [1, 1, 1, 1, 1, 1, 0, 0, 0, 0]
    );
    // The previous holders' acks now report the messages as no longer theirs.
    let first_ids: Vec<&str> = batch
        .iter()
        .filter(|d| first_held.contains(&std::str::from_utf8(&d.body).unwrap()))
        .take(3)
        .map(|d| d.id.as_str())
        .collect();
    assert_eq!(
        Queue::new(&first, &tag, "in")
            .ack(&first_ids)
            .await
            .unwrap()
            .len(),
        3
    );
    assert_eq!(queue.take_over().await.unwrap(), 0, "its own messages stay");
}

/// Batches for several queues go out in one call; pending ids are skipped as in a single push.
#[tokio::test]
async fn push_many_reaches_every_queue() {
    let redis = TestBackend::start();
    let client = client(&redis).await;
    let a = Queue::new(&client, &Tag::partition(1), "in");
    let b = Queue::new(&client, &Tag::partition(2), "in");
    let added = Queue::push_many(
        &client,
        &[
            (&a, vec![("x", b"1".as_slice()), ("y", b"2".as_slice())]),
            (&b, vec![("z", b"3".as_slice())]),
        ],
    )
    .await
    .unwrap();
    assert_eq!(added, [2, 1]);
    let again = Queue::push_many(&client, &[(&a, vec![("x", b"1".as_slice())])])
        .await
        .unwrap();
    assert_eq!(again, [0]);
    assert_eq!(texts(&a.pull(10).await.unwrap()), ["1", "2"]);
    assert_eq!(texts(&b.pull(10).await.unwrap()), ["3"]);
    // After a restart of Redis's script cache the batch still goes through.
    for flushed in redis.command_each(&["SCRIPT", "FLUSH"]) {
        assert!(flushed.starts_with("+OK"), "{flushed}");
    }
    Queue::push_many(&client, &[(&a, vec![("w", b"4".as_slice())])])
        .await
        .unwrap();
    assert_eq!(texts(&a.pull(10).await.unwrap()), ["4"]);
}

/// The first process to record a setting fixes it; later ones read it back.
#[tokio::test]
async fn fixed_setting_is_set_once() {
    let redis = TestBackend::start();
    let client = client(&redis).await;
    assert_eq!(
        client.fixed_setting("partitions", "64").await.unwrap(),
        "64"
    );
    assert_eq!(
        client.fixed_setting("partitions", "32").await.unwrap(),
        "64"
    );
}

/// `depths` reads several queues in one round trip, with the creation time of each head
/// message: the oldest waiting, which is what a backlog's age is measured by.
#[tokio::test]
async fn depths_tell_the_age_of_the_oldest_waiting_message() {
    let redis = TestBackend::start();
    let client = client(&redis).await;
    let busy = Queue::new(&client, &Tag::named("a"), "busy");
    let idle = Queue::new(&client, &Tag::named("b"), "idle");
    let before = now_ms();
    let ids = busy.push(&bodies(0..3)).await.unwrap();
    let after = now_ms();
    let depths = Queue::depths(&[busy.clone(), idle.clone()]).await.unwrap();
    assert_eq!((depths[0].waiting, depths[0].held), (3, 3));
    let oldest = depths[0].oldest_ms.expect("the head's id carries its time");
    assert!(
        (before..=after).contains(&oldest),
        "{before} <= {oldest} <= {after}"
    );
    assert_eq!(redpill::id_time_ms(&ids[0]), Some(oldest));
    assert_eq!(depths[1], redpill::QueueDepth::default());
    // Pulling the head moves the age on to the next message.
    let pulled = busy.pull(1).await.unwrap();
    assert_eq!(pulled[0].id, ids[0]);
    let next = busy.depth().await.unwrap();
    assert_eq!(next.oldest_ms, redpill::id_time_ms(&ids[1]));
    assert_eq!(Queue::depths(&[]).await.unwrap(), Vec::new());
    client.close().await;
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}
