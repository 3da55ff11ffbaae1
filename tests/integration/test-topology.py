#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""dskectl's local topology runner: up, status, get-key-pair, decommission, bench, down, and the
errors a user meets (a file with a mistake, a port in use, a topology already up, a node that
fails to start).

Environment: DSKECTL (the dskectl binary; it finds dske-hub and dske-client next to itself in the
build tree)."""

import json
import os
import re
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import dske_test  # noqa: E402

SANITIZER_REPORT = re.compile(r"ERROR: (Address|Leak)Sanitizer|runtime error:|SUMMARY: \w+Sanitizer")

SMALL_TOPOLOGY = """\
# SPDX-License-Identifier: MIT
[Topology]
Address=127.0.0.1
SharesRequired=2

[Hub h1]
[Hub h2]
[Hub h3]

[Client alpha]
Encryptors=sam

[Client bravo]
Encryptors=sofia
"""

SMALL_NODES = [("hub", "h1"), ("hub", "h2"), ("hub", "h3"), ("client", "alpha"), ("client", "bravo")]


def free_port_range(n, host=dske_test.LOCALHOST):
    """The first of n consecutive TCP ports on host that were all free a moment ago."""
    return dske_test.free_port(host, n)


def process_alive(pid):
    """Whether pid runs (a zombie waiting for its parent does not count)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


class TopologyTestCase(dske_test.DaemonTestCase):
    def setUp(self):
        self.dskectl = dske_test.program("DSKECTL")
        self.dir = self.tmpdir()
        self.run_dir = os.path.join(self.dir, "run")

    def write_topology(self, text, name="topo.ini"):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def ctl(self, *args, timeout=120.0):
        return dske_test.run_program([self.dskectl, *args], timeout=timeout)

    def ctl_ok(self, *args, timeout=120.0):
        code, out, err = self.ctl(*args, timeout=timeout)
        self.assertEqual(code, 0, f"dskectl {' '.join(args)} failed ({code}):\n{out}\n{err}")
        return out

    def state(self):
        with open(os.path.join(self.run_dir, "state")) as f:
            return json.load(f)

    def up(self, path, base):
        self.addCleanup(self.down_quietly, path)
        return self.ctl_ok("topology", "up", path, "--run-dir", self.run_dir, "--base-port", str(base))

    def down_quietly(self, path):
        self.ctl("topology", "down", path, "--run-dir", self.run_dir)
        self.check_logs()

    def check_logs(self):
        """A sanitizer report in a node's log fails the test (the nodes are not our children, so
        their exit status is not ours to see)."""
        if not os.path.isdir(self.run_dir):
            return
        for name in sorted(os.listdir(self.run_dir)):
            if not name.endswith(".log"):
                continue
            with open(os.path.join(self.run_dir, name), errors="replace") as f:
                text = f.read()
            if SANITIZER_REPORT.search(text):
                self.fail(f"sanitizer report in {name}:\n{text}")


