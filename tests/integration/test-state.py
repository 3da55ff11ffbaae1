#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Durable state of hubs and clients (DESIGN.md "State and the one-time-pad invariant"): real
dske-hub and dske-client processes with --state-dir, stopped with SIGTERM or killed with SIGKILL
and started again on the same directory.

* ReplayTests: a signed POST and GET key-share, captured byte for byte, are refused after the hub
  restarted (SIGTERM or SIGKILL), even where the request would otherwise succeed again; the
  hub's pools come back as they were; signed replies the hubs sent to clients, replayed to them
  after they were killed and restarted, are refused too.
* RestartTests: a hub restarted between enc_keys and dec_keys still delivers its share (every
  share is needed), also when kill -9 made it burn the PSRD it had reserved; a client killed or
  stopped and restarted keeps its registrations and the keys it holds for its slave.
* CrashTests: key exchanges while a hub and the clients are killed at random moments, and a
  client killed while a PSRD block is on its way to it; a proxy in front of one hub sees every
  PSRD range either side names, and no range may be named twice.
* CorruptionTests: each kind of state file truncated or with a byte flipped (or a letter changed
  in node.json): the hub refuses to start and names the file, and so do "dskectl check-state"
  and "dskectl topology up".
* DiskFailureTests: a state directory that refuses a write (a file size limit): the hub or the
  client sends no reply it could not record, stops with status 1, and starts again on the same
  directory with the blocks it held.
* LockTests, ModeTests: one process per directory, and only for its own node; directories 0700,
  files 0600.

Run one class with "test-state.py CLASS"; DSKE_TEST_SEED makes CrashTests repeatable.

