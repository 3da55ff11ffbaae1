# SPDX-License-Identifier: MIT
"""The hub's HTTP API (PROTOCOL.md §7.1-§7.5), driven by a reference-compatible client."""

import base64
import json
import os
import time
import unittest
import uuid

from dske_test import (SIGNATURE_HEADER, Allocation, DaemonTestCase, Fragment, HubPeer, b64, dske_mac,
                       http_request, json_compact, new_key_id, non_loopback_ipv4)

KEY_SHARE = "dske/api/v1/key-share"


def walk_keys(obj):
    """Every key of every object inside obj."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield k
            yield from walk_keys(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from walk_keys(v)


class HubTestCase(DaemonTestCase):
    config = None

    def setUp(self):
        self.hub = self.start_hub("hank", config=self.config)

    def peer(self, name, encryptors=(), provision=True, size=2000):
        p = self.hub.peer(name, encryptors)
        if provision:
            p.provision(size)
        return p

    def assertError(self, r, status, message=None):
        self.assertEqual(r.status, status, r.body)
        self.assertEqual(r.header("Content-Type"), "application/json")
        obj = r.json()
        self.assertEqual(set(obj), {"message", "details"}, obj)
        self.assertIsNone(r.header(SIGNATURE_HEADER), "error responses are not signed")
        if message is not None:
            self.assertEqual(obj["message"], message)
        return obj

    def used(self, client_name):
        """(hub-owned used bytes, client-owned used bytes) per block, as the hub reports them."""
        c = self.hub.client_status(client_name)
        return ([b["nr_used_bytes"] for b in c["local_pool"]["blocks"]],
                [b["nr_used_bytes"] for b in c["peer_pool"]["blocks"]])

    def assertSpent(self, client_name, before, hub_owned=0, client_owned=0):
        """Since before (a used() result), the hub marked exactly hub_owned more bytes used in its
        copy of client_name's hub-owned pool and client_owned more in the client-owned one, gave
        none back, and added or dropped no block."""
        after = self.used(client_name)
        for pool, b, a, n in (("hub-owned", before[0], after[0], hub_owned),
                              ("client-owned", before[1], after[1], client_owned)):
            self.assertEqual(len(a), len(b), f"{pool} pool: blocks {b} -> {a}")
            self.assertTrue(all(x >= y for x, y in zip(a, b)), f"{pool} pool: bytes given back {b} -> {a}")
            self.assertEqual(sum(a) - sum(b), n, f"{pool} pool: used bytes {b} -> {a}")

    def assertInStep(self, peer):
        """The hub's copies of peer's pools have the blocks peer has, each with as many used bytes."""
        c = self.hub.client_status(peer.client_name)
        for hub_copy, ours in (("peer_pool", peer.client_pool), ("local_pool", peer.hub_pool)):
            self.assertEqual([(b["uuid"], b["nr_used_bytes"]) for b in c[hub_copy]["blocks"]],
                             [(b.uuid, b.nr_used_bytes) for b in ours.blocks], hub_copy)

    def stored_shares(self):
        return self.hub.status()["shares"]


class ReferenceVectorTests(unittest.TestCase):
    """The helper computes MACs exactly as the reference does (PROTOCOL.md §4.8), so the hub
    accepting its requests shows it accepts the reference's."""

    KEY = bytes(range(32))

    def test_get_query_vector(self):
        q = ("client_name=connie&master_sae_id=sam&slave_sae_id=sofia"
             "&key_id=0aa99444-fddc-44d2-ac23-49657e5e6021")
        self.assertEqual(len(q), 99)
        self.assertEqual(b64(dske_mac(self.KEY, q, b"")), "2gSpqpwuZ+AGd0MbrkngOqY+qPEcHe/lNfU/NhFnTac=")
        key_id = "0aa99444-fddc-44d2-ac23-49657e5e6021"
        self.assertEqual(HubPeer.share_query("connie", "sam", "sofia", key_id), q)

    def test_null_body_vector(self):
        self.assertEqual(b64(dske_mac(self.KEY, b"", b"null")),
                         "iE7XVzQt6heVU6t1K2GOo3J76RqLW8d11bUaoX7SkcA=")

    def test_post_body_vector(self):
        peer = HubPeer("127.0.0.1", 1, "hank", "carol", ["sam"])
        alloc = Allocation([Fragment("9ad7f620-5a0c-4979-8a2d-66142e06fd79", 0, 16)], bytes(16))
        body, _ = peer.share_body("sam", "sofia", "0aa99444-fddc-44d2-ac23-49657e5e6021", 0, bytes(range(16)),
                                  allocation=alloc)
        self.assertEqual(len(body), 313)
        self.assertEqual(b64(dske_mac(self.KEY, b"", body)), "NMJ5WfhXzGps8/3PYbGWuZFm9hjiMeE4tJ4oJmu5k+w=")


