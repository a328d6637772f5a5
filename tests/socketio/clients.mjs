// socket.io clients for the mesh tests and the notifier benchmark, on the official client.
//
// Run: node clients.mjs '<json settings>'; prints one JSON object per line on stdout.
//
// mode "collect" (the default): `clients` sockets each subscribe with `subscribe`
// ({"topology", "node"?}) and record every `output` and `resync`. When `resume` is true, a
// socket that reconnects subscribes again with `after_seq` set, per node, to the last seq it
// received (or the position its first ack gave). Prints {"event":"ready"} once every socket's
// first subscribe was acknowledged, then {"event":"done", ...} once every socket has received
// seqs 1..expect[node] of every node in `expect`, or `timeout_ms` passed. The report counts,
// per socket, outputs missing, duplicated and out of order; with `latency`, the
// inject-to-receipt times in milliseconds (`latency_ms`), split at the output's `ts` into
// inject to output (`to_output_ms`: the queue, the pull and the function) and output to
// receipt (`to_client_ms`: the commit, the live publish and the notifier's hop).
//
// With `transport: "sse"`, each client is a Server-Sent Events stream of the notifier instead
// (fetch, `Authorization: Bearer` for `token`): ready at its `positions` event; with `resume`,
// a stream that ends is opened again with `Last-Event-ID` naming every node's last seq.
//
// mode "probe": one socket connects with `token`, optionally subscribes with `subscribe`,
// and prints {"event":"probe","connected","connect_error","ack","resyncs","outputs"} after
// `wait_ms` (for auth, limit and resync checks).

import { io } from "socket.io-client";

const settings = JSON.parse(process.argv[2] ?? "{}");
const url = settings.url;
const print = (object) => process.stdout.write(JSON.stringify(object) + "\n");

function connect(token) {
  return io(url, {
    auth: token == null ? {} : { token },
    transports: ["websocket"],
    reconnectionDelay: 100,
    reconnectionDelayMax: 1000,
    timeout: 5000,
    forceNew: true,
  });
}

function subscribe(socket, request) {
  return new Promise((resolve) => {
    socket.timeout(10000).emit("subscribe", request, (error, ack) => {
      resolve(error ? { ok: false, error: { code: "ack_timeout", message: String(error) } } : ack);
    });
  });
}

function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  const index = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1);
  return sorted[Math.max(0, index)];
}

// Count, p50, p90, p99 and max of `values` (sorted here).
function summary(values) {
  values.sort((a, b) => a - b);
  return {
    count: values.length,
    p50: percentile(values, 50),
    p90: percentile(values, 90),
    p99: percentile(values, 99),
    max: values.length ? values[values.length - 1] : null,
  };
}