Environment: DSKE_HUB, DSKE_CLIENT, DSKECTL."""

import http.client
import http.server
import importlib.util
import json
import os
import random
import re
import resource
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
import unittest
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import dske_test  # noqa: E402
from dske_test import (LOCALHOST, SIGNATURE_HEADER, Allocation, PsrdError, b64decode_strict,  # noqa: E402
                       free_port, new_key_id, parse_signature_header, program, xor)


def _load(name, file):
    spec = importlib.util.spec_from_file_location(name, os.path.join(HERE, file))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_test_client = _load("dske_test_client", "test-client.py")
MSG_GATHER = _test_client.MSG_GATHER
MSG_NOT_FOUND = _test_client.MSG_NOT_FOUND
MSG_SCATTER = _test_client.MSG_SCATTER

KEY_SHARE = "dske/api/v1/key-share"
MSG_PSRD_REUSED = "Attempt to use PSRD data more than once."

# Short retries and timeouts, so that clients find a restarted hub again at once.
CLIENT_CONFIG = "[Hubs]\nTimeout=2s\nRetryMin=50ms\nRetryMax=300ms\n"
LOW_WATER = 128 * 1024  # the clients' default LowWater=


class HubProxy:
    """A man in the middle between clients and one hub, and the test's witness of that link.

    It relays every request to the hub's port (the hub may be restarted behind it) and notes every
    PSRD range either side names: the MAC key of a request (DSKE-Signature) and the pad of a POSTed
    share, both from the client-owned pool, and the MAC key of a reply and the pad of a delivered
    share, from the hub-owned pool. Block UUIDs are unique, so a range named twice is PSRD used
    twice: `overlaps` lists each. Replies refusing reused PSRD are kept in `reuse_refusals`.

    It also keeps the 200 replies to key-share requests; with `replay` set it answers key-share
    requests itself with a kept reply (for GET the one for the same key ID, for POST the first),
    as an attacker replaying an old signed reply would. With `hold_psrd` set to a client name, it
    holds the hub's reply to that client's next request for a block of the hub-owned pool until
    `release` is set (`held` tells it has one), so that the client can be killed meanwhile."""

    def __init__(self, target_port):
        self.target_port = target_port
        self.lock = threading.Lock()
        self.ranges = {}
        self.overlaps = []
        self.n_ranges = 0
        self.reuse_refusals = []
        self.replies = {}
        self.replay = False
        self.replayed = 0
        self.hold_psrd = None
        self.held = threading.Event()
        self.release = threading.Event()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def relay(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                status, out_headers, data = proxy.handle(self.command, self.path, headers, body)
                try:
                    self.send_response(status)
                    for k, v in out_headers:
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            do_GET = do_POST = do_PUT = do_DELETE = relay

        self.server = http.server.ThreadingHTTPServer((LOCALHOST, 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def note(self, allocation, what):
        with self.lock:
            for f in allocation.fragments:
                ranges = self.ranges.setdefault(f.block_uuid, [])
                for start, end, other in ranges:
                    if f.start < end and start < f.start + f.size:
                        self.overlaps.append(f"{f.to_string()} ({what}) overlaps {f.block_uuid}:{start}:"
                                             f"{end - start} ({other})")
                ranges.append((f.start, f.start + f.size, what))
                self.n_ranges += 1

    def note_signature(self, value, what):
        if value is None:
            return
        try:
            allocation, _ = parse_signature_header(value)
        except (PsrdError, ValueError):
            return
        self.note(allocation, what)

    def note_share_body(self, data, what):
        try:
            self.note(Allocation.from_json(json.loads(data)["encryption_key_allocation"]), what)
        except (ValueError, KeyError, TypeError):
            pass

    @staticmethod
    def reply_key(method, target, body):
        """The key ID of a key-share request, with its method; None for other requests."""
        url = urllib.parse.urlsplit(target)
        if not url.path.endswith("/" + KEY_SHARE):
            return None
        if method == "GET":
            return ("GET", urllib.parse.parse_qs(url.query).get("key_id", [None])[0])
        try:
            return ("POST", json.loads(body)["user_key_id"])
        except (ValueError, KeyError, TypeError):
            return ("POST", None)

    def handle(self, method, target, headers, body):
        key = self.reply_key(method, target, body)
        if key is not None and self.replay:
            with self.lock:
                if key[0] == "GET":
                    kept = self.replies.get(key)
                else:
                    kept = next((v for k, v in self.replies.items() if k[0] == "POST"), None)
                if kept is not None:
                    self.replayed += 1
                    return kept
        self.note_signature(headers.get(SIGNATURE_HEADER), f"{method} request MAC key")
        if key is not None and method == "POST":
            self.note_share_body(body, "POSTed share pad")

        conn = http.client.HTTPConnection(LOCALHOST, self.target_port, timeout=10)
        try:
            conn.request(method, target, body=body if body else None, headers=headers)
            r = conn.getresponse()
            data = r.read()
            status = r.status
            out_headers = [(k, v) for k, v in r.getheaders()
                           if k.lower() not in ("content-length", "connection", "transfer-encoding")]
        except (OSError, http.client.HTTPException) as e:
            # The hub is down or was killed while answering: the client sees a failed request.
            return 502, [("Content-Type", "application/json")], json.dumps({"message": str(e)}).encode()
        finally:
            conn.close()

        if status == 200:
            self.note_signature(r.getheader(SIGNATURE_HEADER), f"reply MAC key of {method} {target}")
            if key is not None and method == "GET":
                self.note_share_body(data, "delivered share pad")
            if key is not None:
                with self.lock:
                    self.replies.setdefault(key, (status, out_headers, data))
        elif b"more than once" in data:
            with self.lock:
                self.reuse_refusals.append((method, target, data))
        if self.hold_psrd and "/dske/oob/v1/psrd?" in target:
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(target).query)
            if query.get("client_name") == [self.hold_psrd] and query.get("pool_owner") == ["hub"]:
                self.hold_psrd = None
                self.held.set()
                self.release.wait(30)
        return status, out_headers, data


class StateTestCase(_test_client.ClientTestCase):
    """Hubs and clients with state directories, restarted on the same directory and port."""

    def state_path(self, name):
        """A state directory that does not exist yet: the daemon creates it."""
        return os.path.join(self.tmpdir(), name)

    def durable_hub(self, name, state, port=None, config=None):
        hub = self.start_hub(name, port=port, config=config, args=["--state-dir", state])
        hub.state = state
        hub.config = config
        return hub

    def durable_client(self, name, urls, encryptors, config, state, port=None, wait_ready=True):
        c = self.start_client(name, urls, encryptors, config=config, args=["--state-dir", state], port=port,
                              wait_ready=wait_ready)
        c.spec = (urls, encryptors, config, state)
        return c

    def crash(self, daemon):
        """kill -9: no checkpoint, no clean-up."""
        daemon.send_signal(signal.SIGKILL)
        daemon.wait()
        daemon.expect_exit = -signal.SIGKILL

    def halt(self, daemon, how):
        if how == "kill":
            self.crash(daemon)
        else:
            self.assertEqual(daemon.stop(), 0, daemon.log())

    def restart_hub(self, hub, how):
        self.halt(hub.daemon, how)
        return self.durable_hub(hub.name, hub.state, port=hub.port, config=hub.config)

    def restart_client(self, client, how, wait_ready=True):
        self.halt(client.daemon, how)
        urls, encryptors, config, state = client.spec
        return self.durable_client(client.name, urls, encryptors, config, state, port=client.port,
                                   wait_ready=wait_ready)

    def durable_topology(self, hubs, clients, client_config="", proxied=None):
        """Hubs and clients, each with a state directory. proxied names a hub that every client
        reaches through a HubProxy (self.proxy)."""
        self.hubs = {h: self.durable_hub(h, self.state_path(f"hub-{h}")) for h in hubs}
        self.proxy = None
        if proxied:
            self.proxy = HubProxy(self.hubs[proxied].port)
            self.addCleanup(self.proxy.close)
        urls = [self.hub_url(h, self.proxy.port if h == proxied else None) for h in hubs]
        self.clients = {}
        for name, saes in clients.items():
            config = self.directory_config(name, clients) + CLIENT_CONFIG + client_config
            state = self.state_path(f"client-{name}")
            self.clients[name] = self.durable_client(name, urls, saes, config, state, wait_ready=False)
        for c in self.clients.values():
            c.wait_ready()

    def enc_key(self, client, master, slave, **kwargs):
        return self.get_keys(client, master, slave, **kwargs).json()["keys"][0]

    def dec_key(self, client, master, slave, key_id):
        return self.get_keys_with_ids(client, master, slave, [key_id]).json()["keys"][0]

    @staticmethod
    def dec_raw(client, master, slave, key_id):
        return client.etsi("GET", master, "dec_keys", slave, query=f"key_ID={key_id}")

    def settle(self, client, timeout=15.0):
        """Waits until the client counts every hub registered and reachable (a client leaves a hub
        that failed alone for a while)."""
        deadline = time.monotonic() + timeout
        while True:
            s = client.status()
            if s["ready"] and all(h["state"] == "ready" and h["reachable"] for h in s["peer_hubs"]):
                return
            self.assertLess(time.monotonic(), deadline, f"{client.name} does not settle: {s}")
            time.sleep(0.05)

    def filled(self, client, timeout=15.0):
        """Waits until the client fetches no more PSRD: every pool above LowWater= (128K by default)
        and no block fetched for half a second. A kill then does not make the client register
        again, as it must when a block of a hub's pool was on its way (the hub may hold a block the
        client does not)."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            hubs = client.status()["peer_hubs"]
            fetched = sum(h["blocks_fetched"] for h in hubs)
            low = min(h[p]["available_bytes"] for h in hubs for p in ("local_pool", "peer_pool"))
            if low >= LOW_WATER and fetched == last:
                return
            self.assertLess(time.monotonic(), deadline, f"{client.name} keeps fetching PSRD: {hubs}")
            last = fetched if low >= LOW_WATER else None
            time.sleep(0.5)

    def registrations(self, hub, client_name):
        """How often the hub's log says client_name registered."""
        return hub.daemon.log().count(f"Client {client_name} registered")