class RegistrationTests(HubTestCase):
    def test_register(self):
        p = self.hub.peer("carol", ["sam"])
        r = p.register()
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json(), {"hub_name": "hank"})
        self.assertEqual(r.body, b'{"hub_name":"hank"}')
        c = self.hub.client_status("carol")
        self.assertEqual(c["encryptor_names"], ["sam"])
        self.assertEqual(c["local_pool"], {"blocks": [], "owner": "local"})
        self.assertEqual(c["peer_pool"], {"blocks": [], "owner": "peer"})

    def test_register_without_encryptors_and_extra_fields(self):
        body = json_compact({"client_name": "cindy", "encryptor_names": [], "colour": "blue"})
        r = self.hub.request("PUT", "dske/oob/v1/registration", body=body)
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(self.hub.client_status("cindy")["encryptor_names"], [])

    def test_register_bad_bodies(self):
        bad = [b"", b"not json", b"[]", b"null", b'{"client_name":"carol"}', b'{"encryptor_names":[]}',
               b'{"client_name":7,"encryptor_names":[]}', b'{"client_name":"carol","encryptor_names":"sam"}',
               b'{"client_name":"carol","encryptor_names":[1]}', b'{"client_name":"","encryptor_names":[]}',
               b'{"client_name":"../etc","encryptor_names":[]}',
               b'{"client_name":"a b","encryptor_names":[]}',
               b'{"client_name":"carol","encryptor_names":["s/m"]}',
               b'{"client_name":"carol","encryptor_names":["sam","sam"]}',
               b'{"client_name":"carol","encryptor_names":[]} trailing',
               b'{"client_name":"carol\\u0000x","encryptor_names":[]}',
               b'{"client_name":"carol","encryptor_names":["sam\\u0000"]}',
               b'{"client_name":"' + b"x" * 64 + b'","encryptor_names":[]}']
        for body in bad:
            with self.subTest(body=body):
                self.assertError(self.hub.request("PUT", "dske/oob/v1/registration", body=body), 400)
        self.assertEqual(self.hub.status()["peer_clients"], [])

    def test_reregistration_wipes_pools_and_keeps_shares(self):
        carol = self.peer("carol", ["sam"])
        connie = self.peer("connie", ["sofia"])
        key_id = new_key_id()
        self.assertEqual(carol.post_share("sam", "sofia", key_id, 0, os.urandom(16)).status, 200)
        self.assertEqual(carol.register().status, 200)
        c = self.hub.client_status("carol")
        self.assertEqual(c["local_pool"]["blocks"], [])
        self.assertEqual(c["peer_pool"]["blocks"], [])
        self.assertEqual([s["key_id"] for s in self.stored_shares()], [key_id])
        # Registration order is kept.
        self.assertEqual([c["client_name"] for c in self.hub.status()["peer_clients"]], ["carol", "connie"])
        r, _, share = connie.get_share("sam", "sofia", key_id)
        self.assertEqual(r.status, 200)

    def test_encryptor_claimed_by_another_client(self):
        self.peer("carol", ["sam"], provision=False).register()
        r = self.hub.peer("mallory", ["sam"]).register()
        obj = self.assertError(r, 409, "Encryptor is registered for another client.")
        self.assertEqual(obj["details"]["encryptor_name"], "sam")
        self.assertIsNone(self.hub.client_status("mallory"))
        # The owner itself may register it again.
        self.assertEqual(self.hub.peer("carol", ["sam", "sue"]).register().status, 200)

    def test_unregister(self):
        carol = self.peer("carol", ["sam"])
        connie = self.peer("connie", ["sofia"])
        celia = self.peer("celia", ["serena"])
        k1, k2, k3 = new_key_id(), new_key_id(), new_key_id()
        self.assertEqual(carol.post_share("sam", "sofia", k1, 0, os.urandom(16)).status, 200)  # from carol
        self.assertEqual(celia.post_share("serena", "sam", k2, 0, os.urandom(16)).status, 200)  # to carol
        self.assertEqual(celia.post_share("serena", "sofia", k3, 0, os.urandom(16)).status, 200)  # neither
        r = carol.unregister()
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.json(), {"client_name": "carol", "was_registered": True})
        self.assertIsNone(self.hub.client_status("carol"))
        self.assertEqual([s["key_id"] for s in self.stored_shares()], [k3])
        r = carol.unregister()
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json(), {"client_name": "carol", "was_registered": False})
        self.assertError(carol.fetch_psrd("client"), 400, "Client is not registered.")
        r, _, _ = carol.get_share("celia", "sam", k2)
        self.assertError(r, 400, "Client is not registered.")
        self.assertEqual(connie.get_share("serena", "sofia", k3)[0].status, 200)

    def test_unregister_bad_queries(self):
        for q in [None, "", "client_name=", "client_name=a/b", "client_name=carol&x=1", "name=carol"]:
            with self.subTest(query=q):
                self.assertError(self.hub.request("DELETE", "dske/oob/v1/registration", query=q), 400)


class LimitsConfigTests(HubTestCase):
    config = "[Hub]\nMaxClients=2\nMaxSharesPerClient=2\nMaxBlockSize=4096\nMaxPoolSize=8K\n"

    def test_max_clients(self):
        self.peer("c1", provision=False).register()
        self.peer("c2", provision=False).register()
        obj = self.assertError(self.hub.peer("c3").register(), 503, "Too many clients are registered.")
        self.assertEqual(obj["details"], {"max_clients": 2})
        # Registering again is not a new client.
        self.assertEqual(self.hub.peer("c2").register().status, 200)
        self.assertEqual(self.hub.peer("c1").unregister().status, 200)
        self.assertEqual(self.hub.peer("c3").register().status, 200)

    def test_block_size_limit(self):
        carol = self.peer("carol", provision=False)
        carol.register()
        self.assertEqual(carol.fetch_psrd("client", 4096).status, 200)
        obj = self.assertError(carol.fetch_psrd("client", 4097), 400, "Invalid PSRD block size.")
        self.assertEqual(obj["details"]["max_size"], 4096)

    def test_pool_size_limit(self):
        carol = self.peer("carol", provision=False)
        carol.register()
        self.assertEqual(carol.fetch_psrd("hub", 4096).status, 200)
        self.assertEqual(carol.fetch_psrd("hub", 4096).status, 200)
        self.assertError(carol.fetch_psrd("hub", 1), 503)
        self.assertEqual(carol.fetch_psrd("client", 1).status, 200)

    def test_shares_per_client(self):
        carol = self.peer("carol", ["sam"])
        connie = self.peer("connie", ["sofia"])
        key_ids = [new_key_id() for _ in range(2)]
        for key_id in key_ids:
            self.assertEqual(carol.post_share("sam", "sofia", key_id, 0, os.urandom(8)).status, 200)
        before = self.used("carol")
        body, _ = carol.share_body("sam", "sofia", new_key_id(), 0, os.urandom(8))
        sig, _ = carol.sign("", body)
        r = carol.signed_request("POST", KEY_SHARE, body=body, signature=sig)
        self.assertError(r, 503, "Too many shares are stored for this client.")
        # The request was authentic: its MAC key and the pad it took stay spent; the hub signed
        # nothing.
        self.assertSpent("carol", before, client_owned=32 + 8)
        self.assertInStep(carol)
        self.assertEqual(len(self.stored_shares()), 2)
        # Once there is room again, the refused request cannot be replayed.
        self.assertEqual(connie.get_share("sam", "sofia", key_ids[0])[0].status, 200)
        before = self.used("carol")
        r = carol.signed_request("POST", KEY_SHARE, body=body, signature=sig)
        self.assertError(r, 400, "Attempt to use PSRD data more than once.")
        self.assertSpent("carol", before)
        self.assertEqual([s["key_id"] for s in self.stored_shares()], key_ids[1:])


