"""The product's ASGI server, one command for every place that serves it: ``make run``, the
Docker image, the test suite's servers and the benchmarks.

``python -m config.serve [--host H] [--port P]`` serves ``config.asgi:application``.
"""

from __future__ import annotations

import argparse
import os
import sys


def server_argv(host: str = "127.0.0.1", port: int = 8000) -> list[str]:
    """The command line that serves the product on ``host:port``."""
    return [sys.executable, "-m", "daphne", "-b", host, "-p", str(port), "config.asgi:application"]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m config.serve", description=__doc__)
    p.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    args = p.parse_args(argv)
    cmd = server_argv(args.host, args.port)
    os.execv(cmd[0], cmd)


if __name__ == "__main__":
    main()
