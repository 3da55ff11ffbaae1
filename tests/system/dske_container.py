# SPDX-License-Identifier: MIT
"""What the system tests share: a minimal Debian 12 root, built once with mmdebstrap and cached, booted
with systemd-nspawn on a private network and driven through nsenter; the configuration of a small
network of hubs and clients; key delivery over ETSI GS QKD 014 from inside the container.

The root is cached in $DSKE_TEST_CACHE (default /var/cache/dske-test), under a name derived from its
package list, so that a change of the list builds a new one.
"""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

SUITE = "bookworm"
# What the daemons link, what the units need (a service manager, a system bus), what the tests run
# inside (curl) and what shows a manual page (man-db).
PACKAGES = sorted([
    "systemd-sysv", "dbus", "curl", "man-db",
    "libmicrohttpd12", "libjson-c5", "libnettle8", "libgnutls30", "libcurl3-gnutls", "libuuid1",
    "libinih1", "libsystemd0",
])
HUBS = {"h1": 8101, "h2": 8102, "h3": 8103}
CLIENTS = {"alice": (8201, "sae-alice"), "bob": (8202, "sae-bob")}
INNER_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
TOOLS = ("systemd-nspawn", "mmdebstrap", "nsenter")


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(argv, **kw):
    kw.setdefault("check", True)
    return subprocess.run(argv, **kw)


def missing_requirement():
    """Why the system tests cannot run on this machine, or None."""
    if os.geteuid() != 0:
        return "needs root"
    for tool in TOOLS:
        if not shutil.which(tool):
            return f"{tool} is not installed"
    return None


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


def copy_rootfs(dest):
    """A fresh copy of the cached root at dest, for one run to change as it likes."""
    run(["cp", "-a", "--reflink=auto", cached_rootfs(), dest])


def write(root, path, text, mode=0o644):
    full = os.path.join(root, path.lstrip("/"))
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(full, mode)


def write_configs(root, mode=0o644):
    """The configuration files of HUBS and CLIENTS, below root: every hub serves the out-of-band API,
    every client uses all hubs, and any two shares rebuild a key."""
    for name, port in HUBS.items():
        write(root, f"/etc/dske/hub/{name}.conf", f"[Hub]\nPort={port}\nOutOfBandAPI=yes\n", mode)
    hubs = " ".join(f"http://127.0.0.1:{port}/hub/{name}" for name, port in HUBS.items())
    for name, (port, sae) in CLIENTS.items():
        others = " ".join(f"{s}:{n}" for n, (_, s) in CLIENTS.items() if n != name)
        write(root, f"/etc/dske/client/{name}.conf",
              f"[Client]\nPort={port}\nHubs={hubs}\nEncryptors={sae}\n"
              f"[Keys]\nSharesRequired=2\n[ETSI]\nSAE={others}\n", mode)


