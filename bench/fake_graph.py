#!/usr/bin/env python3
"""A minimal stand-in for Meta's Graph API, for bench/capi.sh (stdlib only).

Answers `POST /{version}/{pixel_id}/events` with
`{"events_received": N, "fbtrace_id": "bench"}` after `--delay` seconds, and
counts what it was sent: requests, events, events per request (overall and
per pixel), duplicate event_ids (an event delivered twice) and protocol
violations.  A violation is a request that pixelgate should never send:

  * no JSON body, or `data` not a list of 1..1000 event objects;
  * no `access_token` in the JSON body, or (with --token-prefix P) a token
    other than P + pixel_id;
  * an access token in the URL (query string);
  * an event without event_name / event_time / event_id / action_source or
    user_data.client_user_agent.

Violations are answered 400 with a Graph-style error (code 100) and counted;
everything else is answered 200.

`GET /stats` returns the counters as JSON; SIGTERM (or Ctrl-C) prints the
same JSON on stdout and exits 0.  This is not the strict fake of the test
suite (tests/): it checks only what the benchmark needs and is cheap enough
to run on the load generator's core.

    python3 bench/fake_graph.py --port 18080 --delay 1 --token-prefix bench-token-
"""

import argparse
import json
import re
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

EVENTS_PATH = re.compile(r"^/(v\d+\.\d+)/(\d{1,32})/events$")
MAX_EVENTS = 1000
REQUIRED_EVENT_KEYS = ("event_name", "event_time", "event_id", "action_source")


