# SPDX-License-Identifier: MIT
"""Helpers for dske's integration tests (Python standard library only).

What is here:

* Processes: `free_port()`, `NotifySocket` (the sd_notify protocol: a Unix datagram socket passed
  as NOTIFY_SOCKET), `Daemon` (start, wait for READY=1, stop with a signal, kill on timeout, keep
  the log), and `DaemonTestCase`, a unittest.TestCase whose daemons are always stopped, with
  their exit status checked, even when a test fails.
* HTTP: `http_request()` sends a request with the query string exactly as given (the MAC covers
  the raw query), and returns an `HttpResponse`.
* PSRD, exactly as PROTOCOL.md §3: `Block`, `Fragment`, `Allocation`, `Pool` with the reference's
  first-fit `allocate()` (§3.3), the receiver's all-or-nothing `take()` (§3.4) and `give_back()`.
* Message authentication (§4): `dske_mac()` (HMAC-SHA256 over raw query || raw body with a 32-byte
  key), `signature_header()` / `parse_signature_header()` for "DSKE-Signature: alloc%b64(mac)".
* `HubPeer`: one client's view of one hub, as the reference client does it: registration, PSRD
  blocks kept in the client's copies of both pools, signed POST and GET key-share with
  share encryption by XOR, and verification of the hub's signed responses. Tests use it both as
  a well-behaved client and, through its lower-level methods, to build hostile requests.

Environment: DSKE_HUB is the path of the dske-hub binary. ASAN_OPTIONS / UBSAN_OPTIONS pass
through to the daemons, so a sanitizer report makes a daemon exit non-zero, which
`DaemonTestCase` reports as an error.
"""

import base64
import binascii
import contextlib
import fcntl
import hashlib
import hmac
import http.client
import json
import os
import re
import shutil
import random
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
import unittest
import uuid as uuidlib

LOCALHOST = "127.0.0.1"
SIOCGIFADDR = 0x8915
MAC_KEY_SIZE = 32
SIGNATURE_HEADER = "DSKE-Signature"


class TestEnvironmentError(Exception):
    """The environment lacks something the tests need (e.g. DSKE_HUB)."""


def program(var):
    """The path of a program under test, from the environment variable var."""
    path = os.environ.get(var)
    if not path:
        raise TestEnvironmentError(f"{var} is not set: run the tests through 'meson test'")
    return path


def with_state_option(argv):
    """Daemons keep their state in memory unless a test gives them a state directory (the default
    directory under /var/lib is for installed services)."""
    daemons = {os.environ.get("DSKE_HUB"), os.environ.get("DSKE_CLIENT")} - {None}
    if argv and argv[0] in daemons and not any(
            a == "--ephemeral" or a.startswith("--state-dir") for a in argv):
        return [argv[0], "--ephemeral", *argv[1:]]
    return list(argv)


def non_loopback_ipv4():
    """An IPv4 address of this machine outside 127.0.0.0/8, or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _, name in socket.if_nameindex():
            try:
                res = fcntl.ioctl(s.fileno(), SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
            except OSError:
                continue
            address = socket.inet_ntoa(res[20:24])
            if not address.startswith("127."):
                return address
    return None


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(host=LOCALHOST, n=1, attempts=500):
    """The first of n consecutive TCP ports on host that were all free a moment ago.

    The ports are drawn at random below the kernel's ephemeral range: a port the kernel hands out
    would soon be the local port of some outgoing connection of a test running in parallel, and
    the daemon meant to listen on it would then fail to bind."""
    high = _ephemeral_low() - n
    for _ in range(attempts):
        base = random.randint(10000, high)
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(s)
                s.bind((host, p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError(f"no {n} consecutive free ports on {host}")


# ---------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------


class NotifySocket:
    """Receives sd_notify(3) messages the way the service manager does.

    Pass `path` as NOTIFY_SOCKET. A thread reads every datagram as it arrives (a daemon blocks in
    sd_notify() when nobody reads); each is a set of newline-separated VAR=value lines, kept as a
    dict in `messages`, in arrival order."""

    def __init__(self, directory):
        self.path = os.path.join(directory, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.1)
        self.messages = []
        self._cond = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="notify", daemon=True)
        self._thread.start()

    def _run(self):
        while not self._closing:
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            fields = {}
            for line in data.decode("utf-8", "replace").split("\n"):
                if "=" in line:
                    key, value = line.split("=", 1)
                    fields[key] = value
            with self._cond:
                self.messages.append(fields)
                self._cond.notify_all()

    def close(self):
        self._closing = True
        self._thread.join()
        self.sock.close()

    def seen(self, key, value=None):
        with self._cond:
            return any(key in m and (value is None or m[key] == value) for m in self.messages)

    def wait_for(self, key, value=None, timeout=30.0, alive=None):
        """Waits until a message sets key (to value, if given). alive() returning False (e.g. the
        process exited) ends the wait early. Returns whether it was seen."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if any(key in m and (value is None or m[key] == value) for m in self.messages):
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                if alive is not None and not alive():
                    # Give messages sent just before the exit a moment to be read.
                    self._cond.wait(0.2)
                    return any(key in m and (value is None or m[key] == value) for m in self.messages)
                self._cond.wait(min(remaining, 0.1))