class ReplayTests(StateTestCase):
    """Requests and replies captured byte for byte and replayed after a restart."""

    def assertHubPoolsKept(self, hub, peer, how):
        """The restarted hub's copies of peer's pools hold the same blocks, with every byte the peer
        knows used still used. After a clean stop nothing else is used; after kill -9 the hub
        may have burned the bytes of its own pools it had reserved."""
        c = hub.client_status(peer.client_name)
        for hub_copy, ours, owner in (("peer_pool", peer.client_pool, "client"),
                                      ("local_pool", peer.hub_pool, "hub")):
            blocks = {b["uuid"]: b["nr_used_bytes"] for b in c[hub_copy]["blocks"]}
            self.assertEqual(sorted(blocks), sorted(b.uuid for b in ours.blocks), hub_copy)
            for b in ours.blocks:
                if how == "kill" and owner == "hub":
                    self.assertGreaterEqual(blocks[b.uuid], b.nr_used_bytes, hub_copy)
                else:
                    self.assertEqual(blocks[b.uuid], b.nr_used_bytes, (peer.client_name, hub_copy))

    def replay_requests(self, how):
        hub = self.durable_hub("hank", self.state_path("hank"))
        carol = hub.peer("carol", ["sam"]).provision()
        connie = hub.peer("connie", ["sofia"]).provision()
        key_id = new_key_id()
        share = os.urandom(16)

        post_body, _ = carol.share_body("sam", "sofia", key_id, 0, share)
        post_sig, _ = carol.sign("", post_body)
        r = carol.signed_request("POST", KEY_SHARE, body=post_body, signature=post_sig)
        self.assertEqual(r.status, 200, r.body)
        carol.verify_response(r)

        get_query = connie.share_query("connie", "sam", "sofia", key_id)
        get_sig, _ = connie.sign(get_query, b"")
        r = connie.signed_request("GET", KEY_SHARE, query=get_query, signature=get_sig)
        self.assertEqual(r.status, 200, r.body)
        connie.verify_response(r)
        obj = r.json()
        pad = connie.hub_pool.take(Allocation.from_json(obj["encryption_key_allocation"]))
        self.assertEqual(xor(b64decode_strict(obj["encrypted_share_value"]), pad), share)
        self.assertEqual(hub.status()["shares"], [])

        hub = self.restart_hub(hub, how)
        self.assertEqual([c["client_name"] for c in hub.status()["peer_clients"]], ["carol", "connie"])
        for peer in (carol, connie):
            self.assertHubPoolsKept(hub, peer, how)
            if how == "kill":
                # What the hub had reserved of its own pools is burned: fresh PSRD for the replies.
                self.assertEqual(peer.fetch_psrd("hub").status, 200)

        # The share was delivered, so the key ID is free: only the used PSRD stops the POST.
        r = carol.signed_request("POST", KEY_SHARE, body=post_body, signature=post_sig)
        self.assertEqual(r.status, 400, r.body)
        self.assertEqual(r.json()["message"], MSG_PSRD_REUSED)
        self.assertEqual(hub.status()["shares"], [])

        # A share for the same key ID stored anew: the replayed GET still cannot fetch it.
        share2 = os.urandom(16)
        self.assertEqual(carol.post_share("sam", "sofia", key_id, 0, share2).status, 200)
        r = connie.signed_request("GET", KEY_SHARE, query=get_query, signature=get_sig)
        self.assertEqual(r.status, 400, r.body)
        self.assertEqual(r.json()["message"], MSG_PSRD_REUSED)
        self.assertEqual([s["key_id"] for s in hub.status()["shares"]], [key_id])

        # The hub's own pool: it never names for a reply bytes it named before the restart (the
        # client's copy refuses used bytes), and the exchange goes on.
        r, index, got = connie.get_share("sam", "sofia", key_id)
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual((index, got), (0, share2))
        for _ in range(5):
            k = new_key_id()
            s = os.urandom(24)
            self.assertEqual(carol.post_share("sam", "sofia", k, 0, s).status, 200)
            self.assertEqual(connie.get_share("sam", "sofia", k)[2], s)

    def test_requests_replayed_after_sigterm(self):
        self.replay_requests("term")

    def test_requests_replayed_after_kill(self):
        self.replay_requests("kill")

    def test_replies_replayed_to_restarted_clients(self):
        """Each hub's signed replies of one exchange, replayed to the clients after they were
        killed and restarted: refused, so no key is delivered twice and no share counts as
        stored that no hub holds."""
        hubs = ["hank", "helen", "hilary"]
        self.hubs = {h: self.durable_hub(h, self.state_path(f"hub-{h}")) for h in hubs}
        proxies = {h: HubProxy(self.hubs[h].port) for h in hubs}
        for p in proxies.values():
            self.addCleanup(p.close)
        urls = [self.hub_url(h, proxies[h].port) for h in hubs]
        clients = {"carol": ["sam"], "connie": ["sofia"]}
        carol, connie = (self.durable_client(n, urls, clients[n],
                                             self.directory_config(n, clients) + CLIENT_CONFIG,
                                             self.state_path(f"client-{n}"))
                         for n in clients)
        key = self.enc_key(carol, "sam", "sofia")
        self.assertEqual(self.dec_key(connie, "sam", "sofia", key["key_ID"]), key)
        for p in proxies.values():
            self.assertEqual(sorted(k[0] for k in p.replies), ["GET", "POST"])

        for c in (carol, connie):
            self.filled(c)
        carol = self.restart_client(carol, "kill")
        connie = self.restart_client(connie, "kill")
        # The clients resumed their links: the blocks the kept replies name are still theirs, so
        # only the used bytes recorded in their state can tell the replies are old.
        for h, p in proxies.items():
            self.assertEqual([self.registrations(self.hubs[h], n) for n in clients], [1, 1], h)
            for (method, _), (_, headers, _) in p.replies.items():
                value = dict((k.lower(), v) for k, v in headers)[SIGNATURE_HEADER.lower()]
                client = connie if method == "GET" else carol
                blocks = [b["uuid"] for b in client.hub_status(h)["peer_pool"]["blocks"]]
                for f in parse_signature_header(value)[0].fragments:
                    self.assertIn(f.block_uuid, blocks, f"{client.name} lost the block of {h}'s reply")
            p.replay = True
        # Every hub "delivers" the delivered key again, with its old, authentic reply.
        r = self.dec_raw(connie, "sam", "sofia", key["key_ID"])
        self.assertNotEqual(r.status, 200, f"a replayed reply delivered a key again: {r.body!r}")
        # Every hub "takes" the shares of a new key, with its old, authentic reply to a POST.
        r = carol.etsi("GET", "sofia", "enc_keys", "sam")
        self.assertEqual(r.status, 503, f"replayed replies counted as stored shares: {r.body!r}")
        self.assertEtsiError(r, 503, MSG_SCATTER)
        for h, p in proxies.items():
            self.assertGreaterEqual(p.replayed, 2, h)
            p.replay = False
        self.settle(carol)
        self.settle(connie)
        self.key_pair(carol, "sam", connie, "sofia")
        self.key_pair(connie, "sofia", carol, "sam")


