// The peer of bench/notifier.sh: a plain socket.io server (Node) that answers the notifier's
// `subscribe` (joining a room per topology) and, on `GET /emit?topology=&nodes=&per_node=`,
// broadcasts that many output events (the notifier's shape, seqs 1..per_node per node) to the
// room as fast as it can, from memory. It measures socket.io's own fan-out on this machine:
// no Redis, no ordering per socket, no resume.
//
// Run: node server.mjs <port>
import { createServer } from "node:http";
import { Server } from "socket.io";

const port = Number(process.argv[2] ?? 8091);
const http = createServer((request, response) => {
  const url = new URL(request.url, "http://localhost");
  if (url.pathname !== "/emit") {
    response.writeHead(404).end();
    return;
  }
  const topology = url.searchParams.get("topology");
  const nodes = Number(url.searchParams.get("nodes"));
  const perNode = Number(url.searchParams.get("per_node"));
  response.end("ok\n");
  let seq = 1;
  const chunk = () => {
    // 100 rounds over the nodes per turn of the event loop, so the sockets' writes go out.
    for (let round = 0; round < 100 && seq <= perNode; round++, seq++) {
      const now = new Date().toISOString();
      for (let node = 0; node < nodes; node++) {
        io.to(topology).emit("output", {
          topology,
          node: `n${node}`,
          seq,
          msg_id: `m-${node}-${seq}`,
          input_id: `i-${node}-${seq}`,
          injected_at: now,
          ts: now,
          data: { v: seq },
        });
      }
    }
    if (seq <= perNode) setImmediate(chunk);
  };
  chunk();
});
const io = new Server(http);
io.on("connection", (socket) => {
  socket.on("subscribe", (request, ack) => {
    socket.join(request.topology);
    ack({ ok: true, positions: {} });
  });
});
http.listen(port, "127.0.0.1", () => process.stderr.write(`peer socket.io server on ${port}\n`));