class PsrdTests(HubTestCase):
    def test_issue_blocks(self):
        carol = self.peer("carol", ["sam"], provision=False)
        carol.register()
        r = carol.fetch_psrd("client", 2000)
        self.assertEqual(r.status, 200)
        obj = r.json()
        self.assertEqual(list(obj), ["block_uuid", "data"])
        self.assertEqual(str(uuid.UUID(obj["block_uuid"])), obj["block_uuid"])
        self.assertEqual(uuid.UUID(obj["block_uuid"]).version, 4)
        self.assertEqual(len(base64.b64decode(obj["data"], validate=True)), 2000)
        self.assertEqual(carol.fetch_psrd("CLIENT", 1).status, 200)
        self.assertEqual(carol.fetch_psrd("Hub", 65536).status, 200)
        c = self.hub.client_status("carol")
        self.assertEqual([(b["size"], b["nr_used_bytes"], b["nr_unused_bytes"])
                          for b in c["peer_pool"]["blocks"]],
                         [(2000, 0, 2000), (1, 0, 1)])
        self.assertEqual([b["size"] for b in c["local_pool"]["blocks"]], [65536])
        self.assertEqual(c["peer_pool"]["blocks"][0]["uuid"], obj["block_uuid"])
        # Blocks differ from each other.
        a = carol.fetch_psrd("client", 64).json()
        b = carol.fetch_psrd("client", 64).json()
        self.assertNotEqual(a["data"], b["data"])
        self.assertNotEqual(a["block_uuid"], b["block_uuid"])

    def test_bad_requests(self):
        self.peer("carol", provision=False).register()
        cases = [
            ("client_name=carol&pool_owner=both&size=10", "Pool owner both is invalid."),
            ("client_name=carol&pool_owner=&size=10", "Pool owner  is invalid."),
            ("client_name=carol&pool_owner=client&size=0", "Invalid PSRD block size."),
            ("client_name=carol&pool_owner=client&size=-1", "Invalid PSRD block size."),
            ("client_name=carol&pool_owner=client&size=%2B5", "Invalid PSRD block size."),
            ("client_name=carol&pool_owner=client&size=1_0", "Invalid PSRD block size."),
            ("client_name=carol&pool_owner=client&size=65537", "Invalid PSRD block size."),
            ("client_name=carol&pool_owner=client&size=99999999999999999999999", "Invalid PSRD block size."),
            ("client_name=carol&pool_owner=client", "Missing query parameter."),
            ("client_name=carol&size=10", "Missing query parameter."),
            ("pool_owner=client&size=10", "Missing query parameter."),
            ("client_name=carol&pool_owner=client&size=10&extra=1", "Unknown query parameter."),
            ("client_name=carol&pool_owner=client&size=10&size=20", "Query parameter given more than once."),
            ("client_name=carol&pool_owner=client&client_name=dave&size=10",
             "Query parameter given more than once."),
            ("client_name=nobody&pool_owner=client&size=10", "Client is not registered."),
        ]
        for query, message in cases:
            with self.subTest(query=query):
                self.assertError(self.hub.request("GET", "dske/oob/v1/psrd", query=query), 400, message)
        self.assertEqual(self.hub.client_status("carol")["peer_pool"]["blocks"], [])


