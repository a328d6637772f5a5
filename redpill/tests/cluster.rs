//! The test support's Redis Cluster: real `redis-server` processes made one cluster by
//! `redis-cli --cluster create`, whose nodes a test can kill, pause and fail over; and a
//! redpill client on it following a failover and a reshard by itself.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use redpill::keys::{slot, Keys, Tag};
use redpill::testing::TestCluster;
use redpill::{Client, Live, Queue, StartFrom, Subscription, Topic};

/// Waits until `check` holds, and returns how long that took.
fn until(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
    started.elapsed()
}

/// Three masters serve every slot, each with its replica; the 64 partition tags of a default
/// deployment spread over all three masters.
#[test]
fn a_cluster_serves_every_slot_and_spreads_the_partitions() {
    let cluster = TestCluster::start(3, 1);
    assert_eq!(cluster.len(), 6);
    let masters = cluster.masters();
    assert_eq!(masters.len(), 3, "masters: {masters:?}");
    for master in &masters {
        assert_eq!(
            cluster.replicas_of(*master).len(),
            1,
            "replicas of {master}"
        );
    }
    let keys = Keys::new("gorgon");
    let mut serving = BTreeSet::new();
    for partition in 0..64 {
        let key = keys.queue(&Tag::partition(partition), "in");
        let master = cluster
            .master_of(slot(key.as_bytes()))
            .unwrap_or_else(|| panic!("no master serves {key}"));
        serving.insert(master);
    }
    assert_eq!(serving.into_iter().collect::<Vec<_>>(), masters);
    // Every slot is served: the first and the last.
    assert!(cluster.master_of(0).is_some());
    assert!(cluster.master_of(16_383).is_some());
}

/// A master killed is replaced by its replica within a few node timeouts; started again, it
/// comes back as a replica. A replica told to fail over becomes a master at once. A master
/// paused past the node timeout is replaced too.
#[test]
fn killed_paused_and_failed_over_masters_are_replaced() {
    let mut cluster = TestCluster::start(3, 1);
    let timeout = cluster.node_timeout() * 10;

    let master = cluster.masters()[0];
    let replica = cluster.replicas_of(master)[0];
    cluster.node_mut(master).kill();
    let took = until(
        timeout,
        "the replica of a killed master to take over",
        || cluster.masters().contains(&replica),
    );
    assert!(took >= cluster.node_timeout(), "took {took:?}");
    cluster.wait_until_ok(timeout);
    assert_eq!(cluster.masters().len(), 3);
    cluster.node_mut(master).start_again();
    until(timeout, "the killed master to rejoin as a replica", || {
        cluster.replicas_of(replica).contains(&master)
    });

    // A manual failover puts the old master back in charge.
    cluster.failover(master);
    assert!(cluster.masters().contains(&master));
    assert!(!cluster.masters().contains(&replica));

    let paused = cluster.masters()[1];
    let its_replica = cluster.replicas_of(paused)[0];
    cluster.node(paused).pause();
    until(
        timeout,
        "the replica of a paused master to take over",
        || cluster.masters().contains(&its_replica),
    );
    cluster.node(paused).resume();
    until(
        timeout,
        "the paused master to step down to a replica",
        || cluster.replicas_of(its_replica).contains(&paused),
    );
    cluster.wait_until_ok(timeout);
    assert_eq!(cluster.masters().len(), 3);
}

