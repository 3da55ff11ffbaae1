#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""dskectl over D-Bus: status, peers, pools and stop on hubs and clients on a private dbus-daemon
configured as a system bus with the policy of dbus/org.dske.conf, checked against the daemons'
HTTP status; peers and pools over --http print the same as over the bus; --json output parses;
only root may stop a node; unknown nodes fail clearly.

Environment: DSKE_HUB, DSKE_CLIENT, DSKECTL."""

import importlib.util
import json
import os
import shutil
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import dske_test  # noqa: E402


def _load(name, file):
    spec = importlib.util.spec_from_file_location(name, os.path.join(HERE, file))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_test_client = _load("dske_test_client", "test-client.py")
_test_bus = _load("dske_test_bus", "test-bus.py")
bus_name = _test_bus.bus_name
NOBODY = _test_bus.NOBODY


class CtlBusTests(_test_client.ClientTestCase):
    @classmethod
    def setUpClass(cls):
        for tool in ("dbus-daemon", "busctl", "setpriv"):
            if not shutil.which(tool):
                raise unittest.SkipTest(f"{tool} not installed")
        if os.geteuid() != 0:
            raise unittest.SkipTest("the policy test needs root (it switches to uid 65534)")
        cls.dskectl = dske_test.program("DSKECTL")
        cls.bus = _test_bus.PrivateBus()
        cls.addClassCleanup(cls.bus.close)
        saved = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS")
        os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = cls.bus.address

        def restore():
            if saved is None:
                os.environ.pop("DBUS_SYSTEM_BUS_ADDRESS", None)
            else:
                os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = saved

        cls.addClassCleanup(restore)

    busctl = _test_bus.BusTests.busctl
    wait_for_name = _test_bus.BusTests.wait_for_name

    def setUp(self):
        super().setUp()
        # A run directory of its own keeps any topology running on this machine out of the lookup.
        self.runtime_dir = self.tmpdir()

    def ctl(self, *args, user=None, env=None):
        env = dict(os.environ, XDG_RUNTIME_DIR=self.runtime_dir, **(env or {}))
        argv = ([] if user is None else NOBODY) + [self.dskectl, *args]
        return dske_test.run_program(argv, env=env, timeout=60.0)

    def ctl_ok(self, *args, user=None, env=None):
        code, out, err = self.ctl(*args, user=user, env=env)
        self.assertEqual(code, 0, f"dskectl {args}: {err}")
        return out

    def ctl_json(self, *args, user=None):
        return json.loads(self.ctl_ok("--json", *args, user=user))

    def exchange(self):
        clients = {"alpha": ["sam"], "bravo": ["sofia"]}
        self.start_topology(hubs=["h1", "h2"], clients=clients, client_config="[Keys]\nSharesRequired=2\n")
        for h in self.hubs:
            self.wait_for_name(bus_name("Hub", h))
        for c in clients:
            self.wait_for_name(bus_name("Client", c))
        self.key_pair(self.clients["alpha"], "sam", self.clients["bravo"], "sofia", number=2)

    @staticmethod
    def pool_figures(pool):
        """A pool of the HTTP status in the figures dskectl prints; a hub's pools list only blocks."""
        total = sum(b["size"] for b in pool["blocks"])
        used = sum(b["nr_used_bytes"] for b in pool["blocks"])
        return {"blocks": len(pool["blocks"]), "total_bytes": total, "used_bytes": used,
                "available_bytes": total - used}

    def assert_same_over_http(self, node, url):
        """peers and pools print the same text and JSON over HTTP as over the bus. A client may
        refill a pool between the two reads, so a difference is read again before it counts."""
        for args in (("peers",), ("pools",), ("--json", "peers"), ("--json", "pools")):
            for attempt in range(5):
                bus = self.ctl_ok(*args, node)
                http = self.ctl_ok(*args, "--http", url)
                if bus == http or attempt == 4:
                    break
                time.sleep(0.2)
            self.assertEqual(http, bus, f"dskectl {args}")
            if args[0] == "--json":
                self.assertTrue(json.loads(http))
            # A URL given as the node is the same as --http.
            self.assertEqual(self.ctl_ok(*args, url), http)

    def test_client_status_peers_pools(self):
        self.exchange()
        alpha = self.clients["alpha"]
        s = alpha.status()
        hubs = sorted(s["peer_hubs"], key=lambda h: h["hub_name"])

        # Status: --json is the Status() document, the same as over HTTP but for what moves.
        for node in ("alpha", "client/alpha"):
            j = self.ctl_json("status", node)
            self.assertEqual(j["name"], "alpha")
            self.assertEqual(j["keys"], s["keys"])
        out = self.ctl_ok("status", "alpha")
        self.assertIn(f"Client alpha ({bus_name('Client', 'alpha')})", out)
        self.assertRegex(out, r"State: running\n")
        self.assertRegex(out, rf"ListenAddress: {dske_test.LOCALHOST}:{alpha.port}\n")
        self.assertRegex(out, rf"KeysScattered: {s['keys']['scattered']}\n")
        self.assertRegex(out, r"HubCount: 2\n")
        self.assertRegex(out, r"Ready: yes\n")

        peers = self.ctl_json("peers", "alpha")
        self.assertEqual([p["name"] for p in peers], [h["hub_name"] for h in hubs])
        for p, h in zip(peers, hubs):
            self.assertEqual(p, {"name": h["hub_name"], "registered": True, "state": "ready",
                                 "shares_relayed": h["shares_sent"] + h["shares_received"],
                                 "last_error": h["last_error"] or ""})
        self.assertEqual(sum(p["shares_relayed"] for p in peers), 4)
        out = self.ctl_ok("peers", "alpha").splitlines()
        self.assertRegex(out[0], r"^PEER +REGISTERED +STATE +SHARES RELAYED +LAST ERROR$")
        for line, h in zip(out[1:], hubs):
            self.assertRegex(line, rf"^{h['hub_name']} +yes +ready +"
                                   rf"{h['shares_sent'] + h['shares_received']} +-$")
        self.assertEqual(len(out), 1 + len(hubs))

        pools = self.ctl_json("pools", "alpha")
        for p, h in zip(pools, hubs):
            self.assertEqual(p["name"], h["hub_name"])
            self.assertEqual(p["local_pool"], self.pool_figures(h["local_pool"]))
            self.assertEqual(p["peer_pool"], self.pool_figures(h["peer_pool"]))
            self.assertGreater(p["local_pool"]["used_bytes"], 0)
        out = self.ctl_ok("pools", "alpha")
        for h in hubs:
            self.assertIn(f"Peer {h['hub_name']} (ready)", out)
            for label, pool in (("local", h["local_pool"]), ("peer", h["peer_pool"])):
                f = self.pool_figures(pool)
                self.assertEqual(f["total_bytes"], pool["total_bytes"])
                self.assertEqual(f["available_bytes"], pool["available_bytes"])
                self.assertRegex(out, rf"\n  {label} +{f['blocks']} +{f['total_bytes']} +"
                                      rf"{f['used_bytes']} +{f['available_bytes']}\n")

        self.assert_same_over_http("client/alpha", f"http://{dske_test.LOCALHOST}:{alpha.port}/client/alpha")

    def test_hub_status_peers_pools(self):
        self.exchange()
        hub = self.hubs["h1"]
        s = hub.status()
        self.assertEqual(self.ctl_json("status", "hub/h1")["nr_shares_delivered"], s["nr_shares_delivered"])
        out = self.ctl_ok("status", "h1")
        self.assertIn(f"Hub h1 ({bus_name('Hub', 'h1')})", out)
        self.assertRegex(out, r"Role: hub\n")
        self.assertRegex(out, r"ClientCount: 2\n")
        self.assertRegex(out, rf"SharesDelivered: {s['nr_shares_delivered']}\n")
        self.assertRegex(out, rf"SharesStored: {len(s['shares'])}\n")

        clients = sorted(s["peer_clients"], key=lambda c: c["client_name"])
        peers = self.ctl_json("peers", "hub/h1")
        self.assertEqual([p["name"] for p in peers], ["alpha", "bravo"])
        for p in peers:
            self.assertIs(p["registered"], True)
            self.assertEqual(p["state"], "registered")
        # Each key put one share on each of the two hubs, posted by alpha.
        self.assertEqual([p["shares_relayed"] for p in peers], [2, 0])

        pools = self.ctl_json("pools", "h1")
        for p, c in zip(pools, clients):
            self.assertEqual(p["name"], c["client_name"])
            self.assertEqual(p["local_pool"], self.pool_figures(c["local_pool"]))
            self.assertEqual(p["peer_pool"], self.pool_figures(c["peer_pool"]))
        # The same figures with the user's view of the pools: anyone may read.
        self.assertEqual(self.ctl_json("pools", "h1", user="nobody"), pools)

        # Over HTTP the status is the management route's document.
        j = self.ctl_json("status", "--http", f"http://{dske_test.LOCALHOST}:{hub.port}/hub/h1")
        self.assertEqual(j["peer_clients"], s["peer_clients"])

        url = f"http://{dske_test.LOCALHOST}:{hub.port}/hub/h1"
        self.assertEqual([c["nr_shares_relayed"] for c in clients], [2, 0])
        self.assert_same_over_http("hub/h1", url)
        out = self.ctl_ok("peers", "--http", url).splitlines()
        self.assertRegex(out[1], r"^alpha +yes +registered +2 +-$")
        self.assertRegex(out[2], r"^bravo +yes +registered +0 +-$")

    def test_stop(self):
        hub = self.start_hub("h-stop")
        name = bus_name("Hub", "h-stop")
        self.wait_for_name(name)

        code, out, err = self.ctl("stop", "h-stop", user="nobody")
        self.assertEqual(code, 1)
        self.assertIn(f"Permission denied: only root may stop {name} over the system bus.", err)
        self.assertTrue(hub.daemon.alive())

        out = self.ctl_ok("stop", "hub/h-stop")
        self.assertIn(f"{name} has stopped.", out)
        self.assertEqual(hub.daemon.wait(timeout=10), 0)
        code, _, err = self.ctl("status", "h-stop")
        self.assertEqual(code, 1)
        self.assertIn(f"Node h-stop is not running on the system bus ({name} or "
                      f"{bus_name('Client', 'h-stop')})", err)

    def test_stop_json(self):
        hub = self.start_hub("1st.j")
        self.wait_for_name(bus_name("Hub", "1st.j"))
        j = self.ctl_json("stop", "1st.j")
        self.assertEqual(j, {"result": "stopped", "bus_name": bus_name("Hub", "1st.j")})
        self.assertEqual(hub.daemon.wait(timeout=10), 0)

    def test_unknown_and_ambiguous(self):
        code, out, err = self.ctl("status", "hub/nosuch")
        self.assertEqual(code, 1)
        self.assertEqual(out, "")
        self.assertIn("Node nosuch is not running on the system bus (org.dske.Hub.nosuch)", err)
        code, _, err = self.ctl("peers", "client/nosuch")
        self.assertEqual(code, 1)
        self.assertIn("Node nosuch is not running on the system bus (org.dske.Client.nosuch)", err)
        code, _, err = self.ctl("pools", "bad/name")
        self.assertEqual(code, 1)
        self.assertIn("is not a node name", err)

        hubs = [self.start_hub("twin"), self.start_hub("other")]
        urls = [f"http://{dske_test.LOCALHOST}:{h.port}/hub/{h.name}" for h in hubs]
        self.start_client("twin", urls, ["sue"], config="[Keys]\nSharesRequired=2\n")
        self.wait_for_name(bus_name("Hub", "twin"))
        self.wait_for_name(bus_name("Client", "twin"))
        code, _, err = self.ctl("status", "twin")
        self.assertEqual(code, 1)
        self.assertIn("Both a hub and a client named twin are on the system bus", err)
        self.assertEqual(self.ctl_json("status", "client/twin")["name"], "twin")

    def test_bare_name_in_running_topology(self):
        # Nodes of a local topology that reach no bus: a bare name not on the bus is looked up in
        # the running topology, over HTTP.
        path = os.path.join(self.tmpdir(), "fallback.ini")
        with open(path, "w") as f:
            f.write("[Hub fb1]\n")
        nobus = {"DBUS_SYSTEM_BUS_ADDRESS": "unix:path=" + os.path.join(self.runtime_dir, "no-bus")}
        self.ctl_ok("topology", "up", path, "--base-port", str(dske_test.free_port()), env=nobus)
        self.addCleanup(self.ctl, "topology", "down", path, env=nobus)

        out = self.ctl_ok("status", "fb1")
        self.assertIn("Hub fb1: 0 clients registered", out)
        code, _, err = self.ctl("status", "hub/fb1")
        self.assertEqual(code, 1)
        self.assertIn(f"Node fb1 is not running on the system bus ({bus_name('Hub', 'fb1')})", err)
        self.assertEqual(self.ctl_ok("pools", "fb1"), "No peers.\n")
        self.assertEqual(self.ctl_json("peers", "fb1"), [])

        out = self.ctl_ok("stop", "fb1")
        self.assertRegex(out, r"hub fb1 \(pid \d+\) has exited\.")
        code, _, err = self.ctl("status", "fb1")
        self.assertEqual(code, 1)


if __name__ == "__main__":
    unittest.main()
