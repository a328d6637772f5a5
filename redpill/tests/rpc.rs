//! Request/reply against a real redis-server.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::client;
use redpill::testing::TestBackend;
use redpill::{Error, Requester, Responder};

/// A request reaches a responder and its reply comes back to the caller; an error reply
/// arrives as `Error::Remote`.
#[tokio::test]
async fn round_trip_and_error_reply() {
    let redis = TestBackend::start();
    let caller = client(&redis).await;
    let server = client(&redis).await;
    let responder = Responder::new(&server, "store");
    let serving = tokio::spawn(async move {
        let mut served = 0;
        while served < 2 {
            let requests = responder.next(10, Duration::from_secs(5)).await.unwrap();
            let replies = requests
                .into_iter()
                .map(|request| {
                    let reply = if &request.body[..] == b"ping" {
                        Ok(Bytes::from_static(b"pong"))
                    } else {
                        Err(format!(
                            "unknown command {:?}",
                            String::from_utf8_lossy(&request.body)
                        ))
                    };
                    (request, reply)
                })
                .collect::<Vec<_>>();
            served += replies.len();
            responder.reply(replies).await.unwrap();
        }
    });
    let requester = Requester::new(&caller);
    let reply = requester
        .request("store", b"ping", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(&reply[..], b"pong");
    let err = requester
        .request("store", b"dance", Duration::from_secs(5))
        .await
        .unwrap_err();
    match err {
        Error::Remote { service, message } => {
            assert_eq!(service, "store");
            assert_eq!(message, "unknown command \"dance\"");
        }
        other => panic!("expected a remote error, got {other:?}"),
    }
    serving.await.unwrap();
}

/// With no responder, a request times out after its timeout with a retryable error, and a
/// responder that starts later drops it instead of answering a caller that gave up.
#[tokio::test]
async fn timeout_without_a_responder() {
    let redis = TestBackend::start();
    let caller = client(&redis).await;
    let requester = Requester::new(&caller);
    let started = tokio::time::Instant::now();
    let err = requester
        .request("nobody", b"hello", Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(err.is_retryable());
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(2),
        "{waited:?}"
    );

    let late = Responder::new(&client(&redis).await, "nobody");
    assert!(late
        .next(10, Duration::from_millis(100))
        .await
        .unwrap()
        .is_empty());
}
