// BullMQ measured the way bench/queue.sh measures redpill: N jobs of 64 B added in batches of
// 100 (addBulk), drained by one Worker (concurrency 50, no-op processor, removeOnComplete),
// then both at once. Prints the same table as queue_bench.
//
// Usage: node bench.js <redis port> <jobs>
'use strict';
const { Queue, Worker } = require('bullmq');

const port = Number(process.argv[2] || 6379);
const jobs = Number(process.argv[3] || 200000);
const connection = { host: '127.0.0.1', port, maxRetriesPerRequest: null };
const payload = 'x'.repeat(64);

async function add(queue) {
  for (let sent = 0; sent < jobs; sent += 100) {
    const batch = [];
    for (let i = 0; i < Math.min(100, jobs - sent); i++) {
      batch.push({ name: 'j', data: { p: payload }, opts: { removeOnComplete: true } });
    }
    await queue.addBulk(batch);
  }
}

function drain(name) {
  return new Promise((resolve, reject) => {
    let done = 0;
    const worker = new Worker(name, async () => {}, { connection, concurrency: 50 });
    worker.on('completed', () => {
      done += 1;
      if (done === jobs) worker.close().then(resolve, reject);
    });
    worker.on('error', reject);
  });
}

async function main() {
  const phased = new Queue('phased', { connection });
  let started = Date.now();
  await add(phased);
  const addRate = jobs / ((Date.now() - started) / 1000);
  started = Date.now();
  await drain('phased');
  const drainRate = jobs / ((Date.now() - started) / 1000);

  const together = new Queue('together', { connection });
  started = Date.now();
  await Promise.all([drain('together'), add(together)]);
  const togetherRate = jobs / ((Date.now() - started) / 1000);

  console.log('| phase | messages/s |');
  console.log('|---|---|');
  console.log(`| BullMQ addBulk, batches of 100 | ${addRate.toFixed(0)} |`);
  console.log(`| BullMQ Worker drain, concurrency 50 | ${drainRate.toFixed(0)} |`);
  console.log(`| BullMQ add and drain at once, end to end | ${togetherRate.toFixed(0)} |`);
  await phased.obliterate({ force: true });
  await together.obliterate({ force: true });
  await phased.close();
  await together.close();
}

main().then(() => process.exit(0), (err) => { console.error(err); process.exit(1); });
