// Hocuspocus 2 (npm @hocuspocus/server), no extensions: the reference loadtest/yjs-compare.sh
// measures beside Stoa.  node hocuspocus-server.mjs PORT
import { Server } from "@hocuspocus/server";

const server = Server.configure({ port: Number(process.argv[2] ?? 1234), address: "127.0.0.1", quiet: true });
await server.listen();
console.log("listening");
