//! The notifier against hostile socket.io clients, spoken to over raw websockets (HTTP
//! upgrade and frames written by hand): clients that vanish in the middle of the handshake,
//! vanish after subscribing without a close frame, send malformed packets or stop answering
//! all give their connection slot back. After each round the connections gauge on `/metrics`
//! is exactly 0 again, and after several rounds of more clients than the limit a real
//! socket.io client still gets in. A positional subscribe payload is refused.

use std::time::Duration;

use mesh_tests::mesh::Mesh;
use mesh_tests::socketio::{probe, Notifier};
use mesh_tests::RoleProcess;
use redpill::testing::{free_port, TestRedis};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// GORGON_NOTIFIER_MAX_CONNECTIONS of the notifier under test.
const MAX_CONNECTIONS: usize = 10;
/// Rounds of hostile clients; together they are many times the limit.
const ROUNDS: usize = 6;
/// Hostile clients per round, all at once.
const PER_ROUND: usize = 12;
/// The notifier's engine.io ping interval and timeout.
const PING_INTERVAL_MS: u64 = 500;
const PING_TIMEOUT_MS: u64 = 1_000;
/// How long a slot may take to come back once its client is gone.
const SETTLE: Duration = Duration::from_secs(10);
/// How long a client waits for an answer (pings aside) before the test fails.
const ANSWER: Duration = Duration::from_secs(10);
/// How long one hostile client may take in all.
const CLIENT: Duration = Duration::from_secs(30);

/// The topology the hostile clients subscribe to (it does not exist: the ack is `not_found`).
const SUBSCRIBE: &str = r#"["subscribe",{"topology":"hostile"}]"#;

