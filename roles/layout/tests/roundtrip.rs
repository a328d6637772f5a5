//! What the writers store, the readers find: node records, replay buffers and the partition
//! index written in a fenced commit, and topology records, against a real Redis.

use std::time::Duration;

use layout::{NodeRecord, NodeWrite, TopologyWrite};
use protocol::{partition_of, NodeSpec};
use redpill::testing::TestRedis;
use redpill::{Acquired, Client};

const PARTITIONS: u32 = 4;

async fn client(redis: &TestRedis) -> Client {
    Client::connect(redis.config().set_prefix("g"))
        .await
        .unwrap()
}

fn record(seq: u64) -> NodeRecord {
    let mut record = NodeRecord::new(
        NodeSpec {
            id: "a".into(),
            function: "count".into(),
            sources: vec!["src".into()],
            attrs: serde_json::json!({"count": 2}).as_object().unwrap().clone(),
        },
        vec!["b".into()],
    );
    record.seq = seq;
    record.output = Some(format!(r#"{{"seq":{seq}}}"#));
    record
}

#[tokio::test]
async fn node_writes_read_back() {
    let redis = TestRedis::start();
    let client = client(&redis).await;
    let partition = partition_of("t", "a", PARTITIONS);
    let lease = layout::partition_lease(&client, partition);
    let Acquired::Granted(grant) = lease.acquire("p", Duration::from_secs(5)).await.unwrap() else {
        panic!("the lease is free");
    };
    let written = record(3);
    let events = [r#"{"seq":1}"#, r#"{"seq":2}"#, r#"{"seq":3}"#];
    let writes = [
        NodeWrite::Record {
            member: "t/a",
            fields: written.changed_fields(None),
            created: true,
        },
        NodeWrite::Replay {
            member: "t/a",
            events: events.to_vec(),
            keep: Some(2),
        },
    ];
    layout::write_nodes(lease.fenced(&grant), &client, partition, &writes)
        .commit()
        .await
        .unwrap();

    let nodes = layout::read_partition_nodes(&client, partition)
        .await
        .unwrap();
    assert_eq!(nodes, vec![("t/a".to_owned(), Some(written.clone()))]);
    let records = layout::read_node_records(&client, PARTITIONS, &[("t", "a"), ("t", "zz")])
        .await
        .unwrap();
    assert_eq!(records, vec![Some(written), None]);
    let seqs = layout::read_node_seqs(&client, PARTITIONS, &[("t", "a"), ("t", "zz")])
        .await
        .unwrap();
    assert_eq!(seqs, vec![Some(3), None]);
    let tails = layout::read_replay_tails(&client, PARTITIONS, &[(("t", "a"), 10)])
        .await
        .unwrap();
    assert_eq!(
        tails,
        vec![vec![events[1].to_owned(), events[2].to_owned()]]
    );

    layout::write_nodes(
        lease.fenced(&grant),
        &client,
        partition,
        &[NodeWrite::Delete { member: "t/a" }],
    )
    .commit()
    .await
    .unwrap();
    assert!(layout::read_partition_nodes(&client, partition)
        .await
        .unwrap()
        .is_empty());
    let tails = layout::read_replay_tails(&client, PARTITIONS, &[(("t", "a"), 10)])
        .await
        .unwrap();
    assert_eq!(tails, vec![Vec::<String>::new()]);
}

#[tokio::test]
async fn topology_writes_read_back() {
    let redis = TestRedis::start();
    let client = client(&redis).await;
    let handles = layout::topology(&client, "t");
    let Acquired::Granted(grant) = handles
        .lease
        .acquire("s", Duration::from_secs(5))
        .await
        .unwrap()
    else {
        panic!("the lease is free");
    };
    let doc = r#"{"node":[{"id":"a","function":"pass"}]}"#;
    layout::list_topology(&client, "t").await.unwrap();
    layout::write_topology(
        handles.lease.fenced(&grant),
        &handles,
        TopologyWrite::Document {
            json: doc,
            nodes: 1,
            rev: 4,
        },
    )
    .commit()
    .await
    .unwrap();
    let stored = handles.read().await.unwrap();
    assert!(stored.exists());
    let record = stored.record().unwrap().unwrap();
    assert_eq!((record.rev, record.doc.node.len()), (4, 1));
    assert_eq!(layout::list_topologies(&client).await.unwrap(), ["t"]);
    assert_eq!(
        layout::read_topology_revs(&client, &["t", "none"])
            .await
            .unwrap(),
        [Some(4), None]
    );
    assert_eq!(
        layout::read_topology_summaries(&client, &["t"])
            .await
            .unwrap(),
        [Some(layout::TopologySummary { nodes: 1, rev: 4 })]
    );

    // Deleted: no document, the rev kept.
    layout::write_topology(
        handles.lease.fenced(&grant),
        &handles,
        TopologyWrite::Deleted { rev: 5 },
    )
    .commit()
    .await
    .unwrap();
    let stored = handles.read().await.unwrap();
    assert!(!stored.exists());
    assert_eq!(stored.rev(), 5);
    assert_eq!(stored.record().unwrap(), None);
    assert_eq!(
        layout::read_topology_summaries(&client, &["t"])
            .await
            .unwrap(),
        [None]
    );
    layout::unlist_topology(&client, "t").await.unwrap();
    assert!(layout::list_topologies(&client).await.unwrap().is_empty());
}