class KeyShareTests(HubTestCase):
    def setUp(self):
        super().setUp()
        self.carol = self.peer("carol", ["sam"])
        self.connie = self.peer("connie", ["sofia"])
        self.cindy = self.peer("cindy", [])

    def post(self, share=None, key_id=None, index=0, peer=None, master="sam", slave="sofia"):
        peer = peer or self.carol
        key_id = key_id or new_key_id()
        share = share if share is not None else os.urandom(16)
        return peer.post_share(master, slave, key_id, index, share), key_id, share

    # -- the normal exchange --

    def test_post_then_get(self):
        r, key_id, share = self.post(share=os.urandom(10), index=3)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, b"null")
        self.assertEqual(r.header("Content-Type"), "application/json")
        [s] = self.stored_shares()
        self.assertEqual(s["key_id"], key_id)
        self.assertEqual((s["master_sae_id"], s["slave_sae_id"], s["share_index"]), ("sam", "sofia", 3))
        self.assertNotIn("value", s)

        r, index, got = self.connie.get_share("sam", "sofia", key_id)
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(index, 3)
        self.assertEqual(got, share)
        self.assertEqual(self.stored_shares(), [], "a delivered share is deleted")

        # PSRD used per PROTOCOL.md §3.9 for S = 10, seen from the hub and from the clients.
        self.assertEqual(self.used("carol"), ([32], [42]))
        self.assertEqual(self.used("connie"), ([42], [32]))
        self.assertEqual(self.used("cindy"), ([0], [0]))
        self.assertEqual([b.nr_used_bytes for b in self.carol.client_pool.blocks], [42])
        self.assertEqual([b.nr_used_bytes for b in self.carol.hub_pool.blocks], [32])
        self.assertEqual([b.nr_used_bytes for b in self.connie.client_pool.blocks], [32])
        self.assertEqual([b.nr_used_bytes for b in self.connie.hub_pool.blocks], [42])

        r, _, _ = self.connie.get_share("sam", "sofia", key_id)
        obj = self.assertError(r, 404, "Unknown key ID")
        self.assertEqual(obj["details"], {"key_ID": key_id})

    def test_many_keys_and_block_turnover(self):
        """Fully used blocks are dropped on both sides, and allocations span blocks."""
        shares = {}
        for i in range(60):
            r, key_id, share = self.post(share=os.urandom(24))
            self.assertEqual(r.status, 200, r.body)
            shares[key_id] = share
            if self.carol.client_pool.available() < 100:
                self.assertEqual(self.carol.fetch_psrd("client", 700).status, 200)
            if self.carol.hub_pool.available() < 100:
                self.assertEqual(self.carol.fetch_psrd("hub", 700).status, 200)
            if self.connie.hub_pool.available() < 100:
                self.assertEqual(self.connie.fetch_psrd("hub", 700).status, 200)
        for key_id, share in shares.items():
            r, _, got = self.connie.get_share("sam", "sofia", key_id)
            self.assertEqual(r.status, 200, r.body)
            self.assertEqual(got, share)
            if self.connie.hub_pool.available() < 100:
                self.assertEqual(self.connie.fetch_psrd("hub", 700).status, 200)
        for name, peer in (("carol", self.carol), ("connie", self.connie)):
            c = self.hub.client_status(name)
            self.assertEqual([b["uuid"] for b in c["peer_pool"]["blocks"]],
                             [b.uuid for b in peer.client_pool.blocks])
            self.assertEqual([b["uuid"] for b in c["local_pool"]["blocks"]],
                             [b.uuid for b in peer.hub_pool.blocks])
            self.assertEqual([b["nr_used_bytes"] for b in c["peer_pool"]["blocks"]],
                             [b.nr_used_bytes for b in peer.client_pool.blocks])
        self.assertEqual(self.stored_shares(), [])

    def test_shares_and_keys_never_in_status(self):
        r, key_id, share = self.post()
        self.assertEqual(r.status, 200)
        st = self.hub.status()
        self.assertTrue(st["ready"])
        self.assertEqual(st["name"], "hank")
        keys = set(walk_keys(st))
        self.assertNotIn("data", keys)
        self.assertNotIn("value", keys)
        self.assertNotIn(b64(share)[:8], json.dumps(st))

    # -- POST key-share errors (§7.3) and the fixes (§12) --

    def test_post_bad_bodies_cost_nothing(self):
        good = json.loads(self.carol.share_body("sam", "sofia", new_key_id(), 0, os.urandom(16))[0])
        bodies = [b"", b"{", b"[]", b"null"]
        for field in good:
            bodies.append(json_compact({k: v for k, v in good.items() if k != field}))
        for field, value in [("share_index", "0"), ("share_index", 0.5), ("share_index", True),
                             ("user_key_id", 5), ("encryption_key_allocation", []),
                             ("encrypted_share_value", None), ("master_client_name", ["carol"])]:
            bodies.append(json_compact(dict(good, **{field: value})))
        before = self.used("carol")
        for body in bodies:
            with self.subTest(body=body):
                r = self.carol.signed_request("POST", KEY_SHARE, body=body)
                self.assertError(r, 400, "Invalid request body.")
        self.assertEqual(self.used("carol"), before)
        self.assertEqual(self.stored_shares(), [])

    def test_post_unregistered_client(self):
        body, _ = self.carol.share_body("sam", "sofia", new_key_id(), 0, os.urandom(16),
                                        override={"master_client_name": "nobody"})
        obj = self.assertError(self.carol.signed_request("POST", KEY_SHARE, body=body), 400,
                               "Client is not registered.")
        self.assertEqual(obj["details"], {"client_name": "nobody"})

    def test_post_query_not_allowed(self):
        body, _ = self.carol.share_body("sam", "sofia", new_key_id(), 0, os.urandom(16))
        r = self.carol.signed_request("POST", KEY_SHARE, query="x=1", body=body)
        self.assertError(r, 400, "Unknown query parameter.")

    def check_bad_signature(self, signature, status, message, body=None):
        body = body or self.carol.share_body("sam", "sofia", new_key_id(), 0, os.urandom(16))[0]
        before, shares = self.used("carol"), self.stored_shares()
        r = self.carol.signed_request("POST", KEY_SHARE, body=body, signature=signature)
        obj = self.assertError(r, status, message)
        self.assertEqual(self.used("carol"), before, "a refused request burns no PSRD")
        self.assertEqual(self.stored_shares(), shares)
        return obj

    def test_missing_or_malformed_signature(self):
        u = self.carol.client_pool.blocks[0].uuid
        mac = b64(bytes(32))
        for sig in ["", "garbage", f"{u}:0:32", f"{u}:0:32%", f"%{mac}", f"{u}:0:32%{mac}%{mac}",
                    f"{u}:0:32%AAAA", f"{u}:0:32%{mac[:-1]}!", f"{u}:0:32%{b64(bytes(31))}",
                    f"{u}:0:32 %{mac}", f"{u}:00:32%{mac}", f"{u}:0:32,%{mac}", f"{u}:0:+32%{mac}",
                    f"{u.upper()}x:0:32%{mac}", f"not-a-uuid:0:32%{mac}"]:
            with self.subTest(signature=sig):
                self.check_bad_signature(sig, 403, "Invalid signature.")

    def test_mac_key_of_wrong_length(self):
        """C1: a MAC key must be exactly 32 bytes: zero, short, long, negative all fail before any
        PSRD is touched."""
        u = self.carol.client_pool.blocks[0].uuid
        mac = b64(bytes(32))
        for alloc in [f"{u}:0:0", f"{u}:0:1", f"{u}:0:31", f"{u}:0:33", f"{u}:40:-8", f"{u}:0:40,{u}:40:-8",
                      f"{u}:0:16,{u}:0:16", f"{u}:0:20,{u}:10:12", f"{u}:100:0,{u}:0:32"]:
            with self.subTest(allocation=alloc):
                self.check_bad_signature(f"{alloc}%{mac}", 403, "Invalid signature.")
        self.assertEqual(self.hub.client_status("carol")["peer_pool"]["blocks"][0]["size"], 2000)

    def test_signature_naming_unknown_or_used_bytes(self):
        u = self.carol.client_pool.blocks[0].uuid
        mac = b64(bytes(32))
        # An accepted request uses bytes 0..47 of the client-owned block (16 pad, 32 MAC key).
        r, _, _ = self.post()
        self.assertEqual(r.status, 200)
        obj = self.check_bad_signature(f"{u}:0:32%{mac}", 400, "Attempt to use PSRD data more than once.")
        self.assertEqual(obj["details"], {"block_uuid": u, "start": 0, "size": 32})
        obj = self.check_bad_signature(f"{uuid.uuid4()}:0:32%{mac}", 400, "Invalid PSRD block UUID.")
        self.assertIn("block_uuid", obj["details"])
        obj = self.check_bad_signature(f"{u}:1990:32%{mac}", 400, "Invalid byte index into PSRD block.")
        self.assertEqual(obj["details"], {"block_uuid": u, "index": 1990})
        # A bad fragment after a good one: the good one is not kept either.
        self.check_bad_signature(f"{u}:1000:16,{u}:1999:16%{mac}", 400, "Invalid byte index into PSRD block.")
        self.check_bad_signature(f"{u}:1000:16,{u}:40:16%{mac}", 400,
                                 "Attempt to use PSRD data more than once.")

    def test_bad_mac_gives_psrd_back(self):
        """H3: bytes taken to check a MAC that fails go back to the pool, so the real client can
        still use them."""
        body, enc = self.carol.share_body("sam", "sofia", new_key_id(), 0, os.urandom(16))
        sig, mac_alloc = self.carol.sign("", body)
        forged = sig[:-44] + b64(bytes(32))
        before = self.used("carol")
        self.assertError(self.carol.signed_request("POST", KEY_SHARE, body=body, signature=forged), 403,
                         "Invalid signature.")
        self.assertEqual(self.used("carol"), before)
        # A body altered after signing fails the same way.
        self.assertError(self.carol.signed_request("POST", KEY_SHARE, body=body.replace(b"sofia", b"sofie"),
                                                   signature=sig), 403, "Invalid signature.")
        self.assertEqual(self.used("carol"), before)
        # The genuine request with the same bytes still goes through.
        r = self.carol.signed_request("POST", KEY_SHARE, body=body, signature=sig)
        self.assertEqual(r.status, 200, r.body)
        self.carol.verify_response(r)

    def test_replayed_post(self):
        body, _ = self.carol.share_body("sam", "sofia", new_key_id(), 0, os.urandom(16))
        sig, _ = self.carol.sign("", body)
        r = self.carol.signed_request("POST", KEY_SHARE, body=body, signature=sig)
        self.assertEqual(r.status, 200)
        self.carol.verify_response(r)
        before = self.used("carol")
        r = self.carol.signed_request("POST", KEY_SHARE, body=body, signature=sig)
        self.assertError(r, 400, "Attempt to use PSRD data more than once.")
        self.assertEqual(self.used("carol"), before)

    def test_master_sae_not_registered(self):
        before = self.used("carol")
        body, pad = self.carol.share_body("sofia", "sofia", new_key_id(), 0, os.urandom(16))
        r = self.carol.signed_request("POST", KEY_SHARE, body=body)
        obj = self.assertError(r, 400, "Encryptor is not registered for client.")
        self.assertEqual(obj["details"], {"client_name": "carol", "encryptor_name": "sofia"})
        # Refused after the MAC verified and before the pad was taken: only the MAC key is spent.
        self.assertSpent("carol", before, client_owned=32)
        self.carol.client_pool.give_back(pad)
        self.assertInStep(self.carol)
        self.assertEqual(self.stored_shares(), [])

    def test_bad_share_fields(self):
        cases = [
            ({"user_key_id": "not-a-uuid"}, "Invalid key ID."),
            ({"user_key_id": "{" + str(uuid.uuid4()) + "}"}, "Invalid key ID."),
            ({"share_index": -1}, "Invalid share index."),
            ({"share_index": 16}, "Invalid share index."),
            ({"share_index": 2 ** 70}, "Invalid share index."),
            ({"encrypted_share_value": "AA EC"}, "Invalid request body."),
            ({"encrypted_share_value": "!!!!"}, "Invalid request body."),
            ({"encrypted_share_value": "AA=A"}, "Invalid request body."),
            ({"encrypted_share_value": "AAF="}, "Invalid request body."),
            ({"encrypted_share_value": ""}, "Invalid request body."),
            ({"slave_sae_id": "so fia"}, "Invalid request body."),
        ]
        for override, message in cases:
            with self.subTest(override=override):
                before = self.used("carol")
                body, pad = self.carol.share_body("sam", "sofia", new_key_id(), 0, os.urandom(16),
                                                  override=override)
                self.assertError(self.carol.signed_request("POST", KEY_SHARE, body=body), 400, message)
                # Refused after the MAC verified and before the pad was taken: only the MAC key
                # is spent.
                self.assertSpent("carol", before, client_owned=32)
                self.carol.client_pool.give_back(pad)
                self.assertInStep(self.carol)
        self.assertEqual(self.stored_shares(), [])

    def test_bad_encryption_key_allocations(self):
        """C2, C3: fragment sizes must be positive, not overlap, lie in the block and add up to the
        share length exactly; of an authentic message refused for its pad, only the MAC key is
        spent (a take is all or nothing)."""
        u = self.carol.client_pool.blocks[0].uuid
        share = os.urandom(16)

        def frag(start, size, block=u):
            return {"block_uuid": block, "start": start, "size": size}

        cases = [
            ([frag(1000, 0), frag(1000, 16)], "Invalid encoded fragment."),
            ([frag(1000, -4), frag(1000, 20)], "Invalid encoded fragment."),
            ([frag(1000, 8), frag(1004, 8)], "Invalid encoded fragment."),
            ([frag(1000, 8), frag(1000, 8)], "Invalid encoded fragment."),
            ([frag("1000", 16)], "Invalid encoded fragment."),
            ([frag(1000, 16.0)], "Invalid encoded fragment."),
            ([], "Invalid encoded fragment."),
            ([frag(1000, 8)], "Encryption key allocation size does not match the share size."),
            ([frag(1000, 32)], "Encryption key allocation size does not match the share size."),
            ([frag(1990, 16)], "Invalid byte index into PSRD block."),
            ([frag(0, 16, str(uuid.uuid4()))], "Invalid PSRD block UUID."),
            # Bytes 0..31 are the MAC key of the first case, spent for good.
            ([frag(0, 16)], "Attempt to use PSRD data more than once."),
        ]
        for fragments, message in cases:
            with self.subTest(fragments=fragments):
                before = self.used("carol")
                body = json_compact({
                    "master_client_name": "carol", "master_sae_id": "sam", "slave_sae_id": "sofia",
                    "user_key_id": new_key_id(), "share_index": 0,
                    "encryption_key_allocation": {"fragments": fragments},
                    "encrypted_share_value": b64(share)})
                r = self.carol.signed_request("POST", KEY_SHARE, body=body)
                self.assertError(r, 400, message)
                self.assertSpent("carol", before, client_owned=32)
                self.assertInStep(self.carol)
        self.assertEqual(self.stored_shares(), [])

    def test_duplicate_key_id(self):
        """C5: a key ID is never overwritten; a byte-identical retry from the same client is fine."""
        key_id = new_key_id()
        share = os.urandom(16)
        self.assertEqual(self.post(share=share, key_id=key_id)[0].status, 200)
        # The same share again (a retry after a lost response): accepted, nothing changes.
        self.assertEqual(self.post(share=share, key_id=key_id)[0].status, 200)
        self.assertEqual(len(self.stored_shares()), 1)
        # A different value, index or slave for the same key ID: refused. The requests were
        # authentic: their MAC keys and pads stay spent, and the hub signed nothing.
        for kwargs in [dict(share=os.urandom(16)), dict(share=share, index=1),
                       dict(share=share, slave="sue")]:
            with self.subTest(**{k: str(v) for k, v in kwargs.items()}):
                before = self.used("carol")
                r, _, _ = self.post(key_id=key_id, **kwargs)
                obj = self.assertError(r, 409, "Key ID is already in use.")
                self.assertEqual(obj["details"], {"key_id": key_id})
                self.assertSpent("carol", before, client_owned=32 + 16)
                self.assertInStep(self.carol)
        # From another client, even with the same content.
        celia = self.peer("celia", ["sam2"])
        before = self.used("celia")
        r, _, _ = self.post(share=share, key_id=key_id, peer=celia, master="sam2")
        self.assertError(r, 409, "Key ID is already in use.")
        self.assertSpent("celia", before, client_owned=32 + 16)
        self.assertInStep(celia)
        r, _, got = self.connie.get_share("sam", "sofia", key_id)
        self.assertEqual(got, share)

    def test_refused_post_cannot_be_replayed(self):
        """An authentic request refused with 409 spent its PSRD: replayed once the key ID is
        free again, it is still refused and stores nothing."""
        key_id = new_key_id()
        share = os.urandom(16)
        self.assertEqual(self.post(share=share, key_id=key_id)[0].status, 200)
        body, pad = self.carol.share_body("sam", "sofia", key_id, 0, os.urandom(16))
        sig, mac = self.carol.sign("", body)
        r = self.carol.signed_request("POST", KEY_SHARE, body=body, signature=sig)
        self.assertError(r, 409, "Key ID is already in use.")
        # The stored share is delivered, and with it deleted: the key ID is free.
        r, _, got = self.connie.get_share("sam", "sofia", key_id)
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(got, share)
        self.assertEqual(self.stored_shares(), [])
        before = self.used("carol")
        r = self.carol.signed_request("POST", KEY_SHARE, body=body, signature=sig)
        obj = self.assertError(r, 400, "Attempt to use PSRD data more than once.")
        [f] = mac.fragments
        self.assertEqual(obj["details"], {"block_uuid": f.block_uuid, "start": f.start, "size": f.size})
        self.assertSpent("carol", before)
        self.assertEqual(self.stored_shares(), [])
        # The pad is spent too, whatever MAC key a request naming it comes with.
        r = self.carol.signed_request("POST", KEY_SHARE, body=body)
        obj = self.assertError(r, 400, "Attempt to use PSRD data more than once.")
        [f] = pad.fragments
        self.assertEqual(obj["details"], {"block_uuid": f.block_uuid, "start": f.start, "size": f.size})
        self.assertSpent("carol", before, client_owned=32)
        self.assertInStep(self.carol)
        self.assertEqual(self.stored_shares(), [])

    def test_hub_out_of_psrd_stores_nothing(self):
        """The response MAC key is allocated before the share is stored: no signature, no share."""
        dave = self.hub.peer("dave", ["sid"])
        dave.register()
        dave.fetch_psrd("client", 2000)
        dave.fetch_psrd("hub", 31)
        r, _, _ = self.post(peer=dave, master="sid")
        obj = self.assertError(r, 503, "Pool dave local out of Pre-Shared Random Data (PSRD).")
        self.assertEqual(obj["details"], {"purpose": "message-signing-key", "allocation_size": 32,
                                          "pool_available_bytes": 31})
        self.assertEqual(self.stored_shares(), [])
        # The request was authentic: its MAC key and pad stay spent. The hub signed nothing, so
        # its own pool is untouched.
        self.assertEqual(self.used("dave"), ([0], [32 + 16]))

    # -- GET key-share errors (§7.4) and the fixes --

    def test_get_query_checks(self):
        r, key_id, _ = self.post()
        good = HubPeer.share_query("connie", "sam", "sofia", key_id)
        for query, message in [
            (good + "&extra=1", "Unknown query parameter."),
            (good + "&key_id=" + new_key_id(), "Query parameter given more than once."),
            ("client_name=connie&master_sae_id=sam&slave_sae_id=sofia", "Missing query parameter."),
            ("client_name=connie&master_sae_id=sam&key_id=" + key_id, "Missing query parameter."),
            ("client_name=connie&slave_sae_id=sofia&key_id=" + key_id, "Missing query parameter."),
            ("master_sae_id=sam&slave_sae_id=sofia&key_id=" + key_id, "Missing query parameter."),
            (good.replace("connie", "nobody"), "Client is not registered."),
        ]:
            with self.subTest(query=query):
                before = self.used("connie")
                r = self.connie.signed_request("GET", KEY_SHARE, query=query)
                self.assertError(r, 400, message)
                self.assertEqual(self.used("connie"), before)
        self.assertEqual(len(self.stored_shares()), 1)

    def test_get_signature_covers_raw_query(self):
        r, key_id, share = self.post()
        query = HubPeer.share_query("connie", "sam", "sofia", key_id)
        sig, alloc = self.connie.sign(query, b"")
        # Percent-encoding the same value changes the raw bytes: the MAC no longer matches.
        r = self.connie.signed_request("GET", KEY_SHARE, query=query.replace("sofia", "sofi%61"),
                                       signature=sig)
        self.assertError(r, 403, "Invalid signature.")
        self.assertError(self.connie.signed_request("GET", KEY_SHARE, query=query, signature=""), 403,
                         "Invalid signature.")
        r = self.connie.signed_request("GET", KEY_SHARE, query=query, signature=sig)
        self.assertEqual(r.status, 200, r.body)
        self.connie.verify_response(r)
        # Replayed: the MAC key's bytes are used.
        before = self.used("connie")
        r = self.connie.signed_request("GET", KEY_SHARE, query=query, signature=sig)
        self.assertError(r, 400, "Attempt to use PSRD data more than once.")
        self.assertEqual(self.used("connie"), before)

    def test_get_bad_and_unknown_key_id(self):
        """Refused after the MAC verified: each request's MAC key is spent, nothing else."""
        before = self.used("connie")
        r, _, _ = self.connie.get_share("sam", "sofia", "not-a-uuid")
        obj = self.assertError(r, 400, "Invalid key ID.")
        self.assertEqual(obj["details"], {"key_id": "not-a-uuid"})
        self.assertSpent("connie", before, client_owned=32)
        before = self.used("connie")
        key_id = str(uuid.uuid4())
        r, _, _ = self.connie.get_share("sam", "sofia", key_id.upper())
        obj = self.assertError(r, 404, "Unknown key ID")
        self.assertEqual(obj["details"], {"key_ID": key_id})
        self.assertSpent("connie", before, client_owned=32)
        self.assertInStep(self.connie)

    def test_share_only_for_its_slave(self):
        """C4: another client with valid PSRD cannot fetch the share, nor the right client with the
        wrong SAE IDs; the share stays for its slave."""
        r, key_id, share = self.post()
        self.assertEqual(r.status, 200)
        attempts = [(self.cindy, "sam", "sofia"), (self.carol, "sam", "sofia"), (self.cindy, "sam", ""),
                    (self.connie, "sue", "sofia"), (self.connie, "sam", "sue")]
        for peer, master, slave in attempts:
            with self.subTest(client=peer.client_name, master=master, slave=slave):
                before = self.used(peer.client_name)
                r, _, _ = peer.get_share(master, slave, key_id)
                self.assertError(r, 403, "Key share is not available to this client.")
                # The request was authentic: its MAC key is spent; no pad left the hub.
                self.assertSpent(peer.client_name, before, client_owned=32)
                self.assertInStep(peer)
        self.assertEqual(len(self.stored_shares()), 1)
        r, _, got = self.connie.get_share("sam", "sofia", key_id)
        self.assertEqual(got, share)

    def test_get_hub_out_of_psrd(self):
        """503 with the hub's real level (R5): the authentic request's MAC key is spent, nothing of
        the hub-owned pool is; the share stays until the pool has room for the share's pad and
        the response MAC key."""
        self.assertEqual(self.carol.fetch_psrd("client", 4000).status, 200)
        r, key_id, share = self.post(share=os.urandom(2001))
        self.assertEqual(r.status, 200, r.body)

        before = self.used("connie")
        r, _, _ = self.connie.get_share("sam", "sofia", key_id)
        obj = self.assertError(r, 503, "Pool connie local out of Pre-Shared Random Data (PSRD).")
        self.assertEqual(obj["details"], {"purpose": "share-encryption-key", "allocation_size": 2001,
                                          "pool_available_bytes": 2000})
        self.assertSpent("connie", before, client_owned=32)
        self.assertInStep(self.connie)

        self.assertEqual(self.connie.fetch_psrd("hub", 32).status, 200)
        before = self.used("connie")
        r, _, _ = self.connie.get_share("sam", "sofia", key_id)
        obj = self.assertError(r, 503)
        # The pad allocated before the response MAC key failed went back first.
        self.assertEqual(obj["details"], {"purpose": "message-signing-key", "allocation_size": 32,
                                          "pool_available_bytes": 2032})
        self.assertSpent("connie", before, client_owned=32)
        self.assertInStep(self.connie)
        self.assertEqual(len(self.stored_shares()), 1)

        self.assertEqual(self.connie.fetch_psrd("hub", 1).status, 200)
        r, _, got = self.connie.get_share("sam", "sofia", key_id)
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(got, share)
        self.assertEqual(self.hub.client_status("connie")["local_pool"]["blocks"], [],
                         "fully used blocks are dropped")
        self.assertEqual(self.connie.hub_pool.blocks, [])


