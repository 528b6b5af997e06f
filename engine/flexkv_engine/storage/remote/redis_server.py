"""A throwaway ``redis-server`` on 127.0.0.1, for ``flexkv-run bench remote`` and tests.

It listens on loopback only, on a free port, keeps nothing on disk (``--save ''``,
``--appendonly no``; its working directory and log are a temporary directory), and can
be stopped and started again on the same port (a store outage and its end).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def redis_server_binary() -> str | None:
    """Path of ``redis-server`` (or ``valkey-server``), None when neither is installed."""
    return shutil.which("redis-server") or shutil.which("valkey-server")


class LocalRedisServer:
    """``redis-server`` on ``127.0.0.1:port`` (a free port unless given), optionally with
    ``--requirepass``. ``start()`` returns once it answers; ``stop()`` ends it; both may
    be called again (same port). A context manager: started on entry, stopped and its
    directory removed on exit."""

    def __init__(
        self,
        *,
        password: str | None = None,
        port: int | None = None,
        binary: str | None = None,
        start_timeout: float = 10.0,
    ) -> None:
        found = binary or redis_server_binary()
        if found is None:
            raise FileNotFoundError("redis-server is not installed (apt-get install redis-server)")
        self.binary = found
        self.password = password
        self.port = port or free_port()
        self.start_timeout = start_timeout
        self._tmp = tempfile.TemporaryDirectory(prefix="flexkv-redis-")
        self.directory = Path(self._tmp.name)
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0`` (the password is given apart)."""
        return f"redis://{HOST}:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        if self.running:
            return
        args = [
            self.binary, "--port", str(self.port), "--bind", HOST, "--save", "",
            "--appendonly", "no", "--dir", str(self.directory), "--daemonize", "no",
            "--logfile", str(self.directory / "redis.log"),
        ]  # fmt: skip
        if self.password is not None:
            args += ["--requirepass", self.password]
        self._proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + self.start_timeout
        while not self._answers():
            if self._proc.poll() is not None:
                _, err = self._proc.communicate()
                self._proc = None
                raise RuntimeError(f"redis-server exited at start: {self._log_tail(err)}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not answer within {self.start_timeout} s")
            time.sleep(0.02)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        self._tmp.cleanup()

    def __enter__(self) -> LocalRedisServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _answers(self) -> bool:
        """Whether the server answers PING (NOAUTH counts: it is up)."""
        try:
            with socket.create_connection((HOST, self.port), timeout=1.0) as sock:
                sock.sendall(b"PING\r\n")
                reply = sock.recv(64)
        except OSError:
            return False
        return reply.startswith((b"+PONG", b"-NOAUTH"))

    def _log_tail(self, err: bytes) -> str:
        text = err.decode(errors="replace").strip()
        with contextlib.suppress(OSError):
            text = (self.directory / "redis.log").read_text(errors="replace").strip() or text
        return " | ".join(text.splitlines()[-3:])
