// A broadcast server on Socket.IO 4, as a Node application would write one: every socket
// that connects gets each "broadcast" event another socket emits (`socket.broadcast.emit`).
// WebSocket transport only, so the generator (`stoa-loadtest hold`/`send` with
// `--protocol socketio`) speaks Engine.IO over a plain WebSocket.
//
//   node socketio-server.mjs PORT
import { createServer } from "node:http";
import { Server } from "socket.io";

const port = Number(process.argv[2] ?? 8090);
const http = createServer();
const io = new Server(http, { transports: ["websocket"], perMessageDeflate: false });
io.on("connection", (socket) => {
  socket.on("broadcast", (payload) => socket.broadcast.emit("broadcast", payload));
});
http.listen(port, "127.0.0.1", () => console.log("listening"));
