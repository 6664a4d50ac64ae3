"""The product's ASGI server, one command for every place that serves it: ``make run``, the
Docker image, the test suite's servers and the benchmarks.

``python -m config.serve [--host H] [--port P]`` serves ``config.asgi:application`` with
uvicorn. Not daphne: daphne's HTTP stack (Twisted) reads a whole request body, and parses a
multipart one, before the application sees the request, so an anonymous 100 MB upload cost
gigabytes of memory before any check could refuse it. uvicorn hands the body to the
application as it arrives, with flow control, so ``config.bodylimit`` can refuse it by its
Content-Length, or once a chunked body passes the route's limit, having buffered at most one
read.

``--workers N`` (``SERVER_WORKERS``) runs N such processes on the one port (``SO_REUSEPORT``:
the kernel spreads connections over them), one event loop and core each; each holds its own
sockets' credit and batches.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time

from config.env import env

# The largest WebSocket message (daphne's default before, which the stream protocol's frame cap
# is derived from): a larger one closes the socket with 1009.
WS_MAX_MESSAGE_BYTES = 1024 * 1024


def server_argv(host: str = "127.0.0.1", port: int = 8000) -> list[str]:
    """The command line that serves the product on ``host:port``."""
    return [sys.executable, "-m", "config.serve", "--host", host, "--port", str(port)]


def uvicorn_config(host: str, port: int):
    import uvicorn

    return uvicorn.Config(
        "config.asgi:application",
        host=host,
        port=port,
        lifespan="on",  # config.asgi flushes accepted frames on shutdown
        log_config=None,  # Django's LOGGING (timestamps, LOG_LEVEL) formats uvicorn's lines too
        # X-Forwarded-* are Django's business (TRUST_X_FORWARDED_PROTO, NUM_PROXIES): uvicorn
        # would otherwise trust them from any client on 127.0.0.1
        proxy_headers=False,
        server_header=False,
        ws_max_size=WS_MAX_MESSAGE_BYTES,
        ws_per_message_deflate=False,  # frames are JPEG/PNG: compressing costs CPU for nothing
        # open connections beyond this get 503 at once instead of memory
        limit_concurrency=env.int("SERVER_MAX_CONNECTIONS", default=2000),
        timeout_keep_alive=5,
        # SIGTERM: stop accepting, close sockets (1012), give requests this long, flush
        timeout_graceful_shutdown=env.float("SERVER_SHUTDOWN_SECONDS", default=5.0),
    )


def _server(config):
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self):
            # uvicorn re-raises the SIGTERM it handled once it has shut down, which kills the
            # process with it; the shutdown is complete, so exit 0 instead (below)
            with super().capture_signals():
                yield
                self._captured_signals.clear()

    return Server(config)


def _reuse_port_socket(host: str, port: int) -> socket.socket:
    """A listening socket that other processes bind too (``SO_REUSEPORT``): the kernel spreads
    new connections over them, each process serving the ones it was given."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _supervise(args, n: int) -> int:
    """Run ``n`` server processes on one port; a signal goes to each, and when one exits the
    others are stopped too (a process manager restarts the whole), with its exit status."""
    argv = [*server_argv(args.host, args.port), "--workers", "1", "--reuse-port"]
    procs = [subprocess.Popen(argv) for _ in range(n)]

    def forward(sig, _frame):
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(sig)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, forward)
    while all(proc.poll() is None for proc in procs):
        time.sleep(0.2)
    forward(signal.SIGTERM, None)
    codes = [proc.wait() for proc in procs]
    return next((c for c in codes if c), 0)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m config.serve", description=__doc__)
    p.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    p.add_argument(
        "--workers",
        type=int,
        default=env.int("SERVER_WORKERS", default=1),
        help="server processes on the port (default SERVER_WORKERS, 1)",
    )
    p.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.workers < 1:
        p.error("--workers must be at least 1")
    if args.workers > 1:
        sys.exit(_supervise(args, args.workers))
    sys.path.insert(0, os.getcwd())
    server = _server(uvicorn_config(args.host, args.port))
    server.run(sockets=[_reuse_port_socket(args.host, args.port)] if args.reuse_port else None)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    # Not a normal exit: it would join the threads that sync views and database calls run in,
    # and one stuck in a query (the database away) would hold the process past its shutdown
    # budget; the shutdown above has already answered or closed every connection.
    os._exit(0 if server.started else 3)  # 3: uvicorn's startup failure


if __name__ == "__main__":
    main()
