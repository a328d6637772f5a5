//! Where Redis spends its time while a benchmark runs: every command logged in `SLOWLOG`
//! (threshold 0), grouped by command and, for `EVALSHA`, by redpill script, with the commands
//! each script ran, set beside Redis's whole CPU time (`INFO cpu`). The log costs Redis a
//! little time of its own, so a profiled run's throughput is no figure. One Redis server only.
//! Used by `examples/processor_bench.rs` and `examples/redis_profile.rs`.

#![allow(clippy::print_stdout)] // The profile is a report on stdout.

use std::collections::BTreeMap;

/// Where Redis spends its time while the processors run: `SLOWLOG` at threshold 0 logs every
/// command with its execution time.
pub struct Profile {
    conn: redis::aio::MultiplexedConnection,
    cpu_before: f64,
}

/// What one profiled run found.
pub struct Profiled {
    /// Per command sent (per script for EVALSHA): calls and microseconds, busiest first.
    rows: Vec<(String, u64, u64)>,
    /// The commands the scripts ran, as `script <name>: <COMMAND>`, busiest first.
    inner: Vec<(String, u64, u64)>,
    /// Redis's CPU time over the run, from `INFO cpu`, in microseconds.
    cpu_us: f64,
    /// Whether the log filled up (it then drops its oldest entries, and the rows undercount).
    full: bool,
}

/// Entries the slow log may hold: far more than a run's commands.
const SLOWLOG_ENTRIES: u64 = 5_000_000;

impl Profile {
    /// Sets the log up on the Redis at `url` (every command, up to 5 000 000 entries).
    pub async fn start(url: &str) -> Profile {
        let mut conn = redis::Client::open(url)
            .expect("a Redis URL")
            .get_multiplexed_async_connection()
            .await
            .expect("connect to Redis for the profile");
        // The log of a large run is millions of entries: reading it takes seconds.
        conn.set_response_timeout(std::time::Duration::from_secs(300));
        let cluster: String = redis::cmd("INFO")
            .arg("cluster")
            .query_async(&mut conn)
            .await
            .expect("INFO cluster");
        assert!(
            !cluster.contains("cluster_enabled:1"),
            "--profile reads one server's SLOWLOG: run it on a single Redis"
        );
        let _: () = redis::pipe()
            .cmd("CONFIG")
            .arg("SET")
            .arg("slowlog-max-len")
            .arg(SLOWLOG_ENTRIES)
            .ignore()
            .cmd("CONFIG")
            .arg("SET")
            .arg("slowlog-log-slower-than")
            .arg(0)
            .ignore()
            .cmd("SLOWLOG")
            .arg("RESET")
            .ignore()
            .query_async(&mut conn)
            .await
            .expect("set the slow log up");
        let cpu_before = redis_cpu(&mut conn).await;
        Profile { conn, cpu_before }
    }

    /// Reads the log and puts the settings back to Redis's defaults.
    pub async fn finish(mut self) -> Profiled {
        let cpu_us = (redis_cpu(&mut self.conn).await - self.cpu_before) * 1e6;
        // The log first, then the settings back to Redis's defaults.
        let (entries, length): (Vec<redis::Value>, u64) = redis::pipe()
            .cmd("SLOWLOG")
            .arg("GET")
            .arg(-1)
            .cmd("SLOWLOG")
            .arg("LEN")
            .query_async(&mut self.conn)
            .await
            .expect("read the slow log");
        let _: () = redis::pipe()
            .cmd("CONFIG")
            .arg("SET")
            .arg("slowlog-log-slower-than")
            .arg(10_000)
            .ignore()
            .cmd("CONFIG")
            .arg("SET")
            .arg("slowlog-max-len")
            .arg(128)
            .ignore()
            .cmd("SLOWLOG")
            .arg("RESET")
            .ignore()
            .query_async(&mut self.conn)
            .await
            .expect("restore the slow log settings");
        let scripts: std::collections::HashMap<String, &str> =
            redpill::script_hashes().into_iter().collect();
        // Oldest first: a script's own commands are logged (from the script's client, with
        // no address) just before the script itself, and nothing runs in between.
        let mut logged: Vec<(i64, u64, Vec<String>, String)> = entries
            .iter()
            .filter_map(|entry| {
                let redis::Value::Array(fields) = entry else {
                    return None;
                };
                let text = |value: &redis::Value| match value {
                    redis::Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
                    redis::Value::SimpleString(text) => text.clone(),
                    _ => String::new(),
                };
                match (fields.first(), fields.get(2), fields.get(3), fields.get(4)) {
                    (
                        Some(redis::Value::Int(id)),
                        Some(redis::Value::Int(micros)),
                        Some(redis::Value::Array(words)),
                        Some(client),
                    ) => Some((
                        *id,
                        *micros as u64,
                        words.iter().map(text).collect(),
                        text(client),
                    )),
                    _ => None,
                }
            })
            .collect();
        logged.sort_by_key(|entry| entry.0);
        let mut top: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        let mut inside: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
        let mut pending: Vec<(String, u64)> = Vec::new();
        for (_, micros, words, client) in logged {
            let command = words
                .first()
                .map_or(String::new(), |word| word.to_uppercase());
            if client == "?:0" {
                pending.push((command, micros));
                continue;
            }
            if command == "SLOWLOG" {
                // The profile's own reads of the log.
                continue;
            }
            let name = match command.as_str() {
                "EVALSHA" => match words.get(1).and_then(|sha| scripts.get(sha)) {
                    Some(script) => format!("script {script}"),
                    None => "EVALSHA (not redpill's)".to_owned(),
                },
                _ => command,
            };
            for (inner, inner_micros) in pending.drain(..) {
                let row = inside.entry((name.clone(), inner)).or_default();
                row.0 += 1;
                row.1 += inner_micros;
            }
            let row = top.entry(name).or_default();
            row.0 += 1;
            row.1 += micros;
        }
        let sorted = |mut rows: Vec<(String, u64, u64)>| {
            rows.sort_by_key(|row| std::cmp::Reverse(row.2));
            rows
        };
        let rows = sorted(
            top.into_iter()
                .map(|(name, (calls, micros))| (name, calls, micros))
                .collect(),
        );
        let inner = sorted(
            inside
                .into_iter()
                .map(|((script, command), (calls, micros))| {
                    (format!("{script}: {command}"), calls, micros)
                })
                .collect(),
        );
        Profiled {
            rows,
            inner,
            cpu_us,
            full: length >= SLOWLOG_ENTRIES,
        }
    }
}