class Stats:
    """Counters shared by the handler threads (one lock; a few requests/s)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.started = time.time()
        self.requests = 0          # accepted POST …/events requests
        self.events = 0            # events in accepted requests
        self.min_batch = None
        self.max_batch = 0
        self.per_pixel = {}        # pixel -> [requests, events]
        self.seen_ids = set()      # (pixel, event_id)
        self.duplicates = 0
        self.violations = 0
        self.violation_kinds = {}  # reason -> count
        self.in_flight = 0
        self.max_in_flight = 0

    def violation(self, reason):
        with self.lock:
            self.violations += 1
            self.violation_kinds[reason] = self.violation_kinds.get(reason, 0) + 1

    def accepted(self, pixel, events):
        n = len(events)
        with self.lock:
            self.requests += 1
            self.events += n
            self.min_batch = n if self.min_batch is None else min(self.min_batch, n)
            self.max_batch = max(self.max_batch, n)
            p = self.per_pixel.setdefault(pixel, [0, 0])
            p[0] += 1
            p[1] += n
            for e in events:
                key = (pixel, e["event_id"])
                if key in self.seen_ids:
                    self.duplicates += 1
                else:
                    self.seen_ids.add(key)

    def enter(self):
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def leave(self):
        with self.lock:
            self.in_flight -= 1

    def snapshot(self):
        with self.lock:
            return {
                "requests": self.requests,
                "events": self.events,
                "unique_events": len(self.seen_ids),
                "duplicates": self.duplicates,
                "events_per_request": {
                    "mean": round(self.events / self.requests, 2) if self.requests else 0,
                    "min": self.min_batch or 0,
                    "max": self.max_batch,
                },
                "pixels": len(self.per_pixel),
                "per_pixel": {k: {"requests": v[0], "events": v[1]} for k, v in sorted(self.per_pixel.items())},
                "violations": self.violations,
                "violation_kinds": dict(self.violation_kinds),
                "max_in_flight": self.max_in_flight,
                "uptime_s": round(time.time() - self.started, 1),
            }


DECODER = json.JSONDecoder()
SPACE = re.compile(r"[ \t\n\r]*")
# Events parsed between two breaths, and how long a breath sleeps.
EVENTS_PER_BREATH = 50
BREATH_S = 0.0001


def loads_breathing(raw):
    """json.loads(raw) for a JSON object, but parsed a piece at a time: each member, and each
    element of its "data" array, with a short sleep every EVENTS_PER_BREATH events.

    This fake shares a core with wrk. json.loads of a 1,000-event body (600 KB) takes 2.5-4 ms
    in one go, and the kernel lets a thread that was picked run until its next tick (4 ms), so
    each request held wrk off the core for a tick, and wrk counted that in the pixel's latency.
    Sleeping every fifty events (a fraction of a millisecond of parsing) lets a waiting wrk run
    in between, as pixelgate's own background threads and the fast fake do.  Raises ValueError
    where json.loads would."""
    text = raw.decode("utf-8")
    at = SPACE.match(text, 0).end()
    if text[at:at + 1] != "{":
        return json.loads(text)  # not an object: json.loads says what it is (or raises)
    obj = {}
    at = SPACE.match(text, at + 1).end()
    if text[at:at + 1] == "}":
        at += 1
    else:
        while True:
            if text[at:at + 1] != '"':
                raise ValueError("expected a member name at %d" % at)
            key, at = DECODER.raw_decode(text, at)
            at = SPACE.match(text, at).end()
            if text[at:at + 1] != ":":
                raise ValueError("expected ':' at %d" % at)
            at = SPACE.match(text, at + 1).end()
            if key == "data" and text[at:at + 1] == "[":
                value, at = array_breathing(text, at)
            else:
                value, at = DECODER.raw_decode(text, at)
            obj[key] = value
            more, at = after_item(text, at, "}")
            if not more:
                break
    if SPACE.match(text, at).end() != len(text):
        raise ValueError("extra data at %d" % at)
    return obj


def array_breathing(text, at):
    """The JSON array starting at text[at] ('['), element by element, with a breath every
    EVENTS_PER_BREATH elements; returns it and where it ends."""
    items = []
    at = SPACE.match(text, at + 1).end()
    if text[at:at + 1] == "]":
        return items, at + 1
    while True:
        item, at = DECODER.raw_decode(text, at)
        items.append(item)
        if len(items) % EVENTS_PER_BREATH == 0:
            time.sleep(BREATH_S)
        more, at = after_item(text, at, "]")
        if not more:
            return items, at


def after_item(text, at, close):
    """Past what follows a member or element ending at text[at]: a ',' (True: more follow) or
    `close` (False); returns that and where the next thing starts."""
    at = SPACE.match(text, at).end()
    if text[at:at + 1] == ",":
        return True, SPACE.match(text, at + 1).end()
    if text[at:at + 1] != close:
        raise ValueError("expected ',' or '%s' at %d" % (close, at))
    return False, at + 1


def event_problem(e):
    """Why an event is malformed, or None."""
    if not isinstance(e, dict):
        return "event_not_object"
    for k in REQUIRED_EVENT_KEYS:
        if k not in e:
            return "event_missing_" + k
    ud = e.get("user_data")
    if not isinstance(ud, dict) or not ud.get("client_user_agent"):
        return "event_missing_client_user_agent"
    return None


def make_handler(stats, delay, token_prefix):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"   # keep-alive, as the real Graph API
        server_version = "fake-graph"

        def log_message(self, fmt, *args):  # quiet: one line per request is too much
            pass

        def reply(self, status, obj):
            body = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def graph_error(self, status, reason, message):
            stats.violation(reason)
            self.reply(status, {"error": {"message": message, "type": "OAuthException" if status == 401 else "GraphMethodException",
                                          "code": 100, "is_transient": False, "fbtrace_id": "bench"}})

        def do_GET(self):
            if urlsplit(self.path).path == "/stats":
                self.reply(200, stats.snapshot())
            else:
                self.reply(404, {"error": {"message": "unknown path", "code": 803}})

        def do_POST(self):
            stats.enter()
            try:
                self.handle_events()
            finally:
                stats.leave()

        def handle_events(self):
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length > 0 else b""
            url = urlsplit(self.path)
            m = EVENTS_PATH.match(url.path)
            if not m:
                return self.graph_error(404, "bad_path", "unknown path " + url.path)
            pixel = m.group(2)
            if "access_token" in parse_qs(url.query):
                return self.graph_error(400, "token_in_url", "the access token must not be in the URL")
            try:
                body = loads_breathing(raw)
            except ValueError:
                return self.graph_error(400, "body_not_json", "the body is not JSON")
            if not isinstance(body, dict):
                return self.graph_error(400, "body_not_object", "the body is not a JSON object")
            token = body.get("access_token")
            if not isinstance(token, str) or not token:
                return self.graph_error(400, "no_token_in_body", "no access_token in the JSON body")
            if token_prefix is not None and token != token_prefix + pixel:
                return self.graph_error(400, "wrong_token", "access_token is not the one set for pixel " + pixel)
            data = body.get("data")
            if not isinstance(data, list) or not 1 <= len(data) <= MAX_EVENTS:
                return self.graph_error(400, "bad_data", "data must be a list of 1..1000 events")
            for e in data:
                problem = event_problem(e)
                if problem:
                    return self.graph_error(400, problem, "malformed event: " + problem)
            if delay > 0:
                time.sleep(delay)
            stats.accepted(pixel, data)
            self.reply(200, {"events_received": len(data), "fbtrace_id": "bench"})

    return Handler


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 = any free port (printed on stderr)")
    ap.add_argument("--delay", type=float, default=0.0, help="seconds before each /events answer")
    ap.add_argument("--token-prefix", default=None,
                    help="expect access_token == PREFIX + pixel_id (default: any non-empty token)")
    args = ap.parse_args()

    stats = Stats()
    server = ThreadingHTTPServer((args.host, args.port), make_handler(stats, args.delay, args.token_prefix))
    server.daemon_threads = True
    print(f"fake_graph: listening on {args.host}:{server.server_address[1]}, delay {args.delay}s", file=sys.stderr, flush=True)

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    print(json.dumps(stats.snapshot()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
