// A steady injector for bench/latency.sh: single-message injects at a fixed rate, spread
// evenly over time (each due at start + i / rate, sent on the next millisecond tick), round
// robin over the nodes, on keep-alive connections. Node's own http module: no dependencies.
//
// Run: node inject.mjs '{"base":"http://127.0.0.1:8080","topology":"t","nodes":10,
//                        "rate":1000,"seconds":20,"sockets":32}'
// Prints one JSON line: sent, accepted (202), failed, the rate achieved, and the inject
// answer's latency (ms, p50/p99/max) and this process's CPU in % of one core. Exits 1 when any inject was not accepted.

import http from "node:http";

const settings = JSON.parse(process.argv[2] ?? "{}");
const { base, topology, nodes, rate, seconds } = settings;
const total = rate * seconds;
const agent = new http.Agent({ keepAlive: true, maxSockets: settings.sockets ?? 32 });
const url = new URL(base);

let sent = 0;
let answered = 0;
let accepted = 0;
const failures = [];
const answerTimes = [];
const started = performance.now();

function inject(i) {
  const body = JSON.stringify({ v: i });
  const begun = performance.now();
  const request = http.request(
    {
      agent,
      host: url.hostname,
      port: url.port,
      method: "POST",
      path: `/v1/topologies/${topology}/nodes/n${i % nodes}/messages`,
      headers: { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(body) },
    },
    (response) => {
      response.resume();
      response.on("end", () => {
        answerTimes.push(performance.now() - begun);
        if (response.statusCode === 202) accepted++;
        else if (failures.length < 10) failures.push(response.statusCode);
        done();
      });
    },
  );
  request.on("error", (err) => {
    if (failures.length < 10) failures.push(err.message);
    done();
  });
  request.end(body);
}

function done() {
  answered++;
  if (answered < total) return;
  const elapsed = (performance.now() - started) / 1000;
  const cpu = process.cpuUsage();
  answerTimes.sort((a, b) => a - b);
  const at = (p) => Math.round(answerTimes[Math.min(answerTimes.length - 1, Math.ceil((p / 100) * answerTimes.length) - 1)] * 10) / 10;
  process.stdout.write(
    JSON.stringify({
      sent,
      accepted,
      failed: total - accepted,
      failures,
      rate: Math.round(total / elapsed),
      answer_ms: { p50: at(50), p99: at(99), max: at(100) },
      cpu_percent: Math.round((cpu.user + cpu.system) / 10 / (elapsed * 1000)),
    }) + "\n",
  );
  agent.destroy();
  process.exit(accepted === total ? 0 : 1);
}

const tick = setInterval(() => {
  const due = Math.min(total, Math.floor(((performance.now() - started) / 1000) * rate) + 1);
  while (sent < due) inject(sent++);
  if (sent >= total) clearInterval(tick);
}, 1);
