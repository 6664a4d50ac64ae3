#!/usr/bin/env python3
"""Commit messages are a subject of at most 72 characters, a blank line, then the body.

Checks every commit after the last one made before the rule (``RULE_SINCE``) up to HEAD;
exits 1 naming each offender. Run by ``.ci/run`` and usable as a pre-push check.
"""

from __future__ import annotations

import subprocess
import sys

RULE_SINCE = "33ed4b2"  # the last commit before the rule (issue 21)
MAX_SUBJECT = 72


def problems(message: str) -> list[str]:
    lines = message.rstrip("\n").split("\n")
    out = []
    if not lines[0].strip():
        out.append("empty subject")
    if len(lines[0]) > MAX_SUBJECT:
        out.append(f"subject is {len(lines[0])} characters (at most {MAX_SUBJECT})")
    if len(lines) > 1 and lines[1].strip():
        out.append("no blank line after the subject")
    return out


def main(argv: list[str]) -> int:
    since = argv[1] if len(argv) > 1 else RULE_SINCE
    known = subprocess.run(["git", "cat-file", "-e", f"{since}^{{commit}}"], capture_output=True)
    # a shallow clone may lack the base: then only the commits it has are checked
    span = [f"{since}..HEAD"] if known.returncode == 0 else ["HEAD", "--max-count=50"]
    shas = subprocess.run(
        ["git", "rev-list", *span], capture_output=True, text=True, check=True
    ).stdout.split()
    bad = 0
    for sha in shas:
        message = subprocess.run(
            ["git", "show", "-s", "--format=%B", sha], capture_output=True, text=True, check=True
        ).stdout
        for p in problems(message):
            print(f"{sha[:10]} {message.splitlines()[0][:60]!r}: {p}", file=sys.stderr)
            bad += 1
    print(f"commit messages: {len(shas)} checked since {since}, {bad} problem(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