class ExpiryTestCase(HubTestCase):
    def assert_expired(self, peer, key_id):
        """Waits until the hub holds no share, then checks that one expired: key_id's, which peer
        can no longer get."""
        deadline = time.monotonic() + 10
        while self.stored_shares() and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(self.stored_shares(), [])
        self.assertEqual(self.hub.status()["nr_shares_expired"], 1)
        r, _, _ = peer.get_share("sam", "sofia", key_id)
        self.assertError(r, 404, "Unknown key ID")


class TtlTests(ExpiryTestCase):
    config = "[Hub]\nShareTTL=1s\n"

    def test_share_expires(self):
        carol = self.peer("carol", ["sam"])
        connie = self.peer("connie", ["sofia"])
        key_id = new_key_id()
        self.assertEqual(carol.post_share("sam", "sofia", key_id, 0, os.urandom(16)).status, 200)
        self.assertEqual(len(self.stored_shares()), 1)
        self.assert_expired(connie, key_id)


class TtlOrderTests(ExpiryTestCase):
    config = "[Hub]\nShareTTL=2s\n"

    def test_later_share_outlives_a_delivered_one(self):
        # The first share leaves early; the second still gets its whole time to live, then expires.
        carol = self.peer("carol", ["sam"])
        connie = self.peer("connie", ["sofia"])
        first, second = new_key_id(), new_key_id()
        start = time.monotonic()
        self.assertEqual(carol.post_share("sam", "sofia", first, 0, os.urandom(16)).status, 200)
        time.sleep(1.0)
        second_posted = time.monotonic()
        self.assertEqual(carol.post_share("sam", "sofia", second, 0, os.urandom(16)).status, 200)
        r, _, _ = connie.get_share("sam", "sofia", first)
        self.assertEqual(r.status, 200)
        time.sleep(max(0.0, start + 2.4 - time.monotonic()))
        if time.monotonic() - second_posted < 1.9:
            self.assertEqual(len(self.stored_shares()), 1, "the second share expired early")
        self.assert_expired(connie, second)


