# SPDX-License-Identifier: MIT
"""The Debian package as a user gets it: built with packaging/build-deb (lintian without errors),
installed with apt-get into a booted minimal Debian 12, used, removed and purged.

Inside the container: the package installs without network (the root has the libraries it needs),
creates the dske account, enables and starts nothing; three hubs and two clients configured under
/etc/dske run from the installed units and deliver a key pair through ETSI GS QKD 014; dskectl shows
a node's status over the system bus; the manual pages render; an upgrade (the same package installed
again) restarts the running instances. Removing the package stops the
instances and keeps their configuration and /var/lib/dske; purging it removes the configuration and
the links of enabled instances, keeps /var/lib/dske, and leaves no other file behind.

Usage: test-deb.py --source DIR --build DIR

The packages are built in DIR/packages/deb. The container's root is the cached one of the system
tests (see dske_container.py). Needs root, systemd-nspawn, mmdebstrap, dpkg-buildpackage, debhelper
and lintian; exits with 77 (skipped) without them.
"""

import argparse
import glob
import json
import os
import shutil
import sys
import tempfile
import time
import unittest

from dske_container import (CLIENTS, HUBS, Container, ContainerTestCase, copy_rootfs, log, missing_requirement, run,
                            unit_names, write_configs)

ARGS = None
PACKAGE_DIR = "/root/packages"
APT_ENV = ("DEBIAN_FRONTEND=noninteractive",)

# Where files may appear between the package's installation and its purge: the state the package
# keeps on purpose, and what the system itself writes (logs, the package manager's records, man-db's
# cache).
ALLOWED_NEW = (
    "var/lib/dske",
    "var/log",
    "var/lib/dpkg",
    "var/lib/apt",
    "var/cache/apt",
    "var/cache/man",
)


def files_below(root):
    """Every path below root, relative to it, without the API file systems that the container mounts
    over its own directories."""
    skip = {"proc", "sys", "dev", "run", "tmp"}
    found = set()
    for top, dirs, files in os.walk(root):
        rel = os.path.relpath(top, root)
        if rel == ".":
            dirs[:] = [d for d in dirs if d not in skip]
        for name in dirs + files:
            found.add(os.path.normpath(os.path.join(rel, name)))
    return found


def build_packages():
    out = os.path.join(ARGS.build, "packages", "deb")
    env = dict(os.environ, DEB_BUILD_OPTIONS=f"parallel={os.cpu_count() or 1}")
    started = time.monotonic()
    run([os.path.join(ARGS.source, "packaging", "build-deb"), out], env=env, stdout=sys.stdout,
        stderr=sys.stdout)
    log(f"package built in {time.monotonic() - started:.0f} s")
    debs = glob.glob(os.path.join(out, "dske_*.deb"))
    if len(debs) != 1:
        raise AssertionError(f"expected one dske_*.deb in {out}, found {debs}")
    return out, debs[0]