/// The environment of the notifier under test: a small connection limit and short pings.
fn settings() -> [(&'static str, String); 3] {
    [
        (
            "GORGON_NOTIFIER_MAX_CONNECTIONS",
            MAX_CONNECTIONS.to_string(),
        ),
        (
            "GORGON_NOTIFIER_PING_INTERVAL_MS",
            PING_INTERVAL_MS.to_string(),
        ),
        (
            "GORGON_NOTIFIER_PING_TIMEOUT_MS",
            PING_TIMEOUT_MS.to_string(),
        ),
    ]
}

/// A notifier under test, with [`settings`].
struct Subject {
    process: RoleProcess,
    port: u16,
    http: reqwest::Client,
    /// Its own Redis, unless it serves a mesh.
    _redis: Option<TestRedis>,
}

impl Subject {
    /// A notifier of its own, on a Redis of its own.
    async fn start() -> Subject {
        let redis = TestRedis::start();
        let port = free_port();
        let (url, port_text) = (redis.url(), port.to_string());
        let settings = settings();
        let mut env = vec![
            ("REDIS_URL", url.as_str()),
            ("GORGON_PARTITIONS", "8"),
            ("GORGON_NOTIFIER_PORT", port_text.as_str()),
        ];
        env.extend(settings.iter().map(|(key, value)| (*key, value.as_str())));
        let process = RoleProcess::spawn("notifier", &env);
        process
            .wait_for_output("serving socket.io", Duration::from_secs(20))
            .await;
        Subject {
            process,
            port,
            http: reqwest::Client::new(),
            _redis: Some(redis),
        }
    }

    /// A notifier for `mesh`.
    async fn for_mesh(mesh: &Mesh) -> Subject {
        let settings = settings();
        let env: Vec<(&str, &str)> = settings
            .iter()
            .map(|(key, value)| (*key, value.as_str()))
            .collect();
        let Notifier { process, port, .. } = Notifier::start(mesh, &env).await;
        Subject {
            process,
            port,
            http: reqwest::Client::new(),
            _redis: None,
        }
    }

    /// `gorgon_notifier_connections` as `/metrics` shows it (0 before any socket connected).
    async fn connections(&self) -> f64 {
        let url = format!("http://127.0.0.1:{}/metrics", self.port);
        let text = self
            .http
            .get(&url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|line| line.strip_prefix("gorgon_notifier_connections "))
            .map_or(0.0, |value| value.trim().parse().unwrap())
    }

    /// Waits until the gauge shows exactly `expected` sockets.
    async fn settles_at(&self, expected: f64, after: &str) {
        self.settles_within(SETTLE, expected, after).await;
    }

    /// The same, waiting up to `within`.
    async fn settles_within(&self, within: Duration, expected: f64, after: &str) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let value = self.connections().await;
            if value == expected {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{after}: gorgon_notifier_connections is still {value} after {within:?}, \
                 not {expected}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A real socket.io client (the official one) connects and gets its subscribe answered,
    /// and its slot comes back once it leaves.
    async fn real_client_gets_in(&self) {
        let report = probe(&json!({
            "url": format!("http://127.0.0.1:{}", self.port),
            "subscribe": {"topology": "hostile"},
            "wait_ms": 100,
        }))
        .await;
        assert_eq!(report["connected"], true, "{report}");
        assert_eq!(report["ack"]["error"]["code"], "not_found", "{report}");
        self.settles_at(0.0, "after the real client left").await;
    }

    /// Runs `ROUNDS` rounds of `PER_ROUND` clients at once, client `i` running
    /// `client(port, i)`; after each round every slot must come back. Then a real client
    /// must still get in.
    async fn rounds<F, Fut>(&self, client: F)
    where
        F: Fn(u16, usize) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        for round in 0..ROUNDS {
            let clients: Vec<_> = (0..PER_ROUND)
                .map(|i| {
                    let i = round * PER_ROUND + i;
                    let client = tokio::time::timeout(CLIENT, client(self.port, i));
                    (i, tokio::spawn(client))
                })
                .collect();
            for (i, joined) in clients {
                let outcome = joined.await.unwrap();
                assert!(outcome.is_ok(), "client {i} hung for {CLIENT:?}");
            }
            self.settles_at(0.0, &format!("round {round}")).await;
        }
        self.real_client_gets_in().await;
        assert!(
            !self.process.output().contains("panicked"),
            "{}",
            self.process.output()
        );
    }
}

/// A websocket to the notifier's socket.io endpoint, written frame by frame. Dropping it
/// drops the TCP connection without a close frame (with a reset when it holds unread data).
struct Raw {
    stream: TcpStream,
    read: Vec<u8>,
}

impl Raw {
    /// Connects, upgrades to a websocket (engine.io v4) and reads the engine.io open packet.
    async fn open(port: u16) -> Raw {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        Raw::upgrade(stream, port).await
    }

    async fn upgrade(stream: TcpStream, port: u16) -> Raw {
        let mut raw = Raw {
            stream,
            read: Vec::new(),
        };
        let request = format!(
            "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
             Upgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        raw.stream.write_all(request.as_bytes()).await.unwrap();
        let head = loop {
            if let Some(end) = raw.read.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&raw.read[..end]).into_owned();
                raw.read.drain(..end + 4);
                break head;
            }
            assert!(raw.fill().await, "the notifier closed during the upgrade");
        };
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        let open = raw.recv().await.expect("the engine.io open packet");
        assert!(open.starts_with("0{"), "{open}");
        raw
    }

    /// Opens and joins the default namespace (`40`), waiting for the answer; returns it
    /// (`40{"sid":...}`, or `44{...}` when the notifier is full).
    async fn connect(port: u16) -> (Raw, String) {
        let mut raw = Raw::open(port).await;
        raw.send("40").await;
        let answer = raw.recv().await.expect("an answer to 40");
        (raw, answer)
    }

    /// Reads more; false once the connection has ended.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0_u8; 16 * 1024];
        match self.stream.read(&mut chunk).await {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.read.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// The next engine.io packet (a text frame), answering pings; `None` once the server
    /// closed.
    ///
    /// # Panics
    ///
    /// When none comes within [`ANSWER`].
    async fn recv(&mut self) -> Option<String> {
        tokio::time::timeout(ANSWER, self.next_packet())
            .await
            .unwrap_or_else(|_| panic!("no answer from the notifier within {ANSWER:?}"))
    }

    async fn next_packet(&mut self) -> Option<String> {
        loop {
            let (opcode, payload) = loop {
                if let Some((opcode, payload, used)) = parse_frame(&self.read) {
                    self.read.drain(..used);
                    break (opcode, payload);
                }
                if !self.fill().await {
                    return None;
                }
            };
            match opcode {
                0x1 => {
                    let text = String::from_utf8(payload).expect("text frames are UTF-8");
                    if text == "2" {
                        self.send("3").await;
                        continue;
                    }
                    return Some(text);
                }
                0x8 => return None,
                _ => {}
            }
        }
    }

    /// Sends `text` as one text frame; a connection the server already closed is fine.
    async fn send(&mut self, text: &str) {
        self.send_frame(0x1, text.as_bytes()).await;
    }

    async fn send_frame(&mut self, opcode: u8, payload: &[u8]) {
        let _ = self.stream.write_all(&client_frame(opcode, payload)).await;
    }

    /// Reads until the server closes the connection, answering nothing.
    async fn until_closed(&mut self, within: Duration) {
        let closed = tokio::time::timeout(within, async {
            while self.fill().await {
                self.read.clear();
            }
        })
        .await;
        assert!(
            closed.is_ok(),
            "the notifier kept the socket for {within:?}"
        );
    }
}

/// A masked client frame, FIN set.
fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x80 | opcode];
    let length = payload.len();
    if length < 126 {
        frame.push(0x80 | length as u8);
    } else if let Ok(length) = u16::try_from(length) {
        frame.push(0x80 | 126);
        frame.extend(length.to_be_bytes());
    } else {
        frame.push(0x80 | 127);
        frame.extend((length as u64).to_be_bytes());
    }
    let mask = [0x1f, 0x2e, 0x3d, 0x4c];
    frame.extend(mask);
    frame.extend(
        payload
            .iter()
            .enumerate()
            .map(|(i, byte)| byte ^ mask[i % 4]),
    );
    frame
}