class TtlReloadTests(ExpiryTestCase):
    config = "[Hub]\nShareTTL=60s\n"

    def test_shorter_ttl_after_reload(self):
        # Shares posted after ShareTTL= was shortened expire before the ones posted earlier.
        carol = self.peer("carol", ["sam"])
        connie = self.peer("connie", ["sofia"])
        early, late = new_key_id(), [new_key_id(), new_key_id()]
        self.assertEqual(carol.post_share("sam", "sofia", early, 0, os.urandom(16)).status, 200)
        self.hub.daemon.reload("[Hub]\nShareTTL=1s\n")
        for key_id in late:
            self.assertEqual(carol.post_share("sam", "sofia", key_id, 0, os.urandom(16)).status, 200)
        deadline = time.monotonic() + 10
        while self.hub.status()["nr_shares_expired"] < 2:
            self.assertLess(time.monotonic(), deadline, self.hub.status())
            time.sleep(0.1)
        self.assertEqual([s["key_id"] for s in self.stored_shares()], [early])
        for key_id in late:
            self.assertError(connie.get_share("sam", "sofia", key_id)[0], 404, "Unknown key ID")
        self.assertEqual(connie.get_share("sam", "sofia", early)[0].status, 200)


class RoutingTests(HubTestCase):
    config = "[Hub]\nMaxBodySize=4K\n"

    def test_not_found(self):
        for path in ["/", "/hub/hank", "/hub/hank/", "/hub/helen/mgmt/v1/status", "/hub/hankx/mgmt/v1/status",
                     "/client/hank/mgmt/v1/status", "/hub/hank/mgmt/v1/status/", "/hub/hank/mgmt/v2/status",
                     "/hub/hank/dske/api/v1/key-share/x"]:
            with self.subTest(path=path):
                r = http_request("127.0.0.1", self.hub.port, "GET", path)
                self.assertError(r, 404, "Not found.")

    def test_method_not_allowed(self):
        for method, rest, allow in [("POST", "dske/oob/v1/registration", "PUT, DELETE"),
                                    ("PUT", "dske/api/v1/key-share", "POST, GET"),
                                    ("POST", "dske/oob/v1/psrd", "GET"),
                                    ("GET", "mgmt/v1/stop", "POST"), ("DELETE", "mgmt/v1/status", "GET")]:
            with self.subTest(method=method, rest=rest):
                r = self.hub.request(method, rest)
                self.assertError(r, 405)
                self.assertEqual(r.header("Allow"), allow)

    def test_body_too_large(self):
        r = self.hub.request("PUT", "dske/oob/v1/registration", body=b"x" * 5000)
        self.assertEqual(r.status, 413)
        self.assertEqual(self.hub.status()["peer_clients"], [])

    def test_mgmt_only_from_loopback(self):
        address = non_loopback_ipv4()
        if address is None:
            self.skipTest("no non-loopback IPv4 address on this machine")
        hub = self.start_hub("helen", args=["--address", "0.0.0.0"])
        r = http_request(address, hub.port, "GET", "/hub/helen/mgmt/v1/status")
        self.assertError(r, 403, "Management is only available from the local host.")
        r = http_request(address, hub.port, "POST", "/hub/helen/mgmt/v1/stop")
        self.assertError(r, 403)
        self.assertEqual(http_request(address, hub.port, "PUT", "/hub/helen/dske/oob/v1/registration",
                                      body=b'{"client_name":"c","encryptor_names":[]}').status, 200)
        self.assertEqual(hub.status()["name"], "helen")
        hub2 = self.start_hub("holly", args=["--address", "0.0.0.0"],
                              config="[Hub]\nManagementFromAnywhere=yes\n")
        self.assertEqual(http_request(address, hub2.port, "GET", "/hub/holly/mgmt/v1/status").status, 200)


