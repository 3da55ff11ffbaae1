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
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

SUITE = "bookworm"
# What the daemons link, what the units need (a service manager, a system bus) and what the test
# runs inside (curl).
PACKAGES = sorted([
    "systemd-sysv", "dbus", "curl",
    "libmicrohttpd12", "libjson-c5", "libnettle8", "libgnutls30", "libcurl3-gnutls", "libuuid1",
    "libinih1", "libsystemd0",
])
HUBS = {"h1": 8101, "h2": 8102, "h3": 8103}
CLIENTS = {"alice": (8201, "sae-alice"), "bob": (8202, "sae-bob")}
INNER_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"

ARGS = None


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(argv, **kw):
    kw.setdefault("check", True)
    return subprocess.run(argv, **kw)


def cached_rootfs():
    """The directory of the cached root, built first when missing."""
    cache = os.environ.get("DSKE_TEST_CACHE", "/var/cache/dske-test")
    key = hashlib.sha256(" ".join([SUITE, "minbase"] + PACKAGES).encode()).hexdigest()[:16]
    root = os.path.join(cache, f"rootfs-{key}")
    if os.path.isdir(root):
        return root
    os.makedirs(cache, exist_ok=True)
    # Built beside its final place and renamed, so that an interrupted build is never reused.
    partial = tempfile.mkdtemp(prefix=".rootfs-", dir=cache)
    os.rmdir(partial)
    log(f"building {root} with mmdebstrap (once)")
    started = time.monotonic()
    try:
        run(["mmdebstrap", "--variant=minbase", "--include=" + ",".join(PACKAGES), SUITE, partial],
            stdout=subprocess.DEVNULL)
        os.rename(partial, root)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    log(f"root built in {time.monotonic() - started:.0f} s")
    return root


def build_and_install(destdir):
    builddir = os.path.join(ARGS.build, "system-root-build")
    if not os.path.exists(os.path.join(builddir, "build.ninja")):
        run(["meson", "setup", builddir, ARGS.source, "--prefix=/usr", "--sysconfdir=/etc",
             "--localstatedir=/var", "-Dtests=false", "-Ddocs=false"], stdout=subprocess.DEVNULL)
    run(["ninja", "-C", builddir], stdout=subprocess.DEVNULL)
    env = dict(os.environ, DESTDIR=destdir)
    run(["meson", "install", "-C", builddir, "--no-rebuild", "--quiet"], env=env, stdout=subprocess.DEVNULL)


def write(root, path, text, mode=0o644):
    full = os.path.join(root, path.lstrip("/"))
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(full, mode)


def write_configs(root):
    for name, port in HUBS.items():
        write(root, f"/etc/dske/hub/{name}.conf", f"[Hub]\nPort={port}\nOutOfBandAPI=yes\n")
    hubs = " ".join(f"http://127.0.0.1:{port}/hub/{name}" for name, port in HUBS.items())
    for name, (port, sae) in CLIENTS.items():
        others = " ".join(f"{s}:{n}" for n, (_, s) in CLIENTS.items() if n != name)
        write(root, f"/etc/dske/client/{name}.conf",
              f"[Client]\nPort={port}\nHubs={hubs}\nEncryptors={sae}\n"
              f"[Keys]\nSharesRequired=2\n[ETSI]\nSAE={others}\n")


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def container_init(nspawn_pid):
    """The host PID of the container's PID 1: the descendant of systemd-nspawn that is PID 1 in its
    own PID namespace."""
    pending = children(nspawn_pid)
    while pending:
        pid = pending.pop()
        try:
            with open(f"/proc/{pid}/status", encoding="ascii") as f:
                for line in f:
                    if line.startswith("NSpid:"):
                        ids = line.split()[1:]
                        if len(ids) >= 2 and ids[-1] == "1":
                            return pid
        except OSError:
            continue
        pending += children(pid)
    return None