class RestartTests(StateTestCase):
    def start(self, config=""):
        # Every share is needed: a hub that lost its share fails the exchange.
        self.durable_topology(["hank", "helen", "hilary"], {"carol": ["sam"], "connie": ["sofia"]},
                              client_config="[Keys]\nSharesRequired=3\n" + config)
        return self.clients["carol"], self.clients["connie"]

    def test_hub_restarted_between_enc_and_dec(self):
        carol, connie = self.start()
        for how in ("term", "kill"):
            with self.subTest(how=how):
                keys = [self.enc_key(carol, "sam", "sofia", size=size) for size in (128, 256, 1024)]
                before = {c["client_name"] for c in self.hubs["helen"].status()["peer_clients"]}
                self.hubs["helen"] = self.restart_hub(self.hubs["helen"], how)
                st = self.hubs["helen"].status()
                self.assertEqual({c["client_name"] for c in st["peer_clients"]}, before)
                self.assertEqual(sorted(s["key_id"] for s in st["shares"]), sorted(k["key_ID"] for k in keys))
                for k in keys:
                    self.assertEqual(self.dec_key(connie, "sam", "sofia", k["key_ID"]), k)
                self.key_pair(carol, "sam", connie, "sofia")
                self.key_pair(connie, "sofia", carol, "sam", number=3, post=True)
                self.assertEqual(self.hubs["helen"].status()["shares"], [])
        for name in ("carol", "connie"):
            self.assertEqual(self.registrations(self.hubs["helen"], name), 0,
                             f"{name} registered again with the restarted hub")

    def test_hub_killed_with_its_pools_in_use(self):
        """After kill -9 a hub burns what it had reserved of its own pools: with small blocks, all
        it had for connie. Its share must still come on the first dec_keys: the other hubs delete
        theirs as they deliver them, so a failed attempt loses the key when every share is
        needed."""
        carol, connie = self.start("MaxKeysPerRequest=4\nMaxKeySize=256\n"
                                   "[PSRD]\nBlockSize=4K\nLowWater=2K\nHighWater=6K\n")
        for _ in range(20):
            self.key_pair(carol, "sam", connie, "sofia", number=4, post=True)
        keys = [self.enc_key(carol, "sam", "sofia") for _ in range(2)]
        self.hubs["hank"] = self.restart_hub(self.hubs["hank"], "kill")
        self.settle(carol)
        self.settle(connie)
        for k in keys:
            r = self.dec_raw(connie, "sam", "sofia", k["key_ID"])
            self.assertEqual(r.status, 200, r.body)
            self.assertEqual(r.json()["keys"], [k])
        for _ in range(3):
            self.key_pair(carol, "sam", connie, "sofia", number=4, post=True)
            self.key_pair(connie, "sofia", carol, "sam", number=4, post=True)

    def test_client_restarted(self):
        carol, connie = self.start()
        self.key_pair(carol, "sam", connie, "sofia")
        registered = {h: {n: self.registrations(hub, n) for n in self.clients}
                      for h, hub in self.hubs.items()}
        for how in ("kill", "term"):
            with self.subTest(how=how):
                # Keys gathered for connie's slave but not delivered yet: kept across the restart.
                keys = self.get_keys(carol, "sam", "sofia", number=2).json()["keys"]
                unknown = new_key_id()
                ids = [keys[0]["key_ID"], unknown, keys[1]["key_ID"]]
                r = self.get_keys_with_ids(connie, "sam", "sofia", ids, post=True, expect=400)
                self.assertEtsiError(r, 400, MSG_NOT_FOUND)
                self.assertEqual(connie.etsi("GET", "sam", "status", "sofia").json()["stored_key_count"], 2)
                # A key scattered by carol, gathered after carol restarted.
                pending = self.enc_key(carol, "sam", "sofia")

                for c in (carol, connie):
                    self.filled(c)
                connie = self.clients["connie"] = self.restart_client(connie, how)
                carol = self.clients["carol"] = self.restart_client(carol, how)
                self.assertEqual(connie.etsi("GET", "sam", "status", "sofia").json()["stored_key_count"], 2)
                r = self.get_keys_with_ids(connie, "sam", "sofia", [k["key_ID"] for k in keys], post=True)
                self.assertEqual(r.json()["keys"], keys)
                self.assertEqual(self.dec_key(connie, "sam", "sofia", pending["key_ID"]), pending)
                for _ in range(3):
                    self.key_pair(carol, "sam", connie, "sofia")
                    self.key_pair(connie, "sofia", carol, "sam")
        # The clients came back with their registrations (a new registration would have wiped
        # the pools with that hub).
        for h, hub in self.hubs.items():
            for n in self.clients:
                self.assertEqual(self.registrations(hub, n), registered[h][n],
                                 f"{n} registered again with {h}")


    def test_stored_keys_across_restarts(self):
        carol, connie = self.start("[Keys]\nStoredKeyTTL=4s\n")
        keys = self.get_keys(carol, "sam", "sofia", number=3).json()["keys"]
        ids = [k["key_ID"] for k in keys]
        r = self.get_keys_with_ids(connie, "sam", "sofia", ids + [new_key_id()], post=True, expect=400)
        self.assertEtsiError(r, 400, MSG_NOT_FOUND)
        stored_at = time.monotonic()
        self.assertEqual(self.get_keys_with_ids(connie, "sam", "sofia", [ids[0]]).json()["keys"], [keys[0]])

        # A key delivered before the restart stays delivered; the others are still there.
        connie = self.restart_client(connie, "kill")
        self.assertEqual(connie.etsi("GET", "sam", "status", "sofia").json()["stored_key_count"], 2)
        self.assertEtsiError(self.get_keys_with_ids(connie, "sam", "sofia", [ids[0]], expect=400), 400,
                             MSG_NOT_FOUND)
        self.assertEqual(self.get_keys_with_ids(connie, "sam", "sofia", [ids[1]]).json()["keys"], [keys[1]])

        # A key whose time ran out while the client was stopped is not restored.
        self.halt(connie.daemon, "kill")
        time.sleep(max(0.0, stored_at + 4.5 - time.monotonic()))
        urls, encryptors, config, state = connie.spec
        connie = self.durable_client("connie", urls, encryptors, config, state, port=connie.port)
        self.assertEqual(connie.etsi("GET", "sam", "status", "sofia").json()["stored_key_count"], 0)
        self.assertEtsiError(self.get_keys_with_ids(connie, "sam", "sofia", [ids[2]], expect=400), 400,
                             MSG_NOT_FOUND)


