# SPDX-License-Identifier: MIT
"""dske-hub as a process: command line, configuration files, readiness, signals, graceful stop and
many connections at once."""

import http.client
import os
import re
import signal
import socket
import threading
import time
import unittest

from dske_test import (LOCALHOST, Daemon, DaemonTestCase, free_port, http_request, new_key_id, program,
                       run_program)


def read_to_end(sock):
    """What arrives on sock until the peer closes it (or resets it: a server that closes with some of
    the request unread)."""
    data = b""
    while True:
        try:
            chunk = sock.recv(4096)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


class CommandLineTests(DaemonTestCase):
    def hub(self, *args):
        return run_program([program("DSKE_HUB"), *args], timeout=30)

    def test_help(self):
        code, out, err = self.hub("--help")
        self.assertEqual(code, 0, err)
        for word in ["Usage:", "NAME", "--port", "--address", "--config", "--state-dir", "--log-level",
                     "--version", "OutOfBandAPI", "ManagementFromAnywhere", "MaxBlockSize", "ShareTTL",
                     "MaxSharesPerClient", "MaxClients", "MaxBodySize", "SIGHUP"]:
            self.assertIn(word, out)
        self.assertEqual(self.hub("-h")[1], out)

    def test_version(self):
        code, out, _ = self.hub("--version")
        self.assertEqual(code, 0)
        self.assertRegex(out, r"^dske \d+\.\d+\.\d+\n$")

    def test_bad_command_lines(self):
        cases = [
            ([], "No hub name given"),
            (["hank", "--port", "x"], "Invalid port"),
            (["hank", "--port", "0"], "Invalid port"),
            (["hank", "--port", "65536"], "Invalid port"),
            (["hank", "--port", "-1"], "Invalid port"),
            (["hank", "--bogus"], "unrecognized option"),
            (["hank", "helen"], "Too many arguments"),
            (["hank", "--log-level", "loud"], "Invalid log level"),
            (["a/b"], "Invalid hub name"),
            (["-x"], "invalid option"),
            (["hank", "--address", "localhost"], "Invalid listen address"),
            (["hank", "--config", "/nonexistent/hank.conf"], "/nonexistent/hank.conf"),
            (["hank", "--port"], "requires an argument"),
        ]
        for args, message in cases:
            with self.subTest(args=args):
                code, out, err = self.hub(*args)
                self.assertNotEqual(code, 0)
                self.assertIn(message, err)
                self.assertNotIn("READY", err)

    def test_state_dir(self):
        d = os.path.join(self.tmpdir(), "state")
        hub = self.start_hub("hank", args=["--state-dir", d])
        self.assertTrue(os.path.isdir(d))
        self.assertEqual(hub.status()["name"], "hank")
        f = os.path.join(self.tmpdir(), "file")
        open(f, "w").close()
        code, _, err = self.hub("hank", "--port", str(free_port()), "--state-dir", f)
        self.assertNotEqual(code, 0)
        self.assertIn("not a directory", err)

    def test_port_in_use(self):
        with socket.socket() as s:
            s.bind((LOCALHOST, 0))
            s.listen()
            code, _, err = self.hub("hank", "--port", str(s.getsockname()[1]))
        self.assertNotEqual(code, 0)
        self.assertIn("Failed to listen", err)


