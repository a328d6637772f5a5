//! The test MongoDB server (`TestMongo`) with the real driver: documents written with
//! `insert_many` are found again, and still there after the server is killed and started
//! again on the same data; the same client works across the restart.

use std::time::Duration;

use futures_util::TryStreamExt;
use mesh_tests::eventually;
use mesh_tests::mongo::{TestMongo, DATABASE};
use mongodb::bson::{doc, Document};

/// insert_many, then find with a filter and a sort; stop and start_again keep the data.
#[tokio::test]
async fn documents_survive_a_restart() {
    let mut server = TestMongo::start();
    let client = server.client().await;
    let outputs = client.database(DATABASE).collection::<Document>("outputs");

    let docs: Vec<Document> = (0..10_i64)
        .map(|seq| doc! { "node": "tally", "seq": seq, "value": format!("v{seq}") })
        .collect();
    let inserted = outputs.insert_many(docs).await.expect("insert_many");
    assert_eq!(inserted.inserted_ids.len(), 10, "on {}", server.kind());

    let found: Vec<Document> = outputs
        .find(doc! { "node": "tally", "seq": { "$gte": 7 } })
        .sort(doc! { "seq": -1 })
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("read the cursor");
    let values: Vec<&str> = found
        .iter()
        .map(|doc| doc.get_str("value").expect("value is a string"))
        .collect();
    assert_eq!(values, ["v9", "v8", "v7"], "on {}", server.kind());

    server.stop();
    server.start_again();

    // The client's pooled connections died with the server: the first operations may fail
    // while it notices.
    let count = eventually(Duration::from_secs(10), "a count after the restart", || {
        let outputs = outputs.clone();
        async move { outputs.count_documents(doc! {}).await.ok() }
    })
    .await;
    assert_eq!(count, 10, "on {}", server.kind());
    let ninth = outputs
        .find_one(doc! { "seq": 9 })
        .await
        .expect("find_one after the restart")
        .expect("seq 9 is still there");
    assert_eq!(ninth.get_str("value"), Ok("v9"));
}
