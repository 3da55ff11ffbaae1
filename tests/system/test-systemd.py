# SPDX-License-Identifier: MIT
"""dske as a system service under a real systemd: a minimal Debian 12 root, booted with systemd-nspawn,
with the build installed into it. Inside it three hubs and two clients run from the installed units;
they reach "active", own their names on the system bus, deliver a key pair through ETSI GS QKD 014,
survive a reload, stop cleanly and log to the journal with their priorities.

Usage: test-systemd.py --source DIR --build DIR

The root is built once with mmdebstrap from the Debian mirror and cached in
$DSKE_TEST_CACHE (default /var/cache/dske-test); each run boots a fresh copy of it. The tree
installed into it is built, with prefix /usr, in DIR/system-root-build. Needs root,
systemd-nspawn and mmdebstrap; exits with 77 (skipped) without them.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import unittest

from dske_container import (CLIENTS, HUBS, Container, ContainerTestCase, copy_rootfs, log, missing_requirement, run,
                            write_configs)

ARGS = None


def build_and_install(destdir):
    builddir = os.path.join(ARGS.build, "system-root-build")
    if not os.path.exists(os.path.join(builddir, "build.ninja")):
        run(["meson", "setup", builddir, ARGS.source, "--prefix=/usr", "--sysconfdir=/etc",
             "--localstatedir=/var", "-Dtests=false", "-Ddocs=false"], stdout=subprocess.DEVNULL)
    run(["ninja", "-C", builddir], stdout=subprocess.DEVNULL)
    env = dict(os.environ, DESTDIR=destdir)
    run(["meson", "install", "-C", builddir, "--no-rebuild", "--quiet"], env=env, stdout=subprocess.DEVNULL)


class SystemdTests(ContainerTestCase):
    @classmethod
    def setUpClass(cls):
        started = time.monotonic()
        cls.workdir = tempfile.mkdtemp(prefix="dske-system-", dir="/var/tmp")
        try:
            root = os.path.join(cls.workdir, "root")
            copy_rootfs(root)
            build_and_install(root)
            write_configs(root)
            log(f"root ready in {time.monotonic() - started:.0f} s")
            cls.container = Container(root, os.path.join(cls.workdir, "console.log"))
            cls.container.boot()
            cls.container.run("systemctl", "start", *[f"dske-hub@{h}" for h in HUBS],
                              *[f"dske-client@{c}" for c in CLIENTS])
        except BaseException:
            cls.tearDownClass()
            raise

    # -- helpers --

    def show(self, unit, *props):
        return self.container.show(unit, *props)

    def units_log(self, unit):
        return self.container.unit_log(unit)

    def curl(self, port, path, sae):
        return self.container.curl(port, path, sae)

    def etsi_retry(self, port, path, sae, timeout=60):
        try:
            return self.container.etsi(port, path, sae, timeout)
        except AssertionError as e:
            self.fail(str(e))

    # -- tests, in name order --

    def test_1_units_active(self):
        for unit in [f"dske-hub@{h}.service" for h in HUBS] + [f"dske-client@{c}.service" for c in CLIENTS]:
            p = self.show(unit, "ActiveState", "SubState", "User", "BusName", "StatusText", "MainPID")
            self.assertEqual((p["ActiveState"], p["SubState"]), ("active", "running"),
                             f"{unit}: {p}\n{self.units_log(unit)}")
            self.assertEqual(p["User"], "dske")
            # The units' CPUSchedulingPolicy=batch, as the process has it.
            self.assertIn("SCHED_BATCH", self.sh("chrt", "-p", p["MainPID"]).stdout, unit)
            name = unit.split("@")[1].removesuffix(".service")
            role = "Hub" if unit.startswith("dske-hub") else "Client"
            self.assertEqual(p["BusName"], f"org.dske.{role}.{name}")
            self.assertTrue(p["StatusText"], unit)

    def test_2_bus(self):
        for name, interfaces in ((f"org.dske.Hub.{h}", ("org.dske.Node1", "org.dske.Hub1")) for h in HUBS):
            self.assertBusInterfaces(name, interfaces)
        for c in CLIENTS:
            self.assertBusInterfaces(f"org.dske.Client.{c}", ("org.dske.Node1", "org.dske.Client1"))

    def assertBusInterfaces(self, name, interfaces):
        deadline = time.monotonic() + 30
        while True:
            r = self.sh("busctl", "--system", "introspect", "--no-pager", name, "/org/dske/Node",
                        check=False)
            if r.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        self.assertEqual(r.returncode, 0, r.stderr)
        for i in interfaces:
            self.assertIn(i, r.stdout)
        # Names the units' BusName= gives: systemd sees them owned.
        r = self.sh("busctl", "--system", "status", "--no-pager", name)
        self.assertIn("dske", r.stdout)

    def test_3_key_delivery(self):
        alice_port, alice_sae = CLIENTS["alice"]
        bob_port, bob_sae = CLIENTS["bob"]
        enc = self.etsi_retry(alice_port, f"/api/v1/keys/{bob_sae}/enc_keys?size=256", alice_sae)
        self.assertEqual(len(enc["keys"]), 1, enc)
        key = enc["keys"][0]
        dec = self.etsi_retry(bob_port, f"/api/v1/keys/{alice_sae}/dec_keys?key_ID={key['key_ID']}", bob_sae)
        self.assertEqual(dec["keys"], [key])
        # Another SAE is refused the key.
        code, _ = self.curl(bob_port, f"/api/v1/keys/{alice_sae}/dec_keys?key_ID={key['key_ID']}", "sae-eve")
        self.assertIn(code, (400, 401, 403, 404))

    def test_4_reload(self):
        unit = "dske-hub@h1.service"
        before = self.show(unit, "MainPID", "NRestarts")
        self.sh("systemctl", "reload", unit)
        after = self.show(unit, "ActiveState", "SubState", "MainPID", "NRestarts")
        self.assertEqual((after["ActiveState"], after["SubState"]), ("active", "running"), after)
        self.assertEqual((after["MainPID"], after["NRestarts"]), (before["MainPID"], before["NRestarts"]))
        # systemctl reload returns when the job is done: with Type=notify, when the daemon's
        # RELOADING=1 was followed by READY=1. The service manager logs both ends.
        out = self.sh("journalctl", "--no-pager", "-u", unit, "-o", "json").stdout
        messages = [json.loads(line).get("MESSAGE") for line in out.splitlines() if line.strip()]
        self.assertTrue(any(isinstance(m, str) and m.startswith("Reloading") for m in messages), messages)
        self.assertTrue(any(isinstance(m, str) and m.startswith("Reloaded") for m in messages), messages)

    def test_5_stop_and_journal(self):
        unit = "dske-client@alice.service"
        self.sh("systemctl", "stop", unit)
        p = self.show(unit, "ActiveState", "Result", "ExecMainStatus", "ExecMainCode")
        self.assertEqual(p["ActiveState"], "inactive", p)
        self.assertEqual(p["Result"], "success", p)
        self.assertEqual(p["ExecMainStatus"], "0", p)

        out = self.sh("journalctl", "--no-pager", "-u", unit, "-o", "json").stdout
        entries = [json.loads(line) for line in out.splitlines() if line.strip()]
        ours = [e for e in entries if e.get("_COMM") == "dske-client" and isinstance(e.get("MESSAGE"), str)]
        self.assertTrue(ours, entries[-10:])
        # The "<N>" prefixes on stderr became the entries' priorities, and left the messages.
        for e in ours:
            self.assertFalse(e["MESSAGE"].startswith("<"), e["MESSAGE"])
            self.assertIn(e["PRIORITY"], [str(n) for n in range(8)])
        infos = [e["MESSAGE"] for e in ours if e["PRIORITY"] == "6"]
        self.assertTrue(infos, [(e["PRIORITY"], e["MESSAGE"]) for e in ours])


def main():
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("--source", required=True)
    parser.add_argument("--build", required=True)
    ARGS, rest = parser.parse_known_args()
    why = missing_requirement()
    if why:
        print(f"skipped: {why}")
        sys.exit(77)
    started = time.monotonic()
    prog = unittest.main(argv=[sys.argv[0]] + rest, exit=False, verbosity=2)
    log(f"done in {time.monotonic() - started:.0f} s")
    sys.exit(0 if prog.result.wasSuccessful() else 1)


if __name__ == "__main__":
    main()