impl Profiled {
    /// Prints the tables as markdown, titled `when` (as in "Redis, while the processors
    /// ran"), with each figure also divided by `count` (as µs per `unit`).
    pub fn print(&self, when: &str, count: usize, unit: &str) {
        let per = |micros: u64| micros as f64 / count as f64;
        let commands: u64 = self.rows.iter().map(|row| row.2).sum();
        let share = |micros: u64, of: u64| 100.0 * micros as f64 / of.max(1) as f64;
        println!();
        println!("| Redis, {when} | calls | time, ms | µs / {unit} | share of command time |");
        println!("|---|---|---|---|---|");
        for (name, calls, micros) in &self.rows {
            println!(
                "| {name} | {calls} | {:.1} | {:.3} | {:.1} % |",
                *micros as f64 / 1000.0,
                per(*micros),
                share(*micros, commands),
            );
        }
        println!(
            "| every command (SLOWLOG) | | {:.1} | {:.3} | 100 % |",
            commands as f64 / 1000.0,
            per(commands)
        );
        println!(
            "| Redis CPU (INFO cpu): commands, networking, parsing, AOF, the log itself | | {:.1} | {:.3} | |",
            self.cpu_us / 1000.0,
            self.cpu_us / count as f64
        );
        println!();
        println!(
            "| inside the scripts | calls | time, ms | µs / {unit} | share of the script's time |"
        );
        println!("|---|---|---|---|---|");
        for (script, _, script_micros) in
            self.rows.iter().filter(|row| row.0.starts_with("script "))
        {
            let prefix = format!("{script}: ");
            let mut commands_micros = 0;
            for (name, calls, micros) in self.inner.iter().filter(|row| row.0.starts_with(&prefix))
            {
                commands_micros += micros;
                println!(
                    "| {name} | {calls} | {:.1} | {:.3} | {:.1} % |",
                    *micros as f64 / 1000.0,
                    per(*micros),
                    share(*micros, *script_micros),
                );
            }
            let own = script_micros.saturating_sub(commands_micros);
            println!(
                "| {script}: Lua and the script's own work | | {:.1} | {:.3} | {:.1} % |",
                own as f64 / 1000.0,
                per(own),
                share(own, *script_micros),
            );
        }
        if self.full {
            println!(
                "\nThe slow log filled up and dropped its oldest entries: the rows undercount."
            );
        }
    }
}

/// Redis's CPU time so far (`used_cpu_sys` + `used_cpu_user`), in seconds.
async fn redis_cpu(conn: &mut redis::aio::MultiplexedConnection) -> f64 {
    let info: String = redis::cmd("INFO")
        .arg("cpu")
        .query_async(conn)
        .await
        .expect("INFO cpu");
    info.lines()
        .filter_map(|line| {
            let (name, value) = line.split_once(':')?;
            matches!(name, "used_cpu_sys" | "used_cpu_user")
                .then(|| value.trim().parse::<f64>().ok())?
        })
        .sum()
}
