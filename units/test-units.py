# SPDX-License-Identifier: MIT
"""The systemd units as built: `systemd-analyze verify` finds nothing to say about them, `systemd-analyze
security --offline=true` rates each at an exposure of 2.0 or lower, the sysusers.d entry makes the
account they name, and each daemon runs as its unit's ExecStart= starts it: unprivileged, with the
unit's umask, in a fresh 0700 state directory, reporting READY=1 and WATCHDOG=1 and handling the
unit's reload and stop.

Usage: test-units.py --bindir DIR --sysusers FILE --program PATH... UNIT...

DIR is the directory the units' ExecStart= names; the daemons found there are replaced by the built
ones given with --program. Exits with 77 (skipped) when systemd-analyze is not installed.
"""

import argparse
import os
import re
import select
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import unittest

MAX_EXPOSURE = 2.0
# Short enough that a test sees several pings; the units' WatchdogSec= is longer.
WATCHDOG_USEC = 500000
NOBODY = 65534

ARGS = None


def parse_unit(path):
    """{(section, key): [values]} of a unit file, in file order."""
    items = {}
    section = None
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("[") and line.endswith("]"):
                section = line[1:-1]
                continue
            key, sep, value = line.partition("=")
            if not sep:
                raise ValueError(f"{path}: not an assignment: {line!r}")
            items.setdefault((section, key.strip()), []).append(value.strip())
    return items


def expand_specifiers(text, specifiers):
    def one(m):
        c = m.group(1)
        if c == "%":
            return "%"
        if c not in specifiers:
            raise ValueError(f"specifier %{c} in {text!r} is not known to this test")
        return specifiers[c]

    return re.sub(r"%(.)", one, text)


