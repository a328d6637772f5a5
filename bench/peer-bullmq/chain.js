// BullMQ peer of Gorgon's "chain" scenario: a pipeline of L queues chain-0 .. chain-(L-1), one
// Worker per queue (concurrency C). The worker of queue i forwards each job's data {n, t} to
// queue i+1 and returns only once that add is in Redis, so every message is one job per step
// and is never acknowledged before it has been handed on. The forwarding adds that land in the
// same turn of the event loop go out as one addBulk (CHAIN_FORWARD=bulk, the default, the
// fastest idiomatic way measured); CHAIN_FORWARD=add makes it one queue.add per job.
// The producer adds N jobs to chain-0 with addBulk in batches of 100, t = time of add.
// Measured end to end, from the first add until the last queue's worker has completed all N:
// jobs/s (N / s), step-jobs/s (N*L / s, comparable with node-messages/s), and the latency
// per message (completion at the last queue minus t) as p50/p99/max. Checked at the last
// queue: every n in 0..N-1 completed exactly once (lost, duplicated; reordered for information).
// Progress goes to stderr, one JSON line to stdout; exit status 1 if anything was lost or
// duplicated.
//
// Usage: node chain.js <redis port> <jobs N> [length L=100] [concurrency C=50]
'use strict';
const { performance } = require('perf_hooks');
const { Queue, Worker } = require('bullmq');

const port = Number(process.argv[2] || 6379);
const jobs = Number(process.argv[3] || 10000);
const length = Number(process.argv[4] || 100);
const concurrency = Number(process.argv[5] || 50);
const mode = process.env.CHAIN_FORWARD || 'bulk';
const connection = { host: '127.0.0.1', port, maxRetriesPerRequest: null };
const opts = { removeOnComplete: true };
// No completion at the last queue for this long, with work still missing: give up, count lost.
const idleMs = 30000;
// After the last distinct completion, how long to wait for the chain to drain (late duplicates).
const settleMs = 5000;

if (!(jobs > 0 && length > 0 && concurrency > 0) || !['bulk', 'add'].includes(mode)) {
  console.error('usage: node chain.js <redis port> <jobs N> [length L=100] [concurrency C=50]');
  console.error('       CHAIN_FORWARD=bulk|add (default bulk)');
  process.exit(2);
}

const now = () => performance.timeOrigin + performance.now();
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Hands data on to `queue`; resolves once the job is added. In bulk mode the adds asked for in
// one turn of the event loop are written with one addBulk.
function forwarder(queue) {
  if (mode === 'add') return (data) => queue.add('j', data, opts);
  let pending = null;
  function flush() {
    const batch = pending;
    pending = null;
    queue.addBulk(batch.map((p) => ({ name: 'j', data: p.data, opts }))).then(
      () => batch.forEach((p) => p.resolve()),
      (err) => batch.forEach((p) => p.reject(err)),
    );
  }
  return (data) => new Promise((resolve, reject) => {
    if (pending === null) {
      pending = [];
      setImmediate(flush);
    }
    pending.push({ data, resolve, reject });
  });
}

function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

const round = (x, digits) => (x === null ? null : Number(x.toFixed(digits)));

async function main() {
  const names = Array.from({ length }, (_, i) => `chain-${i}`);
  const queues = names.map((name) => new Queue(name, { connection }));
  await Promise.all(queues.map((q) => q.waitUntilReady()));
  // Leftovers of an earlier, interrupted run would be counted as duplicates.
  await Promise.all(queues.map((q) => q.obliterate({ force: true })));

  const seen = new Uint32Array(jobs);
  const latencies = [];
  let distinct = 0;
  let completions = 0;
  let duplicated = 0;
  let reordered = 0;
  let maxN = -1;
  let lastCompletion = 0;
  let failures = 0;
  let finish;
  const finished = new Promise((resolve) => { finish = resolve; });

  const workers = names.map((name, i) => {
    const processor = i < length - 1 ? ((next) => (job) => next(job.data))(forwarder(queues[i + 1]))
      : async () => {};
    const worker = new Worker(name, processor, { connection, concurrency, removeOnComplete: true });
    worker.on('error', (err) => console.error(`worker ${name}:`, err.message));
    worker.on('failed', (job, err) => {
      failures += 1;
      console.error(`job failed on ${name}:`, err && err.message);
    });
    return worker;
  });
  workers[length - 1].on('completed', (job) => {
    const at = now();
    const { n, t } = job.data;
    completions += 1;
    lastCompletion = at;
    if (!(Number.isInteger(n) && n >= 0 && n < jobs)) return; // counted by completions only
    if (n < maxN) reordered += 1; else maxN = n;
    seen[n] += 1;
    if (seen[n] > 1) {
      duplicated += 1;
      return;
    }
    latencies.push(at - t);
    distinct += 1;
    if (distinct === jobs) finish();
  });
  await Promise.all(workers.map((w) => w.waitUntilReady()));

  const started = now();
  lastCompletion = started;
  const progress = setInterval(() => {
    const s = ((now() - started) / 1000).toFixed(1);
    console.error(`${s} s: ${distinct}/${jobs} completed at chain-${length - 1}`);
    if (now() - lastCompletion > idleMs) {
      console.error(`no completion for ${idleMs / 1000} s, giving up`);
      finish();
    }
  }, 1000);

  const produced = (async () => {
    const first = queues[0];
    for (let sent = 0; sent < jobs; sent += 100) {
      const batch = [];
      for (let n = sent; n < Math.min(sent + 100, jobs); n++) {
        batch.push({ name: 'j', data: { n, t: now() }, opts });
      }
      await first.addBulk(batch);
    }
  })();
  await produced;
  await finished;
  const seconds = ((distinct === jobs ? lastCompletion : now()) - started) / 1000;
  clearInterval(progress);

  // Let anything still in the chain arrive, so late duplicates are counted too.
  const settleUntil = now() + settleMs;
  while (now() < settleUntil) {
    const counts = await Promise.all(queues.map((q) => q.getJobCounts('waiting', 'active', 'delayed', 'prioritized')));
    if (counts.every((c) => Object.values(c).every((v) => v === 0))) break;
    await sleep(50);
  }

  await Promise.all(workers.map((w) => w.close()));
  await Promise.all(queues.map((q) => q.obliterate({ force: true })));
  await Promise.all(queues.map((q) => q.close()));

  latencies.sort((a, b) => a - b);
  const lost = jobs - distinct;
  const result = {
    peer: 'bullmq',
    scenario: 'chain',
    length,
    jobs,
    concurrency,
    seconds: round(seconds, 3),
    jobs_per_s: round(jobs / seconds, 0),
    step_jobs_per_s: round((jobs * length) / seconds, 0),
    e2e_ms: {
      p50: round(percentile(latencies, 50), 1),
      p99: round(percentile(latencies, 99), 1),
      max: round(latencies.length ? latencies[latencies.length - 1] : null, 1),
    },
    lost,
    duplicated,
    reordered,
  };
  console.log(JSON.stringify(result));
  if (failures > 0 || completions !== distinct + duplicated) {
    console.error(`${failures} failed jobs, ${completions - distinct - duplicated} completions with unknown n`);
  }
  process.exitCode = lost > 0 || duplicated > 0 ? 1 : 0;
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