class DebTests(ContainerTestCase):
    @classmethod
    def setUpClass(cls):
        started = time.monotonic()
        cls.workdir = tempfile.mkdtemp(prefix="dske-deb-", dir="/var/tmp")
        try:
            out, deb = build_packages()
            with open(os.path.join(out, "lintian.txt"), encoding="utf-8") as f:
                cls.lintian = f.read()
            cls.root = os.path.join(cls.workdir, "root")
            copy_rootfs(cls.root)
            inner = os.path.join(cls.root, PACKAGE_DIR.lstrip("/"))
            os.makedirs(inner)
            shutil.copy(deb, inner)
            cls.deb = os.path.join(PACKAGE_DIR, os.path.basename(deb))
            cls.container = Container(cls.root, os.path.join(cls.workdir, "console.log"))
            cls.container.boot()
            cls.before = files_below(cls.root)
            log(f"ready in {time.monotonic() - started:.0f} s")
        except BaseException:
            cls.tearDownClass()
            raise

    def exists(self, path):
        return os.path.lexists(os.path.join(self.root, path.lstrip("/")))

    def dpkg_status(self):
        r = self.sh("dpkg-query", "-W", "-f=${db:Status-Abbrev}", "dske", check=False)
        return r.stdout.strip() if r.returncode == 0 else "not known"

    def assertUnitsStopped(self):
        for unit in unit_names():
            p = self.container.show(unit, "ActiveState", "MainPID")
            self.assertEqual((p["ActiveState"], p["MainPID"]), ("inactive", "0"), unit)

    # -- tests, in name order: each goes on from where the one before left the container --

    def test_0_lintian(self):
        # build-deb fails on an error; the warnings are the ones the README lists.
        warnings = sorted({line.split()[2] for line in self.lintian.splitlines() if line.startswith("W: ")})
        self.assertEqual(warnings, ["initial-upload-closes-no-bugs"], self.lintian)

    def test_1_install(self):
        r = self.sh("apt-get", "install", "-y", self.deb, env=APT_ENV, timeout=300)
        log("installed:\n" + r.stdout[-1500:])
        self.assertEqual(self.dpkg_status(), "ii")
        for path in ("/usr/bin/dske-hub", "/usr/bin/dske-client", "/usr/bin/dskectl",
                     "/usr/share/dbus-1/system.d/org.dske.conf", "/usr/lib/sysusers.d/dske.conf",
                     "/usr/share/bash-completion/completions/dskectl",
                     "/usr/share/doc/dske/examples/hub.conf", "/usr/share/doc/dske/examples/client.conf",
                     "/usr/share/doc/dske/copyright", "/usr/share/man/man8/dske-hub.8.gz"):
            self.assertTrue(self.exists(path), path)
        units = self.sh("dpkg", "-L", "dske").stdout.split()
        for unit in ("dske-hub@.service", "dske-client@.service"):
            self.assertTrue(any(p.endswith("/systemd/system/" + unit) for p in units), units)
        conffiles = self.sh("dpkg-query", "-W", "-f=${Conffiles}", "dske").stdout
        self.assertIn("/etc/dske/hub/hub.conf.example", conffiles)
        self.assertIn("/etc/dske/client/client.conf.example", conffiles)

        # The account, from the sysusers.d entry.
        entry = self.sh("getent", "passwd", "dske").stdout.strip().split(":")
        self.assertEqual((entry[0], entry[5], entry[6]), ("dske", "/var/lib/dske", "/usr/sbin/nologin"), entry)
        self.sh("getent", "group", "dske")

        # Nothing enabled, nothing started.
        self.assertEqual(glob.glob(os.path.join(self.root, "etc/systemd/system/*.wants/dske-*")), [])
        r = self.sh("systemctl", "list-units", "--all", "--plain", "--no-legend", "dske-*")
        self.assertEqual(r.stdout.strip(), "")

    def test_2_run(self):
        write_configs(self.root, mode=0o640)
        self.sh("sh", "-c", "chgrp dske /etc/dske/hub/*.conf /etc/dske/client/*.conf")
        # One instance enabled as an administrator would, for the purge to undo.
        self.sh("systemctl", "enable", "dske-hub@h1.service")
        self.assertTrue(self.exists("/etc/systemd/system/multi-user.target.wants/dske-hub@h1.service"))
        self.sh("systemctl", "start", *unit_names())
        for unit in unit_names():
            p = self.container.show(unit, "ActiveState", "SubState", "User")
            self.assertEqual((p["ActiveState"], p["SubState"], p["User"]), ("active", "running", "dske"),
                             f"{unit}: {p}\n{self.container.unit_log(unit)}")

        key = self.container.key_pair()
        self.assertTrue(key["key"], key)

        # Over the system bus, as the installed policy lets any user do.
        out = self.sh("dskectl", "status", "h1").stdout
        self.assertIn("h1", out)
        # A client is ready once it holds PSRD from every hub, which may take a retry or two for a
        # hub that started after it.
        for node in ("h1", "alice"):
            deadline = time.monotonic() + 60
            while True:
                status = json.loads(self.sh("dskectl", "--json", "status", node).stdout)
                if status.get("ready") is True or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            self.assertEqual((status["name"], status["ready"]), (node, True), status)

        r = self.sh("man", "--warnings", "dske-hub", env=("MANWIDTH=80", "MAN_DISABLE_SECCOMP=1", "PAGER=cat"))
        self.assertIn("dske-hub - DSKE security hub", r.stdout)
        self.assertEqual(r.stderr.strip(), "")
        for page in ("dske-client", "dskectl", "dske.conf", "org.dske"):
            self.sh("man", page, env=("MANWIDTH=80", "MAN_DISABLE_SECCOMP=1", "PAGER=cat"))

    def test_2b_upgrade(self):
        # Installing the package again runs the maintainer scripts of an upgrade: the instances keep
        # running, restarted on the new files.
        before = {unit: self.container.show(unit, "MainPID")["MainPID"] for unit in unit_names()}
        self.sh("apt-get", "install", "-y", "--reinstall", self.deb, env=APT_ENV, timeout=300)
        for unit in unit_names():
            p = self.container.show(unit, "ActiveState", "SubState", "MainPID")
            self.assertEqual((p["ActiveState"], p["SubState"]), ("active", "running"), f"{unit}: {p}")
            self.assertNotEqual(p["MainPID"], before[unit], unit)
        self.assertTrue(self.exists("/etc/systemd/system/multi-user.target.wants/dske-hub@h1.service"))

    def test_3_remove(self):
        self.sh("apt-get", "remove", "-y", "dske", env=APT_ENV, timeout=300)
        self.assertEqual(self.dpkg_status(), "rc")
        self.assertFalse(self.exists("/usr/bin/dske-hub"))
        self.assertUnitsStopped()
        # Configuration and state stay.
        for name in HUBS:
            self.assertTrue(self.exists(f"/etc/dske/hub/{name}.conf"), name)
            self.assertTrue(os.path.isdir(os.path.join(self.root, f"var/lib/dske/hub-{name}")), name)
        for name in CLIENTS:
            self.assertTrue(self.exists(f"/etc/dske/client/{name}.conf"), name)
            self.assertTrue(os.path.isdir(os.path.join(self.root, f"var/lib/dske/client-{name}")), name)
        self.assertTrue(self.exists("/etc/dske/hub/hub.conf.example"))

    def test_4_purge(self):
        r = self.sh("apt-get", "purge", "-y", "dske", env=APT_ENV, timeout=300)
        self.assertIn("/var/lib/dske is kept", r.stdout + r.stderr)
        self.assertEqual(self.dpkg_status(), "not known")
        self.assertFalse(self.exists("/etc/dske"))
        self.assertEqual(glob.glob(os.path.join(self.root, "etc/systemd/system/*.wants/dske-*")), [])
        # Key material is never deleted by the package.
        for name in HUBS:
            self.assertTrue(os.path.isdir(os.path.join(self.root, f"var/lib/dske/hub-{name}")), name)

        after = files_below(self.root)
        stray = sorted(p for p in after - self.before
                       if not any(p == a or p.startswith(a + "/") for a in ALLOWED_NEW))
        self.assertEqual(stray, [])
        log("new below: " + " ".join(sorted({"/".join(p.split("/")[:3]) for p in after - self.before})))
        # Nor anything of the package's in the places where the system writes, but for the pages
        # that man formatted above and keeps in its cache, /var/cache/man/catN, until man-db's daily
        # job deletes them a week later.
        leftovers = sorted(p for p in after - self.before
                           if "dske" in os.path.basename(p) and p != "var/lib/dske"
                           and not p.startswith(("var/lib/dske/", "var/cache/man/cat")))
        self.assertEqual(leftovers, [])


def main():
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("--source", required=True)
    parser.add_argument("--build", required=True)
    ARGS, rest = parser.parse_known_args()
    why = missing_requirement()
    for tool in ("dpkg-buildpackage", "dh", "lintian"):
        if not why and not shutil.which(tool):
            why = f"{tool} is not installed"
    if why:
        print(f"skipped: {why}")
        sys.exit(77)
    started = time.monotonic()
    prog = unittest.main(argv=[sys.argv[0]] + rest, exit=False, verbosity=2)
    log(f"done in {time.monotonic() - started:.0f} s")
    sys.exit(0 if prog.result.wasSuccessful() else 1)


if __name__ == "__main__":
    main()