class TestTopologyLifecycle(TopologyTestCase):
    def test_up_status_key_pair_down(self):
        path = self.write_topology(SMALL_TOPOLOGY)
        base = free_port_range(len(SMALL_NODES))
        out = self.up(path, base)

        # Ports in node order: hubs, then clients, each by name.
        for i, (kind, name) in enumerate(SMALL_NODES):
            self.assertRegex(out, rf"(?m)^{kind}\s+{name}\s+{base + i}\s+\d+\s+http://127\.0\.0\.1:{base + i}/"
                                  rf"{kind}/{name}")
        pids = {(n["type"], n["name"]): n["pid"] for n in self.state()["nodes"]}
        self.assertEqual(sorted(pids), sorted(SMALL_NODES))
        for pid in pids.values():
            self.assertTrue(process_alive(pid))
            # The policy the units give the daemons.
            self.assertEqual(os.sched_getscheduler(pid), os.SCHED_BATCH)

        out = self.ctl_ok("topology", "status", path, "--run-dir", self.run_dir)
        for i, (kind, name) in enumerate(SMALL_NODES):
            self.assertRegex(out, rf"(?m)^{kind}\s+{name}\s+{base + i}\s+{pids[(kind, name)]}\s+running\s+yes$")

        status = json.loads(self.ctl_ok("--json", "topology", "status", path, "--run-dir", self.run_dir))
        self.assertEqual(len(status), len(SMALL_NODES))
        self.assertTrue(all(n["running"] and n["ready"] for n in status))

        # Text output: both key IDs and keys, then the verdict.
        out = self.ctl_ok("get-key-pair", "sam", "sofia", "--topology", path, "--run-dir", self.run_dir,
                          "--size", "256")
        self.assertIn("Key values match", out)
        ids = re.findall(r"(?m)^  key_ID: (\S+)$", out)
        keys = re.findall(r"(?m)^  key: (\S+)$", out)
        self.assertEqual(len(ids), 2)
        self.assertEqual(ids[0], ids[1])
        self.assertEqual(len(keys), 2)
        self.assertEqual(keys[0], keys[1])
        self.assertEqual(len(dske_test.base64.b64decode(keys[0], validate=True)), 32)

        # The running topology is found without --topology, through its run directory.
        pair = json.loads(self.ctl_ok("--json", "get-key-pair", "sofia", "sam", "--run-dir", self.run_dir))
        self.assertTrue(pair["match"])
        self.assertEqual(pair["master_KME_ID"], "bravo")
        self.assertEqual(pair["slave_KME_ID"], "alpha")

        # An unknown SAE is a clear error.
        code, _, err = self.ctl("get-key-pair", "sam", "nobody", "--topology", path, "--run-dir", self.run_dir)
        self.assertEqual(code, 1)
        self.assertIn("nobody", err)

        # A node's status over the management routes, by name and by URL.
        out = self.ctl_ok("status", "alpha", "--topology", path, "--run-dir", self.run_dir)
        self.assertIn("Client alpha: ready", out)
        self.assertEqual(out.count("registered"), 3)
        hub_status = json.loads(self.ctl_ok("--json", "status", "--http", f"http://127.0.0.1:{base}/hub/h1"))
        self.assertEqual(hub_status["name"], "h1")

        # A second "up" refuses and leaves the running nodes alone.
        code, out, err = self.ctl("topology", "up", path, "--run-dir", self.run_dir, "--base-port", str(base))
        self.assertEqual(code, 1)
        self.assertIn("already up", err)
        for pid in pids.values():
            self.assertTrue(process_alive(pid))
            # The policy the units give the daemons.
            self.assertEqual(os.sched_getscheduler(pid), os.SCHED_BATCH)

        code, out, err = self.ctl("topology", "down", path, "--run-dir", self.run_dir)
        self.assertEqual(code, 0, err)
        # Every node stops gracefully on SIGTERM, clients before hubs.
        self.assertNotIn("did not stop", err)
        order = re.findall(r"(?m)^Stopping (hub|client) (\S+)", out)
        self.assertEqual(order, [("client", "bravo"), ("client", "alpha"), ("hub", "h3"), ("hub", "h2"),
                                 ("hub", "h1")])
        deadline = time.monotonic() + 10
        while any(process_alive(p) for p in pids.values()) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertFalse([p for p in pids.values() if process_alive(p)])
        self.assertFalse(os.path.exists(os.path.join(self.run_dir, "state")))
        self.check_logs()

        # Down twice is fine; status now shows every node stopped and exits 3.
        out = self.ctl_ok("topology", "down", path, "--run-dir", self.run_dir)
        self.assertIn("not up", out)
        code, out, _ = self.ctl("topology", "status", path, "--run-dir", self.run_dir)
        self.assertEqual(code, 3)
        self.assertEqual(len(re.findall(r"(?m)\s-\s+stopped\s+-$", out)), len(SMALL_NODES))

        # And it comes up again afterwards, with fresh state.
        self.up(path, base)
        self.assertIn("Key values match",
                      self.ctl_ok("get-key-pair", "sam", "sofia", "--topology", path, "--run-dir", self.run_dir))

    def test_bench_and_decommission(self):
        path = self.write_topology(SMALL_TOPOLOGY.replace("[Topology]", "[Topology]\nCPUSchedulingPolicy=other"))
        base = free_port_range(len(SMALL_NODES))
        self.up(path, base)
        for n in self.state()["nodes"]:
            self.assertEqual(os.sched_getscheduler(n["pid"]), os.SCHED_OTHER)

        out = self.ctl_ok("bench", path, "--run-dir", self.run_dir, "--pairs", "200", "--concurrency", "8",
                          "--size", "256")
        self.assertRegex(out, r"Key pairs completed:\s+200\b")
        self.assertRegex(out, r"Errors:\s+0 ")
        self.assertRegex(out, r"p50 [\d.]+\s+p90 [\d.]+\s+p99 [\d.]+\s+max [\d.]+")
        # 3 hubs, 32-byte keys: 3 x (2 x 32 + 128) bytes of PSRD per key on the two clients.
        m = re.search(r"PSRD used per key:\s+([\d.]+) bytes", out)
        self.assertIsNotNone(m, out)
        self.assertAlmostEqual(float(m.group(1)), 3 * (2 * 32 + 128), delta=1)

        result = json.loads(self.ctl_ok("--json", "bench", path, "--run-dir", self.run_dir, "--pairs", "40",
                                        "--concurrency", "4", "--number", "2", "--master", "sofia",
                                        "--slave", "sam"))
        self.assertEqual(result["key_pairs"], 80)
        self.assertEqual(result["errors"], 0)
        self.assertEqual(result["master_KME_ID"], "bravo")

        # Decommissioning a client unregisters it from every hub and stops it.
        pid = next(n["pid"] for n in self.state()["nodes"] if n["name"] == "bravo")
        out = self.ctl_ok("decommission", "bravo", "--topology", path, "--run-dir", self.run_dir)
        self.assertIn(f"client bravo (pid {pid}) has exited", out)
        deadline = time.monotonic() + 10
        while process_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertFalse(process_alive(pid))
        for i in range(3):
            hub = json.loads(self.ctl_ok("--json", "status", f"http://127.0.0.1:{base + i}/hub/h{i + 1}"))
            self.assertEqual([c["client_name"] for c in hub["peer_clients"]], ["alpha"])
        code, out, _ = self.ctl("topology", "status", path, "--run-dir", self.run_dir)
        self.assertEqual(code, 3)
        self.assertRegex(out, r"(?m)^client\s+bravo\s+\d+\s+-\s+stopped")