class ConfigFileTests(DaemonTestCase):
    def write(self, text):
        path = os.path.join(self.tmpdir(), "hub.conf")
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_bad_files_name_file_and_line(self):
        cases = [
            ("[Hub]\nPort=8100\nColour=blue\n", 3),
            ("[Hub]\nPort=abc\n", 2),
            ("[Hub]\n\n# comment\nOutOfBandAPI=maybe\n", 4),
            ("[Hub]\nShareTTL=soon\n", 2),
            ("[Hub]\nMaxBlockSize=12Q\n", 2),
            ("[Hub]\nMaxBlockSize=0\n", 2),
            ("[Hub]\nMaxBlockSize=65M\n", 2),
            ("[Hub]\nMaxBodySize=64\n", 2),
            ("[Hub]\nShareTTL=0\n", 2),
            ("[Hub]\nMaxSharesPerClient=0\n", 2),
            ("[Hub]\nMaxClients=0\n", 2),
            ("[Hub]\nMaxConnections=0\n", 2),
            ("[Hub]\nLogLevel=loud\n", 2),
            ("[Elsewhere]\nPort=1\n", 1),
            ("[Hub]\nPort=8100\n[Elsewhere]\n", 3),
            ("[Hub]\nthis is not ini\n", 2),
        ]
        for text, line in cases:
            with self.subTest(text=text):
                path = self.write(text)
                code, _, err = run_program([program("DSKE_HUB"), "hank", "--config", path])
                self.assertNotEqual(code, 0)
                self.assertIn(f"{path}:{line}", err)

    def test_bad_values(self):
        for text, message in [("[Hub]\nMaxBlockSize=128M\n", "MaxBlockSize"),
                              ("[Hub]\nShareTTL=0\n", "ShareTTL"),
                              ("[Hub]\nMaxClients=0\n", "MaxClients"),
                              ("[Hub]\nMaxBlockSize=64K\nMaxPoolSize=1K\n", "MaxPoolSize"),

                              ("[Hub]\nListenAddress=example.org\n", "Invalid listen address")]:
            with self.subTest(text=text):
                code, _, err = run_program([program("DSKE_HUB"), "hank", "--config", self.write(text)])
                self.assertNotEqual(code, 0)
                self.assertIn(message, err)

    def test_bad_name_in_file(self):
        code, _, err = run_program([program("DSKE_HUB"), "--config", self.write("[Hub]\nName=a b\n")])
        self.assertNotEqual(code, 0)
        self.assertIn("Invalid hub name", err)

    def test_unreadable_file(self):
        d = self.tmpdir()
        code, _, err = run_program([program("DSKE_HUB"), "hank", "--config", d])
        self.assertNotEqual(code, 0)
        self.assertIn(d, err)

    def test_file_settings_and_overrides(self):
        file_port = free_port()
        port = free_port()
        path = self.write(f"[Hub]\nName=helen\nPort={file_port}\nListenAddress=127.0.0.1\nMaxBlockSize=100\n")
        # The name from the file, the port from the command line.
        d = self.start_daemon([program("DSKE_HUB"), "--config", path, "--port", str(port)])
        r = http_request(LOCALHOST, port, "GET", "/hub/helen/mgmt/v1/status")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["name"], "helen")
        with self.assertRaises(OSError):
            http_request(LOCALHOST, file_port, "GET", "/hub/helen/mgmt/v1/status", timeout=2)
        # A name on the command line wins over the file's.
        port2 = free_port()
        self.start_daemon([program("DSKE_HUB"), "hugo", "--config", path, "--port", str(port2)])
        self.assertEqual(http_request(LOCALHOST, port2, "GET", "/hub/hugo/mgmt/v1/status").status, 200)
        self.assertIn("listening", d.log())