/// Tries `attempt` until it succeeds (a failover in progress answers with retryable errors).
async fn retrying<T, F, Fut>(what: &str, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = redpill::Result<T>>,
{
    let started = Instant::now();
    loop {
        match attempt().await {
            Ok(value) => return value,
            Err(err) => {
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "{what} still failing: {err}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// A message published on `channel` reaches `subscription` (published again until it does:
/// a subscription being made again after a failover or a reshard misses what came before).
async fn live_reaches(live: &Live, channel: &str, subscription: &mut Subscription, text: &str) {
    let started = Instant::now();
    loop {
        let _ = live.publish(channel, text).await;
        if let Ok(Some(got)) =
            tokio::time::timeout(Duration::from_millis(200), subscription.recv()).await
        {
            if got == text.as_bytes() {
                return;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no live message on {channel}"
        );
    }
}

/// A waiter on a queue is woken by a push (a sharded wake-up), not by its poll: the poll
/// interval is 30 s, the wait returns in well under that.
async fn wake_up_reaches(queue: &Queue, pusher: &Queue, body: &str) {
    let waiter = queue.clone();
    let started = Instant::now();
    let wait = tokio::spawn(async move { waiter.pull_wait(10, Duration::from_secs(20)).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let bodies = [body];
    retrying("push", || pusher.push(&bodies)).await;
    let pulled = wait.await.unwrap().unwrap();
    assert_eq!(pulled.len(), 1);
    assert_eq!(&pulled[0].body[..], body.as_bytes());
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "woken after {took:?}");
    queue.ack(&[pulled[0].id.clone()]).await.unwrap();
}

/// Two clients of `cluster`, one to wait and one to push, that poll only every 30 s: a waiter
/// woken sooner was woken by a wake-up.
async fn two_clients(cluster: &TestCluster) -> (Client, Client) {
    let config = cluster
        .config()
        .set_prefix("t")
        .set_poll_interval(Duration::from_secs(30));
    (
        Client::connect(config.clone()).await.unwrap(),
        Client::connect(config).await.unwrap(),
    )
}

/// A client given one node's address finds the cluster; queues, topics across shards, live
/// channels (SSUBSCRIBE) and wake-ups work; after the master of a queue's slot is killed
/// and its replica takes over, and after the slot is moved to another master, the same
/// client carries on by itself: nothing pushed is lost or duplicated, live messages and
/// wake-ups arrive again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_follows_failover_and_reshard() {
    let mut cluster = TestCluster::start(3, 1);
    let (client, pusher) = two_clients(&cluster).await;
    assert!(client.is_cluster().await.unwrap());

    let tag = Tag::partition(5);
    let queue = Queue::new(&client, &tag, "in");
    let pushed_by = Queue::new(&pusher, &tag, "in");
    let slot_of_queue = slot(client.keys().queue(&tag, "in").as_bytes());
    let live = Live::new(&pusher);
    let mut news = Live::new(&client).subscribe("news", 100).await.unwrap();
    live_reaches(&live, "news", &mut news, "first").await;
    wake_up_reaches(&queue, &pushed_by, "woken").await;

    // A topic whose shards live on every master: one group reads them all.
    let topic = Topic::partitioned(&pusher, "events", 8);
    let group = Topic::partitioned(&client, "events", 8)
        .group("readers", StartFrom::Beginning)
        .await
        .unwrap();
    for shard in 0..8 {
        topic.publish(shard, &[format!("e{shard}")]).await.unwrap();
    }
    let mut read = Vec::new();
    while read.len() < 8 {
        let entries = group.read_wait(100, Duration::from_secs(5)).await.unwrap();
        assert!(!entries.is_empty(), "read {read:?} of 8");
        group.ack(&entries).await.unwrap();
        read.extend(entries.into_iter().map(|entry| entry.body));
    }
    read.sort();
    assert_eq!(
        read,
        (0..8).map(|shard| format!("e{shard}")).collect::<Vec<_>>()
    );

    // Kill the queue's master once its replica has everything.
    pushed_by.push(&["m0", "m1", "m2"]).await.unwrap();
    cluster.sync_replicas();
    let master = cluster.master_of(slot_of_queue).unwrap();
    let replica = cluster.replicas_of(master)[0];
    cluster.node_mut(master).kill();
    until(Duration::from_secs(30), "the replica to take over", || {
        cluster.master_of(slot_of_queue) == Some(replica)
    });
    retrying("push after the failover", || pushed_by.push(&["m3"])).await;
    let pulled = retrying("pull after the failover", || queue.pull(10)).await;
    let texts: Vec<&[u8]> = pulled.iter().map(|d| &d.body[..]).collect();
    assert_eq!(texts, [&b"m0"[..], b"m1", b"m2", b"m3"]);
    let ids: Vec<String> = pulled.iter().map(|d| d.id.clone()).collect();
    assert!(queue.ack(&ids).await.unwrap().is_empty());
    live_reaches(&live, "news", &mut news, "after the failover").await;
    wake_up_reaches(&queue, &pushed_by, "woken after the failover").await;

    // Move the queue's slot (and with it the wake channel's) to another master.
    let other = cluster
        .masters()
        .into_iter()
        .find(|&master| master != replica)
        .unwrap();
    pushed_by.push(&["r0", "r1"]).await.unwrap();
    cluster.move_slot(slot_of_queue, other);
    retrying("push after the reshard", || pushed_by.push(&["r2"])).await;
    let pulled = retrying("pull after the reshard", || queue.pull(10)).await;
    let texts: Vec<&[u8]> = pulled.iter().map(|d| &d.body[..]).collect();
    assert_eq!(texts, [&b"r0"[..], b"r1", b"r2"]);
    wake_up_reaches(&queue, &pushed_by, "woken after the reshard").await;
    // The live channel's slot moves too: its subscriber follows.
    let news_slot = slot(client.keys().live("news").as_bytes());
    let news_to = cluster
        .masters()
        .into_iter()
        .find(|&master| Some(master) != cluster.master_of(news_slot))
        .unwrap();
    cluster.move_slot(news_slot, news_to);
    live_reaches(&live, "news", &mut news, "after the reshard").await;
}

/// CPU time this process has used (user and system).
fn cpu_time() -> Duration {
    redpill::testing::cpu_time(std::process::id()).expect("this process's CPU time")
}

/// Every node of the cluster killed: the client's calls fail as unavailable; while the
/// cluster is gone the client waits quietly (a redis-rs cluster connection left alone retries
/// its recovery without pause: 2.1 – 2.9 s of CPU in these 2 s, in most runs; redpill drops
/// it and connects again when asked: about 0.2 s); once the nodes are back the same client
/// works again, its wake-ups included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_waits_quietly_for_a_cluster_that_went_away() {
    let mut cluster = TestCluster::start(3, 0);
    let (client, pusher) = two_clients(&cluster).await;
    let tag = Tag::partition(3);
    let queue = Queue::new(&client, &tag, "in");
    let pushed_by = Queue::new(&pusher, &tag, "in");
    wake_up_reaches(&queue, &pushed_by, "before").await;

    for node in 0..cluster.len() {
        cluster.node_mut(node).kill();
    }
    // The first calls meet the dead connections; then, for two seconds, calls every 50 ms.
    for _ in 0..5 {
        let _ = client.ping().await;
    }
    let (started, used) = (Instant::now(), cpu_time());
    let mut failures = 0;
    while started.elapsed() < Duration::from_secs(2) {
        let (ping, push) = tokio::join!(client.ping(), pushed_by.push(&["lost"]));
        for err in [ping.err(), push.err()].into_iter().flatten() {
            assert!(err.is_unavailable(), "{err}");
            failures += 1;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let busy = cpu_time() - used;
    assert!(failures > 0, "calls succeeded with every node dead");
    assert!(
        busy < Duration::from_millis(500),
        "the client used {busy:?} of CPU in {:?} while the cluster was gone",
        started.elapsed()
    );

    for node in 0..cluster.len() {
        cluster.node_mut(node).start_again();
    }
    cluster.wait_until_ok(Duration::from_secs(30));
    retrying("ping after the cluster came back", || client.ping()).await;
    wake_up_reaches(&queue, &pushed_by, "after").await;
}

/// A client given several nodes' addresses starts from the first that answers: the first
/// named is down, and the client finds the cluster through the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_starts_from_any_node_of_a_seed_list() {
    let cluster = TestCluster::start(3, 0);
    let nobody = redpill::testing::free_port();
    let seeds = format!("redis://127.0.0.1:{nobody},{}", cluster.url());
    let client = Client::connect(cluster.config().set_url(seeds).set_prefix("t"))
        .await
        .unwrap();
    assert!(client.is_cluster().await.unwrap());
    let queue = Queue::new(&client, &Tag::partition(7), "in");
    queue
        .push_with_ids(&[("a", b"1".as_slice())])
        .await
        .unwrap();
    let pulled = queue.pull(10).await.unwrap();
    assert_eq!(pulled.len(), 1);
    assert_eq!(pulled[0].id, "a");
}

/// Several addresses are for a cluster's nodes only: given to a single Redis, the client
/// refuses them, saying so, rather than picking one.
#[tokio::test]
async fn a_seed_list_must_name_cluster_nodes() {
    let single = redpill::testing::TestRedis::start();
    let seeds = format!("{},{}", single.url(), single.url());
    let err = match Client::connect(single.config().set_url(seeds)).await {
        Err(err) => err,
        Ok(client) => client.ping().await.unwrap_err(),
    };
    assert!(
        matches!(&err, redpill::Error::Invalid(text) if text.contains("is not a Redis Cluster node")),
        "{err:?}"
    );
}

/// A client whose every node went away connects again through the nodes it learned, not only
/// the one its URL names: here that node stays dead, the others come back (serving their own
/// slots: `cluster-require-full-coverage no`), and the client finds them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_comes_back_through_nodes_it_learned() {
    let mut cluster = TestCluster::start(3, 0);
    let (client, _) = two_clients(&cluster).await;
    // A partition whose slot a node other than the URL's (node 0) serves.
    let keys = Keys::new("t");
    let (tag, served_by) = (0..64)
        .map(Tag::partition)
        .find_map(|tag| {
            let master = cluster.master_of(slot(keys.queue(&tag, "in").as_bytes()))?;
            (master != 0).then_some((tag, master))
        })
        .expect("a partition on another node");
    let queue = Queue::new(&client, &tag, "in");
    queue.push(&["before"]).await.unwrap();

    for node in 0..cluster.len() {
        cluster.node_mut(node).kill();
    }
    // The client finds its connection without any node and drops it.
    retrying("the client to see every node gone", || async {
        match client.ping().await {
            Ok(()) => Err(redpill::Error::Invalid("still answering".into())),
            Err(_) => Ok(()),
        }
    })
    .await;
    for node in 1..cluster.len() {
        cluster.node_mut(node).start_again();
        cluster
            .node(node)
            .command(&["CONFIG", "SET", "cluster-require-full-coverage", "no"]);
    }
    retrying("a push through a node the URL does not name", || {
        queue.push(&["after"])
    })
    .await;
    assert_ne!(served_by, 0);
}
