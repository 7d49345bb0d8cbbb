// A broadcast server on the `ws` package, as a Node application would write one: every
// socket that joins gets each broadcast one client sends. It speaks just enough of the
// Phoenix framing for the same generator (`stoa-loadtest hold` and `send`) to drive it:
// a message `[join_ref, ref, topic, event, payload]` is answered with an ok reply, and a
// "broadcast" is relayed to every other socket as `[null, null, topic, "broadcast", payload]`.
//
//   node ws-server.mjs PORT
import { WebSocketServer } from "ws";

const port = Number(process.argv[2] ?? 8090);
const wss = new WebSocketServer({ port, host: "127.0.0.1", perMessageDeflate: false });
wss.on("connection", (socket) => {
  socket.on("message", (data) => {
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      return;
    }
    const [joinRef, ref, topic, event, payload] = msg;
    if (event === "broadcast") {
      const out = JSON.stringify([null, null, topic, "broadcast", payload]);
      for (const client of wss.clients) {
        if (client !== socket && client.readyState === 1) client.send(out);
      }
    }
    socket.send(JSON.stringify([joinRef, ref, topic, "phx_reply", { status: "ok", response: {} }]));
  });
});
wss.on("listening", () => console.log("listening"));