class DaemonError(Exception):
    pass


class Daemon:
    """One daemon process under test.

    Output (stdout and stderr) goes to a log file, readable through `log()`. `start()` waits for
    READY=1 on the notify socket; `stop()` sends a signal and waits, killing the process if it
    does not exit in time. A Daemon must be stopped: `DaemonTestCase` does that for you."""

    def __init__(self, argv, env=None, workdir=None, name=None):
        self.argv = with_state_option([str(a) for a in argv])
        self.name = name or os.path.basename(self.argv[0])
        self._own_workdir = workdir is None
        self.workdir = workdir or tempfile.mkdtemp(prefix="dske-test-")
        self.env = dict(os.environ if env is None else env)
        self.proc = None
        self.notify = None
        self.log_path = os.path.join(self.workdir, f"{self.name}.log")
        self._log_file = None
        # More subprocess.Popen arguments, e.g. pass_fds and preexec_fn to hand over sockets.
        self.start_options = {}

    # -- life cycle --

    def start(self, wait_ready=True, timeout=30.0):
        self.notify = NotifySocket(self.workdir)
        env = dict(self.env)
        env["NOTIFY_SOCKET"] = self.notify.path
        self._log_file = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv, env=env, stdin=subprocess.DEVNULL, stdout=self._log_file,
                                     stderr=subprocess.STDOUT, cwd=self.workdir, **self.start_options)
        if wait_ready and not self.wait_ready(timeout):
            code = self.proc.poll()
            if code is None:
                self.kill()
                raise DaemonError(f"{self.name} did not report READY=1 within {timeout}s:\n{self.log()}")
            raise DaemonError(f"{self.name} exited with {code} before it was ready:\n{self.log()}")
        return self

    def wait_ready(self, timeout=30.0):
        return self.notify.wait_for("READY", "1", timeout=timeout, alive=self.alive)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self):
        return self.proc.pid

    @property
    def returncode(self):
        return None if self.proc is None else self.proc.poll()

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout=30.0):
        """Waits for the exit and returns the exit code (negative: killed by that signal)."""
        return self.proc.wait(timeout=timeout)

    def stop(self, sig=signal.SIGTERM, timeout=30.0):
        """Sends sig unless the process is gone, waits, kills it after timeout. Returns the exit
        code; raises DaemonError if it had to be killed."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise DaemonError(f"{self.name} did not stop within {timeout}s after {sig!r}:\n{self.log()}")
        return self.proc.returncode

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def close(self):
        """Releases everything; the process must have exited (or is killed)."""
        self.kill()
        if self.notify:
            self.notify.close()
            self.notify = None
        if self._log_file:
            self._log_file.close()
            self._log_file = None
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def wait_for_log(self, pattern, timeout=10.0):
        """Waits until the log matches the regular expression pattern; returns the match."""
        deadline = time.monotonic() + timeout
        while True:
            m = re.search(pattern, self.log())
            if m or time.monotonic() > deadline:
                return m
            time.sleep(0.02)


    def reload(self, config, timeout=10.0):
        """Writes config into the file given as --config, sends SIGHUP and waits until the daemon
        says "Configuration reloaded" once more."""
        with open(self.argv[self.argv.index("--config") + 1], "w") as f:
            f.write(config)
        seen = self.log().count("Configuration reloaded")
        self.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while self.log().count("Configuration reloaded") == seen:
            if time.monotonic() > deadline:
                raise DaemonError(f"{self.name} did not reload within {timeout}s:\n{self.log()}")
            time.sleep(0.02)


def run_program(argv, timeout=30.0, env=None):
    """Runs a program to completion; returns (exit code, stdout, stderr) as text."""
    p = subprocess.run(with_state_option([str(a) for a in argv]), stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout,
                       env=dict(os.environ if env is None else env))
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


class DaemonTestCase(unittest.TestCase):
    """A TestCase that owns temporary directories and daemons. Every daemon started through
    `start_daemon()` / `start_hub()` is stopped when the test ends, pass or fail, and must then
    exit with the expected code (0 unless the test says otherwise): a crash or a sanitizer report
    fails the test, with the daemon's log in the message."""

    def tmpdir(self):
        d = tempfile.mkdtemp(prefix="dske-test-")
        self.addCleanup(shutil.rmtree, d, True)
        return d

    def start_daemon(self, argv, env=None, wait_ready=True, expect_exit=0, name=None, timeout=30.0,
                     start_options=None):
        d = Daemon(argv, env=env, workdir=self.tmpdir(), name=name)
        d.expect_exit = expect_exit
        d.start_options = dict(start_options or {})
        self.addCleanup(self._finish_daemon, d)
        d.start(wait_ready=wait_ready, timeout=timeout)
        return d

    def _finish_daemon(self, d):
        try:
            code = d.stop()
        finally:
            d.close()
        if d.expect_exit is not None and code != d.expect_exit:
            raise AssertionError(f"{d.name} exited with {code}, expected {d.expect_exit}:\n{d.log()}")

    def start_hub(self, name="hank", port=None, config=None, args=(), env=None, wait_ready=True,
                  expect_exit=0, start_options=None):
        """Starts dske-hub NAME --port PORT [--config FILE with the text config] [args];
        start_options are more subprocess.Popen arguments. Returns a Hub (the Daemon plus its
        address)."""
        port = port or free_port()
        argv = [program("DSKE_HUB"), name, "--port", str(port)]
        if config is not None:
            path = os.path.join(self.tmpdir(), f"{name}.conf")
            with open(path, "w") as f:
                f.write(config)
            argv += ["--config", path]
        argv += list(args)
        d = self.start_daemon(argv, env=env, wait_ready=wait_ready, expect_exit=expect_exit,
                              name=f"hub-{name}", start_options=start_options)
        return Hub(d, name, port)


