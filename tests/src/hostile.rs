//! Hostile requests for the write routes of the REST API, from a small seeded generator
//! (xorshift64*), so that a failure can be replayed from its seed. Every request is built to
//! be refused: bodies that are no JSON (or TOML) at all, JSON of the wrong shape, documents
//! that fail validation (bad slugs, unknown functions, cycles, unknown sources, attributes of
//! the wrong type), bodies over the size, depth or line limits of a web_face started with
//! [`BODY_LIMIT`], [`JSON_DEPTH`] and [`NDJSON_LINES`], content types the route does not take,
//! path ids that are no UTF-8, methods a route does not have. Injects only ever carry invalid
//! bodies (or go to nodes that do not exist), since any valid JSON is a message. They aim at
//! topology [`TOPOLOGY`], created as [`base_doc`].

use reqwest::Method;
use serde_json::{json, Value};

/// GORGON_BODY_LIMIT of the mesh.
pub const BODY_LIMIT: usize = 65_536;
/// GORGON_JSON_DEPTH of the mesh.
pub const JSON_DEPTH: usize = 64;
/// GORGON_NDJSON_LINES of the mesh.
pub const NDJSON_LINES: usize = 1_000;

/// The topology every request aims at (or near).
pub const TOPOLOGY: &str = "sensors";

/// The topology under attack: `temp` (pass) → `hot` (threshold above 30) → `tally` (count).
pub fn base_doc() -> Value {
    json!({
        "description": "the target of the hostile requests",
        "node": [
            {"id": "temp", "function": "pass", "sources": [], "attrs": {}},
            {"id": "hot", "function": "threshold", "sources": ["temp"], "attrs": {"above": 30}},
            {"id": "tally", "function": "count", "sources": ["hot"], "attrs": {}}
        ]
    })
}

/// The nodes of [`base_doc`].
const NODES: [&str; 3] = ["temp", "hot", "tally"];

/// Ids that are not slugs, or (`ghost`) a slug that names nothing.
const HOSTILE_IDS: &[&str] = &[
    "ghost",
    "a.b",
    "$where",
    "sensors.temp",
    "Sensors",
    "-temp",
    "temp-",
    "te--mp",
    "temp_in",
    "0temp",
    "a b",
    "ünïcode",
    "__proto__",
    "${jndi:ldap://x}",
    "temp\u{0}",
    "..",
    "a/b",
    "{t}",
    "%",
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
];

/// Path segments whose percent-encoding is not UTF-8.
const NOT_UTF8_SEGMENTS: &[&str] = &["%FF", "%C3%28", "%ED%A0%80", "%80abc", "temp%FE"];

/// Ids a document may not give a node.
const BAD_SLUGS: &[&str] = &[
    "a.b",
    "$where",
    "temp.in",
    "Temp",
    "",
    "-temp",
    "temp-",
    "te--mp",
    "temp_in",
    "0temp",
    "a b",
    "ünïcode",
    "__proto__",
    "../etc",
    "${jndi:ldap://x}",
    "temp\u{0}",
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
];

/// Function names no processor registers.
const BAD_FUNCTIONS: &[&str] = &[
    "nope",
    "$where",
    "a.b",
    "",
    "PASS",
    " pass",
    "pass ",
    "pass\u{0}",
    "count; DROP TABLE nodes",
    "../count",
    "threshold.above",
    "{{function}}",
];

/// Values `above` and `below` of a threshold may not take.
fn bad_numbers() -> Vec<Value> {
    vec![
        json!("x"),
        json!("30"),
        json!(""),
        json!([30]),
        json!({"$gt": 30}),
        json!(true),
        json!(null),
    ]
}

/// Values `field` (a JSON pointer) may not take.
fn bad_pointers() -> Vec<Value> {
    vec![
        json!("celsius"),
        json!("nope"),
        json!("/a~2"),
        json!("~"),
        json!(5),
        json!(["/x"]),
        json!({"$ne": ""}),
        json!(false),
    ]
}

/// Content types no write route takes.
const WRONG_CONTENT_TYPES: &[&[u8]] = &[
    b"text/plain",
    b"text/json",
    b"application/xml",
    b"application/x-www-form-urlencoded",
    b"multipart/form-data; boundary=xyz",
    b"application/merge-patch+json",
    b"application/json-patch+json",
    b"application/javascript",
    b"application/jsonx",
    b"json",
    b"",
    b"*/*",
    b"application/\xffjson",
    b"application/octet-stream",
];

/// xorshift64*: small, seeded, and the same on every machine.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n`.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// A number in `low..=high`.
    fn between(&mut self, low: usize, high: usize) -> usize {
        low + self.below(high - low + 1)
    }

    /// True `percent` times in a hundred.
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())].clone()
    }
}