/// One complete server frame at the start of `buffer`: opcode, payload and bytes used.
fn parse_frame(buffer: &[u8]) -> Option<(u8, Vec<u8>, usize)> {
    let (&first, &second) = (buffer.first()?, buffer.get(1)?);
    let (length, mut at) = match second & 0x7f {
        126 => (
            usize::from(u16::from_be_bytes([*buffer.get(2)?, *buffer.get(3)?])),
            4,
        ),
        127 => (
            usize::try_from(u64::from_be_bytes(buffer.get(2..10)?.try_into().unwrap())).unwrap(),
            10,
        ),
        short => (usize::from(short), 2),
    };
    let mask: Option<[u8; 4]> = if second & 0x80 != 0 {
        let mask = buffer.get(at..at + 4)?.try_into().unwrap();
        at += 4;
        Some(mask)
    } else {
        None
    };
    let mut payload = buffer.get(at..at + length)?.to_vec();
    if let Some(mask) = mask {
        for (i, byte) in payload.iter_mut().enumerate() {
            *byte ^= mask[i % 4];
        }
    }
    Some((first & 0x0f, payload, at + length))
}

/// `421["subscribe",` followed by `depth` nested arrays and `]`: some 2 × `depth` bytes.
fn deeply_nested(depth: usize) -> String {
    format!(
        "421[\"subscribe\",{}{}]",
        "[".repeat(depth),
        "]".repeat(depth)
    )
}