def unit_names():
    return [f"dske-hub@{h}.service" for h in HUBS] + [f"dske-client@{c}.service" for c in CLIENTS]


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
    """A root booted with systemd-nspawn. kill() must follow, also when the constructor or the boot
    fails: the constructor leaves a usable object as soon as systemd-nspawn runs."""

    def __init__(self, root, logpath):
        self.root = root
        self.logpath = logpath
        self.logfile = open(logpath, "wb")
        self.init = None
        # A private network: the daemons' ports are the container's own, whatever runs on the host.
        self.proc = subprocess.Popen(
            ["systemd-nspawn", "--boot", "--register=no", "--keep-unit", "--private-network",
             "--console=read-only", "--quiet", "-D", root],
            stdin=subprocess.DEVNULL, stdout=self.logfile, stderr=subprocess.STDOUT)

    def boot(self):
        """Waits until the container's systemd has finished starting up."""
        started = time.monotonic()
        deadline = started + 30
        while self.init is None:
            if self.proc.poll() is not None:
                raise AssertionError(f"systemd-nspawn exited with {self.proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"the container's PID 1 did not appear:\n{self.log()}")
            time.sleep(0.1)
            self.init = container_init(self.proc.pid)
        # Until PID 1 is systemd in the container's root and listens on its socket, nsenter or
        # systemctl fails ("offline").
        deadline = time.monotonic() + 120
        while True:
            r = self.run("systemctl", "is-system-running", "--wait", check=False, timeout=120)
            if r.stdout.strip() in ("running", "degraded") or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        # "degraded" only says that some unit of the minimal system failed, which is not ours.
        if r.stdout.strip() not in ("running", "degraded"):
            state = f"{r.stdout.strip()!r} ({r.stderr.strip()})"
            raise AssertionError(f"the container's systemd is {state}:\n{self.log()}")
        log(f"container booted in {time.monotonic() - started:.0f} s")

    def log(self):
        with open(self.logpath, "rb") as f:
            return f.read().decode(errors="replace")[-4000:]

    def run(self, *argv, check=True, timeout=60, env=()):
        cmd = ["nsenter", "-t", str(self.init), "-a", "-r", "-w", "--",
               "/usr/bin/env", "-i", "PATH=" + INNER_PATH, "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0",
               "LANG=C.UTF-8", *env,
               *argv]
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} exited with {r.returncode}:\n{r.stdout}\n{r.stderr}")
        return r

    def show(self, unit, *props):
        out = self.run("systemctl", "show", unit, *[f"-p{p}" for p in props]).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def unit_log(self, unit):
        return self.run("journalctl", "--no-pager", "-u", unit, "-o", "cat", check=False).stdout

    def curl(self, port, path, sae):
        r = self.run("curl", "-sS", "-w", "\n%{http_code}", "-H", f"Authorization: {sae}",
                     f"http://127.0.0.1:{port}{path}", check=False)
        body, _, code = r.stdout.rpartition("\n")
        return (int(code) if code.isdigit() else 0), body

    def etsi(self, port, path, sae, timeout=60):
        """The JSON answer of an ETSI request, asked again until it succeeds or timeout passes (a
        client answers 503 until it holds PSRD from enough hubs)."""
        deadline = time.monotonic() + timeout
        while True:
            code, body = self.curl(port, path, sae)
            if code == 200:
                return json.loads(body)
            if time.monotonic() > deadline:
                raise AssertionError(f"GET {path} on port {port}: {code} {body}")
            time.sleep(0.5)

    def key_pair(self):
        """A key that alice's client gives sae-alice for sae-bob, and that bob's client gives
        sae-bob, or an AssertionError."""
        alice_port, alice_sae = CLIENTS["alice"]
        bob_port, bob_sae = CLIENTS["bob"]
        enc = self.etsi(alice_port, f"/api/v1/keys/{bob_sae}/enc_keys?size=256", alice_sae)
        if len(enc.get("keys", [])) != 1:
            raise AssertionError(f"enc_keys: {enc}")
        key = enc["keys"][0]
        dec = self.etsi(bob_port, f"/api/v1/keys/{alice_sae}/dec_keys?key_ID={key['key_ID']}", bob_sae)
        if dec.get("keys") != [key]:
            raise AssertionError(f"dec_keys gave {dec}, enc_keys {enc}")
        return key

    def kill(self):
        # SIGKILL to the container's PID 1 ends its whole PID namespace; then nspawn exits.
        if self.init is None:
            self.init = container_init(self.proc.pid)
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


class ContainerTestCase(unittest.TestCase):
    """A test class with one booted container: setUpClass sets workdir (a temporary directory) and
    container; tearDownClass kills the container and removes the directory, also after a failed
    setUpClass (which calls it)."""

    container = None
    workdir = None

    @classmethod
    def tearDownClass(cls):
        if cls.container:
            cls.container.kill()
            cls.container = None
        if cls.workdir:
            shutil.rmtree(cls.workdir, ignore_errors=True)
            cls.workdir = None

    def sh(self, *argv, **kw):
        return self.container.run(*argv, **kw)