async function collect() {
  const expect = settings.expect ?? {};
  const nodes = Object.keys(expect);
  const count = settings.clients ?? 1;
  const clients = [];
  let ready = 0;
  let finished = false;
  const started = Date.now();
  let firstAt = null;
  let lastAt = null;

  const report = () => {
    const latencies = [];
    const toOutput = [];
    const toClient = [];
    const perClient = clients.map((client) => {
      let missing = 0;
      let duplicated = 0;
      let outOfOrder = 0;
      let received = 0;
      for (const node of nodes) {
        const seen = client.seen[node];
        for (let seq = 1; seq <= expect[node]; seq++) if (seen[seq] === 0) missing++;
        duplicated += client.duplicated[node];
        outOfOrder += client.outOfOrder[node];
        received += client.received[node];
      }
      for (const [total, output] of client.latencies) {
        latencies.push(total);
        toOutput.push(output);
        toClient.push(total - output);
      }
      return {
        received,
        missing,
        duplicated,
        out_of_order: outOfOrder,
        resyncs: client.resyncs.length,
        connects: client.connects,
        retries: client.retries,
        other: client.other,
      };
    });
    const sum = (key) => perClient.reduce((total, client) => total + client[key], 0);
    print({
      event: "done",
      elapsed_ms: Date.now() - started,
      cpu_ms: Math.round((process.cpuUsage().user + process.cpuUsage().system) / 1000),
      first_output_ms: firstAt === null ? null : firstAt - started,
      last_output_ms: lastAt === null ? null : lastAt - started,
      complete: perClient.every((client) => client.missing === 0),
      received: sum("received"),
      missing: sum("missing"),
      duplicated: sum("duplicated"),
      out_of_order: sum("out_of_order"),
      resyncs: sum("resyncs"),
      other: sum("other"),
      reconnects: sum("connects") - perClient.length,
      subscribe_retries: sum("retries"),
      resync_events: clients.flatMap((client) => client.resyncs).slice(0, 20),
      latency_ms: settings.latency ? summary(latencies) : undefined,
      to_output_ms: settings.latency ? summary(toOutput) : undefined,
      to_client_ms: settings.latency ? summary(toClient) : undefined,
      clients: settings.per_client ? perClient : undefined,
    });
  };

  const finish = () => {
    if (finished) return;
    finished = true;
    clearInterval(progress);
    clearTimeout(deadline);
    report();
    for (const client of clients) client.socket.close();
    process.exit(0);
  };

  const isComplete = (client) =>
    nodes.every((node) => client.last[node] >= expect[node] && client.missingCount(node) === 0);

  for (let i = 0; i < count; i++) {
    const client = {
      socket: settings.transport === "sse" ? null : connect(settings.token),
      seen: {},
      last: {},
      duplicated: {},
      outOfOrder: {},
      received: {},
      positions: {},
      resyncs: [],
      latencies: [],
      connects: 0,
      retries: 0,
      other: 0,
      subscribed: false,
      done: false,
      missingCount(node) {
        const seen = this.seen[node];
        for (let seq = 1; seq <= expect[node]; seq++) if (seen[seq] === 0) return 1;
        return 0;
      },
    };
    for (const node of nodes) {
      client.seen[node] = new Uint32Array(expect[node] + 1);
      client.last[node] = 0;
      client.duplicated[node] = 0;
      client.outOfOrder[node] = 0;
      client.received[node] = 0;
    }
    const onOutput = (event) => {
      const node = event.node;
      if (!(node in client.seen)) {
        client.other++;
        return;
      }
      client.received[node]++;
      const now = Date.now();
      if (firstAt === null) firstAt = now;
      lastAt = now;
      const seen = client.seen[node];
      if (event.seq < seen.length) seen[event.seq]++;
      if (event.seq <= client.last[node]) {
        if (event.seq < seen.length && seen[event.seq] > 1) client.duplicated[node]++;
        else client.outOfOrder[node]++;
      } else {
        client.last[node] = event.seq;
      }
      if (settings.latency) {
        const injected = Date.parse(event.injected_at);
        client.latencies.push([now - injected, Date.parse(event.ts) - injected]);
      }
      if (!client.done && event.seq >= expect[node] && isComplete(client)) {
        client.done = true;
        if (clients.every((other) => other.done)) finish();
      }
    };
    const onResync = (resync) => {
      client.resyncs.push(resync);
      if (resync.next_seq > 0 && resync.node in client.last) {
        // What will not come over socket.io counts as missing unless read from history.
        client.last[resync.node] = Math.max(client.last[resync.node], resync.next_seq - 1);
      }
    };
    const onReady = (positions) => {
      if (!client.subscribed) {
        client.positions = positions ?? {};
        client.subscribed = true;
        ready++;
        if (ready === count) print({ event: "ready", clients: count });
      }
    };
    if (settings.transport === "sse") {
      client.socket = follow(client, { output: onOutput, resync: onResync, ready: onReady });
      clients.push(client);
      continue;
    }
    client.socket.on("output", onOutput);
    client.socket.on("resync", onResync);
    client.socket.on("connect", async () => {
      client.connects++;
      const request = { ...settings.subscribe };
      if (client.subscribed && settings.resume) {
        const after = {};
        for (const node of Object.keys(client.positions)) after[node] = client.positions[node];
        for (const node of nodes) after[node] = Math.max(after[node] ?? 0, client.last[node]);
        request.after_seq = request.node ? after[request.node] ?? 0 : after;
      }
      let ack = await subscribe(client.socket, request);
      // What a careful client does: "unavailable" (Redis away) and a lost ack are worth
      // another try while connected; anything else is final.
      while (ack && !ack.ok && ["unavailable", "ack_timeout"].includes(ack.error?.code) && client.socket.connected) {
        client.retries++;
        await new Promise((resolve) => setTimeout(resolve, 200));
        ack = await subscribe(client.socket, request);
      }
      if (!ack || !ack.ok) {
        process.stderr.write(`subscribe refused: ${JSON.stringify(ack)}\n`);
        return;
      }
      onReady(ack.positions);
    });
    clients.push(client);
  }

  const progress = setInterval(() => {
    const received = clients.reduce(
      (total, client) => total + nodes.reduce((sum, node) => sum + client.received[node], 0),
      0,
    );
    const connected = clients.filter((client) => client.socket.connected).length;
    process.stderr.write(
      `clients: ${connected}/${count} connected, ${received} outputs received, ` +
        `${clients.filter((client) => client.done).length} complete\n`,
    );
  }, 2000);
  const deadline = setTimeout(finish, settings.timeout_ms ?? 60000);
}