class Hub:
    """A running hub: its Daemon, name and address, with shortcuts for its own endpoints."""

    def __init__(self, daemon, name, port, host=LOCALHOST):
        self.daemon = daemon
        self.name = name
        self.port = port
        self.host = host

    def path(self, rest):
        return f"/hub/{self.name}/{rest}"

    def request(self, method, rest, query=None, body=None, headers=None, timeout=10.0):
        return http_request(self.host, self.port, method, self.path(rest), query=query, body=body,
                            headers=headers, timeout=timeout)

    def status(self):
        r = self.request("GET", "mgmt/v1/status")
        if r.status != 200:
            raise AssertionError(f"status returned {r.status}: {r.body!r}")
        return r.json()

    def client_status(self, client_name):
        for c in self.status()["peer_clients"]:
            if c["client_name"] == client_name:
                return c
        return None

    def peer(self, client_name, encryptors=()):
        return HubPeer(self.host, self.port, self.name, client_name, encryptors)


# ---------------------------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------------------------


class HttpResponse:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # an http.client.HTTPMessage: case-insensitive get()
        self.body = body

    def header(self, name):
        return self.headers.get(name)

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"HttpResponse({self.status}, {self.body[:200]!r})"


def http_request(host, port, method, path, query=None, body=None, headers=None, timeout=10.0):
    """Sends one request on a fresh connection (closed afterwards). query is sent verbatim
    after '?' (None: no '?'); body is bytes or str."""
    if isinstance(body, str):
        body = body.encode()
    target = path if query is None else f"{path}?{query}"
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        hdrs = {"Connection": "close"}
        if body is not None:
            hdrs["Content-Type"] = "application/json"
        hdrs.update(headers or {})
        conn.request(method, target, body=body, headers=hdrs)
        r = conn.getresponse()
        return HttpResponse(r.status, r.headers, r.read())
    finally:
        conn.close()


