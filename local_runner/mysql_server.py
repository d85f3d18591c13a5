"""A real MariaDB server for tests: Debian's `mariadb-server` on a temp datadir.

Like pg_server.py for Postgres: `mariadb-install-db` initialises a throw-away data
directory, `mariadbd` listens on a free loopback port (no networking beyond 127.0.0.1,
its socket and pid file inside the data directory), offering TLS with a throw-away
certificate for `localhost` (`ca_pem`), and `stop()` shuts it down and deletes the
directory. As root the server runs as the `mysql` account (Debian's package
creates it), else as the current user. The tests connect as
`dodo` (a random password per server, all rights on the databases named dodo_*: `dodo_test`, or a test's own).

    with start_mariadb() as my:
        my.resource  # a Windmill `mysql` resource: {host, port, user, password, database, ssl}

`make setup` installs mariadb-server when neither `mariadbd` nor `mysqld` is found.
"""
from __future__ import annotations

import atexit
import os
import pathlib
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time

__all__ = ["MariaDBServer", "start_mariadb", "find_server"]

_SBIN = ("/usr/sbin", "/usr/local/sbin", "/usr/bin")


def find_server() -> tuple[str, str]:
    """(server binary, mariadb-install-db) or a RuntimeError naming the fix."""
    def which(*names: str) -> str | None:
        for name in names:
            found = shutil.which(name) or next((f"{d}/{name}" for d in _SBIN if os.path.isfile(f"{d}/{name}")), None)
            if found:
                return found
        return None
    server, install = which("mariadbd", "mysqld"), which("mariadb-install-db", "mysql_install_db")
    if not server or not install:
        raise RuntimeError("no MariaDB server found: run `make setup` (installs Debian's mariadb-server) "
                           "or `apt-get install mariadb-server`")
    return server, install


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MariaDBServer:
    """A running server on a temp datadir: `resource`, `stop()`, `restart()`."""

    def __init__(self) -> None:
        self.server_bin, self.install_bin = find_server()
        self.data_dir = pathlib.Path(tempfile.mkdtemp(prefix="dodo-mariadb-"))
        self.port = _free_port()
        self.password = secrets.token_hex(12)
        self.database = "dodo_test"
        self.ca_pem = ""
        self.user = "mysql" if os.geteuid() == 0 else pwd.getpwuid(os.getuid()).pw_name
        self._proc: subprocess.Popen | None = None
        if os.geteuid() == 0:
            shutil.chown(self.data_dir, self.user, self.user)

    def _make_certificate(self) -> None:
        """A throw-away self-signed certificate for the name `localhost` only (the openssl CLI,
        as tests/provider_standins.py): a client that checks the name connects to `localhost`,
        one that connects to 127.0.0.1 and checks it is refused. `ca_pem` is what a client trusts."""
        cert, key = self.data_dir / "server-cert.pem", self.data_dir / "server-key.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                        "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True, timeout=60)
        if os.geteuid() == 0:
            for f in (cert, key):
                shutil.chown(f, self.user, self.user)
        self.ca_pem = cert.read_text()

    @property
    def resource(self) -> dict:
        """Windmill's `mysql` resource type (hub: host, port, user, password, database, ssl)."""
        return {"host": "127.0.0.1", "port": self.port, "user": "dodo", "password": self.password,
                "database": self.database, "ssl": False}

    def _args(self) -> list[str]:
        d = self.data_dir
        return [self.server_bin, "--no-defaults", f"--datadir={d / 'data'}", f"--socket={d / 'mysqld.sock'}",
                f"--pid-file={d / 'mysqld.pid'}", f"--port={self.port}", "--bind-address=127.0.0.1",
                f"--user={self.user}", "--skip-name-resolve", "--innodb-flush-log-at-trx-commit=2",
                "--innodb-buffer-pool-size=32M", "--character-set-server=utf8mb4",
                "--collation-server=utf8mb4_bin", f"--log-error={d / 'error.log'}",
                # TLS offered (not required): plain connections as before, TLS ones for the mirror's tests
                f"--ssl-cert={d / 'server-cert.pem'}", f"--ssl-key={d / 'server-key.pem'}"]

    def start(self) -> "MariaDBServer":
        first = not (self.data_dir / "data").exists()
        if first:
            self._make_certificate()
            subprocess.run([self.install_bin, "--no-defaults", f"--datadir={self.data_dir / 'data'}",
                            f"--user={self.user}", "--auth-root-authentication-method=normal",
                            "--skip-test-db"], check=True, capture_output=True, timeout=180)
        self._proc = subprocess.Popen(self._args(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait_ready(set_password=first)
        return self

    def _wait_ready(self, *, set_password: bool) -> None:
        import pymysql  # noqa: PLC0415

        deadline = time.monotonic() + 120
        while True:
            try:
                if set_password:  # a fresh datadir: root has no password over TCP yet
                    conn = pymysql.connect(host="127.0.0.1", port=self.port, user="root", password="")
                    with conn.cursor() as cur:
                        cur.execute(f"CREATE DATABASE IF NOT EXISTS {self.database} CHARACTER SET utf8mb4")
                        cur.execute("CREATE USER IF NOT EXISTS 'dodo'@'127.0.0.1' IDENTIFIED BY %s", [self.password])
                        cur.execute("GRANT ALL ON `dodo\\_%`.* TO 'dodo'@'127.0.0.1'")  # dodo_test, and a test's own
                    conn.close()
                else:
                    pymysql.connect(**_connect_args(self.resource)).close()
                return
            except pymysql.err.OperationalError:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    log = (self.data_dir / "error.log")
                    tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                    raise RuntimeError(f"mariadbd did not start on port {self.port}:\n{tail}") from None
                time.sleep(0.2)

    def stop(self, *, keep_data: bool = False) -> None:
        if self._proc and self._proc.poll() is None:
            self._proc.terminate()  # SIGTERM: a clean InnoDB shutdown
            try:
                self._proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        if not keep_data:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def kill(self) -> None:
        """SIGKILL, as a crash: the datadir stays for `start()` (InnoDB recovery)."""
        if self._proc and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    def restart(self) -> None:
        self.stop(keep_data=True)
        self.start()

    def __enter__(self) -> "MariaDBServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _connect_args(resource: dict) -> dict:
    return {"host": resource["host"], "port": int(resource["port"]), "user": resource["user"],
            "password": resource["password"], "database": resource["database"]}


def start_mariadb() -> MariaDBServer:
    """Initialise and start a throw-away server; stopped at exit if not before."""
    server = MariaDBServer().start()
    atexit.register(server.stop)
    return server