class SignalTests(DaemonTestCase):
    def test_sigterm_and_sigint_stop_cleanly(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            with self.subTest(signal=sig):
                hub = self.start_hub("hank")
                hub.peer("carol", ["sam"]).provision()
                hub.daemon.send_signal(sig)
                self.assertEqual(hub.daemon.wait(30), 0, hub.daemon.log())
                self.assertTrue(hub.daemon.notify.wait_for("STOPPING", "1", timeout=5))
                self.assertTrue(hub.daemon.notify.seen("STATUS"))

    def test_status_notifications(self):
        hub = self.start_hub("hank")
        hub.peer("carol", ["sam"]).provision()
        self.assertTrue(hub.daemon.notify.wait_for("STATUS", "Serving 1 client(s), 0 share(s) pending.",
                                                   timeout=5))

    def test_stop_over_http(self):
        hub = self.start_hub("hank")
        r = hub.request("POST", "mgmt/v1/stop")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, b'{"result":"Hub stop initiated"}')
        self.assertEqual(hub.daemon.wait(30), 0, hub.daemon.log())
        self.assertTrue(hub.daemon.notify.wait_for("STOPPING", "1", timeout=5))

    def test_request_in_progress_is_answered(self):
        """A stop lets a request whose body is still arriving finish, but takes no new
        connections."""
        hub = self.start_hub("hank")
        body = b'{"client_name":"carol","encryptor_names":["sam"]}'
        s = socket.create_connection((LOCALHOST, hub.port), timeout=10)
        try:
            s.sendall(f"PUT /hub/hank/dske/oob/v1/registration HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                      f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                      + body[:10])
            time.sleep(0.2)
            hub.daemon.send_signal(signal.SIGTERM)
            self.assertTrue(hub.daemon.notify.wait_for("STOPPING", "1", timeout=5))
            with self.assertRaises(OSError):
                socket.create_connection((LOCALHOST, hub.port), timeout=2).close()
            s.sendall(body[10:])
            reply = read_to_end(s)
        finally:
            s.close()
        self.assertTrue(reply.startswith(b"HTTP/1.1 200"), reply)
        self.assertTrue(reply.endswith(b'{"hub_name":"hank"}'), reply)
        self.assertEqual(hub.daemon.wait(30), 0, hub.daemon.log())

    def test_idle_connection_does_not_hold_the_stop(self):
        """A client that keeps an idle connection open does not delay the stop: only requests in
        progress get the grace period."""
        hub = self.start_hub("hank")
        conn = http.client.HTTPConnection(LOCALHOST, hub.port, timeout=10)
        self.addCleanup(conn.close)
        conn.request("GET", "/hub/hank/mgmt/v1/status")
        self.assertEqual(conn.getresponse().read()[:8], b'{"name":')
        start = time.monotonic()
        hub.daemon.send_signal(signal.SIGTERM)
        self.assertEqual(hub.daemon.wait(15), 0, hub.daemon.log())
        self.assertLess(time.monotonic() - start, 2.5, hub.daemon.log())
        self.assertNotIn("grace period", hub.daemon.log())

    def test_request_in_progress_holds_the_stop(self):
        """A request whose body is still arriving keeps the hub for the grace period at most."""
        hub = self.start_hub("hank")
        s = socket.create_connection((LOCALHOST, hub.port), timeout=10)
        self.addCleanup(s.close)
        s.sendall(b"PUT /hub/hank/dske/oob/v1/registration?client_name=carol HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
        time.sleep(0.2)
        hub.daemon.send_signal(signal.SIGTERM)
        self.assertEqual(hub.daemon.wait(15), 0, hub.daemon.log())
        self.assertIn("Closing 1 request(s) still in progress after the grace period.", hub.daemon.log())

    def test_sighup_reloads(self):
        path = os.path.join(self.tmpdir(), "hank.conf")
        with open(path, "w") as f:
            f.write("[Hub]\nMaxBlockSize=100\nLogLevel=info\n")
        hub = self.start_hub("hank", args=["--config", path])
        carol = hub.peer("carol", ["sam"])
        carol.register()
        self.assertEqual(carol.fetch_psrd("client", 150).status, 400)

        hub.daemon.reload("[Hub]\nMaxBlockSize=200\nShareTTL=1s\nMaxConnections=10\n")
        self.assertTrue(hub.daemon.notify.wait_for("RELOADING", "1", timeout=5))
        self.assertEqual(carol.fetch_psrd("client", 150).status, 200)
        self.assertIn("only on restart", hub.daemon.log())

        # A broken file is reported and the running configuration stays.
        with open(path, "w") as f:
            f.write("[Hub]\nMaxBlockSize=oops\n")
        hub.daemon.send_signal(signal.SIGHUP)
        self.assertTrue(hub.daemon.wait_for_log(rf"{re.escape(path)}:2"), hub.daemon.log())
        self.assertTrue(hub.daemon.wait_for_log(r"keeping the running one"), hub.daemon.log())
        self.assertEqual(carol.fetch_psrd("client", 150).status, 200)
        self.assertEqual(carol.fetch_psrd("client", 250).status, 400)

    def test_sighup_keeps_command_line_log_level(self):
        path = os.path.join(self.tmpdir(), "hank.conf")
        with open(path, "w") as f:
            f.write("[Hub]\nLogLevel=err\n")
        hub = self.start_hub("hank", args=["--config", path, "--log-level", "info"])
        hub.daemon.send_signal(signal.SIGHUP)
        self.assertTrue(hub.daemon.wait_for_log(r"Configuration reloaded"), hub.daemon.log())
        hub.peer("carol").register()
        self.assertTrue(hub.daemon.wait_for_log(r"Client carol registered"), hub.daemon.log())


class ConcurrencyTests(DaemonTestCase):
    N = 200

    def test_200_concurrent_connections(self):
        """200 connections open at once, each with a request in flight, all answered."""
        hub = self.start_hub("hank")
        peers = [hub.peer(f"client{i}", [f"sae{i}"]) for i in range(self.N)]
        socks = [socket.create_connection((LOCALHOST, hub.port), timeout=30) for _ in range(self.N)]
        try:
            for i, s in enumerate(socks):
                body = f'{{"client_name":"client{i}","encryptor_names":["sae{i}"]}}'.encode()
                s.sendall(f"PUT /hub/hank/dske/oob/v1/registration HTTP/1.1\r\nHost: x\r\n"
                          f"Connection: close\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
            replies = [read_to_end(s) for s in socks]
        finally:
            for s in socks:
                s.close()
        for i, reply in enumerate(replies):
            self.assertTrue(reply.startswith(b"HTTP/1.1 200"), (i, reply))
        self.assertEqual(len(hub.status()["peer_clients"]), self.N)

        # Then 200 threads running whole signed exchanges in parallel.
        errors = []

        def worker(i):
            try:
                p = peers[i]
                p.fetch_psrd("client")
                p.fetch_psrd("hub")
                share = os.urandom(16)
                key_id = new_key_id()
                r = p.post_share(f"sae{i}", f"sae{(i + 1) % self.N}", key_id, 0, share)
                if r.status != 200:
                    errors.append((i, "post", r.status, r.body))
                    return
                results[i] = (key_id, share)
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append((i, repr(e)))

        results = [None] * self.N
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(self.N)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertEqual(errors, [])

        def fetch(i):
            try:
                key_id, share = results[(i - 1) % self.N]
                r, _, got = peers[i].get_share(f"sae{(i - 1) % self.N}", f"sae{i}", key_id)
                if r.status != 200 or got != share:
                    errors.append((i, "get", r.status, r.body))
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append((i, repr(e)))

        threads = [threading.Thread(target=fetch, args=(i,)) for i in range(self.N)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertEqual(errors, [])
        self.assertEqual(hub.status()["shares"], [])


class MalformedHttpTests(DaemonTestCase):
    """What is not well-formed HTTP/1.x is refused by the HTTP layer before any route sees it: a 4xx
    (or 505) status, the connection closed, and the hub serves on. (libmicrohttpd writes the body.)"""

    SHARE = "/hub/hank/dske/api/v1/key-share"

    def exchange(self, port, data):
        with socket.create_connection((LOCALHOST, port), timeout=10) as s:
            s.sendall(data)
            return read_to_end(s)

    def test_refused_with_a_status_and_closed(self):
        hub = self.start_hub("hank")
        carol = hub.peer("carol", ["sam"])
        carol.provision()
        cases = [
            (b"GET / HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400),
            (b"GET / HTTP/2.5\r\nHost: x\r\n\r\n", 505),
            (b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
            (b"GET / HTTP/1.1\r\nHost: x\r\nDSKE-Signature: " + b"x" * 20000 + b"\r\n\r\n", 431),
            (f"POST {self.SHARE} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\n\r\n"
             .encode(), 400),
        ]
        for data, status in cases:
            with self.subTest(request=data[:60]):
                reply = self.exchange(hub.port, data)
                self.assertTrue(reply.startswith(f"HTTP/1.1 {status} ".encode()), reply[:200])
                self.assertIn(b"\r\nConnection: close\r\n", reply)
        # Up to the limit, a long header still reaches the route, which answers in JSON.
        r = http_request(LOCALHOST, hub.port, "GET", self.SHARE,
                         query=f"client_name=carol&master_sae_id=sam&slave_sae_id=sam&key_id={new_key_id()}",
                         headers={"DSKE-Signature": "x" * 6000})
        self.assertEqual(r.status, 403)
        self.assertEqual(r.json()["details"]["reason"], "malformed DSKE-Signature header")
        self.assertEqual(hub.request("GET", "mgmt/v1/status").status, 200)
        self.assertTrue(hub.daemon.alive(), hub.daemon.log())


class SocketActivationTests(DaemonTestCase):
    def test_inherited_listening_socket(self):
        """With LISTEN_FDS/LISTEN_PID (as systemd passes them) the hub serves on the socket it was
        given; --address and --port are then ignored, and the socket's own address is reported."""
        address = "127.0.0.2"  # loopback, but not the default address
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(listener.close)
        listener.bind((address, 0))
        listener.listen(16)
        port = listener.getsockname()[1]

        def fd3():
            os.dup2(listener.fileno(), 3)

        env = dict(os.environ, LISTEN_FDS="1")
        # The shell's PID is the hub's after exec, so LISTEN_PID names the right process.
        argv = ["/bin/sh", "-c", 'LISTEN_PID=$$ exec "$0" "$@"', program("DSKE_HUB"), "hank", "--ephemeral",
                "--port", str(free_port())]
        d = self.start_daemon(argv, env=env, name="hub-hank",
                              start_options={"pass_fds": (listener.fileno(),), "preexec_fn": fd3})
        listener.close()
        r = http_request(address, port, "GET", "/hub/hank/mgmt/v1/status")
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.json()["name"], "hank")
        self.assertIn(f"listening on {address} port {port}.", d.log())


class ReadinessTests(unittest.TestCase):
    def test_ready_only_when_listening(self):
        """READY=1 comes after the socket is bound: a request right after it succeeds."""
        port = free_port()
        d = Daemon([program("DSKE_HUB"), "hank", "--port", port])
        try:
            d.start()
            r = http_request(LOCALHOST, port, "GET", "/hub/hank/mgmt/v1/status")
            self.assertEqual(r.status, 200)
            self.assertEqual(d.stop(), 0, d.log())
        finally:
            d.close()


if __name__ == "__main__":
    unittest.main()