def json_compact(obj):
    """Serialises as the reference does: no spaces, keys in insertion order, UTF-8."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def b64(data):
    return base64.b64encode(data).decode()


def b64decode_strict(text):
    return base64.b64decode(text, validate=True)


# ---------------------------------------------------------------------------------------------
# PSRD (PROTOCOL.md §3)
# ---------------------------------------------------------------------------------------------


class PsrdError(Exception):
    pass


class OutOfPsrd(PsrdError):
    pass


class Block:
    def __init__(self, uuid, data):
        self.uuid = str(uuid)
        self.data = bytearray(data)
        self.original = bytes(data)  # what give_back restores; this is test code, not a vault
        self.used = bytearray(len(data))

    @property
    def size(self):
        return len(self.data)

    @property
    def nr_used_bytes(self):
        return sum(self.used)

    @property
    def nr_unused_bytes(self):
        return self.size - self.nr_used_bytes


class Fragment:
    def __init__(self, block_uuid, start, size):
        self.block_uuid = str(block_uuid)
        self.start = start
        self.size = size

    def to_string(self):
        return f"{self.block_uuid}:{self.start}:{self.size}"

    def to_json(self):
        return {"block_uuid": self.block_uuid, "start": self.start, "size": self.size}

    def __repr__(self):
        return f"Fragment({self.to_string()})"


class Allocation:
    """Fragments and, once allocated or taken, the key material they name."""

    def __init__(self, fragments, data=None):
        self.fragments = list(fragments)
        self.data = data

    @property
    def size(self):
        return sum(f.size for f in self.fragments)

    def to_string(self):
        return ",".join(f.to_string() for f in self.fragments)

    def to_json(self):
        return {"fragments": [f.to_json() for f in self.fragments]}

    @classmethod
    def from_string(cls, text):
        fragments = []
        for part in text.split(","):
            fields = part.split(":")
            if len(fields) != 3:
                raise PsrdError(f"bad fragment {part!r}")
            fragments.append(Fragment(fields[0], int(fields[1]), int(fields[2])))
        return cls(fragments)

    @classmethod
    def from_json(cls, obj):
        return cls([Fragment(f["block_uuid"], f["start"], f["size"]) for f in obj["fragments"]])


class Pool:
    """One side's copy of a pool. The owner calls allocate(); the other side take()s."""

    def __init__(self, name, owner):
        self.name = name
        self.owner = owner
        self.blocks = []

    def add_block(self, block_uuid, data):
        if any(b.uuid == str(block_uuid) for b in self.blocks):
            raise PsrdError(f"duplicate block {block_uuid}")
        self.blocks.append(Block(block_uuid, data))

    def find(self, block_uuid):
        for b in self.blocks:
            if b.uuid == str(block_uuid):
                return b
        return None

    def available(self):
        return sum(b.nr_unused_bytes for b in self.blocks)

    def allocate(self, n):
        """First fit, lowest unused index first, blocks in arrival order (§3.3)."""
        if n <= 0:
            raise PsrdError("allocation size must be positive")
        if self.available() < n:
            raise OutOfPsrd(f"pool {self.name} {self.owner}: {self.available()} < {n}")
        fragments, key, remaining = [], bytearray(), n
        for b in self.blocks:
            while remaining > 0:
                try:
                    s = b.used.index(0)
                except ValueError:
                    break
                try:
                    e = b.used.index(1, s + 1)
                except ValueError:
                    e = b.size
                take = min(e - s, remaining)
                key += b.data[s:s + take]
                for i in range(s, s + take):
                    b.used[i] = 1
                    b.data[i] = 0
                fragments.append(Fragment(b.uuid, s, take))
                remaining -= take
            if remaining == 0:
                break
        return Allocation(fragments, bytes(key))

    def take(self, allocation):
        """Marks the named bytes used and returns them; all or nothing (§3.4)."""
        marked = []
        key = bytearray()
        try:
            for f in allocation.fragments:
                b = self.find(f.block_uuid)
                if b is None:
                    raise PsrdError(f"unknown block {f.block_uuid}")
                if f.start < 0 or f.size <= 0 or f.start + f.size > b.size:
                    raise PsrdError(f"bad range {f.to_string()}")
                if any(b.used[f.start:f.start + f.size]):
                    raise PsrdError(f"already used {f.to_string()}")
                key += b.data[f.start:f.start + f.size]
                for i in range(f.start, f.start + f.size):
                    b.used[i] = 1
                    b.data[i] = 0
                marked.append(f)
        except PsrdError:
            self.give_back(Allocation(marked))
            raise
        allocation.data = bytes(key)
        return allocation.data

    def give_back(self, allocation):
        for f in allocation.fragments:
            b = self.find(f.block_uuid)
            if b is None:
                continue
            for i in range(f.start, f.start + f.size):
                b.used[i] = 0
                b.data[i] = b.original[i]

    def drop_used_blocks(self):
        self.blocks = [b for b in self.blocks if b.nr_unused_bytes > 0]


