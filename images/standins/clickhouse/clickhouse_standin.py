"""Stand-in for clickhouse-server 24.8 (no ClickHouse in Debian, no registry here): what the stack relies on.

`server`: the HTTP interface on http_port (8123) with /ping ("Ok.") and queries by GET ?query= or POST, logged in
as a user of users.xml + users.d/*.xml (the entrypoint writes CLICKHOUSE_USER's there) by HTTP basic auth,
X-ClickHouse-User/-Key headers or user/password parameters; databases kept as data/<db> and metadata/<db>.sql
under `path`; the Prometheus endpoint a config.d file declares (<prometheus><endpoint>, <port>); its log and
error log at logger.log / logger.errorlog. Queries: SELECT 1, SELECT version(), SHOW DATABASES,
CREATE DATABASE [IF NOT EXISTS], EXISTS DATABASE; anything else is refused as not implemented (code 48).
`client`: clickhouse-client's -h/--host, --port (the HTTP port here), -u/--user, --password, -q/--query,
--multiquery, queries on stdin. `extract-from-config --key`: a setting of the merged config.
No native protocol (9000), no tables.
"""

from __future__ import annotations

import base64
import os
import re
import signal
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

VERSION = "24.8.4.13"
CONFIG = os.environ.get("CLICKHOUSE_CONFIG", "/etc/clickhouse-server/config.xml")


class QueryError(Exception):
    def __init__(self, code: int, name: str, message: str, status: int = 400) -> None:
        super().__init__(f"Code: {code}. DB::Exception: {message}. ({name}) (version {VERSION} (official build))")
        self.status = status


def merged(main: str, subdir: str) -> ET.Element:
    """A config file with its `<name>.d/*.xml` overrides merged in, element by element (last one wins)."""
    root = ET.parse(main).getroot()
    for extra in sorted(Path(main).parent.joinpath(subdir).glob("*.xml")):
        merge(root, ET.parse(extra).getroot())
    return root


def merge(into: ET.Element, other: ET.Element) -> None:
    for child in other:
        mine = into.find(child.tag)
        if child.get("remove") == "remove":
            if mine is not None:
                into.remove(mine)
        elif mine is None or len(child) == 0:
            if mine is not None:
                into.remove(mine)
            into.append(child)
        else:
            merge(mine, child)


def setting(config: ET.Element, key: str, default: str = "") -> str:
    node = config.find(key.replace(".", "/"))
    return node.text.strip() if node is not None and node.text else default


def users(config: ET.Element) -> dict[str, str]:
    users_xml = setting(config, "user_directories.users_xml.path", "users.xml")
    path = users_xml if users_xml.startswith("/") else str(Path(CONFIG).parent / users_xml)
    root = merged(path, "users.d")
    found = root.find("users")
    return {} if found is None else {user.tag: (user.findtext("password") or "") for user in found}