class CrashTests(StateTestCase):
    DURATION = 12.0
    ITERATIONS = 18

    def test_kill_at_random_moments(self):
        """Key pairs run in a thread while hank, carol or connie in turn is killed with SIGKILL at
        a random moment and restarted, over and over (bounded by DURATION). Checks: a key
        scattered before each kill is gathered after it (every share is needed); key pairs in
        both directions succeed after every restart; no key arrives different from the master's;
        and the proxy in front of hank never sees a PSRD range named twice, by the clients
        (request MAC keys, share pads: client-owned pools) or by hank (reply MAC keys, share
        pads: hub-owned pools), nor hank refusing reused PSRD."""
        hubs = ["hank", "helen", "hilary"]
        clients = {"carol": ["sam"], "connie": ["sofia"]}
        # Small blocks and pools, so that blocks run out, are dropped and fetched during the run.
        config = ("[Keys]\nSharesRequired=3\nMaxKeysPerRequest=4\nMaxKeySize=256\n"
                  "[PSRD]\nBlockSize=4K\nLowWater=2K\nHighWater=6K\n")
        self.durable_topology(hubs, clients, client_config=config, proxied="hank")
        seed = os.environ.get("DSKE_TEST_SEED") or str(random.randrange(1 << 32))
        rng = random.Random(seed)
        stop = threading.Event()
        exchanged = []
        wrong = []

        def traffic():
            while not stop.is_set():
                try:
                    carol, connie = self.clients["carol"], self.clients["connie"]
                    r = carol.etsi("GET", "sofia", "enc_keys", "sam")
                    if r.status != 200:
                        time.sleep(0.02)
                        continue
                    key = r.json()["keys"][0]
                    r = self.dec_raw(connie, "sam", "sofia", key["key_ID"])
                    if r.status == 200:
                        if r.json()["keys"] != [key]:
                            wrong.append((key, r.body))
                        exchanged.append(key["key_ID"])
                except (OSError, http.client.HTTPException, ValueError):
                    time.sleep(0.02)

        deadline = time.monotonic() + self.DURATION
        victims = ["hank", "carol", "connie"]
        iterations = 0
        while iterations < self.ITERATIONS and time.monotonic() < deadline:
            victim = victims[iterations % len(victims)]
            with self.subTest(iteration=iterations, victim=victim, seed=seed):
                # Scattered before the kill; every share is needed to gather it afterwards.
                pending = self.enc_key(self.clients["carol"], "sam", "sofia")
                t = threading.Thread(target=traffic, daemon=True)
                t.start()
                try:
                    time.sleep(rng.uniform(0.0, 0.4))
                    if victim == "hank":
                        self.hubs["hank"] = self.restart_hub(self.hubs["hank"], "kill")
                    else:
                        self.clients[victim] = self.restart_client(self.clients[victim], "kill",
                                                                   wait_ready=False)
                finally:
                    stop.set()
                    t.join()
                    stop.clear()
                for c in self.clients.values():
                    self.settle(c, timeout=30)
                got = self.dec_key(self.clients["connie"], "sam", "sofia", pending["key_ID"])
                self.assertEqual(got, pending)
                self.key_pair(self.clients["carol"], "sam", self.clients["connie"], "sofia")
                self.key_pair(self.clients["connie"], "sofia", self.clients["carol"], "sam")
            iterations += 1

        self.assertGreaterEqual(iterations, 6, "too few iterations to mean anything")
        self.assertEqual(wrong, [], "keys delivered that differ from the master's")
        self.assertGreater(self.proxy.n_ranges, 100)
        self.assertEqual(self.proxy.overlaps, [], f"PSRD named twice (seed {seed})")
        self.assertEqual(self.proxy.reuse_refusals, [], f"hank refused reused PSRD (seed {seed})")
        sys.stderr.write(f"seed {seed}: {iterations} kills, {len(exchanged)} key pairs alongside, "
                         f"{self.proxy.n_ranges} PSRD ranges seen\n")


    def test_client_killed_during_psrd_fetch(self):
        """The hub issued a block of its own pool to connie, who was killed before the reply
        arrived. Whatever either side does about that block, key exchanges must go on: the hub
        may not sign replies to connie with bytes connie never had."""
        config = ("[Keys]\nSharesRequired=3\nMaxKeysPerRequest=4\nMaxKeySize=256\n"
                  "[PSRD]\nBlockSize=4K\nLowWater=2K\nHighWater=6K\n")
        self.durable_topology(["hank", "helen", "hilary"], {"carol": ["sam"], "connie": ["sofia"]},
                              client_config=config, proxied="hank")
        carol, connie = self.clients["carol"], self.clients["connie"]
        self.proxy.hold_psrd = "connie"
        for _ in range(100):
            if self.proxy.held.is_set():
                break
            self.key_pair(carol, "sam", connie, "sofia", number=4, post=True)
        self.assertTrue(self.proxy.held.wait(10), "connie fetched no block of hank's pool")
        self.crash(connie.daemon)
        self.proxy.release.set()
        connie = self.clients["connie"] = self.restart_client(connie, "kill")
        # Enough keys for hank to use up what connie has of its pool and go on.
        for _ in range(40):
            self.key_pair(carol, "sam", connie, "sofia", number=4, post=True)
        self.assertEqual(self.proxy.overlaps, [])


