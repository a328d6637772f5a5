//! Topic behaviour against a real redis-server.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{bodies, client};
use redpill::testing::TestBackend;
use redpill::{Entry, Error, StartFrom, Tag, Topic};

fn texts(entries: &[Entry]) -> Vec<String> {
    entries
        .iter()
        .map(|e| String::from_utf8(e.body.to_vec()).unwrap())
        .collect()
}

/// Reads everything the group has for this member until `want` entries arrived, acking them.
async fn drain(group: &redpill::Group, want: usize) -> Vec<Entry> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while got.len() < want {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {want} arrived",
            got.len()
        );
        let batch = group
            .read_wait(200, Duration::from_millis(200))
            .await
            .unwrap();
        group.ack(&batch).await.unwrap();
        got.extend(batch);
    }
    got
}

/// A group whose only member is down while 1 000 messages are published receives all 1 000,
/// in order, when it comes back; a second group receives them too.
#[tokio::test]
async fn groups_receive_what_was_published_while_they_were_away() {
    let redis = TestBackend::start();
    let publisher = client(&redis).await;
    let topic = Topic::new(&publisher, &Tag::named("events"), "outputs");

    // The archive group exists (its member ran once) but no member is running now.
    {
        let member = client(&redis).await;
        let topic = Topic::new(&member, &Tag::named("events"), "outputs");
        topic.group("archive", StartFrom::Beginning).await.unwrap();
        member.close().await;
    }
    for chunk in bodies(0..1000).chunks(100) {
        topic.publish(0, chunk).await.unwrap();
    }

    let member = client(&redis).await;
    let archive = Topic::new(&member, &Tag::named("events"), "outputs")
        .group("archive", StartFrom::Beginning)
        .await
        .unwrap();
    assert_eq!(texts(&drain(&archive, 1000).await), bodies(0..1000));

    let audit = Topic::new(&member, &Tag::named("events"), "outputs")
        .group("audit", StartFrom::Beginning)
        .await
        .unwrap();
    assert_eq!(texts(&drain(&audit, 1000).await), bodies(0..1000));
    // Nothing more for either.
    assert!(archive.read(10).await.unwrap().is_empty());
    assert!(audit.read(10).await.unwrap().is_empty());

    // A group that has read nothing yet: all of it is lag, none read.
    Topic::new(&member, &Tag::named("events"), "outputs")
        .group("late", StartFrom::Beginning)
        .await
        .unwrap();

    let stats = topic.stats().await.unwrap();
    assert_eq!(stats[0].len, 1000);
    let mut backlog: Vec<_> = stats[0]
        .groups
        .iter()
        .map(|g| (g.group.clone(), g.pending, g.lag, g.entries_read))
        .collect();
    backlog.sort();
    assert_eq!(
        backlog,
        [
            ("archive".to_owned(), 0, Some(0), Some(1000)),
            ("audit".to_owned(), 0, Some(0), Some(1000)),
            ("late".to_owned(), 0, Some(1000), Some(0)),
        ]
    );
}

/// Members of one group share the work: disjoint entries, all of them together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_of_a_group_share_the_work() {
    let redis = TestBackend::start();
    let publisher = client(&redis).await;
    let topic = Topic::partitioned(&publisher, "outputs", 4);
    let mut members = Vec::new();
    for _ in 0..3 {
        let member = client(&redis).await;
        members.push(
            Topic::partitioned(&member, "outputs", 4)
                .group("store", StartFrom::Beginning)
                .await
                .unwrap(),
        );
    }
    for shard in 0..4 {
        topic
            .publish(shard, &bodies(shard * 100..shard * 100 + 100))
            .await
            .unwrap();
    }
    let mut tasks = Vec::new();
    for group in members {
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let batch = group
                    .read_wait(7, Duration::from_millis(300))
                    .await
                    .unwrap();
                if batch.is_empty() {
                    return got;
                }
                group.ack(&batch).await.unwrap();
                got.extend(batch);
            }
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    assert_eq!(all.len(), 400);
    let unique: HashSet<String> = texts(&all).into_iter().collect();
    assert_eq!(unique.len(), 400);
    // Each entry came from the shard it was published to.
    assert!(all.iter().all(|e| {
        let n: usize = String::from_utf8_lossy(&e.body)[1..].parse().unwrap();
        n / 100 == e.shard
    }));
}

/// At the bound a shard refuses new entries (nothing dropped) until every group has acked
/// enough to trim; then publishing goes on.
#[tokio::test]
async fn full_topic_pushes_back_until_groups_catch_up() {
    let redis = TestBackend::start();
    let client = client(&redis).await;
    let topic = Topic::new(&client, &Tag::named("small"), "t").with_bound(10);
    let fast = topic.group("fast", StartFrom::Beginning).await.unwrap();
    let slow = topic.group("slow", StartFrom::Beginning).await.unwrap();
    topic.publish(0, &bodies(0..10)).await.unwrap();

    let got = fast.read(100).await.unwrap();
    fast.ack(&got).await.unwrap();
    let err = topic.publish(0, &["m10"]).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Full {
                len: 10,
                max: 10,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_retryable());

    // The slow group has read 4 and acked only 3: 3 entries can go.
    let slow_got = slow.read(4).await.unwrap();
    slow.ack(&slow_got[..3]).await.unwrap();
    assert_eq!(topic.publish(0, &bodies(10..13)).await.unwrap(), 10);
    assert!(topic.publish(0, &["m13"]).await.is_err());

    // Nothing was lost for the slow group: it gets the unacked one again after a restart
    // and every later entry.
    let rest = slow.read(100).await.unwrap();
    assert_eq!(texts(&rest), bodies(4..13));
    slow.ack(&slow_got[3..]).await.unwrap();
    slow.ack(&rest).await.unwrap();
}

