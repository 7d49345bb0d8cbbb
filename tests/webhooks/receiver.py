"""A webhook receiver for the tests: checks every request's signature with Python's own
hmac (an implementation independent of the server's), answers 500 to the first
--fail-first requests (or to all with --fail-always), redirects with --redirect-to, and
prints one JSON line per request: what arrived and what it answered.

    python3 receiver.py --secret S [--host 127.0.0.1] [--fail-first N] [--fail-always]
                        [--redirect-to URL] [--delay-ms MS]

The first line printed is {"port": N}."""
import argparse
import hashlib
import hmac
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

parser = argparse.ArgumentParser()
parser.add_argument("--secret", required=True)
parser.add_argument("--host", default="127.0.0.1")
parser.add_argument("--fail-first", type=int, default=0)
parser.add_argument("--fail-always", action="store_true")
parser.add_argument("--redirect-to")
parser.add_argument("--delay-ms", type=int, default=0)
args = parser.parse_args()
seen = {"n": 0}


def verify(header, body):
    parts = dict(p.split("=", 1) for p in (header or "").split(",") if "=" in p)
    t, v1 = parts.get("t", ""), parts.get("v1", "")
    want = hmac.new(args.secret.encode(), t.encode() + b"." + body, hashlib.sha256).hexdigest()
    fresh = t.isdigit() and abs(time.time() - int(t)) < 300
    return hmac.compare_digest(want, v1) and fresh


class Handler(BaseHTTPRequestHandler):
    # Keep-alive, as real endpoints answer.
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        seen["n"] += 1
        if args.delay_ms:
            time.sleep(args.delay_ms / 1000)
        if args.redirect_to:
            status = 307
        elif args.fail_always or seen["n"] <= args.fail_first:
            status = 500
        else:
            status = 200
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        line = {
            "arrived": time.time(),
            "status": status,
            "signed": verify(self.headers.get("stoa-signature"), body),
            "offset": int(self.headers.get("stoa-event-offset", "0")),
            "kind": self.headers.get("stoa-event-kind"),
            "idempotency_key": self.headers.get("idempotency-key"),
            "body": payload,
        }
        # Printed before the answer: the sender waits for it before its next request, so
        # the lines are in the order the requests came.
        print(json.dumps(line), flush=True)
        self.send_response(status)
        if args.redirect_to:
            self.send_header("location", args.redirect_to)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *a):
        pass


server = ThreadingHTTPServer((args.host, 0), Handler)
print(json.dumps({"port": server.server_address[1]}), flush=True)
server.serve_forever()