/// Clients that vanish during the handshake: after the engine.io open packet, right after
/// sending `40`, or once `40` is answered, each dropping TCP without a close frame.
#[tokio::test]
async fn clients_vanishing_mid_handshake_give_their_slots_back() {
    let subject = Subject::start().await;
    subject
        .rounds(|port, i| async move {
            match i % 3 {
                0 => drop(Raw::open(port).await),
                1 => {
                    let mut raw = Raw::open(port).await;
                    raw.send("40").await;
                }
                _ => drop(Raw::connect(port).await),
            }
        })
        .await;
}

/// The reported case: clients that join, subscribe and drop TCP without a close frame,
/// whether they send everything at once, wait for the connect answer first, or also read
/// the subscribe's acknowledgement.
#[tokio::test]
async fn clients_vanishing_after_subscribe_give_their_slots_back() {
    let subject = Subject::start().await;
    subject
        .rounds(|port, i| async move {
            let subscribe = format!("421{SUBSCRIBE}");
            match i % 3 {
                0 => {
                    let mut raw = Raw::open(port).await;
                    raw.send("40").await;
                    raw.send(&subscribe).await;
                }
                1 => {
                    let (mut raw, _) = Raw::connect(port).await;
                    raw.send(&subscribe).await;
                }
                _ => {
                    let (mut raw, answer) = Raw::connect(port).await;
                    raw.send(&subscribe).await;
                    if answer.starts_with("40") {
                        let ack = raw.recv().await.expect("the subscribe ack");
                        assert!(ack.starts_with("431[{\"ok\":false"), "{ack}");
                    }
                }
            }
        })
        .await;
}

/// Clients that send malformed packets (an ack id beyond i64, an 80 KB deeply nested
/// payload, packets that are no socket.io, a broken binary packet, a frame that is no
/// UTF-8), either at once after `40` or once connected, then drop TCP.
#[tokio::test]
async fn malformed_packets_give_their_slots_back() {
    let subject = Subject::start().await;
    subject
        .rounds(|port, i| async move {
            let kind = i % 7;
            let mut raw = if (i / 7) % 2 == 0 {
                let mut raw = Raw::open(port).await;
                raw.send("40").await;
                raw
            } else {
                Raw::connect(port).await.0
            };
            match kind {
                0 => {
                    raw.send(&format!("4299999999999999999999999{SUBSCRIBE}"))
                        .await
                }
                1 => raw.send(&deeply_nested(40_000)).await,
                2 => raw.send("4garbage{[").await,
                3 => raw.send("42[\"subscribe\"").await,
                4 => raw.send("9").await,
                5 => {
                    raw.send("451-[\"subscribe\",{\"_placeholder\":true,\"num\":0}]")
                        .await;
                    raw.send(&format!("42{SUBSCRIBE}")).await;
                }
                _ => raw.send_frame(0x1, &[0xff, 0xfe, 0x34, 0x32]).await,
            }
            // Half read until the notifier closes (or answers), half vanish at once.
            if i % 2 == 0 {
                let _ = tokio::time::timeout(Duration::from_millis(300), raw.recv()).await;
            }
        })
        .await;
}

/// Clients that join and subscribe, then stop reading and answering pings while keeping
/// TCP open, are closed by the engine.io ping timeout: their slots come back within a few
/// ping periods and the notifier closes their connections.
#[tokio::test]
async fn silent_sockets_are_closed_by_the_ping_timeout() {
    let subject = Subject::start().await;
    let mut silent = Vec::new();
    for _ in 0..MAX_CONNECTIONS {
        let (mut raw, answer) = Raw::connect(subject.port).await;
        assert!(answer.starts_with("40{"), "{answer}");
        raw.send(&format!("421{SUBSCRIBE}")).await;
        silent.push(raw);
    }
    subject
        .settles_at(MAX_CONNECTIONS as f64, "the silent clients joined")
        .await;
    // The limit is reached while they hold on.
    let (_, full) = Raw::connect(subject.port).await;
    assert!(full.starts_with("44{"), "{full}");
    // A few ping periods (500 + 1 000 ms) later they are gone, although they keep TCP open.
    subject.settles_at(0.0, "the silent clients stopped").await;
    for raw in &mut silent {
        raw.until_closed(Duration::from_secs(5)).await;
    }
    subject.real_client_gets_in().await;
}