class OutOfBandOffTests(HubTestCase):
    config = "[Hub]\nOutOfBandAPI=no\n"

    def test_oob_endpoints_absent(self):
        r = self.hub.peer("carol").register()
        self.assertError(r, 404, "Not found.")
        r = self.hub.request("GET", "dske/oob/v1/psrd", query="client_name=carol&pool_owner=client&size=10")
        self.assertError(r, 404)
        r = self.hub.request("DELETE", "dske/oob/v1/registration", query="client_name=carol")
        self.assertError(r, 404)
        self.assertEqual(self.hub.status()["peer_clients"], [])


class SecretsNotLoggedTests(DaemonTestCase):
    def test_no_key_material_in_log(self):
        hub = self.start_hub("hank", args=["--log-level", "debug"])
        carol = hub.peer("carol", ["sam"]).provision()
        connie = hub.peer("connie", ["sofia"]).provision()
        key_id = new_key_id()
        share = os.urandom(16)
        self.assertEqual(carol.post_share("sam", "sofia", key_id, 0, share).status, 200)
        self.assertEqual(connie.get_share("sam", "sofia", key_id)[2], share)
        log = hub.daemon.log()
        self.assertIn(key_id, log)
        for secret in [share, carol.client_pool.blocks[0].original, connie.hub_pool.blocks[0].original]:
            for chunk in (secret[:12], secret[-12:]):
                self.assertNotIn(b64(chunk)[:12], log)
                self.assertNotIn(chunk.hex()[:16], log)


if __name__ == "__main__":
    unittest.main()