/// A member that dies with unacked entries: another member of its group takes them over
/// once its heartbeat expires.
#[tokio::test]
async fn dead_members_entries_are_taken_over() {
    let redis = TestBackend::start();
    let dying = client(&redis).await;
    let survivor = client(&redis).await;
    let topic = Topic::new(&dying, &Tag::named("events"), "outputs");
    topic.publish(0, &bodies(0..5)).await.unwrap();
    let group = topic.group("store", StartFrom::Beginning).await.unwrap();
    assert_eq!(group.read(3).await.unwrap().len(), 3);
    // Dies without acking: its heartbeat stops and expires after the 1 s TTL.
    drop(group);
    drop(topic);
    dying.close().await;

    let group = Topic::new(&survivor, &Tag::named("events"), "outputs")
        .group("store", StartFrom::Beginning)
        .await
        .unwrap();
    let got = drain(&group, 5).await;
    let mut got = texts(&got);
    got.sort();
    assert_eq!(got, bodies(0..5));
    let stats = Topic::new(&survivor, &Tag::named("events"), "outputs")
        .stats()
        .await
        .unwrap();
    assert_eq!(stats[0].groups[0].pending, 0);
}

/// A group created with StartFrom::Now skips what was published before it.
#[tokio::test]
async fn start_from_now_skips_history() {
    let redis = TestBackend::start();
    let client = client(&redis).await;
    let topic = Topic::new(&client, &Tag::named("events"), "t");
    topic.publish(0, &["old"]).await.unwrap();
    let group = topic.group("live", StartFrom::Now).await.unwrap();
    topic.publish(0, &["new"]).await.unwrap();
    assert_eq!(texts(&group.read(10).await.unwrap()), ["new"]);
}

/// make_room trims what every group acknowledged once a shard is at its bound, and reports
/// the length left, for writers that append inside their own scripts.
#[tokio::test]
async fn make_room_trims_acknowledged_entries_at_the_bound() {
    let redis = TestBackend::start();
    let client = client(&redis).await;
    let topic = Topic::new(&client, &Tag::named("small"), "t").with_bound(3);
    let group = topic.group("archive", StartFrom::Beginning).await.unwrap();
    topic.publish(0, &bodies(0..2)).await.unwrap();
    assert_eq!(
        topic.make_room(0).await.unwrap(),
        2,
        "below the bound nothing is trimmed"
    );
    topic.publish(0, &bodies(2..3)).await.unwrap();
    assert_eq!(
        topic.make_room(0).await.unwrap(),
        3,
        "nothing acknowledged yet"
    );
    let got = group.read(2).await.unwrap();
    group.ack(&got).await.unwrap();
    assert_eq!(topic.make_room(0).await.unwrap(), 1);
    assert_eq!(texts(&group.read(10).await.unwrap()), ["m2"]);
}

/// A ring topic never refuses: past its bound it drops the oldest entries, unread or not,
/// and a reader without a group reads on from the last id it saw, in order, waking on a
/// publish.
#[tokio::test]
async fn a_ring_keeps_the_newest_entries_and_readers_read_on_from_an_id() {
    let redis = TestBackend::start();
    let client = client(&redis).await;
    let topic = Topic::new(&client, &Tag::named("ring"), "telemetry").ring(100);
    for chunk in bodies(0..1_000).chunks(10) {
        topic.publish(0, chunk).await.expect("a ring never refuses");
    }
    let kept = topic.read_after(0, "0", 10_000).await.unwrap();
    // MAXLEN ~ trims whole stream nodes: about the bound, never fewer, the newest in order.
    assert!(
        (100..=300).contains(&kept.len()),
        "kept {} entries",
        kept.len()
    );
    let expected: Vec<String> = bodies(1_000 - kept.len()..1_000);
    assert_eq!(texts(&kept), expected);

    // Reading on from the last id: exactly what follows, nothing twice.
    let last = kept.last().unwrap().id.clone();
    assert!(topic.read_after(0, &last, 10).await.unwrap().is_empty());
    let reader = {
        let topic = topic.clone();
        let last = last.clone();
        tokio::spawn(async move {
            topic
                .read_after_wait(0, &last, 10, Duration::from_secs(5))
                .await
                .unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    topic.publish(0, &["m1000", "m1001"]).await.unwrap();
    let woken = reader.await.unwrap();
    assert_eq!(texts(&woken), ["m1000", "m1001"]);
    let after_first = topic.read_after(0, &woken[0].id, 10).await.unwrap();
    assert_eq!(texts(&after_first), ["m1001"]);
    client.close().await;
}