class NotifySocket:
    """The service manager's end of the sd_notify protocol, for one process."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.sock.bind(path)
        os.chmod(path, 0o666)
        self.messages = []  # (monotonic time, {key: value})

    def close(self):
        self.sock.close()

    def poll(self, timeout):
        """Reads one message if one comes within timeout seconds; returns whether one did."""
        r, _, _ = select.select([self.sock], [], [], timeout)
        if not r:
            return False
        data = self.sock.recv(4096).decode()
        fields = dict(line.split("=", 1) for line in data.split("\n") if "=" in line)
        self.messages.append((time.monotonic(), fields))
        return True

    def count(self, key, since=0.0):
        return sum(1 for t, m in self.messages if key in m and t >= since)

    def wait_for(self, key, process, timeout=20.0, since=0.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(key in m and t >= since for t, m in self.messages):
                return
            if process.poll() is not None:
                raise AssertionError(f"exited with status {process.returncode} before sending {key}")
            self.poll(0.1)
        raise AssertionError(f"no {key} within {timeout} s")


class UnitFileTests(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="dske-units-")
        self.addCleanup(shutil.rmtree, self.tmp)

    def install_units(self):
        """Copies of the units whose ExecStart= names the built daemons, for verify to check."""
        bindir = os.path.join(self.tmp, "bin")
        unitdir = os.path.join(self.tmp, "units")
        os.mkdir(bindir)
        os.mkdir(unitdir)
        for p in ARGS.program:
            os.symlink(os.path.abspath(p), os.path.join(bindir, os.path.basename(p)))
        paths = []
        for unit in ARGS.units:
            with open(unit, encoding="utf-8") as f:
                text = f.read()
            self.assertIn(ARGS.bindir + "/", text)
            path = os.path.join(unitdir, os.path.basename(unit))
            with open(path, "w", encoding="utf-8") as f:
                f.write(text.replace(ARGS.bindir + "/", bindir + "/"))
            paths.append(path)
        return paths

    def test_verify(self):
        r = subprocess.run(["systemd-analyze", "verify", "--man=no"] + self.install_units(),
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(r.stdout + r.stderr, "", "systemd-analyze verify has warnings")

    def test_security(self):
        for unit in ARGS.units:
            with self.subTest(unit=os.path.basename(unit)):
                r = subprocess.run(["systemd-analyze", "security", "--offline=true",
                                    "--threshold=%d" % round(MAX_EXPOSURE * 10), "--no-pager", unit],
                                   capture_output=True, text=True, timeout=60)
                m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", r.stdout)
                self.assertIsNotNone(m, r.stdout + r.stderr)
                print(f"{os.path.basename(unit)}: exposure {m.group(1)}")
                self.assertLessEqual(float(m.group(1)), MAX_EXPOSURE, r.stdout)
                self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_sysusers(self):
        users = set()
        for unit in ARGS.units:
            items = parse_unit(unit)
            users.update(items[("Service", "User")] + items[("Service", "Group")])
        self.assertEqual(users, {"dske"})
        if not shutil.which("systemd-sysusers"):
            self.skipTest("systemd-sysusers is not installed")
        os.mkdir(os.path.join(self.tmp, "etc"))
        r = subprocess.run(["systemd-sysusers", "--root", self.tmp, os.path.abspath(ARGS.sysusers)],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        with open(os.path.join(self.tmp, "etc/passwd"), encoding="utf-8") as f:
            entries = [line.rstrip("\n").split(":") for line in f]
        user = next(e for e in entries if e[0] == "dske")
        self.assertLess(int(user[2]), 1000, "not a system user")
        self.assertEqual(user[5], "/var/lib/dske")
        self.assertTrue(user[6].endswith("/nologin"), user[6])
        with open(os.path.join(self.tmp, "etc/group"), encoding="utf-8") as f:
            group = next(line.split(":") for line in f if line.startswith("dske:"))
        self.assertEqual(group[2], user[3])


class ExecStartTests(unittest.TestCase):
    """Each daemon started from its unit's own ExecStart= line, with the environment and
    credentials the service manager would give it."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="dske-units-")
        self.addCleanup(shutil.rmtree, self.tmp)
        os.chmod(self.tmp, 0o755)
        self.processes = []
        self.addCleanup(self.stop_all)
        # Root drops to nobody without capabilities, as User=dske with CapabilityBoundingSet= does.
        self.uid = NOBODY if os.geteuid() == 0 and shutil.which("setpriv") else os.geteuid()
        self.gid = NOBODY if self.uid == NOBODY else os.getegid()
        # The daemons as installed: a copy nobody may run, whatever the build directory's mode.
        self.bindir = os.path.join(self.tmp, "bin")
        os.mkdir(self.bindir)
        for p in ARGS.program:
            shutil.copy(p, self.bindir)

    def stop_all(self):
        for p in self.processes:
            if p.poll() is None:
                p.kill()
                p.wait()
            p.notify.close()

    def unit(self, name):
        return parse_unit(next(u for u in ARGS.units if os.path.basename(u) == name))

    def start(self, unit_name, instance, config_text):
        """Prepares what systemd would (configuration, state directory) and runs ExecStart=.
        Returns the process, with its unit (.unit), notification socket (.notify) and state
        directory (.state_dir)."""
        items = self.unit(unit_name)
        specifiers = {"i": instance, "E": os.path.join(self.tmp, "etc"),
                      "S": os.path.join(self.tmp, "var/lib")}

        config_dir = os.path.join(specifiers["E"], items[("Service", "ConfigurationDirectory")][0])
        state_dir = os.path.join(specifiers["S"],
                                 expand_specifiers(items[("Service", "StateDirectory")][0], specifiers))
        mode = int(items[("Service", "StateDirectoryMode")][0], 8)
        self.assertEqual(mode, 0o700)
        os.makedirs(os.path.dirname(state_dir), exist_ok=True)
        os.mkdir(state_dir, mode)
        os.chown(state_dir, self.uid, self.gid)

        argv = [expand_specifiers(a, specifiers)
                for a in shlex.split(items[("Service", "ExecStart")][0])]
        self.assertEqual(os.path.dirname(argv[0]), ARGS.bindir)
        argv[0] = os.path.join(self.bindir, os.path.basename(argv[0]))
        config = next(a.split("=", 1)[1] for a in argv if a.startswith("--config="))
        self.assertTrue(config.startswith(config_dir + "/"), config)
        os.makedirs(os.path.dirname(config), exist_ok=True)
        with open(config, "w", encoding="utf-8") as f:
            f.write(config_text)
        self.assertIn(f"--state-dir={state_dir}", argv)

        notify = NotifySocket(os.path.join(self.tmp, f"notify-{instance}"))
        env = dict(os.environ, NOTIFY_SOCKET=notify.path, WATCHDOG_USEC=str(WATCHDOG_USEC))
        umask = int(items[("Service", "UMask")][0], 8)
        try:
            p = subprocess.Popen(self.credentials() + argv, env=env, umask=umask, stdin=subprocess.DEVNULL)
        except BaseException:
            notify.close()
            raise
        p.unit, p.notify, p.state_dir = items, notify, state_dir
        self.processes.append(p)
        return p

    def credentials(self):
        """The command that drops to the service's user, or nothing when not run as root."""
        if self.uid == os.geteuid():
            return []
        return ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups",
                "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs"]

    def check_lifecycle(self, p):
        """READY=1, WATCHDOG=1 at the rate asked for, the unit's ExecReload= and a clean stop."""
        p.notify.wait_for("READY", p)
        ready = time.monotonic()
        st = os.stat(p.state_dir)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o700)
        self.assertEqual(st.st_uid, self.uid)

        # Over three intervals, no interval may pass without WATCHDOG=1.
        period = WATCHDOG_USEC / 1e6
        deadline = ready + 3 * period
        while time.monotonic() < deadline:
            p.notify.poll(0.02)
        self.assertIsNone(p.poll())
        pings = [ready] + [t for t, m in p.notify.messages if "WATCHDOG" in m and t >= ready] + [deadline]
        gaps = [b - a for a, b in zip(pings, pings[1:])]
        self.assertLess(max(gaps), period, f"WATCHDOG=1 at {pings}")

        # ExecReload= signals the main process, as the same user; the daemon announces the reload
        # and is ready again. systemd replaces $MAINPID as a word and ${MAINPID} anywhere, and
        # passes MAINPID in the environment.
        reload = []
        for a in shlex.split(p.unit[("Service", "ExecReload")][0]):
            a = str(p.pid) if a == "$MAINPID" else a.replace("${MAINPID}", str(p.pid))
            reload.append(a)
        before = time.monotonic()
        subprocess.run(self.credentials() + reload, env=dict(os.environ, MAINPID=str(p.pid)), check=True,
                       timeout=10)
        p.notify.wait_for("RELOADING", p, since=before)
        p.notify.wait_for("READY", p, since=before)

        p.send_signal(signal.SIGTERM)
        self.assertEqual(p.wait(timeout=30), 0)
        while p.notify.poll(0):
            pass
        self.assertEqual(p.notify.count("STOPPING"), 1)

    def free_port(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    def start_hub(self, name):
        port = self.free_port()
        p = self.start("dske-hub@.service", name, f"[Hub]\nListenAddress=127.0.0.1\nPort={port}\n")
        p.url = f"http://127.0.0.1:{port}/hub/{name}"
        return p

    def test_hub(self):
        self.check_lifecycle(self.start_hub("hank"))

    def test_client(self):
        hubs = [self.start_hub(name) for name in ("h1", "h2")]
        for hub in hubs:
            hub.notify.wait_for("READY", hub)
        p = self.start("dske-client@.service", "alice",
                       f"[Client]\nListenAddress=127.0.0.1\nPort={self.free_port()}\n"
                       f"Hubs={' '.join(hub.url for hub in hubs)}\n[Keys]\nSharesRequired=2\n")
        self.check_lifecycle(p)


def main():
    global ARGS

    parser = argparse.ArgumentParser()
    parser.add_argument("--bindir", required=True)
    parser.add_argument("--sysusers", required=True)
    parser.add_argument("--program", action="append", required=True)
    parser.add_argument("units", nargs="+")
    ARGS, rest = parser.parse_known_args()
    ARGS.bindir = ARGS.bindir.rstrip("/")

    if not shutil.which("systemd-analyze"):
        print("systemd-analyze is not installed, skipping")
        sys.exit(77)

    unittest.main(argv=[sys.argv[0], "-v"] + rest)


if __name__ == "__main__":
    main()