class TestTopologyErrors(TopologyTestCase):
    def assert_up_fails(self, path, base, *messages):
        code, out, err = self.ctl("topology", "up", path, "--run-dir", self.run_dir, "--base-port", str(base))
        self.assertEqual(code, 1, f"up succeeded:\n{out}\n{err}")
        for m in messages:
            self.assertIn(m, err)
        self.assertFalse(os.path.exists(os.path.join(self.run_dir, "state")))
        return err

    def test_file_errors_name_file_and_line(self):
        cases = [
            ("[Topology]\nBasePort=8100\nColour=blue\n[Hub h1]\n", 3, "Unknown key Colour="),
            ("[Hub h1]\n[Hub h2]\n[Hub h1]\n", 3, "Duplicate hub \"h1\" (already defined on line 1)"),
            ("[Hub h1]\n[Client a]\nEncryptors=sam\n[Client b]\nEncryptors=sam\n", 5,
             "SAE ID \"sam\" of client b is already used by client a"),
            ("[Hub h1]\n\n[Router r1]\n", 3, "Unknown section [Router]"),
            ("[Hub h1]\n[Client bad/name]\n", 2, "Invalid client name"),
            ("[Topology]\nBasePort=99999\n[Hub h1]\n", 2, "BasePort"),
            ("[Hub h1]\nEncryptors=sam\n", 2, "Encryptors= is only valid for clients"),
            ("[Hub h1]\nthis line is wrong\n", 2, "Syntax error"),
            ("[Topology]\nCPUSchedulingPolicy=fifo\n[Hub h1]\n", 2, "CPUSchedulingPolicy= must be batch or other"),
        ]
        for text, line, message in cases:
            with self.subTest(message=message):
                path = self.write_topology(text)
                code, out, err = self.ctl("topology", "up", path, "--run-dir", self.run_dir)
                self.assertEqual(code, 1, out + err)
                self.assertIn(f"{path}:{line}:", err)
                self.assertIn(message, err)

    def test_port_in_use(self):
        path = self.write_topology(SMALL_TOPOLOGY)
        base = free_port_range(len(SMALL_NODES))
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", base + 1))
            s.listen()
            self.assert_up_fails(path, base, f"Port {base + 1} on 127.0.0.1 (for hub h2) is already in use")

    def test_node_that_fails_stops_the_others(self):
        bad = self.write_topology("[Keys]\nNoSuchSetting=1\n", name="bad-client.conf")
        path = self.write_topology(SMALL_TOPOLOGY.replace("[Client bravo]", f"[Client bravo]\nConfig={bad}"))
        base = free_port_range(len(SMALL_NODES))
        self.assert_up_fails(path, base, "client bravo", "before the topology was ready", "NoSuchSetting")
        # Whatever had started was stopped again: every port is free.
        self.assert_ports_free(base, len(SMALL_NODES))
        self.check_logs()

    def test_ready_timeout_names_the_node(self):
        # Hub h1 refuses registrations, so no client can become ready.
        closed = self.write_topology("[Hub]\nOutOfBandAPI=no\n", name="closed-hub.conf")
        path = self.write_topology(SMALL_TOPOLOGY.replace("SharesRequired=2", "SharesRequired=2\nReadyTimeoutSec=3")
                                   .replace("[Hub h1]", f"[Hub h1]\nConfig={closed}"))
        base = free_port_range(len(SMALL_NODES))
        err = self.assert_up_fails(path, base, "did not become ready within 3.0 s", "client alpha is not ready",
                                   "client bravo is not ready")
        self.assertRegex(err, r"client alpha is not ready: not registered with h1\b")
        self.assert_ports_free(base, len(SMALL_NODES))
        self.check_logs()

    def assert_ports_free(self, base, n):
        for p in range(base, base + n):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("127.0.0.1", p))

if __name__ == "__main__":
    unittest.main(verbosity=2)
