"""Stand-in for clickhouse-server 24.8 (no ClickHouse in Debian, no registry here): what the stack relies on.

`server`: the HTTP interface on http_port (8123) with /ping ("Ok.") and queries by GET ?query= or POST, logged in
as a user of users.xml + users.d/*.xml (merged as ClickHouse merges them: by element, `remove` and `replace`
attributes; the entrypoint writes CLICKHOUSE_USER's there) by HTTP basic auth, X-ClickHouse-User/-Key headers or
user/password parameters. A user (ClickHouse docs, "Settings of users"): <password> (plaintext) or
<password_sha256_hex>; <networks> of <ip> (an address or subnet; ::1 and 127.0.0.1 are loopback) and <host> (the
name resolved at each login, every address it returns compared with the peer's: disable_internal_dns_cache);
no <networks>: any address; <profile> (a profile's <readonly>1</readonly>: no write); <grants> of GRANT queries
(privileges ON db.* or db.table); no <grants>: every right; <grants> beside <access_management>1: the user is
not loaded (ClickHouse: "Any other access control settings can't be specified with `grants`"). Refusals as
ClickHouse words them: a wrong password, an unknown user or an address not allowed 516 AUTHENTICATION_FAILED
(the reason only in the server's log), a missing grant 497 ACCESS_DENIED, a write in readonly mode 164 READONLY
(src/Common/ErrorCodes.cpp; src/Access/ContextAccess.cpp). Databases kept as data/<db> and metadata/<db>.sql
under `path`, a table's rows as data/<db>/<table>.tsv; the Prometheus endpoint a config.d file declares
(<prometheus><endpoint>, <port>); its log and error log at logger.log / logger.errorlog. Queries: SELECT 1,
SELECT version(), SHOW DATABASES (those the user has a grant on), EXISTS DATABASE, CREATE DATABASE [IF NOT
EXISTS] (CREATE DATABASE), CREATE TABLE [IF NOT EXISTS] db.t (CREATE TABLE), INSERT INTO db.t VALUES (...)
(INSERT), SELECT count() / * FROM db.t (SELECT); anything else is refused as not implemented (code 48).
`client`: clickhouse-client's -h/--host, --port (the HTTP port here), -u/--user, --password, -q/--query,
--multiquery, queries on stdin. `extract-from-config --key`: a setting of the merged config.
No native protocol (9000), no table engines: rows are kept as sent.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import os
import re
import signal
import socket
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
        self.status, self.code = status, code


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
        elif mine is None or len(child) == 0 or child.get("replace") == "replace":
            if mine is not None:
                into.remove(mine)
            into.append(child)
        else:
            merge(mine, child)


def setting(config: ET.Element, key: str, default: str = "") -> str:
    node = config.find(key.replace(".", "/"))
    return node.text.strip() if node is not None and node.text else default


class User:
    def __init__(self, name: str, node: ET.Element, profiles: ET.Element | None) -> None:
        self.name = name
        self.password = node.findtext("password")
        self.sha256 = (node.findtext("password_sha256_hex") or "").strip().lower() or None
        networks = node.find("networks")
        self.networks = None if networks is None else [(entry.tag, (entry.text or "").strip()) for entry in networks]
        profile = profiles.find(node.findtext("profile") or "default") if profiles is not None else None
        self.readonly = profile is not None and (profile.findtext("readonly") or "0").strip() != "0"
        grants = node.find("grants")
        self.grants = None if grants is None else [parse_grant(q.text or "") for q in grants.iter("query")]
        if self.grants is not None and (node.findtext("access_management") or "0").strip() not in ("0", "false"):
            raise ValueError("Any other access control settings can't be specified with `grants`")

    def accepts(self, password: str) -> bool:
        if self.sha256 is not None:
            return hashlib.sha256(password.encode()).hexdigest() == self.sha256
        return self.password is not None and self.password == password

    def allows(self, peer: str) -> bool:
        if self.networks is None:
            return True
        address = ipaddress.ip_address(peer)
        if address.version == 6 and address.ipv4_mapped:
            address = address.ipv4_mapped
        for kind, value in self.networks:
            if kind == "ip":
                network = ipaddress.ip_network(value, strict=False)
                if address.is_loopback and network.network_address.is_loopback or address in network:
                    return True
            elif kind == "host":
                try:  # resolved at every login, as with disable_internal_dns_cache
                    found = {info[4][0] for info in socket.getaddrinfo(value, None)}
                except OSError:
                    continue
                if str(address) in found:
                    return True
        return False

    def granted(self, privilege: str, database: str) -> bool:
        if self.grants is None:
            return True
        return any(privilege in privileges and on in ("*", database) for privileges, on in self.grants)


def parse_grant(query: str) -> tuple[set[str], str]:
    """`GRANT priv[, priv] ON db.*` (or db.table, *.*) -> ({priv, ...}, db)."""
    match = re.fullmatch(r"(?is)\s*GRANT\s+(.+?)\s+ON\s+([\w*]+)\.[\w*]+\s*", query)
    if not match:
        raise ValueError(f"the stand-in reads only `GRANT privileges ON db.*`, not {query!r}")
    privileges = {" ".join(p.split()).upper() for p in match.group(1).split(",")}
    if "ALL" in privileges:
        privileges |= {"SELECT", "INSERT", "CREATE DATABASE", "CREATE TABLE", "SHOW"}
    return privileges, match.group(2)


def users(config: ET.Element, log) -> dict[str, User]:
    users_xml = setting(config, "user_directories.users_xml.path", "users.xml")
    path = users_xml if users_xml.startswith("/") else str(Path(CONFIG).parent / users_xml)
    root = merged(path, "users.d")
    found = root.find("users")
    loaded = {}
    for node in [] if found is None else found:
        try:
            loaded[node.tag] = User(node.tag, node, root.find("profiles"))
        except ValueError as error:  # ClickHouse logs it and goes on without that user
            log("Error", f"UsersConfigAccessStorage: Could not parse user `{node.tag}`: {error}")
    return loaded


class Server:
    def __init__(self, listen_host: str | None) -> None:
        self.config = merged(CONFIG, "config.d")
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
        self.users = users(self.config, self.write_log)

    def write_log(self, level: str, message: str) -> None:
        line = f"{time.strftime('%Y.%m.%d %H:%M:%S')} [ {os.getpid()} ] {{}} <{level}> {message}\n"
        with self.lock:
            for path in (self.log, *([self.errors] if level == "Error" else [])):
                with path.open("a") as log:
                    log.write(line)
        print(line, end="", flush=True)

    def login(self, name: str, password: str, peer: str) -> User:
        user = self.users.get(name)
        reason = ("no user with such name" if user is None else "password is incorrect" if not user.accepts(password)
                  else f"Connections from {peer} are not allowed (IP_ADDRESS_NOT_ALLOWED)"
                  if not user.allows(peer) else None)
        if reason is None:
            return user
        self.write_log("Error", f"AccessControl: {name} from {peer}: Authentication failed: {reason}")
        raise QueryError(516, "AUTHENTICATION_FAILED", f"{name}: Authentication failed: password is incorrect, "
                         "or there is no user with such name", status=401)

    def databases(self, user: User | None = None) -> list[str]:
        found = ["INFORMATION_SCHEMA", "default", "information_schema", "system",
                 *(p.stem for p in (self.path / "metadata").glob("*.sql"))]
        return sorted(d for d in found if user is None or user.grants is None
                      or any(on in ("*", d) for _, on in user.grants))

    def check(self, user: User, privilege: str, database: str, target: str, write: bool) -> None:
        """src/Access/ContextAccess.cpp: the grant first (ACCESS_DENIED), then readonly (READONLY)."""
        if not user.granted(privilege, database):
            raise QueryError(497, "ACCESS_DENIED", f"{user.name}: Not enough privileges. To execute this query, "
                             f"it's necessary to have the grant {privilege} ON {target}", status=403)
        if write and user.readonly:
            raise QueryError(164, "READONLY", f"{user.name}: Cannot execute query in readonly mode", status=403)

    def table(self, database: str, name: str) -> Path:
        path = self.path / "data" / database / f"{name}.tsv"
        if not path.exists():
            raise QueryError(60, "UNKNOWN_TABLE", f"Table {database}.{name} does not exist", status=404)
        return path

    def query(self, text: str, user: User) -> str:
        statement = text.strip().rstrip(";").strip()
        with self.lock:
            self.queries += 1
        try:
            return self.run(statement, user)
        except QueryError:
            with self.lock:
                self.failed += 1
            raise

    def run(self, statement: str, user: User) -> str:
        if re.fullmatch(r"(?i)select\s+1", statement):
            return "1\n"
        if re.fullmatch(r"(?i)select\s+version\(\)", statement):
            return VERSION + "\n"
        if re.fullmatch(r"(?i)show\s+databases", statement):
            return "".join(f"{name}\n" for name in self.databases(user))
        match = re.fullmatch(r"(?i)exists\s+database\s+(\w+)", statement)
        if match:
            return f"{int(match.group(1) in self.databases(user))}\n"
        match = re.fullmatch(r"(?i)create\s+database\s+(if\s+not\s+exists\s+)?(\w+)", statement)
        if match:
            name = match.group(2)
            self.check(user, "CREATE DATABASE", name, f"{name}.*", write=True)
            if name in self.databases():
                if not match.group(1):
                    raise QueryError(82, "DATABASE_ALREADY_EXISTS", f"Database {name} already exists")
                return ""
            (self.path / "data" / name).mkdir()
            (self.path / "metadata" / f"{name}.sql").write_text(f"ATTACH DATABASE {name}\nENGINE = Atomic\n")
            self.write_log("Information", f"DatabaseAtomic ({name}): created")
            return ""
        match = re.fullmatch(r"(?is)create\s+table\s+(if\s+not\s+exists\s+)?(\w+)\.(\w+)\s*\(.*", statement)
        if match:
            database, name = match.group(2), match.group(3)
            self.check(user, "CREATE TABLE", database, f"{database}.{name}", write=True)
            if database not in self.databases():
                raise QueryError(81, "UNKNOWN_DATABASE", f"Database {database} does not exist", status=404)
            path = self.path / "data" / database / f"{name}.tsv"
            if path.exists() and not match.group(1):
                raise QueryError(57, "TABLE_ALREADY_EXISTS", f"Table {database}.{name} already exists")
            path.touch()
            return ""
        match = re.fullmatch(r"(?is)insert\s+into\s+(\w+)\.(\w+)\s+values\s*(\(.*\))", statement)
        if match:
            database, name = match.group(1), match.group(2)
            self.check(user, "INSERT", database, f"{database}.{name}", write=True)
            rows = re.split(r"\)\s*,\s*\(", match.group(3).strip()[1:-1])
            with self.lock, self.table(database, name).open("a") as table:
                table.writelines("\t".join(v.strip().strip("'") for v in row.split(",")) + "\n" for row in rows)
            return ""
        match = re.fullmatch(r"(?is)select\s+(count\(\)|\*)\s+from\s+(\w+)\.(\w+)", statement)
        if match:
            database, name = match.group(2), match.group(3)
            self.check(user, "SELECT", database, f"{database}.{name}", write=False)
            rows = self.table(database, name).read_text().splitlines(keepends=True)
            return f"{len(rows)}\n" if match.group(1) != "*" else "".join(rows)
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
                    account = server.login(user, password, self.client_address[0])
                    self.reply(200, server.query(" ".join(filter(None, [params.get("query"), body])), account))
                except QueryError as exc:
                    server.write_log("Error", f"executeQuery: {exc}")
                    self.reply(exc.status, f"{exc}\n", exc.code)

            def reply(self, status: int, text: str, code: int | None = None) -> None:
                data = text.encode()
                self.send_response(status)
                if code is not None:
                    self.send_header("X-ClickHouse-Exception-Code", str(code))
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