# ---------------------------------------------------------------------------------------------
# Message authentication (PROTOCOL.md §4)
# ---------------------------------------------------------------------------------------------


def dske_mac(key, query=b"", body=b""):
    """HMAC-SHA256 over query || body, no separator (§4.4, §4.5)."""
    if len(key) != MAC_KEY_SIZE:
        raise ValueError("DSKE MAC keys are 32 bytes")
    if isinstance(query, str):
        query = query.encode()
    if isinstance(body, str):
        body = body.encode()
    return hmac.new(key, query + body, hashlib.sha256).digest()


def signature_header(allocation, mac):
    return f"{allocation.to_string()}%{b64(mac)}"


def parse_signature_header(value):
    """Returns (Allocation with fragments only, mac bytes); raises PsrdError when malformed."""
    parts = value.split("%")
    if len(parts) != 2:
        raise PsrdError(f"malformed signature header {value!r}")
    try:
        mac = b64decode_strict(parts[1])
    except binascii.Error as e:
        raise PsrdError(f"malformed MAC in signature header: {e}") from e
    return Allocation.from_string(parts[0]), mac


def xor(a, b):
    if len(a) != len(b):
        raise ValueError("lengths differ")
    return bytes(x ^ y for x, y in zip(a, b))


class SignatureError(Exception):
    pass