/// `subscribe` takes an object only: a positional array is refused with `invalid_request`
/// like any malformed payload, while the object form is still read.
#[tokio::test]
async fn positional_subscribe_payloads_are_refused() {
    let subject = Subject::start().await;
    let (mut raw, answer) = Raw::connect(subject.port).await;
    assert!(answer.starts_with("40{"), "{answer}");
    raw.send(r#"421["subscribe",["hostile","n"]]"#).await;
    let ack: Value = {
        let text = raw.recv().await.expect("an ack");
        let body = text.strip_prefix("431").unwrap_or_else(|| panic!("{text}"));
        serde_json::from_str(body).unwrap()
    };
    assert_eq!(ack[0]["ok"], false, "{ack}");
    assert_eq!(ack[0]["error"]["code"], "invalid_request", "{ack}");
    raw.send(&format!("422{SUBSCRIBE}")).await;
    let text = raw.recv().await.expect("an ack");
    assert!(
        text.starts_with("432[{\"ok\":false,\"error\":{\"code\":\"not_found\""),
        "{text}"
    );
    drop(raw);
    subject.settles_at(0.0, "the client left").await;
}

/// A client that subscribes, then stops reading while outputs keep coming (it goes on
/// sending pongs unasked for a while, which engine.io takes as answers), until its TCP
/// window and the notifier's buffers are full: engine.io's writer then waits on the socket
/// for ever, and its ping timeout alone could not end the session. The notifier still drops
/// the connection and gives the slot back within a few ping periods.
#[tokio::test]
async fn a_client_that_stops_reading_is_dropped() {
    let mesh = Mesh::start(1, &[]).await;
    let topology = json!({"node": [{"id": "a", "function": "pass"}]});
    let answer = mesh
        .call(Method::PUT, "/v1/topologies/flood", &topology)
        .await;
    assert!(answer.status.is_success(), "{}", answer.text);
    let subject = Subject::for_mesh(&mesh).await;

    // A receive buffer as small as the kernel allows, so the window shuts early.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket
        .connect(([127, 0, 0, 1], subject.port).into())
        .await
        .unwrap();
    let mut raw = Raw::upgrade(stream, subject.port).await;
    raw.send("40").await;
    let answer = raw.recv().await.expect("an answer to 40");
    assert!(answer.starts_with("40{"), "{answer}");
    raw.send(r#"421["subscribe",{"topology":"flood"}]"#).await;
    let ack = raw.recv().await.expect("the subscribe ack");
    assert!(ack.starts_with("431[{\"ok\":true"), "{ack}");
    subject.settles_at(1.0, "the client subscribed").await;

    // Some 16 MB of outputs, far more than the socket's buffers hold; the client reads none.
    let padding = "x".repeat(4_000);
    for request in 0..40 {
        raw.send("3").await;
        let body: String = (0..100)
            .map(|i| format!("{{\"i\":{},\"pad\":\"{padding}\"}}\n", request * 100 + i))
            .collect();
        let answer = mesh
            .send(
                mesh.request(Method::POST, "/v1/topologies/flood/nodes/a/messages")
                    .header("content-type", "application/x-ndjson")
                    .body(body),
            )
            .await;
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        raw.send("3").await;
        let output = mesh
            .call(
                Method::GET,
                "/v1/topologies/flood/nodes/a/output",
                &Value::Null,
            )
            .await;
        if output.json["seq"].as_u64() >= Some(4_000) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{}", output.text);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Silent from now on. The notifier drops the client once its writer has waited a ping
    // interval and timeout (if it did not already while the pongs came).
    subject
        .settles_within(Duration::from_secs(90), 0.0, "the client stopped reading")
        .await;
    subject.real_client_gets_in().await;
    drop(raw);
}