// One Server-Sent Events stream of `settings.subscribe`, with the surface of a socket that the
// report reads (`connected`, `close`); events go to `on.output`, `on.resync` and, at the
// first `positions`, `on.ready`.
function follow(client, on) {
  const { topology, node } = settings.subscribe;
  const path = node ? `/v1/topologies/${topology}/nodes/${node}/stream` : `/v1/topologies/${topology}/stream`;
  const abort = new AbortController();
  const stream = { connected: false, close: () => abort.abort() };
  const dispatch = (block) => {
    let name = "message";
    let data = "";
    for (const line of block.split("\n")) {
      const colon = line.indexOf(":");
      if (colon <= 0) continue;
      const field = line.slice(0, colon);
      const value = line.slice(colon + 1).replace(/^ /, "");
      if (field === "event") name = value;
      else if (field === "data") data += value;
    }
    if (data === "") return; // a keep-alive comment
    const payload = JSON.parse(data);
    if (name === "output") on.output(payload);
    else if (name === "resync") on.resync(payload);
    else if (name === "positions") on.ready(payload);
  };
  (async () => {
    while (!abort.signal.aborted) {
      const headers = {};
      if (settings.token != null) headers.authorization = `Bearer ${settings.token}`;
      if (client.subscribed && settings.resume) {
        const after = { ...client.positions };
        for (const name of Object.keys(client.last)) after[name] = Math.max(after[name] ?? 0, client.last[name]);
        headers["last-event-id"] = Object.entries(after).map(([name, seq]) => `${name}:${seq}`).join(",");
      }
      try {
        const answer = await fetch(url + path, { headers, signal: abort.signal });
        if (answer.status !== 200) {
          process.stderr.write(`stream refused: ${answer.status} ${await answer.text()}\n`);
          if (answer.status !== 503) return;
        } else {
          client.connects++;
          stream.connected = true;
          const decoder = new TextDecoder();
          let text = "";
          for await (const chunk of answer.body) {
            text += decoder.decode(chunk, { stream: true });
            let end;
            while ((end = text.indexOf("\n\n")) >= 0) {
              dispatch(text.slice(0, end));
              text = text.slice(end + 2);
            }
          }
        }
      } catch (error) {
        if (abort.signal.aborted) return;
      }
      stream.connected = false;
      if (!settings.resume) return;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  })();
  return stream;
}

async function probe() {
  const socket = connect(settings.token);
  const result = { event: "probe", connected: false, connect_error: null, ack: null, resyncs: [], outputs: [] };
  socket.on("output", (event) => result.outputs.push(event));
  socket.on("resync", (resync) => result.resyncs.push(resync));
  const outcome = await new Promise((resolve) => {
    socket.on("connect", () => resolve("connected"));
    socket.on("connect_error", (error) => {
      result.connect_error = error.message;
      resolve("refused");
    });
  });
  if (outcome === "connected") {
    result.connected = true;
    if (settings.subscribe) result.ack = await subscribe(socket, settings.subscribe);
    if (settings.subscribe_again) result.ack_again = await subscribe(socket, settings.subscribe_again);
  }
  await new Promise((resolve) => setTimeout(resolve, settings.wait_ms ?? 500));
  socket.close();
  print(result);
  process.exit(0);
}

if ((settings.mode ?? "collect") === "probe") await probe();
else await collect();
