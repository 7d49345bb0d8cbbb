// A product's backend minting the tokens Stoa accepts (auth.external, docs/IDENTITY.md).
// Node 20, no packages. `node product-backend.mjs` with STOA_SHARED_SECRET (HS256) set;
// RS256 keys are made at start and published at /jwks.json. Your own sign-in decides who
// the user is; here the query string stands in for it: /token?sub=42&email=…&roles={"acme":"editor"}
import { createServer } from "node:http";
import { createHmac, generateKeyPairSync, randomUUID, sign } from "node:crypto";

const ISSUER = process.env.ISSUER ?? "https://product.example";
const b64 = (v) => Buffer.from(JSON.stringify(v)).toString("base64url");
let key = { pair: generateKeyPairSync("rsa", { modulusLength: 2048 }), kid: randomUUID() };

function mint({ sub, email, name, roles, alg = "RS256" }) {
  const now = Date.now() / 1000; // a fraction of a second orders two refreshes in one second
  const claims = { iss: ISSUER, sub, email, name, iat: now, exp: Math.floor(now) + 600 };
  if (roles) claims.stoa_roles = JSON.parse(roles);
  const input = `${b64({ alg, typ: "JWT", kid: alg === "HS256" ? undefined : key.kid })}.${b64(claims)}`;
  const signature = alg === "HS256"
    ? createHmac("sha256", process.env.STOA_SHARED_SECRET).update(input).digest()
    : sign("sha256", Buffer.from(input), key.pair.privateKey);
  return `${input}.${signature.toString("base64url")}`;
}

const server = createServer((req, res) => {
  const url = new URL(req.url, "http://localhost");
  const reply = (body) => res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(body));
  if (url.pathname === "/jwks.json") {
    const jwk = key.pair.publicKey.export({ format: "jwk" });
    return reply({ keys: [{ ...jwk, kid: key.kid, alg: "RS256", use: "sig" }] });
  }
  if (url.pathname === "/token") return reply({ token: mint(Object.fromEntries(url.searchParams)) });
  if (url.pathname === "/rotate" && req.method === "POST") {
    key = { pair: generateKeyPairSync("rsa", { modulusLength: 2048 }), kid: randomUUID() };
    return reply({ kid: key.kid });
  }
  res.writeHead(404).end();
});
server.listen(Number(process.env.PORT ?? 4000), "127.0.0.1", () =>
  console.log(`product backend on http://127.0.0.1:${server.address().port}`));