class HubPeer:
    """One client's side of its link with one hub, as the reference client keeps it.

    client_pool is the client-owned pool (the client allocates from it: request MAC keys and
    share-encryption keys it sends); hub_pool is its copy of the hub-owned pool (it takes what the
    hub names in responses). Blocks arrive through fetch_psrd()."""

    def __init__(self, host, port, hub_name, client_name, encryptors=()):
        self.host = host
        self.port = port
        self.hub_name = hub_name
        self.client_name = client_name
        self.encryptors = list(encryptors)
        self.client_pool = Pool(hub_name, "local")
        self.hub_pool = Pool(hub_name, "peer")

    def path(self, rest):
        return f"/hub/{self.hub_name}/{rest}"

    def request(self, method, rest, query=None, body=None, headers=None):
        return http_request(self.host, self.port, method, self.path(rest), query=query, body=body,
                            headers=headers)

    # -- out of band --

    def register(self):
        body = json_compact({"client_name": self.client_name, "encryptor_names": self.encryptors})
        return self.request("PUT", "dske/oob/v1/registration", body=body)

    def unregister(self):
        return self.request("DELETE", "dske/oob/v1/registration", query=f"client_name={self.client_name}")

    def fetch_psrd(self, owner, size=2000):
        """owner is "client" or "hub". On 200 the block joins the matching local copy."""
        r = self.request("GET", "dske/oob/v1/psrd",
                         query=f"client_name={self.client_name}&pool_owner={owner}&size={size}")
        if r.status == 200:
            obj = r.json()
            data = b64decode_strict(obj["data"])
            if len(data) != size:
                raise PsrdError(f"asked for {size} bytes, got {len(data)}")
            (self.client_pool if owner == "client" else self.hub_pool).add_block(obj["block_uuid"], data)
        return r

    def provision(self, size=2000):
        """Registers and fetches one block for each pool, as the reference client does at start."""
        for r in (self.register(), self.fetch_psrd("client", size), self.fetch_psrd("hub", size)):
            if r.status != 200:
                raise AssertionError(f"provisioning failed: {r.status} {r.body!r}")
        return self

    # -- requests --

    def sign(self, query="", body=b""):
        """Allocates a MAC key from the client-owned pool and returns (header value, allocation)."""
        a = self.client_pool.allocate(MAC_KEY_SIZE)
        return signature_header(a, dske_mac(a.data, query, body)), a

    def share_body(self, master_sae_id, slave_sae_id, key_id, share_index, share, allocation=None,
                   override=None):
        """The POST key-share body for share, encrypted with a fresh allocation from the client-
        owned pool (or the given one). override is a dict of fields to replace (None removes one),
        to build bad requests. Returns (body bytes, allocation)."""
        if allocation is None:
            allocation = self.client_pool.allocate(len(share))
        fields = {
            "master_client_name": self.client_name,
            "master_sae_id": master_sae_id,
            "slave_sae_id": slave_sae_id,
            "user_key_id": str(key_id),
            "share_index": share_index,
            "encryption_key_allocation": allocation.to_json(),
            "encrypted_share_value": b64(xor(share, allocation.data)),
        }
        for k, v in (override or {}).items():
            if v is None:
                fields.pop(k, None)
            else:
                fields[k] = v
        return json_compact(fields), allocation

    def signed_request(self, method, rest, query="", body=b"", signature=None):
        """Sends a request signed as the reference client does (signature overrides the
        header value; "" omits it). Returns the HttpResponse."""
        headers = {}
        if signature is None:
            signature, _ = self.sign(query, body)
        if signature != "":
            headers[SIGNATURE_HEADER] = signature
        return self.request(method, rest, query=query if query else None, body=body if body else None,
                            headers=headers)

    def verify_response(self, response):
        """Checks the hub's signature on a 200 response with the hub-owned pool (§4.7)."""
        value = response.header(SIGNATURE_HEADER)
        if value is None:
            raise SignatureError("200 response without DSKE-Signature")
        allocation, mac = parse_signature_header(value)
        if allocation.size != MAC_KEY_SIZE:
            raise SignatureError("response MAC key is not 32 bytes")
        key = self.hub_pool.take(allocation)
        if not hmac.compare_digest(dske_mac(key, b"", response.body), mac):
            raise SignatureError("response MAC mismatch")

    def post_share(self, master_sae_id, slave_sae_id, key_id, share_index, share):
        """POST key-share; verifies a 200 response (body must be null). Returns the response."""
        body, _ = self.share_body(master_sae_id, slave_sae_id, key_id, share_index, share)
        r = self.signed_request("POST", "dske/api/v1/key-share", body=body)
        if r.status == 200:
            self.verify_response(r)
            if r.body != b"null":
                raise AssertionError(f"POST key-share body is {r.body!r}, expected null")
        self.drop_used_blocks()
        return r

    @staticmethod
    def share_query(client_name, master_sae_id, slave_sae_id, key_id):
        """The GET key-share query in the reference client's parameter order."""
        return (f"client_name={client_name}&master_sae_id={master_sae_id}&slave_sae_id={slave_sae_id}"
                f"&key_id={key_id}")

    def get_share(self, master_sae_id, slave_sae_id, key_id):
        """GET key-share; on 200 verifies the response and decrypts. Returns (response, share
        index, share bytes) with None for the last two on failure."""
        query = self.share_query(self.client_name, master_sae_id, slave_sae_id, key_id)
        r = self.signed_request("GET", "dske/api/v1/key-share", query=query)
        index = share = None
        if r.status == 200:
            self.verify_response(r)
            obj = r.json()
            if list(obj) != ["share_index", "encryption_key_allocation", "encrypted_share_value"]:
                raise AssertionError(f"unexpected GET key-share body {obj}")
            allocation = Allocation.from_json(obj["encryption_key_allocation"])
            cipher = b64decode_strict(obj["encrypted_share_value"])
            if allocation.size != len(cipher):
                raise AssertionError("encryption key and share differ in length")
            index = obj["share_index"]
            share = xor(cipher, self.hub_pool.take(allocation))
        self.drop_used_blocks()
        return r, index, share

    def drop_used_blocks(self):
        self.client_pool.drop_used_blocks()
        self.hub_pool.drop_used_blocks()


def new_key_id():
    return str(uuidlib.uuid4())