class Server:
    def __init__(self, listen_host: str | None) -> None:
        self.config = merged(CONFIG, "config.d")
        self.users = users(self.config)
        self.path = Path(setting(self.config, "path", "/var/lib/clickhouse/"))
        self.log = Path(setting(self.config, "logger.log", "/var/log/clickhouse-server/clickhouse-server.log"))
        self.errors = Path(setting(self.config, "logger.errorlog",
                                   "/var/log/clickhouse-server/clickhouse-server.err.log"))
        self.listen_host = listen_host or setting(self.config, "listen_host", "0.0.0.0")
        self.started = time.time()
        self.queries = self.failed = 0
        self.lock = threading.Lock()
        for directory in (self.path / "data", self.path / "metadata", self.log.parent):
            directory.mkdir(parents=True, exist_ok=True)

    def write_log(self, level: str, message: str) -> None:
        line = f"{time.strftime('%Y.%m.%d %H:%M:%S')} [ {os.getpid()} ] {{}} <{level}> {message}\n"
        with self.lock:
            for path in (self.log, *([self.errors] if level == "Error" else [])):
                with path.open("a") as log:
                    log.write(line)
        print(line, end="", flush=True)

    def login(self, user: str, password: str) -> None:
        if user not in self.users or self.users[user] != password:
            raise QueryError(516, "AUTHENTICATION_FAILED", f"{user}: Authentication failed: password is incorrect, "
                             "or there is no user with such name", status=401)

    def databases(self) -> list[str]:
        return sorted(["INFORMATION_SCHEMA", "default", "information_schema", "system",
                       *(p.stem for p in (self.path / "metadata").glob("*.sql"))])

    def query(self, text: str) -> str:
        statement = text.strip().rstrip(";").strip()
        with self.lock:
            self.queries += 1
        if re.fullmatch(r"(?i)select\s+1", statement):
            return "1\n"
        if re.fullmatch(r"(?i)select\s+version\(\)", statement):
            return VERSION + "\n"
        if re.fullmatch(r"(?i)show\s+databases", statement):
            return "".join(f"{name}\n" for name in self.databases())
        match = re.fullmatch(r"(?i)exists\s+database\s+(\w+)", statement)
        if match:
            return f"{int(match.group(1) in self.databases())}\n"
        match = re.fullmatch(r"(?i)create\s+database\s+(if\s+not\s+exists\s+)?(\w+)", statement)
        if match:
            name = match.group(2)
            if name in self.databases():
                if not match.group(1):
                    raise QueryError(82, "DATABASE_ALREADY_EXISTS", f"Database {name} already exists")
                return ""
            (self.path / "data" / name).mkdir()
            (self.path / "metadata" / f"{name}.sql").write_text(f"ATTACH DATABASE {name}\nENGINE = Atomic\n")
            self.write_log("Information", f"DatabaseAtomic ({name}): created")
            return ""
        with self.lock:
            self.failed += 1
        raise QueryError(48, "NOT_IMPLEMENTED", "the clickhouse stand-in does not run this query")

    def metrics(self) -> str:
        values = [("ClickHouseProfileEvents_Query", "counter", self.queries),
                  ("ClickHouseProfileEvents_FailedQuery", "counter", self.failed),
                  ("ClickHouseAsyncMetrics_Uptime", "gauge", round(time.time() - self.started, 3))]
        return "".join(f"# TYPE {name} {kind}\n{name} {value}\n" for name, kind, value in values)

    def serve(self) -> None:
        server = self

        class Http(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.answer(None)

            def do_POST(self) -> None:
                self.answer(self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode())

            def answer(self, body: str | None) -> None:
                url = urllib.parse.urlsplit(self.path)
                params = dict(urllib.parse.parse_qsl(url.query))
                if url.path in ("/ping", "/") and "query" not in params and not body:
                    return self.reply(200, "Ok.\n")
                user, password = params.get("user", "default"), params.get("password", "")
                if self.headers.get("X-ClickHouse-User"):
                    user, password = self.headers["X-ClickHouse-User"], self.headers.get("X-ClickHouse-Key", "")
                auth = self.headers.get("Authorization", "")
                if auth.startswith("Basic "):
                    user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
                try:
                    server.login(user, password)
                    self.reply(200, server.query(" ".join(filter(None, [params.get("query"), body]))))
                except QueryError as exc:
                    server.write_log("Error", f"executeQuery: {exc}")
                    self.reply(exc.status, f"{exc}\n")

            def reply(self, status: int, text: str) -> None:
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/tab-separated-values; charset=UTF-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        class Metrics(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                found = self.path.split("?")[0] == setting(server.config, "prometheus.endpoint", "/metrics")
                data = (server.metrics() if found else "Not found.\n").encode()
                self.send_response(200 if found else 404)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=UTF-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        listeners = [ThreadingHTTPServer((self.listen_host, int(setting(self.config, "http_port", "8123"))), Http)]
        if self.config.find("prometheus") is not None:
            listeners.append(ThreadingHTTPServer((self.listen_host, int(setting(self.config, "prometheus.port"))),
                                                 Metrics))
        for listener in listeners[1:]:
            threading.Thread(target=listener.serve_forever, daemon=True).start()

        def stop(*_: object) -> None:
            self.write_log("Information", "Application: Received termination signal (Terminated)")
            os._exit(0)

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        self.write_log("Information", f"Application: Starting ClickHouse {VERSION} (stand-in), users "
                       f"{sorted(self.users)}, listening on {self.listen_host}:{listeners[0].server_address[1]}")
        self.write_log("Information", "Application: Ready for connections.")
        listeners[0].serve_forever()


def client(argv: list[str]) -> int:
    options = {"host": "127.0.0.1", "port": "8123", "user": "default", "password": "", "query": ""}
    aliases = {"-h": "host", "--host": "host", "--port": "port", "-u": "user", "--user": "user",
               "--password": "password", "-q": "query", "--query": "query"}
    args = iter(argv)
    for arg in args:
        if arg == "--multiquery":
            continue
        if arg not in aliases:
            print(f"Code: 552. DB::Exception: Unrecognized option '{arg}'. (UNRECOGNIZED_ARGUMENTS)", file=sys.stderr)
            return 1
        options[aliases[arg]] = next(args, "")
    text = options["query"] or sys.stdin.read()
    statements = [s for s in text.split(";") if s.strip()]
    auth = base64.b64encode(f"{options['user']}:{options['password']}".encode()).decode()
    for statement in statements:
        request = urllib.request.Request(f"http://{options['host']}:{options['port']}/", data=statement.encode(),
                                         headers={"Authorization": f"Basic {auth}"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                sys.stdout.write(response.read().decode())
        except urllib.error.HTTPError as exc:
            print(f"Received exception from server: {exc.read().decode().strip()}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    CONFIG = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--config-file=")), CONFIG)
    if sys.argv[1:2] == ["extract-from-config"]:
        key = next(a.split("=", 1)[1] for a in sys.argv if a.startswith("--key="))
        print(setting(merged(CONFIG, "config.d"), key))
    elif sys.argv[1:2] == ["server"]:
        listen = next((a.split("=", 1)[1] for a in sys.argv[2:] if a.startswith("--listen_host=")), None)
        Server(listen).serve()
    elif sys.argv[1:2] == ["client"]:
        sys.exit(client(sys.argv[2:]))
    else:
        sys.exit("usage: clickhouse_standin.py server [--config-file=F] [-- --listen_host=H] | client OPTIONS | "
                 "extract-from-config --config-file=F --key=K")