/// One request to send.
pub struct Hostile {
    /// What was generated, for the tally.
    pub kind: &'static str,
    pub method: Method,
    /// Path and query, already percent-encoded.
    pub path: String,
    pub content_type: Option<Vec<u8>>,
    pub if_match: Option<&'static str>,
    pub body: Vec<u8>,
}

impl Hostile {
    fn new(kind: &'static str, method: Method, path: String, body: Vec<u8>) -> Hostile {
        Hostile {
            kind,
            method,
            path,
            content_type: None,
            if_match: None,
            body,
        }
    }

    fn typed(mut self, content_type: &[u8]) -> Hostile {
        self.content_type = Some(content_type.to_vec());
        self
    }
}

/// Percent-encodes `id` for a path segment (unreserved characters stay).
fn encode(id: &str) -> String {
    let mut out = String::new();
    for byte in id.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The attacked topology most of the time, else an id that is no slug or names nothing.
fn topology_segment(rng: &mut Rng) -> String {
    if rng.chance(75) {
        TOPOLOGY.to_owned()
    } else {
        encode(rng.pick(HOSTILE_IDS))
    }
}

/// A node of the attacked topology, and whether it exists there (`None`: a hostile id).
fn node_segment(rng: &mut Rng) -> (String, Option<&'static str>) {
    if rng.chance(70) {
        let node = rng.pick(&NODES);
        (node.to_owned(), Some(node))
    } else {
        (encode(rng.pick(HOSTILE_IDS)), None)
    }
}

// ---------------------------------------------------------------------------------------
// Bodies.

/// One line that is never JSON, of any kind: no newline in it, well under the body limit.
fn bad_json_line(rng: &mut Rng) -> Vec<u8> {
    let doc = serde_json::to_vec(&base_doc()).unwrap();
    match rng.below(16) {
        0 | 1 => {
            // A proper prefix of an object is never a whole JSON value.
            let samples: [&[u8]; 3] = [&doc, br#"{"v":1,"w":[1,2,{"x":"y"}]}"#, br#"[{"a":1}]"#];
            let sample = samples[rng.below(samples.len())];
            sample[..rng.below(sample.len())].to_vec()
        }
        2 | 3 => {
            // A byte no JSON value starts with, then noise.
            let lead: &[u8] = b"}],:\xff\x00'#";
            let mut bytes = vec![lead[rng.below(lead.len())]];
            for _ in 0..rng.below(200) {
                let byte = (rng.next() & 0xff) as u8;
                bytes.push(if byte == b'\n' { b'?' } else { byte });
            }
            bytes
        }
        4 => rng
            .pick(&[
                "1e400",
                "-1e400",
                "[1e999]",
                r#"{"v":1e400}"#,
                "123456789012345678901234567890e400",
                r#"{"above":-1e99999}"#,
            ])
            .into(),
        5 | 6 => {
            // Deeper than the limit, closed or not.
            let depth = rng.between(JSON_DEPTH + 1, 400);
            let (open, close) = if rng.chance(50) {
                (r#"{"a":"#, "}")
            } else {
                ("[", "]")
            };
            let mut text = open.repeat(depth);
            text.push('1');
            if rng.chance(50) {
                text.push_str(&close.repeat(depth));
            }
            text.into_bytes()
        }
        7 => {
            let invalid: [&[u8]; 4] = [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf0\x28\x8c\x28"];
            let mut bytes = br#"{"v":""#.to_vec();
            bytes.extend_from_slice(invalid[rng.below(invalid.len())]);
            bytes.extend_from_slice(br#""}"#);
            bytes
        }
        8 => rng
            .pick(&[r#"{"v":"\ud800"}"#, r#""\udfff""#, r#"["\ud83d"]"#])
            .into(),
        9 => rng
            .pick(&[
                "NaN",
                r#"{"v":NaN}"#,
                "[Infinity]",
                "-Infinity",
                "undefined",
            ])
            .into(),
        10 => rng
            .pick(&[
                r#"{"v":1} // note"#,
                "/* c */ 1",
                r#"{"v":1,}"#,
                "[1,2,]",
                "{'v':1}",
                "{v:1}",
            ])
            .into(),
        11 => rng
            .pick(&[
                "\"a\tb\"",
                "\"a\u{1}b\"",
                r#""\x41""#,
                r#""\u12""#,
                r#""\q""#,
            ])
            .into(),
        12 => rng
            .pick(&[r#"{"v":1} x"#, "1 2", "{}{}", "[] []", "true false"])
            .into(),
        13 => rng.pick(&["", " ", "\t", "\r"]).into(),
        14 => {
            let mut bytes = b"\xef\xbb\xbf".to_vec();
            bytes.extend_from_slice(br#"{"v":1}"#);
            bytes
        }
        _ => rng
            .pick(&[
                r#"{"v":tru}"#,
                r#"{"v":01}"#,
                r#"{"v":.5}"#,
                r#"{"v":+1}"#,
                r#"{"v":0x10}"#,
                r#"{"v" 1}"#,
            ])
            .into(),
    }
}

/// A line an ndjson body must fail on: not JSON, and not blank (blank lines are skipped).
fn bad_ndjson_line(rng: &mut Rng) -> Vec<u8> {
    loop {
        let line = bad_json_line(rng);
        if !line.iter().all(u8::is_ascii_whitespace) {
            return line;
        }
    }
}

/// Valid JSON over the body limit.
fn oversized(rng: &mut Rng) -> Vec<u8> {
    let size = rng.between(BODY_LIMIT + 1, BODY_LIMIT + 40_000);
    let mut bytes = br#"{"v":""#.to_vec();
    bytes.resize(size - 2, b'a');
    bytes.extend_from_slice(br#""}"#);
    bytes
}

/// Anything that is never accepted as JSON: a bad line, a pretty-printed prefix, or too big.
fn bad_json(rng: &mut Rng) -> Vec<u8> {
    match rng.below(20) {
        0 => oversized(rng),
        1 => {
            let pretty = serde_json::to_vec_pretty(&base_doc()).unwrap();
            pretty[..rng.below(pretty.len())].to_vec()
        }
        _ => bad_json_line(rng),
    }
}

/// Valid, hostile JSON: refused only where the target does not exist or the type is wrong.
fn hostile_json(rng: &mut Rng) -> Vec<u8> {
    match rng.below(12) {
        0 => br#"{"$where":"this.a > 1"}"#.to_vec(),
        1 => br#"{"a.b":{"$gt":""},"$set":{"x":1}}"#.to_vec(),
        2 => br#"{"__proto__":{"admin":true},"constructor":{"prototype":{}}}"#.to_vec(),
        3 => b"99999999999999999999999".to_vec(),
        4 => b"[1e308,-0,5e-324,-99999999999999999999999]".to_vec(),
        5 => {
            let depth = JSON_DEPTH - 1;
            format!("{}1{}", "[".repeat(depth), "]".repeat(depth)).into_bytes()
        }
        6 => br#""\u0000\ud83d\ude00 \u00fc""#.to_vec(),
        7 => format!(
            r#"{{"v":"{}"}}"#,
            "z".repeat(rng.between(1, BODY_LIMIT - 16))
        )
        .into_bytes(),
        8 => b"null".to_vec(),
        9 => b"{}".to_vec(),
        10 => b"[]".to_vec(),
        _ => br#"{"v":"[[[[[[[[[[{{{{{{{{{{{{"}"#.to_vec(),
    }
}

/// A TOML basic string.
fn toml_string(text: &str) -> String {
    let mut out = String::from("\"");
    for char in text.chars() {
        match char {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{0}'..='\u{8}' | '\u{a}'..='\u{1f}' | '\u{7f}' => {
                out.push_str(&format!("\\u{:04X}", char as u32));
            }
            _ => out.push(char),
        }
    }
    out.push('"');
    out
}

/// A JSON value in TOML; `None` for null, which TOML has no form for.
fn toml_value(value: &Value) -> Option<String> {
    Some(match value {
        Value::Null => return None,
        Value::Bool(flag) => flag.to_string(),
        Value::Number(number) => number.to_string(),
        Value::String(text) => toml_string(text),
        Value::Array(items) => format!(
            "[{}]",
            items
                .iter()
                .map(toml_value)
                .collect::<Option<Vec<_>>>()?
                .join(", ")
        ),
        Value::Object(map) => format!(
            "{{ {} }}",
            map.iter()
                .map(|(key, value)| Some(format!("{} = {}", toml_string(key), toml_value(value)?)))
                .collect::<Option<Vec<_>>>()?
                .join(", ")
        ),
    })
}

/// A document in TOML, its nodes as `[[node]]` tables when they are objects; `None` when it
/// has no TOML form.
fn toml_doc(doc: &Value) -> Option<String> {
    let mut head = String::new();
    let mut tables = String::new();
    for (key, value) in doc.as_object()? {
        match value {
            Value::Array(nodes) if key == "node" && nodes.iter().all(Value::is_object) => {
                for node in nodes {
                    tables.push_str("\n[[node]]\n");
                    for (key, value) in node.as_object()? {
                        let line = format!("{} = {}\n", toml_string(key), toml_value(value)?);
                        tables.push_str(&line);
                    }
                }
            }
            _ => head.push_str(&format!("{} = {}\n", toml_string(key), toml_value(value)?)),
        }
    }
    Some(head + &tables)
}

/// A document that parses but that validation must refuse: one sure fault, then noise that
/// changes nothing about that.
fn invalid_doc(rng: &mut Rng) -> Value {
    let mut doc = base_doc();
    // Noise first, so that the fault below overrides it: a long or odd description, odd
    // attributes on the pass node.
    if rng.chance(25) {
        let description = rng.pick(&[
            "ünïcödé ✓ \u{0} \u{7f} \u{202e}",
            "'; DROP TABLE topologies; --",
            "{{7*7}} ${7*7} <script>alert(1)</script>",
        ]);
        doc["description"] = json!(description.repeat(rng.between(1, 200)));
    }
    if rng.chance(25) {
        doc["node"][0]["attrs"] = json!({"$where": 1e22, "a.b": [[[[1]]]], "": "", "x": -0.0});
    }
    let i = rng.below(NODES.len());
    {
        let nodes = doc["node"].as_array_mut().unwrap();
        match rng.below(14) {
            0 | 1 => nodes[i]["id"] = json!(rng.pick(BAD_SLUGS)),
            2 | 3 => nodes[i]["function"] = json!(rng.pick(BAD_FUNCTIONS)),
            // temp → hot → tally, and back.
            4 => nodes[0]["sources"] = json!([rng.pick(&["tally", "hot"])]),
            5 => {
                let id = nodes[i]["id"].clone();
                nodes[i]["sources"] = json!([id]);
            }
            6 => nodes[i]["sources"] = json!([rng.pick(&["ghost", "a.b", "$where", ""])]),
            7 => nodes[1]["attrs"]["above"] = rng.pick(&bad_numbers()),
            8 => {
                let setting = rng.pick(&["below", "above"]);
                nodes[1]["attrs"][setting] = rng.pick(&bad_numbers());
            }
            9 => nodes[1]["attrs"]["field"] = rng.pick(&bad_pointers()),
            10 => {
                let copy = nodes[i].clone();
                nodes.push(copy);
            }
            11 => {
                let key = rng.pick(&["sorces", "$where", "attrs.above", "ID", "function "]);
                nodes[i][key] = json!(1);
            }
            12 => {
                let field = rng.pick(&["id", "function", "sources", "attrs"]);
                nodes[i][field] = match field {
                    "sources" => rng.pick(&[json!("temp"), json!([1]), json!({"a": 1}), json!(7)]),
                    "attrs" => rng.pick(&[json!([]), json!("x"), json!(5), json!(true)]),
                    _ => rng.pick(&[json!(1e22), json!([]), json!({}), json!(true), json!(null)]),
                };
            }
            _ => {
                let field = rng.pick(&["id", "function"]);
                nodes[i].as_object_mut().unwrap().remove(field);
            }
        }
    }
    match rng.below(20) {
        0 => doc[rng.pick(&["$where", "nodes", "graph ", "sources", "rev"])] = json!({"x": 1}),
        1 => {
            doc["graph"] = json!(rng.pick(&[
                "temp --> ghost",
                "-->",
                "temp -->",
                "ghost --> temp",
                "tally --> temp",
                "temp --> temp",
                "a.b --> temp",
            ]));
        }
        2 => doc["description"] = rng.pick(&[json!(1e22), json!(["x"]), json!({"a": 1})]),
        3 => doc["node"] = rng.pick(&[json!({}), json!("temp"), json!(5), json!([1, 2])]),
        _ => {}
    }
    doc
}

/// `base_doc` with another description: valid, and a change if it were applied.
fn changed_doc() -> Value {
    let mut doc = base_doc();
    doc["description"] = json!("changed by a request that must be refused");
    doc
}

fn put_json(rng: &mut Rng) -> Hostile {
    let path = format!("/v1/topologies/{}", topology_segment(rng));
    let roll = rng.below(100);
    let (kind, body, if_match) = match roll {
        0..=54 => (
            "PUT json: invalid document",
            serde_json::to_vec(&invalid_doc(rng)).unwrap(),
            None,
        ),
        55..=84 => ("PUT json: not JSON", bad_json(rng), None),
        85..=89 => ("PUT json: over the body limit", oversized(rng), None),
        90..=94 => {
            let text = rng.pick(&[
                r#"{"description":99999999999999999999999,"node":[]}"#,
                r#"{"node":[{"id":"temp","function":"threshold","attrs":{"above":1e400}}]}"#,
                r#"{"node":[{"id":99999999999999999999999,"function":"pass"}]}"#,
                r#"{"node":[],"node":[]}"#,
                r#"[{"node":[]}]"#,
                r#"["read by position",null,[["temp","pass"]]]"#,
                r#""node""#,
                "null",
                "42",
            ]);
            ("PUT json: wrong shape", text.as_bytes().to_vec(), None)
        }
        _ => {
            // A valid change, but against a rev the topology is not at, or no rev at all.
            let if_match = rng.pick(&[
                "1000",
                "\"77777\"",
                "W/\"5000\"",
                "abc",
                "\"\"",
                "99999999999999999999999",
                "-1",
            ]);
            (
                "PUT json: valid, wrong If-Match",
                serde_json::to_vec(&changed_doc()).unwrap(),
                Some(if_match),
            )
        }
    };
    let content_type: &[u8] = rng.pick(&[
        &b"application/json"[..],
        b"application/json; charset=utf-8",
        b"Application/JSON",
    ]);
    let mut request = Hostile::new(kind, Method::PUT, path, body);
    if rng.chance(90) {
        request = request.typed(content_type);
    }
    request.if_match = if_match;
    request
}

fn put_toml(rng: &mut Rng) -> Hostile {
    let path = format!("/v1/topologies/{}", topology_segment(rng));
    let base = toml_doc(&base_doc()).unwrap();
    let (kind, body): (&'static str, Vec<u8>) = match rng.below(10) {
        0..=3 => match toml_doc(&invalid_doc(rng)) {
            Some(text) => ("PUT toml: invalid document", text.into_bytes()),
            None => ("PUT toml: not TOML", b"[[node]\nid = ".to_vec()),
        },
        4 | 5 => {
            let text = rng.pick(&[
                "[[node]\nid = \"temp\"",
                "node = [",
                "= 1",
                "[[node]]\nid = \"temp\nfunction = \"pass\"",
                "[[node]]\nid = \"te\\qmp\"\nfunction = \"pass\"",
                "[[node]]\nid = \"temp\"\nid = \"hot\"\nfunction = \"pass\"",
                "[[node]]\nid = temp\nfunction = pass",
                "{\"node\": []}",
                "[node]]\n",
                "description = \"\"\"never closed",
                "[[node]]\nid = \"temp\"\nfunction = \"threshold\"\nattrs = { above = 99999999999999999999999 }",
            ]);
            ("PUT toml: not TOML", text.as_bytes().to_vec())
        }
        6 => {
            let text = rng.pick(&[
                "nan",
                "+inf",
                "-inf",
                "-nan",
                "1979-05-27T07:32:00Z",
                "07:32:00",
                "\"30\"",
            ]);
            let doc = base.replace("above\" = 30", &format!("above\" = {text}"));
            (
                "PUT toml: attribute of no JSON form or wrong type",
                doc.into_bytes(),
            )
        }
        7 => {
            let depth = rng.between(100, 2_000);
            let text = format!(
                "{base}\n[[node]]\nid = \"deep\"\nfunction = \"pass\"\nattrs = {{ a = {}1{} }}\n",
                "[".repeat(depth),
                "]".repeat(depth)
            );
            ("PUT toml: nested too deep", text.into_bytes())
        }
        8 => {
            let mut bytes = base.into_bytes();
            let at = rng.below(bytes.len());
            let invalid: [&[u8]; 3] = [b"\xff", b"\xc3\x28", b"\xed\xa0\x80"];
            bytes.splice(at..at, invalid[rng.below(3)].iter().copied());
            ("PUT toml: not UTF-8", bytes)
        }
        _ => {
            let size = rng.between(BODY_LIMIT + 1, BODY_LIMIT + 40_000);
            let mut text = String::from("description = \"");
            text.push_str(&"a".repeat(size));
            text.push_str("\"\n");
            text.push_str(&base);
            ("PUT toml: over the body limit", text.into_bytes())
        }
    };
    let content_type: &[u8] = rng.pick(&[
        &b"application/toml"[..],
        b"application/toml; charset=utf-8",
        b"APPLICATION/TOML",
    ]);
    Hostile::new(kind, Method::PUT, path, body).typed(content_type)
}

fn post_node(rng: &mut Rng) -> Hostile {
    let path = format!("/v1/topologies/{}/nodes", topology_segment(rng));
    let mut node = json!({"id": "fresh", "function": "count", "sources": ["temp"], "attrs": {}});
    let kind = match rng.below(12) {
        0 | 1 => {
            node["id"] = json!(rng.pick(BAD_SLUGS));
            "POST node: invalid document"
        }
        2 => {
            node["id"] = json!(rng.pick(&NODES));
            "POST node: id taken"
        }
        3 | 4 => {
            node["function"] = json!(rng.pick(BAD_FUNCTIONS));
            "POST node: invalid document"
        }
        5 => {
            node["sources"] = json!([rng.pick(&["ghost", "fresh", "a.b", "$where", ""])]);
            "POST node: invalid document"
        }
        6 => {
            node["function"] = json!("threshold");
            node["attrs"] = json!({"above": rng.pick(&bad_numbers())});
            "POST node: invalid document"
        }
        7 => {
            node["function"] = json!("threshold");
            node["attrs"] = json!({"above": 1, "field": rng.pick(&bad_pointers())});
            "POST node: invalid document"
        }
        8 => {
            let field = rng.pick(&["id", "function", "sources", "attrs"]);
            node[field] = rng.pick(&[json!(1e22), json!([[]]), json!(true), json!("x")]);
            if field == "id" || field == "function" {
                node[field] = json!({"$ne": null});
            }
            "POST node: wrong shape"
        }
        9 => {
            node = rng.pick(&[
                json!([node]),
                json!(["fresh", "count", ["temp"]]),
                json!("fresh"),
                json!(5),
                json!(null),
            ]);
            "POST node: wrong shape"
        }
        10 => {
            let field = rng.pick(&["id", "function"]);
            node.as_object_mut().unwrap().remove(field);
            "POST node: wrong shape"
        }
        _ => {
            let body = if rng.chance(15) {
                oversized(rng)
            } else {
                bad_json(rng)
            };
            return Hostile::new("POST node: not JSON", Method::POST, path, body)
                .typed(b"application/json");
        }
    };
    if rng.chance(30) && node.is_object() {
        node["$where"] = json!({"$gt": 99999});
        node["attrs.above"] = json!(1e22);
    }
    Hostile::new(kind, Method::POST, path, serde_json::to_vec(&node).unwrap())
        .typed(b"application/json")
}

fn patch_node(rng: &mut Rng) -> Hostile {
    let topology = topology_segment(rng);
    let (node, existing) = node_segment(rng);
    let path = format!("/v1/topologies/{topology}/nodes/{node}");
    let target_exists = topology == TOPOLOGY && existing.is_some();
    let (kind, body): (&'static str, Vec<u8>) = if !target_exists && rng.chance(50) {
        let patch = rng.pick(&[
            json!({}),
            json!({"function": "count"}),
            json!({"sources": []}),
        ]);
        (
            "PATCH node: no such node",
            serde_json::to_vec(&patch).unwrap(),
        )
    } else {
        match rng.below(8) {
            0 | 1 => {
                let patch = json!({"function": rng.pick(BAD_FUNCTIONS)});
                (
                    "PATCH node: invalid change",
                    serde_json::to_vec(&patch).unwrap(),
                )
            }
            2 => {
                let sources = match existing.unwrap_or("temp") {
                    "temp" => rng.pick(&["tally", "hot"]),
                    "hot" => rng.pick(&["tally", "hot"]),
                    _ => "tally",
                };
                let patch = if rng.chance(50) {
                    json!({"sources": [sources]})
                } else {
                    json!({"sources": [rng.pick(&["ghost", "a.b", "$where", ""])]})
                };
                (
                    "PATCH node: invalid change",
                    serde_json::to_vec(&patch).unwrap(),
                )
            }
            3 => {
                let patch = rng.pick(&[
                    json!({"function": 5}),
                    json!({"function": ["pass"]}),
                    json!({"function": 1e22}),
                    json!({"sources": "temp"}),
                    json!({"sources": [1]}),
                    json!({"sources": {"a": 1}}),
                    json!([]),
                    json!(["pass"]),
                    json!(["count", ["temp"]]),
                    json!("pass"),
                    json!(null),
                    json!(7),
                ]);
                (
                    "PATCH node: wrong shape",
                    serde_json::to_vec(&patch).unwrap(),
                )
            }
            4 => {
                let patch = rng.pick(&[
                    json!({"$where": 1}),
                    json!({"function": "pass", "srcs": []}),
                    json!({"id": "other"}),
                    json!({"attrs": {}}),
                ]);
                (
                    "PATCH node: unknown field",
                    serde_json::to_vec(&patch).unwrap(),
                )
            }
            5 => ("PATCH node: over the body limit", oversized(rng)),
            _ => ("PATCH node: not JSON", bad_json_line(rng)),
        }
    };
    Hostile::new(kind, Method::PATCH, path, body).typed(b"application/json")
}

fn patch_attrs(rng: &mut Rng) -> Hostile {
    let topology = topology_segment(rng);
    let (node, existing) = node_segment(rng);
    let path = format!("/v1/topologies/{topology}/nodes/{node}/attrs");
    let (kind, body): (&'static str, Vec<u8>) = match (topology == TOPOLOGY, existing) {
        // Settings of the threshold node of the wrong type.
        (true, Some("hot")) if rng.chance(70) => {
            let mut patch = match rng.below(3) {
                0 => json!({"above": rng.pick(&bad_numbers()[..6])}),
                1 => json!({"below": rng.pick(&bad_numbers()[..6])}),
                _ => json!({"field": rng.pick(&bad_pointers())}),
            };
            if rng.chance(30) {
                patch["$where"] = json!("1 == 1");
                patch["a.b"] = json!(99_999_999_999_999_999_999.0);
            }
            (
                "PATCH attrs: invalid attributes",
                serde_json::to_vec(&patch).unwrap(),
            )
        }
        (true, Some(_)) => match rng.below(4) {
            0 => {
                let patch = rng.pick(&[
                    json!([]),
                    json!([{"above": 1}]),
                    json!("x"),
                    json!(5),
                    json!(null),
                    json!(true),
                ]);
                (
                    "PATCH attrs: not an object",
                    serde_json::to_vec(&patch).unwrap(),
                )
            }
            1 => (
                "PATCH attrs: not JSON",
                rng.pick(&[r#"{"above":1e400}"#, r#"{"above":"#, r#"{"$where":NaN}"#])
                    .into(),
            ),
            2 => ("PATCH attrs: over the body limit", oversized(rng)),
            _ => ("PATCH attrs: not JSON", bad_json(rng)),
        },
        _ => {
            let body = if rng.chance(60) {
                rng.pick(&[
                    &br#"{}"#[..],
                    br#"{"$where":"1 == 1"}"#,
                    br#"{"above":null}"#,
                    br#"{"a.b":{"$gt":""}}"#,
                ])
                .to_vec()
            } else {
                bad_json(rng)
            };
            ("PATCH attrs: no such node", body)
        }
    };
    Hostile::new(kind, Method::PATCH, path, body).typed(b"application/json")
}

fn inject_json(rng: &mut Rng) -> Hostile {
    let topology = topology_segment(rng);
    let (node, existing) = node_segment(rng);
    let path = format!("/v1/topologies/{topology}/nodes/{node}/messages");
    let (kind, body) = if (topology == TOPOLOGY && existing.is_some()) || rng.chance(50) {
        match rng.below(10) {
            0 => ("inject json: over the body limit", oversized(rng)),
            _ => ("inject json: not JSON", bad_json(rng)),
        }
    } else {
        ("inject json: no such node", hostile_json(rng))
    };
    let mut request = Hostile::new(kind, Method::POST, path, body);
    if rng.chance(80) {
        let content_type: &[u8] =
            rng.pick(&[&b"application/json"[..], b"application/json; charset=utf-8"]);
        request = request.typed(content_type);
    }
    request
}

fn inject_ndjson(rng: &mut Rng) -> Hostile {
    let topology = topology_segment(rng);
    let (node, existing) = node_segment(rng);
    let path = format!("/v1/topologies/{topology}/nodes/{node}/messages");
    let newline = rng.pick(&["\n", "\r\n"]).as_bytes();
    let good_line = |rng: &mut Rng| -> Vec<u8> {
        rng.pick(&[
            &b"1"[..],
            br#"{"v":2}"#,
            br#"{"celsius":21.5}"#,
            b"\"x\"",
            b"null",
            b"[1,2]",
            b"   ",
        ])
        .to_vec()
    };
    let join = |lines: Vec<Vec<u8>>| -> Vec<u8> { lines.join(newline) };
    let (kind, body) = if (topology == TOPOLOGY && existing.is_some()) || rng.chance(50) {
        match rng.below(10) {
            0..=5 => {
                let mut lines: Vec<Vec<u8>> = (0..rng.below(30)).map(|_| good_line(rng)).collect();
                let at = rng.below(lines.len() + 1);
                lines.insert(at, bad_ndjson_line(rng));
                ("inject ndjson: one bad line", join(lines))
            }
            6 => {
                let lines = (0..rng.between(NDJSON_LINES + 1, NDJSON_LINES + 500))
                    .map(|_| b"1".to_vec())
                    .collect();
                ("inject ndjson: too many lines", join(lines))
            }
            7 => (
                "inject ndjson: no message",
                rng.pick(&["", "\n", "\n\n  \n", "\r\n\t\r\n"]).into(),
            ),
            _ => {
                let line = format!(r#"{{"v":"{}"}}"#, "n".repeat(999)).into_bytes();
                let lines = vec![line; BODY_LIMIT / 1000 + rng.between(1, 40)];
                ("inject ndjson: over the body limit", join(lines))
            }
        }
    } else {
        let lines = (0..rng.between(1, 20)).map(|_| good_line(rng)).collect();
        ("inject ndjson: no such node", join(lines))
    };
    let content_type: &[u8] = rng.pick(&[
        &b"application/x-ndjson"[..],
        b"application/x-ndjson; charset=utf-8",
    ]);
    Hostile::new(kind, Method::POST, path, body).typed(content_type)
}

/// A valid body for a write route, labelled with a content type that route does not take.
fn wrong_content_type(rng: &mut Rng) -> Hostile {
    let mut types: Vec<&[u8]> = WRONG_CONTENT_TYPES.to_vec();
    let (method, path, body, extra): (Method, String, Value, &[u8]) = match rng.below(5) {
        0 => (
            Method::PUT,
            format!("/v1/topologies/{TOPOLOGY}"),
            changed_doc(),
            b"application/x-ndjson",
        ),
        1 => (
            Method::POST,
            format!("/v1/topologies/{TOPOLOGY}/nodes"),
            json!({"id": "fresh", "function": "count", "sources": ["temp"]}),
            b"application/toml",
        ),
        2 => (
            Method::PATCH,
            format!("/v1/topologies/{TOPOLOGY}/nodes/tally"),
            json!({"function": "pass"}),
            b"application/x-ndjson",
        ),
        3 => (
            Method::PATCH,
            format!("/v1/topologies/{TOPOLOGY}/nodes/hot/attrs"),
            json!({"above": 10}),
            b"application/toml",
        ),
        _ => (
            Method::POST,
            format!("/v1/topologies/{TOPOLOGY}/nodes/temp/messages"),
            json!({"v": 1}),
            b"application/toml",
        ),
    };
    types.push(extra);
    let content_type = rng.pick(&types);
    Hostile::new(
        "wrong content type",
        method,
        path,
        serde_json::to_vec(&body).unwrap(),
    )
    .typed(content_type)
}

/// Paths whose ids are no UTF-8, queries of the wrong type, methods a route does not have.
fn bad_path_or_method(rng: &mut Rng) -> Hostile {
    let invalid = serde_json::to_vec(&invalid_doc(rng)).unwrap();
    let segment = rng.pick(NOT_UTF8_SEGMENTS);
    let (kind, method, path, body) = match rng.below(8) {
        0 => (
            "query of the wrong type",
            Method::PUT,
            format!(
                "/v1/topologies/{TOPOLOGY}?{}",
                rng.pick(&[
                    "dry_run=maybe",
                    "dry_run=1",
                    "reset_state=yes",
                    "dry_run=true&dry_run=false",
                    "dry_run"
                ])
            ),
            invalid,
        ),
        1 => (
            "path not UTF-8",
            Method::PUT,
            format!("/v1/topologies/{segment}"),
            invalid,
        ),
        2 => (
            "path not UTF-8",
            Method::PATCH,
            format!("/v1/topologies/{TOPOLOGY}/nodes/{segment}/attrs"),
            b"{}".to_vec(),
        ),
        3 => (
            "path not UTF-8",
            Method::POST,
            format!("/v1/topologies/{segment}/nodes/temp/messages"),
            br#"{"v":1}"#.to_vec(),
        ),
        4 => (
            "method not allowed",
            Method::POST,
            format!("/v1/topologies/{TOPOLOGY}"),
            serde_json::to_vec(&changed_doc()).unwrap(),
        ),
        5 => (
            "method not allowed",
            Method::PUT,
            format!("/v1/topologies/{TOPOLOGY}/nodes/temp/messages"),
            br#"{"v":1}"#.to_vec(),
        ),
        6 => (
            "method not allowed",
            Method::DELETE,
            format!("/v1/topologies/{TOPOLOGY}/nodes/hot/attrs"),
            Vec::new(),
        ),
        _ => (
            "no such route",
            Method::POST,
            format!("/v1/topologies/{TOPOLOGY}/nodes/temp/messages/more"),
            br#"{"v":1}"#.to_vec(),
        ),
    };
    Hostile::new(kind, method, path, body).typed(b"application/json")
}

/// One hostile request, by route.
pub fn hostile(rng: &mut Rng) -> Hostile {
    match rng.below(100) {
        0..=19 => put_json(rng),
        20..=31 => put_toml(rng),
        32..=43 => post_node(rng),
        44..=53 => patch_node(rng),
        54..=65 => patch_attrs(rng),
        66..=78 => inject_json(rng),
        79..=90 => inject_ndjson(rng),
        91..=96 => wrong_content_type(rng),
        _ => bad_path_or_method(rng),
    }
}
