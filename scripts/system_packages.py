"""The system packages of requirements/system.txt: list them, or make sure they are installed.

Standard library only: `make test` runs this with the machine's python3 before .venv exists.

    python3 scripts/system_packages.py ensure [--dry-run]  # install what is missing (root), else
                                                          # print the apt-get command, exit 2
    python3 scripts/system_packages.py list [--image]      # the names (--image: without "test:")

`--file PATH` reads another list (the tests use it). Present means dpkg says "installed".
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

LIST = Path(__file__).resolve().parents[1] / "requirements" / "system.txt"
APT_INSTALL = ("apt-get", "install", "-y", "-q", "--no-install-recommends")
# Exit status when packages are missing and this user cannot install them: nothing else ran.
MISSING = 2
# "# test: ..." (or "tests:") in the list: a package only the tests need, kept out of the image.
TEST_ONLY = re.compile(r"tests?\s*:\s*", re.IGNORECASE)
# What a package is for, when something other than dpkg can tell: a Python that is not Debian's
# (pyenv, python.org) has its own ensurepip and creates .venv without python3-venv.
SATISFIED_WITHOUT_DPKG: dict[str, Callable[[], bool]] = {
    "python3-venv": lambda: importlib.util.find_spec("ensurepip") is not None,
}


@dataclass(frozen=True)
class Package:
    name: str
    test_only: bool  # marked "test:" in the list: not in the production image
    why: str


def read_list(path: Path = LIST) -> list[Package]:
    packages = []
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line, _, comment = raw.partition("#")
        words = line.split()
        if not words:
            continue
        if len(words) > 1:
            raise ValueError(f"{path}:{number}: one package per line, not {line.strip()!r}")
        comment = comment.strip()
        marker = TEST_ONLY.match(comment)
        test_only = marker is not None
        why = comment[marker.end():].strip() if marker else comment
        packages.append(Package(words[0], test_only, why))
    return packages


def missing(names: Sequence[str]) -> list[str]:
    """The names dpkg does not list as installed (in the given order)."""
    if not names:
        return []
    # One dpkg-query for all; unknown names go to stderr and are simply absent from stdout.
    out = subprocess.run(  # noqa: S603 (names from our own list)
        ["dpkg-query", "-W", "-f=${Package}\t${db:Status-Abbrev}\n", *names],  # noqa: S607 (dpkg from PATH)
        capture_output=True, text=True, check=False,
    ).stdout  # fmt: skip
    installed = set()
    for row in out.splitlines():
        name, _, status = row.partition("\t")
        if status.startswith("ii"):
            installed.add(name.split(":")[0])  # "name:amd64" for multi-arch packages
    return [
        name for name in names
        if name not in installed and not (name in SATISFIED_WITHOUT_DPKG and SATISFIED_WITHOUT_DPKG[name]())
    ]  # fmt: skip


def apt_command(names: Sequence[str], *, sudo: bool) -> str:
    return ("sudo " if sudo else "") + " ".join([*APT_INSTALL, *names])


def ensure(path: Path, *, dry_run: bool = False) -> int:
    started = time.monotonic()
    packages = [p.name for p in read_list(path)]
    if shutil.which("dpkg-query") is None:
        print(f"== system packages: not a Debian system (no dpkg-query); the tests need: {' '.join(packages)}")
        return 0
    absent = missing(packages)
    if not absent:
        print(f"== system packages: all {len(packages)} of {path.name} present ({time.monotonic() - started:.1f} s)")
        return 0
    if os.geteuid() != 0 and not dry_run:
        print(
            f"== system packages: {len(absent)} missing: {' '.join(absent)}\n"
            f"   Install them (as root), then run the same command again:\n\n"
            f"   sudo apt-get update && {apt_command(absent, sudo=True)}\n",
            file=sys.stderr,
        )
        return MISSING
    commands = [["apt-get", "update", "-q"], [*APT_INSTALL, *absent]]
    print(f"== system packages: installing {len(absent)}: {' '.join(absent)}", flush=True)
    for command in commands:
        if dry_run:
            print("   would run: " + " ".join(command))
            continue
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        if subprocess.run(command, env=env, check=False).returncode != 0:  # noqa: S603 (fixed argv)
            print(f"== system packages: `{' '.join(command)}` failed", file=sys.stderr)
            return 1
    still = [] if dry_run else missing(absent)
    if still:
        print(f"== system packages: still missing after apt-get: {' '.join(still)}", file=sys.stderr)
        return 1
    done = "dry run" if dry_run else "installed"
    print(f"== system packages: {done} {' '.join(absent)} ({time.monotonic() - started:.1f} s)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("ensure", "list"))
    parser.add_argument("--file", type=Path, default=LIST)
    parser.add_argument("--image", action="store_true", help="list: leave out the test-only packages")
    parser.add_argument("--dry-run", action="store_true", help="ensure: print the apt-get commands only")
    args = parser.parse_args(argv)
    if args.command == "list":
        print(" ".join(p.name for p in read_list(args.file) if not (args.image and p.test_only)))
        return 0
    return ensure(args.file, dry_run=args.dry_run)


if __name__ == "__main__":
    sys.exit(main())
