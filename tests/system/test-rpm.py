# SPDX-License-Identifier: MIT
"""The RPM package: packaging/rpm/dske.spec builds with packaging/build-rpm (on a system without an
rpm database, with --nodeps and the spec's fallback macros), and the package holds the daemons, the
template units, the sysusers.d entry, the bus policy, the manual pages, the examples and the default
configuration layout, with scriptlets that create the account and stop the instances on erase.

Usage: test-rpm.py --source DIR --build DIR

The package is built in DIR/packages/rpm. Needs rpmbuild; exits with 77 (skipped) without it.
"""

import argparse
import glob
import os
import shutil
import subprocess
import sys
import time
import unittest

ARGS = None

EXPECTED = [
    "/usr/bin/dske-hub",
    "/usr/bin/dske-client",
    "/usr/bin/dskectl",
    "/usr/lib/systemd/system/dske-hub@.service",
    "/usr/lib/systemd/system/dske-client@.service",
    "/usr/lib/sysusers.d/dske.conf",
    "/usr/share/dbus-1/system.d/org.dske.conf",
    "/usr/share/dbus-1/interfaces/org.dske.Node1.xml",
    "/usr/share/dbus-1/interfaces/org.dske.Hub1.xml",
    "/usr/share/dbus-1/interfaces/org.dske.Client1.xml",
    "/usr/share/dbus-1/interfaces/org.dske.Peer1.xml",
    "/usr/share/bash-completion/completions/dskectl",
    "/etc/dske",
    "/etc/dske/hub",
    "/etc/dske/client",
    "/etc/dske/hub/hub.conf.example",
    "/etc/dske/client/client.conf.example",
]
# Fedora compresses manual pages and Debian's rpm does not: either is right.
EXPECTED_MAN = ["man1/dskectl.1", "man5/dske.conf.5", "man5/org.dske.5", "man8/dske-hub.8", "man8/dske-client.8"]
EXPECTED_DOC = ["README.md", "examples/hub.conf", "examples/client.conf", "examples/demo.ini",
                "examples/topology.ini"]


def rpm_query(rpm, *args):
    r = subprocess.run(["rpm", "-qp", *args, rpm], capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError(f"rpm -qp {' '.join(args)} {rpm}: {r.stderr}")
    return r.stdout


class RpmTests(unittest.TestCase):
    rpm = None

    @classmethod
    def setUpClass(cls):
        out = os.path.join(ARGS.build, "packages", "rpm")
        started = time.monotonic()
        subprocess.run([os.path.join(ARGS.source, "packaging", "build-rpm"), out], check=True,
                       stdout=sys.stdout, stderr=sys.stdout)
        print(f"package built in {time.monotonic() - started:.0f} s", flush=True)
        rpms = [r for r in glob.glob(os.path.join(out, "dske-*.rpm")) if "debug" not in os.path.basename(r)]
        if len(rpms) != 1:
            raise AssertionError(f"expected one dske package in {out}, found {rpms}")
        cls.rpm = rpms[0]

    def test_files(self):
        files = rpm_query(self.rpm, "-l").split()
        for path in EXPECTED:
            self.assertIn(path, files)
        for page in EXPECTED_MAN:
            path = "/usr/share/man/" + page
            self.assertTrue(path in files or path + ".gz" in files, page)
        docdir = [p for p in files if p.startswith("/usr/share/doc/dske")]
        for doc in EXPECTED_DOC:
            self.assertTrue(any(p.endswith("/" + doc) for p in docdir), doc)
        self.assertTrue(any(p.startswith("/usr/share/licenses/dske") and p.endswith("/LICENSE") for p in files))
        # Nothing of the build or the tests, nothing in /var: the state directories are systemd's.
        self.assertFalse([p for p in files if p.startswith("/var") or "test" in os.path.basename(p)], files)

    def test_config(self):
        configs = rpm_query(self.rpm, "-c").split()
        self.assertEqual(sorted(configs), ["/etc/dske/client/client.conf.example", "/etc/dske/hub/hub.conf.example"])

    def test_metadata(self):
        info = rpm_query(self.rpm, "--queryformat", "%{NAME} %{VERSION} %{LICENSE}")
        self.assertEqual(info, f"dske {self.version()} MIT")
        requires = rpm_query(self.rpm, "--requires")
        for lib in ("libsystemd.so.0", "libmicrohttpd.so.12", "libjson-c.so.5", "libcurl", "libnettle.so.8"):
            self.assertIn(lib, requires)

    def test_scriptlets(self):
        scripts = rpm_query(self.rpm, "--scripts")
        pre = scripts.split("preinstall scriptlet")[1].split("scriptlet")[0]
        # The account: from the sysusers.d entry on Fedora, by useradd where that macro is missing.
        self.assertTrue("dske" in pre and ("useradd" in pre or "sysusers" in pre), scripts)
        preun = scripts.split("preuninstall scriptlet")[1].split("scriptlet")[0]
        self.assertIn("dske-hub@*.service", preun)
        self.assertIn("dske-client@*.service", preun)
        self.assertIn("postuninstall scriptlet", scripts)

    def version(self):
        with open(os.path.join(ARGS.source, "meson.build"), encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if line.startswith("version"):
                    return line.split("'")[1]
        raise AssertionError("no version in meson.build")


def main():
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("--source", required=True)
    parser.add_argument("--build", required=True)
    ARGS, rest = parser.parse_known_args()
    if not shutil.which("rpmbuild"):
        print("skipped: rpmbuild is not installed")
        sys.exit(77)
    prog = unittest.main(argv=[sys.argv[0]] + rest, exit=False, verbosity=2)
    sys.exit(0 if prog.result.wasSuccessful() else 1)


if __name__ == "__main__":
    main()
