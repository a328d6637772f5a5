//! What the writers store, the readers find: node records, replay buffers and the partition
//! index written in a fenced commit, and topology records, against a real Redis.

use std::time::Duration;

use layout::{NodeRecord, NodeWrite, TopologyWrite};
use protocol::{partition_of, NodeSpec};
use redpill::testing::TestRedis;
use redpill::{Acquired, Client, Grant, Lease};

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
            archive: None,
        },
        vec!["b".into()],
    );
    record.seq = seq;
    record.output = Some(format!(r#"{{"seq":{seq}}}"#));
    record
}

/// Node `t/a`'s partition, its lease and a grant of it, for writing the node.
async fn owner_of_a(client: &Client) -> (u32, Lease, Grant) {
    let partition = partition_of("t", "a", PARTITIONS);
    let lease = layout::partition_lease(client, partition);
    let Acquired::Granted(grant) = lease.acquire("p", Duration::from_secs(5)).await.unwrap() else {
        panic!("the lease is free");
    };
    (partition, lease, grant)
}

/// The field names of node `t/a`'s record in Redis, sorted.
fn record_fields(redis: &TestRedis, partition: u32) -> Vec<String> {
    let reply = redis.command(&["HKEYS", &format!("g:{{p{partition}}}:node:t/a")]);
    // A RESP array of bulk strings: skip the `*n` and `$len` lines.
    let mut fields: Vec<String> = reply
        .lines()
        .filter(|line| !line.starts_with(['*', '$']))
        .map(str::to_owned)
        .collect();
    fields.sort();
    fields
}

#[tokio::test]
async fn node_writes_read_back() {
    let redis = TestRedis::start();
    let client = client(&redis).await;
    let (partition, lease, grant) = owner_of_a(&client).await;
    let written = record(3);
    let events = [r#"{"seq":1}"#, r#"{"seq":2}"#, r#"{"seq":3}"#];
    let writes = [
        NodeWrite::Record {
            member: "t/a",
            fields: written.changed_fields(None, true),
            dropped: &[],
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

    // The owner's cache has no output (the buffer holds it); readers have the buffer's newest.
    let nodes = layout::read_partition_nodes(&client, partition)
        .await
        .unwrap();
    let cached = written.clone().as_written(None, true);
    assert_eq!(cached.output, None);
    assert_eq!(nodes, vec![("t/a".to_owned(), Some(cached))]);
    let records = layout::read_node_records(&client, PARTITIONS, &[("t", "a"), ("t", "zz")])
        .await
        .unwrap();
    assert_eq!(records, vec![Some(written), None]);
    assert_eq!(
        record_fields(&redis, partition),
        ["attrs", "function", "hwm", "seq", "sources", "status", "targets"]
    );
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
        &[NodeWrite::Delete {
            member: "t/a",
            last_seq: 3,
        }],
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

/// Turning the replay buffer off, then on again: the latched output moves between the record
/// and the buffer, readers always find the newest, and it is stored once.
#[tokio::test]
async fn the_latched_output_follows_the_buffer_setting() {
    let redis = TestRedis::start();
    let client = client(&redis).await;
    let (partition, lease, grant) = owner_of_a(&client).await;
    let has_output = || record_fields(&redis, partition).contains(&"output".to_owned());
    let output_of = |record: &NodeRecord| record.output.clone().unwrap();
    let read = || async {
        layout::read_node_records(&client, PARTITIONS, &[("t", "a")])
            .await
            .unwrap()
            .pop()
            .flatten()
            .unwrap()
    };
    // `record(seq)`'s output, the event of that seq.
    let events: Vec<String> = (0..5).map(|seq| format!(r#"{{"seq":{seq}}}"#)).collect();
    let text = |seq: usize| events[seq].as_str();
    let commit = |writes: Vec<NodeWrite<'_>>| {
        layout::write_nodes(lease.fenced(&grant), &client, partition, &writes).commit()
    };
    // Buffered: seq 2 in the buffer.
    let two = record(2);
    commit(vec![
        NodeWrite::Record {
            member: "t/a",
            fields: two.changed_fields(None, true),
            dropped: &[],
            created: true,
        },
        NodeWrite::Replay {
            member: "t/a",
            events: vec![text(1), text(2)],
            keep: None,
        },
    ])
    .await
    .unwrap();
    assert_eq!(output_of(&read().await), text(2));
    assert!(!has_output());

    // The buffer turned off: seq 3 in the record, the buffer's 2 left behind.
    let cached = two.clone().as_written(None, true);
    let three = record(3);
    commit(vec![NodeWrite::Record {
        member: "t/a",
        fields: three.changed_fields(Some(&cached), false),
        dropped: three.dropped_fields(Some(&cached), false),
        created: false,
    }])
    .await
    .unwrap();
    assert_eq!(output_of(&read().await), text(3));
    assert!(has_output());

    // On again: seq 4 in the buffer, the record's field removed with the same write.
    let four = record(4);
    let dropped = four.dropped_fields(Some(&three), true);
    assert_eq!(dropped, ["output"]);
    commit(vec![
        NodeWrite::Record {
            member: "t/a",
            fields: four.changed_fields(Some(&three), true),
            dropped,
            created: false,
        },
        NodeWrite::Replay {
            member: "t/a",
            events: vec![text(4)],
            keep: None,
        },
    ])
    .await
    .unwrap();
    assert_eq!(output_of(&read().await), text(4));
    assert!(!has_output());
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

/// Output event `seq` of node `t/a`, as JSON.
fn event_text(seq: u64) -> String {
    caused_text(seq, "i", serde_json::json!({"n": seq}))
}

/// The writes of `t/a` made (again) with its first output, `first`.
fn made_again(first: &str) -> Vec<NodeWrite<'_>> {
    vec![
        NodeWrite::Record {
            member: "t/a",
            fields: record(1).changed_fields(None, true),
            dropped: &[],
            created: true,
        },
        NodeWrite::Replay {
            member: "t/a",
            events: vec![first],
            keep: None,
        },
    ]
}

/// History's read of a node's buffer: every output from the oldest held to the latest, or
/// nothing when the buffer is not that; the floor a deletion leaves only rises.
#[tokio::test]
async fn recent_outputs_read_back_with_the_floor() {
    let redis = TestRedis::start();
    let client = client(&redis).await;
    let (partition, lease, grant) = owner_of_a(&client).await;
    let write = |writes: Vec<NodeWrite<'_>>| {
        layout::write_nodes(lease.fenced(&grant), &client, partition, &writes).commit()
    };
    let recent =
        |newest: usize| layout::read_recent_outputs(&client, PARTITIONS, ("t", "a"), newest);
    let owned: Vec<String> = (1..=6).map(event_text).collect();
    let texts: Vec<&str> = owned.iter().map(String::as_str).collect();
    let seqs = |recent: &protocol::history::Recent| -> Vec<u64> {
        recent.events.iter().map(|event| event.seq).collect()
    };
    assert_eq!(recent(0).await.unwrap(), None, "no node");
    write(vec![NodeWrite::Record {
        member: "t/a",
        fields: record(0).changed_fields(None, true),
        dropped: &[],
        created: true,
    }])
    .await
    .unwrap();
    let fresh = recent(0).await.unwrap().expect("a node without outputs");
    assert_eq!((fresh.events.len(), fresh.floor), (0, 0));

    // Seq 4, the buffer holding 2 to 4.
    let made = record(4);
    write(vec![
        NodeWrite::Record {
            member: "t/a",
            fields: made.changed_fields(None, true),
            dropped: &[],
            created: true,
        },
        NodeWrite::Replay {
            member: "t/a",
            events: texts[1..4].to_vec(),
            keep: None,
        },
    ])
    .await
    .unwrap();
    let all = recent(0).await.unwrap().expect("a whole buffer");
    assert_eq!(seqs(&all), [2, 3, 4]);
    assert_eq!(all.floor, 0);
    assert_eq!(all.events[2].data, serde_json::json!({"n": 4}));
    assert_eq!(seqs(&recent(2).await.unwrap().unwrap()), [3, 4]);
    assert_eq!(seqs(&recent(9).await.unwrap().unwrap()), [2, 3, 4]);

    // The record moved on without the buffer (it was turned off): not the latest, unused.
    write(vec![NodeWrite::Record {
        member: "t/a",
        fields: record(5).changed_fields(Some(&made), true),
        dropped: &[],
        created: false,
    }])
    .await
    .unwrap();
    assert_eq!(recent(0).await.unwrap(), None, "a stale buffer");
    // A gap inside (4, then 6): unused.
    write(vec![
        NodeWrite::Record {
            member: "t/a",
            fields: record(6).changed_fields(Some(&record(5)), true),
            dropped: &[],
            created: false,
        },
        NodeWrite::Replay {
            member: "t/a",
            events: vec![texts[5]],
            keep: None,
        },
    ])
    .await
    .unwrap();
    assert_eq!(recent(0).await.unwrap(), None, "a gap");
    assert_eq!(recent(2).await.unwrap(), None, "a gap in the newest two");

    // Deleted at 6, made again and at 1: the floor is 6. Deleted at 1: it stays 6.
    write(vec![NodeWrite::Delete {
        member: "t/a",
        last_seq: 6,
    }])
    .await
    .unwrap();
    assert_eq!(recent(0).await.unwrap(), None, "deleted");
    let again = || write(made_again(texts[0]));
    again().await.unwrap();
    let remade = recent(0).await.unwrap().unwrap();
    assert_eq!((seqs(&remade), remade.floor), (vec![1], 6));
    write(vec![NodeWrite::Delete {
        member: "t/a",
        last_seq: 1,
    }])
    .await
    .unwrap();
    again().await.unwrap();
    assert_eq!(recent(0).await.unwrap().unwrap().floor, 6);
}

/// The outputs of inject `input` in the buffer of `t/a`, by seq, and since when the buffer
/// holds every output of it; `t/none`, searched with it, has nothing.
async fn search(client: &redpill::Client, input: &str) -> (Vec<u64>, Option<i64>) {
    let held = layout::read_caused_outputs(client, PARTITIONS, &[("t", "a"), ("t", "none")], input)
        .await
        .unwrap();
    assert_eq!(held.len(), 2);
    assert_eq!(held[1], protocol::caused::Held::default(), "no node");
    let seqs: Vec<u64> = held[0].events.iter().map(|event| event.seq).collect();
    (seqs, held[0].whole_since_ms)
}

/// Output `seq` of `t/a` caused by inject `input`, at ts 1 000 + seq, with `data`.
fn caused_text(seq: u64, input: &str, data: serde_json::Value) -> String {
    serde_json::to_string(&protocol::OutputEvent {
        topology: "t".into(),
        node: "a".into(),
        seq,
        msg_id: format!("m{seq}"),
        input_id: input.into(),
        injected_at: protocol::Timestamp::from_unix_ms(1_000),
        ts: protocol::Timestamp::from_unix_ms(1_000 + seq as i64),
        data,
    })
    .unwrap()
}

/// The search of buffers for one inject's outputs: exactly its outputs (not one whose data
/// holds the same text), and since when each buffer holds every output of its node: all
/// time while it starts at seq 1 of the node's only life, its oldest output's ts once
/// trimmed or after a former life, unknown without a record or with a buffer not whole.
#[tokio::test]
async fn caused_outputs_are_found_with_the_reach_of_their_buffer() {
    let redis = TestRedis::start();
    let client = client(&redis).await;
    let (partition, lease, grant) = owner_of_a(&client).await;
    let write = |writes: Vec<NodeWrite<'_>>| {
        layout::write_nodes(lease.fenced(&grant), &client, partition, &writes).commit()
    };
    assert_eq!(search(&client, "i1").await, (vec![], None), "no record");
    write(vec![NodeWrite::Record {
        member: "t/a",
        fields: record(0).changed_fields(None, true),
        dropped: &[],
        created: true,
    }])
    .await
    .unwrap();
    assert_eq!(
        search(&client, "i1").await,
        (vec![], Some(i64::MIN)),
        "no output ever"
    );

    // 1 to 6: odd seqs caused by i1, even by i2; 5's data looks like i1's id.
    let texts: Vec<String> = (1..=6)
        .map(|seq| match seq {
            5 => caused_text(seq, "i2", serde_json::json!({"input_id": "i1"})),
            odd if odd % 2 == 1 => caused_text(seq, "i1", serde_json::json!(seq)),
            _ => caused_text(seq, "i2", serde_json::json!(seq)),
        })
        .collect();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    write(vec![
        NodeWrite::Record {
            member: "t/a",
            fields: record(4).changed_fields(Some(&record(0)), true),
            dropped: &[],
            created: false,
        },
        NodeWrite::Replay {
            member: "t/a",
            events: texts[..4].to_vec(),
            keep: None,
        },
    ])
    .await
    .unwrap();
    assert_eq!(search(&client, "i1").await, (vec![1, 3], Some(i64::MIN)));
    assert_eq!(search(&client, "i2").await, (vec![2, 4], Some(i64::MIN)));
    write(vec![
        NodeWrite::Record {
            member: "t/a",
            fields: record(6).changed_fields(Some(&record(4)), true),
            dropped: &[],
            created: false,
        },
        NodeWrite::Replay {
            member: "t/a",
            events: texts[4..].to_vec(),
            keep: Some(3),
        },
    ])
    .await
    .unwrap();
    assert_eq!(
        search(&client, "i1").await,
        (vec![], Some(1_004)),
        "trimmed to 4..6"
    );
    assert_eq!(search(&client, "i2").await, (vec![4, 5, 6], Some(1_004)));

    // The record moved on without the buffer: the reach is unknown.
    write(vec![NodeWrite::Record {
        member: "t/a",
        fields: record(7).changed_fields(Some(&record(6)), true),
        dropped: &[],
        created: false,
    }])
    .await
    .unwrap();
    assert_eq!(
        search(&client, "i2").await,
        (vec![4, 5, 6], None),
        "a stale buffer"
    );

    // Deleted, made again and at 1: a former life may have made outputs it never held.
    write(vec![NodeWrite::Delete {
        member: "t/a",
        last_seq: 7,
    }])
    .await
    .unwrap();
    write(made_again(texts[0])).await.unwrap();
    assert_eq!(
        search(&client, "i1").await,
        (vec![1], Some(1_001)),
        "made again"
    );
}