def records_end(name, data):
    """Where a state file's contents end: the journal's header says where its records end (its
    file is allocated ahead); other files end with their last byte."""
    if os.path.basename(name).startswith("journal"):
        return int.from_bytes(data[40:48], "little")
    return len(data)


class CorruptionTests(StateTestCase):
    def make_state(self, how):
        """A state directory hank left: after a clean stop (snapshot holds the shares) or after
        kill -9 (the journal holds what changed since the last checkpoint)."""
        state = self.state_path("hank")
        hub = self.durable_hub("hank", state)
        carol = hub.peer("carol", ["sam"]).provision()
        hub.peer("connie", ["sofia"]).provision()
        for _ in range(3):
            self.assertEqual(carol.post_share("sam", "sofia", new_key_id(), 0, os.urandom(16)).status, 200)
        self.halt(hub.daemon, how)
        return state

    def start_refused(self, state, path, what):
        """The hub refuses to start on state, naming path; so does "dskectl check-state"."""
        argv = [program("DSKE_HUB"), "hank", "--port", str(free_port()), "--state-dir", state]
        try:
            p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=5)
        except subprocess.TimeoutExpired:
            self.fail(f"the hub started with {what}")
        out = (p.stdout + p.stderr).decode("utf-8", "replace")
        self.assertEqual(p.returncode, 1, f"the hub did not refuse {what} ({p.returncode}): {out}")
        self.assertIn(path, out, f"the hub's message does not name {path}")
        code, out, err = dske_test.run_program([program("DSKECTL"), "check-state", state], timeout=10)
        self.assertEqual(code, 1, f"dskectl check-state did not report {what} ({code}): {out}{err}")
        self.assertIn(path, err, f"dskectl check-state does not name {path}")

    def corrupt(self, pristine, name, damage):
        state = os.path.join(self.tmpdir(), "state")
        shutil.copytree(pristine, state, symlinks=True)
        path = os.path.join(state, name)
        with open(path, "rb") as f:
            data = bytearray(f.read())
        end = records_end(name, data)
        self.assertGreater(end, 8, name)
        if damage == "truncated":
            data = data[:-3]
        elif damage == "flipped":
            data[end // 2] ^= 0x10
        elif damage == "letter":
            # A byte of a name: still valid JSON, so only a checksum can tell.
            i = data.index(b'"connie"') + 2
            data[i] ^= 0x01
        else:
            # Written by a later version of the format.
            self.assertRegex(data.decode(), r'"version": ?1\b')
            data = bytearray(re.sub(rb'("version": ?)1\b', rb"\g<1>99", bytes(data), count=1))
        with open(path, "wb") as f:
            f.write(data)
        return state, path

    def test_corrupt_files_refused(self):
        clean = self.make_state("term")
        crashed = self.make_state("kill")
        [block] = [f"psrd/{n}" for n in sorted(os.listdir(os.path.join(clean, "psrd")))][:1]
        with open(os.path.join(crashed, "journal"), "rb") as f:
            self.assertGreater(records_end("journal", f.read()), 64, "the killed hub left an empty journal")
        cases = [(clean, "node.json"), (clean, "records"), (clean, "journal"), (clean, block),
                 (crashed, "journal"), (crashed, "node.json")]
        for pristine, name in cases:
            for damage in ("truncated", "flipped"):
                after = "SIGTERM" if pristine == clean else "SIGKILL"
                with self.subTest(file=name, damage=damage, after=after):
                    state, path = self.corrupt(pristine, name, damage)
                    self.start_refused(state, path, f"{name} {damage}")
        with self.subTest(file="node.json", damage="a later format version"):
            state, path = self.corrupt(clean, "node.json", "version")
            self.start_refused(state, path, "node.json of a later format version")
        with self.subTest(file="node.json", damage="a letter changed"):
            state, path = self.corrupt(clean, "node.json", "letter")
            self.start_refused(state, path, "node.json with a letter changed")
        # The undamaged copies still load.
        for pristine in (clean, crashed):
            code, out, err = dske_test.run_program([program("DSKECTL"), "--json", "check-state", pristine])
            self.assertEqual(code, 0, out + err)
            info = json.loads(out)
            self.assertEqual((info["role"], info["name"], info["records"]), ("hub", "hank", 3))
            self.assertEqual(sorted((p["peer"], p["owner"]) for p in info["pools"]),
                             [("carol", "local"), ("carol", "peer"), ("connie", "local"), ("connie", "peer")])
            hub = self.durable_hub("hank", pristine)
            self.assertEqual(len(hub.status()["shares"]), 3)
            self.assertEqual(hub.daemon.stop(), 0)

    def test_dskectl_reports_the_file(self):
        dskectl = program("DSKECTL")
        d = self.tmpdir()
        run_dir = os.path.join(d, "run")
        topology = os.path.join(d, "topo.ini")
        with open(topology, "w") as f:
            f.write("[Topology]\nAddress=127.0.0.1\n\n[Hub h1]\n")
        # The state "dskectl topology up" gives hub h1, left behind by an earlier run.
        state = os.path.join(run_dir, "hub-h1")
        hub = self.durable_hub("h1", state)
        self.assertEqual(hub.daemon.stop(), 0)
        path = os.path.join(state, "records")
        with open(path, "r+b") as f:
            f.seek(os.path.getsize(path) // 2)
            b = f.read(1)
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([b[0] ^ 0x10]))
        code, out, err = dske_test.run_program([dskectl, "topology", "up", topology, "--run-dir", run_dir,
                                                "--base-port", str(free_port()), "--timeout", "20"],
                                               timeout=60)
        if code == 0:
            dske_test.run_program([dskectl, "topology", "down", topology, "--run-dir", run_dir])
        self.assertEqual(code, 1, f"up succeeded:\n{out}\n{err}")
        self.assertIn("hub h1", err)
        self.assertIn(path, err, f"dskectl does not name {path}:\n{err}")


def file_size_limit(size):
    """Popen arguments that start a daemon unable to write a file beyond size bytes (RLIMIT_FSIZE,
    with SIGXFSZ ignored: the write fails with EFBIG), as a full disk would."""
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    return {"preexec_fn": limit}


class DiskFailureTests(StateTestCase):
    """A state directory that cannot take a write (a file of 1 MiB fits, one of 2 MiB does not):
    the node sends no reply whose state it could not record, stops with status 1, and its
    directory loads afterwards as it was before."""

    LIMIT = 1100 * 1000

    def test_hub(self):
        state = self.state_path("hank")
        config = "[Hub]\nMaxBlockSize=2M\n"
        hub = self.start_hub("hank", config=config, args=["--state-dir", state], expect_exit=1,
                             start_options=file_size_limit(self.LIMIT))
        carl = hub.peer("carl", ["sx"]).provision()
        before = hub.client_status("carl")
        with self.assertRaises(OSError):
            carl.fetch_psrd("client", 1000 * 1000)
        self.assertEqual(hub.daemon.wait(30), 1, hub.daemon.log())
        self.assertIn("The state directory failed: File too large", hub.daemon.log())

        # The same blocks (what the hub had reserved ahead of use is spent, as after kill -9).
        hub = self.durable_hub("hank", state, port=hub.port, config=config)
        after = hub.client_status("carl")
        for pool in ("local_pool", "peer_pool"):
            self.assertEqual([(b["uuid"], b["size"]) for b in after[pool]["blocks"]],
                             [(b["uuid"], b["size"]) for b in before[pool]["blocks"]])
        self.assertEqual(carl.post_share("sx", "sy", new_key_id(), 0, os.urandom(8)).status, 200)

    def test_client(self):
        hubs = ["hank", "helen", "hilary"]
        self.hubs = {h: self.start_hub(h, config="[Hub]\nMaxBlockSize=2M\n") for h in hubs}
        urls = [self.hub_url(h) for h in hubs]
        clients = {"carol": ["sam"], "connie": ["sofia"]}
        config = "[PSRD]\nBlockSize=1M\nLowWater=1M\nHighWater=2M\n"
        carol_config = self.directory_config("carol", clients) + config
        state = self.state_path("carol")
        carol = self.start_client("carol", urls, ["sam"], config=carol_config, args=["--state-dir", state],
                                  wait_ready=False, expect_exit=1, start_options=file_size_limit(self.LIMIT))
        self.assertEqual(carol.daemon.wait(30), 1, carol.daemon.log())
        self.assertIn("The state directory failed: File too large", carol.daemon.log())

        # Restarted on the same directory, it is ready again, and its pools agree with the hubs'.
        carol = self.durable_client("carol", urls, ["sam"], carol_config, state)
        connie = self.start_client("connie", urls, ["sofia"], config=self.directory_config("connie", clients))
        self.key_pair(carol, "sam", connie, "sofia")


class LockTests(StateTestCase):
    def test_second_process_refused(self):
        state = self.state_path("hank")
        hub = self.durable_hub("hank", state)
        for name in ("hank", "helen"):
            with self.subTest(name=name):
                code, out, err = dske_test.run_program(
                    [program("DSKE_HUB"), name, "--port", str(free_port()), "--state-dir", state], timeout=10)
                self.assertEqual(code, 1, out + err)
                self.assertIn(f"State directory {state} is in use", err)
        # The first hub still serves, and its directory still loads afterwards.
        carol = hub.peer("carol", ["sam"]).provision()
        self.assertEqual(carol.post_share("sam", "sofia", new_key_id(), 0, os.urandom(8)).status, 200)
        hub = self.restart_hub(hub, "term")
        self.assertEqual(len(hub.status()["shares"]), 1)
        # Another node's directory is refused even when free.
        self.assertEqual(hub.daemon.stop(), 0)
        code, out, err = dske_test.run_program(
            [program("DSKE_HUB"), "helen", "--port", str(free_port()), "--state-dir", state], timeout=10)
        self.assertEqual(code, 1, out + err)
        self.assertIn(state, err)


class ModeTests(StateTestCase):
    def assertModes(self, top):
        seen = 0
        for root, dirs, files in os.walk(top):
            self.assertEqual(stat.S_IMODE(os.lstat(root).st_mode), 0o700, root)
            for f in files:
                path = os.path.join(root, f)
                st = os.lstat(path)
                self.assertTrue(stat.S_ISREG(st.st_mode), path)
                self.assertEqual(stat.S_IMODE(st.st_mode), 0o600, path)
                seen += 1
        return seen

    def test_modes(self):
        old = os.umask(0o022)
        self.addCleanup(os.umask, old)
        self.durable_topology(["hank", "helen"], {"carol": ["sam"], "connie": ["sofia"]},
                              client_config="[Keys]\nSharesRequired=2\n")
        self.key_pair(self.clients["carol"], "sam", self.clients["connie"], "sofia")
        self.enc_key(self.clients["carol"], "sam", "sofia")
        # Clients first: a hub waits a while for connections clients keep open.
        nodes = list(self.clients.values()) + list(self.hubs.values())
        for node in nodes:
            self.assertEqual(node.daemon.stop(), 0, node.daemon.log())
        for node in nodes:
            state = node.state if hasattr(node, "state") else node.spec[3]
            with self.subTest(state=state):
                self.assertTrue(os.path.isdir(os.path.join(state, "psrd")), state)
                self.assertGreaterEqual(self.assertModes(state), 5)


if __name__ == "__main__":
    unittest.main()