class Container:
    def __init__(self, root, logpath):
        self.root = root
        self.logfile = open(logpath, "wb")
        self.logpath = logpath
        # A private network: the daemons' ports are the container's own, whatever runs on the host.
        self.proc = subprocess.Popen(
            ["systemd-nspawn", "--boot", "--register=no", "--keep-unit", "--private-network",
             "--console=read-only", "--quiet", "-D", root],
            stdin=subprocess.DEVNULL, stdout=self.logfile, stderr=subprocess.STDOUT)
        self.init = None
        deadline = time.monotonic() + 30
        while self.init is None:
            if self.proc.poll() is not None:
                raise AssertionError(f"systemd-nspawn exited with {self.proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"the container's PID 1 did not appear:\n{self.log()}")
            time.sleep(0.1)
            self.init = container_init(self.proc.pid)

    def log(self):
        with open(self.logpath, "rb") as f:
            return f.read().decode(errors="replace")[-4000:]

    def run(self, *argv, check=True, timeout=60):
        cmd = ["nsenter", "-t", str(self.init), "-a", "-r", "-w", "--",
               "/usr/bin/env", "-i", "PATH=" + INNER_PATH, "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0",
               "LANG=C.UTF-8",
               *argv]
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} exited with {r.returncode}:\n{r.stdout}\n{r.stderr}")
        return r

    def kill(self):
        # SIGKILL to the container's PID 1 ends its whole PID namespace; then nspawn exits.
        if self.init is not None:
            try:
                os.kill(self.init, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.logfile.close()


class SystemdTests(unittest.TestCase):
    container = None
    workdir = None

    @classmethod
    def setUpClass(cls):
        started = time.monotonic()
        base = cached_rootfs()
        cls.workdir = tempfile.mkdtemp(prefix="dske-system-", dir="/var/tmp")
        try:
            root = os.path.join(cls.workdir, "root")
            run(["cp", "-a", "--reflink=auto", base, root])
            build_and_install(root)
            write_configs(root)
            log(f"root ready in {time.monotonic() - started:.0f} s")
            cls.container = Container(root, os.path.join(cls.workdir, "console.log"))
            # Until PID 1 is systemd in the container's root and listens on its socket, nsenter or
            # systemctl fails ("offline").
            deadline = time.monotonic() + 120
            while True:
                r = cls.container.run("systemctl", "is-system-running", "--wait", check=False, timeout=120)
                if r.stdout.strip() in ("running", "degraded") or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            # "degraded" only says that some unit of the minimal system failed, which is not ours.
            if r.stdout.strip() not in ("running", "degraded"):
                state = f"{r.stdout.strip()!r} ({r.stderr.strip()})"
                raise AssertionError(f"the container's systemd is {state}:\n{cls.container.log()}")
            log(f"container booted in {time.monotonic() - started:.0f} s")
            cls.container.run("systemctl", "start", *[f"dske-hub@{h}" for h in HUBS],
                              *[f"dske-client@{c}" for c in CLIENTS])
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.container:
            cls.container.kill()
            cls.container = None
        if cls.workdir:
            shutil.rmtree(cls.workdir, ignore_errors=True)
            cls.workdir = None

    # -- helpers --

    def sh(self, *argv, **kw):
        return self.container.run(*argv, **kw)

    def show(self, unit, *props):
        out = self.sh("systemctl", "show", unit, *[f"-p{p}" for p in props]).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def units_log(self, unit):
        return self.sh("journalctl", "--no-pager", "-u", unit, "-o", "cat", check=False).stdout

    def curl(self, port, path, sae):
        r = self.sh("curl", "-sS", "-w", "\n%{http_code}", "-H", f"Authorization: {sae}",
                    f"http://127.0.0.1:{port}{path}", check=False)
        body, _, code = r.stdout.rpartition("\n")
        return (int(code) if code.isdigit() else 0), body

    def etsi_retry(self, port, path, sae, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            code, body = self.curl(port, path, sae)
            if code == 200:
                return json.loads(body)
            if time.monotonic() > deadline:
                self.fail(f"GET {path} on port {port}: {code} {body}")
            time.sleep(0.5)

    # -- tests, in name order --

    def test_1_units_active(self):
        for unit in [f"dske-hub@{h}.service" for h in HUBS] + [f"dske-client@{c}.service" for c in CLIENTS]:
            p = self.show(unit, "ActiveState", "SubState", "User", "BusName", "StatusText")
            self.assertEqual((p["ActiveState"], p["SubState"]), ("active", "running"),
                             f"{unit}: {p}\n{self.units_log(unit)}")
            self.assertEqual(p["User"], "dske")
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
    if os.geteuid() != 0:
        print("skipped: needs root")
        sys.exit(77)
    for tool in ("systemd-nspawn", "mmdebstrap", "nsenter"):
        if not shutil.which(tool):
            print(f"skipped: {tool} is not installed")
            sys.exit(77)
    started = time.monotonic()
    prog = unittest.main(argv=[sys.argv[0]] + rest, exit=False, verbosity=2)
    log(f"done in {time.monotonic() - started:.0f} s")
    sys.exit(0 if prog.result.wasSuccessful() else 1)


if __name__ == "__main__":
    main()
