#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Management over D-Bus: hubs and clients on a private dbus-daemon configured as a system bus
with the policy of dbus/org.dske.conf. The daemons claim their names, their introspection matches
dbus/*.xml, properties agree with the HTTP status after a key exchange, peers appear as objects,
the policy lets anyone read but only root stop a node, and a node without a bus serves HTTP.

Environment: DSKE_HUB, DSKE_CLIENT (the daemons under test)."""

import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import dske_test  # noqa: E402

_spec = importlib.util.spec_from_file_location("dske_test_client", os.path.join(HERE, "test-client.py"))
_test_client = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_test_client)

DBUS_DIR = os.path.join(os.path.dirname(os.path.dirname(HERE)), "dbus")
NODE_PATH = "/org/dske/Node"
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]

# A system bus as Debian's system.conf sets it up, reduced to what matters for the policy: deny by
# default, anyone may talk to the bus itself, the service's own file punches the holes.
BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
  </policy>
  <policy user="root">
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Monitoring"/>
  </policy>
  <include>{policy}</include>
  <limit name="max_completed_connections">1000</limit>
</busconfig>
"""


class PrivateBus:
    """A dbus-daemon in the foreground, as a child, listening in a directory of its own."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="dske-bus-")
        # The unprivileged caller must reach the socket.
        os.chmod(self.dir, 0o755)
        self.socket = os.path.join(self.dir, "system_bus_socket")
        self.config = os.path.join(self.dir, "system.conf")
        with open(self.config, "w") as f:
            f.write(BUS_CONFIG.format(socket=self.socket, policy=os.path.join(DBUS_DIR, "org.dske.conf")))
        self.log = open(os.path.join(self.dir, "dbus-daemon.log"), "wb")
        r, w = os.pipe()
        try:
            self.proc = subprocess.Popen(["dbus-daemon", "--nofork", "--config-file", self.config,
                                          f"--print-address={w}"], pass_fds=[w], stdin=subprocess.DEVNULL,
                                         stdout=self.log, stderr=subprocess.STDOUT)
        finally:
            os.close(w)
        with os.fdopen(r, "rb") as f:
            line = f.readline().decode().strip()
        if not line:
            self.close()
            raise dske_test.TestEnvironmentError("dbus-daemon did not start")
        self.address = line

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Monitor:
    """busctl monitor on one name, its messages as JSON, one a line."""

    def __init__(self, test, name):
        self.test = test
        self.name = name
        self.path = os.path.join(test.tmpdir(), "monitor.json")
        self.out = open(self.path, "wb")
        self.proc = subprocess.Popen(["busctl", "--system", "--json=short", "monitor", name],
                                     stdin=subprocess.DEVNULL, stdout=self.out, stderr=subprocess.DEVNULL)
        test.addCleanup(self.close)
        # Once the monitor sees a call it made, it sees everything that follows.
        deadline = time.monotonic() + 10
        while not any(m.get("member") == "Ping" for m in self.messages()):
            if time.monotonic() > deadline:
                test.fail("busctl monitor did not start")
            test.busctl("call", name, NODE_PATH, "org.freedesktop.DBus.Peer", "Ping")
            time.sleep(0.1)

    def messages(self):
        out = []
        with open(self.path, "rb") as f:
            for line in f:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass  # a line still being written
        return out

    def signals(self, member):
        return [m for m in self.messages() if m.get("type") == "signal" and m.get("member") == member]

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.out.close()


def bus_name(role, instance):
    element = instance.replace(".", "_")
    if element[0].isdigit():
        element = "_" + element
    return f"org.dske.{role}.{element}"


def members(root, interface):
    """The members of interface in an introspection document: {(kind, name): description}."""
    out = {}
    for i in root.iter("interface"):
        if i.get("name") != interface:
            continue
        for el in i:
            if el.tag == "property":
                emits = "true"
                for a in el.findall("annotation"):
                    if a.get("name") == "org.freedesktop.DBus.Property.EmitsChangedSignal":
                        emits = a.get("value")
                out[("property", el.get("name"))] = (el.get("type"), el.get("access"), emits)
            elif el.tag in ("method", "signal"):
                args = tuple((a.get("type"), a.get("direction") or ("in" if el.tag == "method" else "out"))
                             for a in el.findall("arg"))
                out[(el.tag, el.get("name"))] = args
    return out


class BusTests(_test_client.ClientTestCase):
    @classmethod
    def setUpClass(cls):
        for tool in ("dbus-daemon", "busctl", "setpriv"):
            if not shutil.which(tool):
                raise unittest.SkipTest(f"{tool} not installed")
        if os.geteuid() != 0:
            raise unittest.SkipTest("the policy test needs root (it switches to uid 65534)")
        cls.bus = PrivateBus()
        cls.addClassCleanup(cls.bus.close)
        cls.saved_address = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS")
        os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = cls.bus.address
        cls.addClassCleanup(cls.restore_address)

    @classmethod
    def restore_address(cls):
        if cls.saved_address is None:
            os.environ.pop("DBUS_SYSTEM_BUS_ADDRESS", None)
        else:
            os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = cls.saved_address

    # -- busctl --

    def busctl(self, *args, user=None, check=True):
        argv = ([] if user is None else NOBODY) + ["busctl", "--system", "--no-pager", *args]
        code, out, err = dske_test.run_program(argv)
        if check:
            self.assertEqual(code, 0, f"{argv}: {err}")
        return code, out, err

    def get(self, name, path, interface, prop, user=None):
        _, out, _ = self.busctl("--json=short", "get-property", name, path, interface, prop, user=user)
        return json.loads(out)["data"]

    def get_all(self, name, path, interface):
        _, out, _ = self.busctl("--json=short", "call", name, path, "org.freedesktop.DBus.Properties", "GetAll",
                                "s", interface)
        return {k: v["data"] for k, v in json.loads(out)["data"][0].items()}

    def status_over_bus(self, name, user=None):
        _, out, _ = self.busctl("--json=short", "call", name, NODE_PATH, "org.dske.Node1", "Status", user=user)
        return json.loads(json.loads(out)["data"][0])

    def wait_for_name(self, name, timeout=10.0):
        deadline = time.monotonic() + timeout
        while True:
            _, out, _ = self.busctl("--json=short", "call", "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                    "org.freedesktop.DBus", "NameHasOwner", "s", name)
            if json.loads(out)["data"][0]:
                return
            if time.monotonic() > deadline:
                self.fail(f"{name} not on the bus after {timeout}s")
            time.sleep(0.05)

    def assertIntrospectionMatches(self, name, path, interfaces):
        _, out, _ = self.busctl("--xml-interface", "introspect", name, path)
        live = ET.fromstring(out)
        for interface in interfaces:
            spec = ET.parse(os.path.join(DBUS_DIR, f"{interface}.xml")).getroot()
            expected = members(spec, interface)
            self.assertTrue(expected, f"{interface}.xml describes nothing")
            self.assertEqual(members(live, interface), expected, f"{name} {path} {interface}")

    @staticmethod
    def peer_path(peer):
        """The object path of a peer, escaped as sd_bus_path_encode() does: letters stay, and so do
        digits after the first character; everything else becomes _XX."""
        label = "".join(c if (c.isascii() and c.isalpha()) or (i > 0 and c.isascii() and c.isdigit())
                        else "_%02x" % ord(c) for i, c in enumerate(peer))
        return NODE_PATH + "/peer/" + label

    # -- tests --

    def test_names_introspection_and_status(self):
        hub = self.start_hub("1st-hub.a")
        name = bus_name("Hub", "1st-hub.a")
        self.assertEqual(name, "org.dske.Hub._1st-hub_a")
        self.wait_for_name(name)

        _, out, _ = self.busctl("introspect", name, NODE_PATH)
        for interface in ("org.dske.Node1", "org.dske.Hub1"):
            self.assertIn(interface, out)
        self.assertIntrospectionMatches(name, NODE_PATH, ["org.dske.Node1", "org.dske.Hub1"])

        self.assertEqual(self.get(name, NODE_PATH, "org.dske.Node1", "Name"), "1st-hub.a")
        self.assertEqual(self.get(name, NODE_PATH, "org.dske.Node1", "Role"), "hub")
        self.assertEqual(self.get(name, NODE_PATH, "org.dske.Node1", "State"), "running")
        self.assertEqual(self.get(name, NODE_PATH, "org.dske.Node1", "ListenAddress"),
                         f"{dske_test.LOCALHOST}:{hub.port}")
        http = hub.status()
        self.assertIs(http["bus"], True)
        self.assertEqual(self.get(name, NODE_PATH, "org.dske.Node1", "Version"), http["version"])
        self.assertEqual(self.status_over_bus(name), http)

    def test_key_exchange_figures(self):
        clients = {"alpha": ["sam"], "bravo": ["sofia"]}
        self.start_topology(hubs=["h1", "h2", "h3"], clients=clients, client_config="[Keys]\nSharesRequired=2\n")
        for h in self.hubs:
            self.wait_for_name(bus_name("Hub", h))
        for c in clients:
            self.wait_for_name(bus_name("Client", c))

        alpha, bravo = self.clients["alpha"], self.clients["bravo"]
        self.key_pair(alpha, "sam", bravo, "sofia", number=3)

        # Clients.
        for c in (alpha, bravo):
            name = bus_name("Client", c.name)
            self.assertIntrospectionMatches(name, NODE_PATH, ["org.dske.Node1", "org.dske.Client1"])
            s = c.status()
            props = self.get_all(name, NODE_PATH, "org.dske.Client1")
            self.assertEqual(props["SharesRequired"], 2)
            self.assertEqual(props["HubCount"], 3)
            self.assertEqual(props["HubsReady"], s["hubs_ready"])
            self.assertEqual(props["Ready"], s["ready"])
            self.assertEqual(props["KeysScattered"], s["keys"]["scattered"])
            self.assertEqual(props["KeysGathered"], s["keys"]["gathered"])
            self.assertEqual(self.status_over_bus(name)["keys"], s["keys"])

            _, tree, _ = self.busctl("tree", "--list", name)
            for h in s["peer_hubs"]:
                path = self.peer_path(h["hub_name"])
                self.assertIn(path, tree.split())
                self.assertIntrospectionMatches(name, path, ["org.dske.Peer1"])
                p = self.get_all(name, path, "org.dske.Peer1")
                self.assertEqual(p["Name"], h["hub_name"])
                self.assertIs(p["Registered"], True)
                self.assertEqual(p["State"], "ready")
                self.assertEqual(p["SharesRelayed"], h["shares_sent"] + h["shares_received"])
                self.assertEqual(p["LastError"], h["last_error"] or "")
                for prefix, pool in (("Local", h["local_pool"]), ("Peer", h["peer_pool"])):
                    self.assertEqual(p[prefix + "PoolBlocks"], len(pool["blocks"]))
                    self.assertEqual(p[prefix + "PoolTotalBytes"], pool["total_bytes"])
                    self.assertEqual(p[prefix + "PoolUsedBytes"], pool["used_bytes"])
                    self.assertEqual(p[prefix + "PoolAvailableBytes"], pool["available_bytes"])
        self.assertEqual(self.get_all(bus_name("Client", "alpha"), NODE_PATH, "org.dske.Client1")["KeysScattered"],
                         3)
        self.assertEqual(self.get_all(bus_name("Client", "bravo"), NODE_PATH, "org.dske.Client1")["KeysGathered"],
                         3)

        # Hubs: two of the three carried a share of each key, so the totals are known.
        delivered = 0
        for h, hub in self.hubs.items():
            name = bus_name("Hub", h)
            self.assertIntrospectionMatches(name, NODE_PATH, ["org.dske.Node1", "org.dske.Hub1"])
            s = hub.status()
            props = self.get_all(name, NODE_PATH, "org.dske.Hub1")
            self.assertEqual(props["ClientCount"], 2)
            self.assertEqual(props["ClientCount"], len(s["peer_clients"]))
            self.assertEqual(props["SharesStored"], len(s["shares"]))
            self.assertEqual(props["SharesDelivered"], s["nr_shares_delivered"])
            self.assertEqual(props["SharesExpired"], s["nr_shares_expired"])
            delivered += props["SharesDelivered"]

            _, tree, _ = self.busctl("tree", "--list", name)
            for c in s["peer_clients"]:
                path = self.peer_path(c["client_name"])
                self.assertIn(path, tree.split())
                self.assertIntrospectionMatches(name, path, ["org.dske.Peer1"])
                p = self.get_all(name, path, "org.dske.Peer1")
                self.assertEqual(p["Name"], c["client_name"])
                self.assertIs(p["Registered"], True)
                self.assertEqual(p["State"], "registered")
                self.assertEqual(p["LastError"], "")
                for prefix, pool in (("Local", c["local_pool"]), ("Peer", c["peer_pool"])):
                    total = sum(b["size"] for b in pool["blocks"])
                    used = sum(b["nr_used_bytes"] for b in pool["blocks"])
                    self.assertEqual(p[prefix + "PoolBlocks"], len(pool["blocks"]))
                    self.assertEqual(p[prefix + "PoolTotalBytes"], total)
                    self.assertEqual(p[prefix + "PoolUsedBytes"], used)
                    self.assertEqual(p[prefix + "PoolAvailableBytes"], total - used)
            # Only alpha posted shares: every share the hub has seen is one of alpha's.
            relayed = self.get(name, self.peer_path("alpha"), "org.dske.Peer1", "SharesRelayed")
            self.assertEqual(relayed, props["SharesDelivered"] + props["SharesStored"] + props["SharesExpired"])
            self.assertEqual(self.get(name, self.peer_path("bravo"), "org.dske.Peer1", "SharesRelayed"), 0)
        self.assertGreaterEqual(delivered, 3 * 2)

        # A client that unregisters leaves the hubs' trees.
        path = self.peer_path("bravo")
        r = self.hubs["h1"].request("DELETE", "dske/oob/v1/registration", query="client_name=bravo")
        self.assertEqual(r.status, 200, r.body)
        _, tree, _ = self.busctl("tree", "--list", bus_name("Hub", "h1"))
        self.assertNotIn(path, tree.split())
        self.assertEqual(self.get(bus_name("Hub", "h1"), NODE_PATH, "org.dske.Hub1", "ClientCount"), 1)

        # k changes on reload, and says so.
        name = bus_name("Client", "alpha")
        mon = Monitor(self, name)
        with open(alpha.daemon.argv[alpha.daemon.argv.index("--config") + 1]) as f:
            config = f.read()
        alpha.daemon.reload(config.replace("SharesRequired=2", "SharesRequired=3"))
        self.assertEqual(self.get(name, NODE_PATH, "org.dske.Client1", "SharesRequired"), 3)
        time.sleep(0.2)
        changed = [m["payload"]["data"] for m in mon.signals("PropertiesChanged")]
        self.assertIn(["org.dske.Client1", {"SharesRequired": {"type": "u", "data": 3}}, []], changed)

    def test_policy(self):
        hub = self.start_hub("hpol")
        name = bus_name("Hub", "hpol")
        self.wait_for_name(name)

        # Anyone reads.
        self.assertEqual(self.get(name, NODE_PATH, "org.dske.Node1", "Name", user="nobody"), "hpol")
        _, out, _ = self.busctl("introspect", name, NODE_PATH, user="nobody")
        self.assertIn("org.dske.Node1", out)
        self.assertEqual(self.status_over_bus(name, user="nobody")["name"], "hpol")

        # Only root stops.
        code, _, err = self.busctl("call", name, NODE_PATH, "org.dske.Node1", "Stop", user="nobody", check=False)
        self.assertNotEqual(code, 0)
        self.assertRegex(err, r"(?i)access denied|AccessDenied")
        self.assertTrue(hub.daemon.alive())
        self.assertEqual(hub.status()["ready"], True)

        # Nor may anyone else own the names.
        code, _, err = self.busctl("call", "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                                   "RequestName", "su", "org.dske.Hub.intruder", "0", user="nobody",
                                   check=False)
        self.assertNotEqual(code, 0)
        self.assertRegex(err, r"(?i)not allowed|denied")

        # A connection in progress keeps the hub in its grace period, stopping but still on the bus.
        conn = socket.create_connection((dske_test.LOCALHOST, hub.port))
        self.addCleanup(conn.close)
        conn.sendall(b"GET /hub/hpol/mgmt/v1/status HTTP/1.1\r\n")
        time.sleep(0.2)
        self.busctl("call", name, NODE_PATH, "org.dske.Node1", "Stop")
        self.assertEqual(self.get(name, NODE_PATH, "org.dske.Node1", "State"), "stopping")
        code, _, err = self.busctl("call", name, NODE_PATH, "org.dske.Node1", "Stop", check=False)
        self.assertNotEqual(code, 0)
        self.assertIn("already stopping", err)
        conn.sendall(b"Host: x\r\n\r\n")
        conn.close()
        self.assertEqual(hub.daemon.wait(timeout=30), 0, hub.daemon.log())
        self.assertIn("stop requested over D-Bus", hub.daemon.log())

    def test_state_changes_signalled(self):
        hub = self.start_hub("hsig")
        name = bus_name("Hub", "hsig")
        self.wait_for_name(name)
        mon = Monitor(self, name)

        peer = dske_test.HubPeer(dske_test.LOCALHOST, hub.port, "hsig", "carl", ["sx"])
        peer.register()
        peer.unregister()
        self.busctl("call", name, NODE_PATH, "org.dske.Node1", "Stop")
        self.assertEqual(hub.daemon.wait(timeout=30), 0, hub.daemon.log())
        time.sleep(0.2)

        added = mon.signals("InterfacesAdded")
        removed = mon.signals("InterfacesRemoved")
        self.assertEqual([m["payload"]["data"][0] for m in added], [self.peer_path("carl")])
        self.assertIn("org.dske.Peer1", added[0]["payload"]["data"][1])
        self.assertEqual([m["payload"]["data"][0] for m in removed], [self.peer_path("carl")])
        changed = [m["payload"]["data"] for m in mon.signals("PropertiesChanged")]
        self.assertIn(["org.dske.Node1", {"State": {"type": "s", "data": "stopping"}}, []], changed)

    def test_pool_low(self):
        # HighWater=LowWater: every refill starts at LowWater, so each one follows a crossing.
        config = ("[PSRD]\nBlockSize=4K\nLowWater=2K\nHighWater=2K\n"
                  "[Keys]\nSharesRequired=2\nMaxKeysPerRequest=4\nMaxKeySize=256\nDefaultKeySize=256\n")
        hubs = ["p1", "p2", "p3"]
        self.start_topology(hubs=hubs, clients={"carol": ["sam"], "connie": ["sofia"]}, client_config=config)
        carol, connie = self.clients["carol"], self.clients["connie"]
        name = bus_name("Client", "carol")
        self.wait_for_name(name)
        fetched = {h["hub_name"]: h["blocks_fetched"] for h in carol.status()["peer_hubs"]}
        mon = Monitor(self, name)
        self.assertEqual(mon.signals("PoolLow"), [])

        # 64 bytes of the local pool per key and hub: 160 keys take it under 2K at least once.
        for _ in range(40):
            self.key_pair(carol, "sam", connie, "sofia", number=4, post=True)
        carol.wait_ready()
        time.sleep(0.2)

        low = [m["payload"]["data"] for m in mon.signals("PoolLow")]
        s = {h["hub_name"]: h for h in carol.status()["peer_hubs"]}
        self.assertTrue(low)
        for peer, pool, available, threshold in low:
            self.assertIn(peer, hubs)
            self.assertIn(pool, ("local", "peer"))
            self.assertEqual(threshold, 2048)
            self.assertLess(available, threshold)
        for h in hubs:
            self.assertIn([h, "local"], [m[:2] for m in low])
            # Once per crossing: every crossing started a refill, and one is not counted per key.
            n = sum(1 for m in low if m[0] == h)
            self.assertLessEqual(n, s[h]["blocks_fetched"] - fetched[h], low)

    def test_bus_goes_away(self):
        bus = PrivateBus()
        self.addCleanup(bus.close)
        env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=bus.address)
        hub = self.start_hub("hgone", env=env)
        deadline = time.monotonic() + 10
        while True:
            code, out, err = dske_test.run_program(["busctl", "--system", "--json=short", "call",
                                                    "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                                    "org.freedesktop.DBus", "NameHasOwner", "s", "org.dske.Hub.hgone"],
                                                   env=env)
            self.assertEqual(code, 0, err)
            if json.loads(out)["data"][0]:
                break
            self.assertLess(time.monotonic(), deadline, hub.daemon.log())
            time.sleep(0.05)
        self.assertIs(hub.status()["bus"], True)

        bus.proc.terminate()
        bus.proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while hub.status()["bus"] is True:
            self.assertLess(time.monotonic(), deadline, hub.daemon.log())
            time.sleep(0.05)
        self.assertIn("disconnected", hub.status()["bus"])
        self.assertTrue(hub.daemon.wait_for_log(r"<4>Disconnected from the system bus"))

    def test_client_signals_and_stop(self):
        # The second hub comes up after the client: its registration is then seen on the bus.
        port_b = dske_test.free_port()
        self.hubs = {"sa": self.start_hub("sa")}
        c = self.start_client("cstop", [self.hub_url("sa"), self.hub_url("sb", port_b)], ["sid"],
                              config="[Keys]\nSharesRequired=2\n", wait_ready=False)
        name = bus_name("Client", "cstop")
        self.wait_for_name(name)
        deadline = time.monotonic() + 30
        while c.hub_status("sa")["state"] != "ready":
            self.assertLess(time.monotonic(), deadline, c.daemon.log())
            time.sleep(0.05)
        self.assertIs(self.get(name, NODE_PATH, "org.dske.Client1", "Ready"), False)
        self.assertIs(self.get(name, self.peer_path("sb"), "org.dske.Peer1", "Registered"), False)
        mon = Monitor(self, name)
        self.hubs["sb"] = self.start_hub("sb", port=port_b)
        c.wait_ready()
        time.sleep(0.2)

        changed = [(m["path"], m["payload"]["data"]) for m in mon.signals("PropertiesChanged")]
        states = [d[1]["State"]["data"] for path, d in changed
                  if path == self.peer_path("sb") and d[0] == "org.dske.Peer1"]
        self.assertEqual(states[-1], "ready", changed)
        self.assertIn(["org.dske.Client1", {"HubsReady": {"type": "u", "data": 2}, "Ready": {"type": "b", "data": True}},
                       []], [d for path, d in changed if path == NODE_PATH])
        self.assertFalse([d for path, d in changed if path == self.peer_path("sa")])
        self.assertIs(self.get(name, self.peer_path("sb"), "org.dske.Peer1", "Registered"), True)
        self.assertEqual(self.get(name, NODE_PATH, "org.dske.Node1", "Role"), "client")
        code, _, err = self.busctl("call", name, NODE_PATH, "org.dske.Node1", "Stop", user="nobody", check=False)
        self.assertNotEqual(code, 0)
        self.assertRegex(err, r"(?i)access denied|AccessDenied")
        self.busctl("call", name, NODE_PATH, "org.dske.Node1", "Stop")
        self.assertEqual(c.daemon.wait(timeout=30), 0, c.daemon.log())

    def test_without_bus(self):
        env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS="unix:path=" + os.path.join(self.tmpdir(), "nothing"))
        hub = self.start_hub("hnobus", env=env)
        s = hub.status()
        self.assertIsInstance(s["bus"], str)
        self.assertIn("system bus", s["bus"])
        self.assertEqual(len(re.findall(r"(?m)^<4>.*without D-Bus", hub.daemon.log())), 1, hub.daemon.log())
        _, out, _ = self.busctl("list")
        self.assertNotIn("hnobus", out)

        # The second hub need not exist: the client runs, it just cannot be ready.
        port = dske_test.free_port()
        config = os.path.join(self.tmpdir(), "cnobus.conf")
        with open(config, "w") as f:
            f.write("[Keys]\nSharesRequired=2\n")
        d = self.start_daemon([dske_test.program("DSKE_CLIENT"), "cnobus", "--port", str(port), "--config", config,
                               "--hubs", f"http://{dske_test.LOCALHOST}:{hub.port}/hub/hnobus",
                               f"http://{dske_test.LOCALHOST}:{dske_test.free_port()}/hub/hgone",
                               "--encryptors", "sx"], env=env, name="client-cnobus")
        c = _test_client.Client(d, "cnobus", port, ["sx"])
        self.assertIn("system bus", c.status()["bus"])


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1] + sys.argv[1:], verbosity=2)
