"""Stand-in for Grafana 11.6.0 (`grafana server` and `grafana cli`; no Grafana in Debian, no registry here).

What the stack relies on: settings from the ini file (--config), `cfg:default.<section>.<key>=` arguments and
GF_<SECTION>_<KEY> environment over it (conf/defaults.ini order); the admin user created from
security.admin_user / admin_password on the first start only, kept in <paths.data>/grafana.db (SQLite, table
`user`, password as Grafana's util.EncodePassword: PBKDF2-HMAC-SHA256, 10000 rounds, 50 bytes, hex);
`grafana cli admin reset-admin-password --password-from-stdin` on that database; provisioning read from
paths.provisioning (datasources/*.yaml, and dashboards/*.yaml providers of type file whose options.path holds
the dashboards' JSON), where a broken file stops the server as Grafana's provisioning does; HTTP on
server.http_port with /api/health, POST /login, and with basic auth /api/user, /api/search,
/api/datasources, /api/dashboards/uid/<uid>. No UI, no queries to datasources, no alerting.
"""

from __future__ import annotations

import base64
import configparser
import hashlib
import hmac
import json
import os
import re
import secrets
import signal
import sqlite3
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

VERSION = "11.6.0"
DEFAULTS = {"paths": {"data": "data", "logs": "data/log", "plugins": "data/plugins", "provisioning": "conf/provisioning"},
            "server": {"http_addr": "", "http_port": "3000"},
            "security": {"admin_user": "admin", "admin_password": "admin"}}


def settings(argv: list[str]) -> tuple[dict[str, dict[str, str]], list[str]]:
    """defaults < --config ini < cfg:default.* arguments < GF_* environment; the other arguments back."""
    values = {section: dict(keys) for section, keys in DEFAULTS.items()}
    config, rest, overrides = None, [], []
    for arg in argv:
        if arg.startswith("--config="):
            config = arg.split("=", 1)[1]
        elif arg.startswith("cfg:default."):
            overrides.append(arg[len("cfg:default."):])
        else:
            rest.append(arg)
    if config:
        parser = configparser.ConfigParser(interpolation=None, strict=False)
        parser.read_string(Path(config).read_text() if Path(config).exists() else "")
        for section in parser.sections():
            values.setdefault(section, {}).update({k: v for k, v in parser[section].items() if v != ""})
    for override in overrides:
        dotted, _, value = override.partition("=")
        section, _, key = dotted.partition(".")
        values.setdefault(section, {})[key] = value
    for name, value in os.environ.items():
        match = re.fullmatch(r"GF_([A-Z0-9]+)_([A-Z0-9_]+)", name)
        if match and not name.endswith("__FILE"):
            values.setdefault(match.group(1).lower(), {})[match.group(2).lower()] = value
    return values, rest


def encode_password(password: str, salt: str) -> str:
    return hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), 10000, 50).hex()


def database(values: dict) -> sqlite3.Connection:
    path = Path(values["paths"]["data"]) / "grafana.db"
    connection = sqlite3.connect(path, check_same_thread=False)
    connection.execute("CREATE TABLE IF NOT EXISTS user (id INTEGER PRIMARY KEY, login TEXT UNIQUE, password TEXT, "
                       "salt TEXT, is_admin INTEGER)")
    return connection


def cli(argv: list[str]) -> int:
    words, config, args = [], None, iter(argv)
    for arg in args:
        name, equals, value = arg.partition("=")
        if name in ("--homepath", "--config"):
            value = value if equals else next(args, "")
            config = value if name == "--config" else config
        else:
            words.append(arg)
    values, _ = settings([f"--config={config}"] if config else [])
    if words[:2] != ["admin", "reset-admin-password"]:
        print(f"grafana cli stand-in: only `admin reset-admin-password` is implemented, not {words}", file=sys.stderr)
        return 1
    password = sys.stdin.read().rstrip("\n") if "--password-from-stdin" in words else words[-1]
    if not password:
        print("Error: ✗ New password too short", file=sys.stderr)
        return 1
    connection = database(values)
    row = connection.execute("SELECT id FROM user WHERE is_admin = 1 ORDER BY id LIMIT 1").fetchone()
    if row is None:
        print("Error: ✗ failed to reset admin password: could not find user", file=sys.stderr)
        return 1
    salt = secrets.token_hex(5)
    connection.execute("UPDATE user SET password = ?, salt = ? WHERE id = ?", (encode_password(password, salt), salt, row[0]))
    connection.commit()
    print("Admin password changed successfully ✔")
    return 0


def provisioning(root: Path) -> tuple[list[dict], list[dict]]:
    datasources, dashboards = [], []
    for path in sorted((root / "datasources").glob("*.y*ml")):
        document = yaml.safe_load(path.read_text()) or {}
        for source in document.get("datasources") or []:
            if not source.get("name") or not source.get("type"):
                raise SystemExit(f"Datasource provisioning error: {path}: datasource without name or type")
            datasources.append(source)
    for path in sorted((root / "dashboards").glob("*.y*ml")):
        document = yaml.safe_load(path.read_text()) or {}
        for provider in document.get("providers") or []:
            if provider.get("type", "file") != "file" or not (provider.get("options") or {}).get("path"):
                raise SystemExit(f"Dashboard provisioning error: {path}: provider {provider.get('name')!r} "
                                 "needs type file and options.path")
            for file in sorted(Path(provider["options"]["path"]).glob("*.json")):
                try:
                    dashboard = json.loads(file.read_text())
                except ValueError as exc:
                    print(f"logger=provisioning.dashboard level=error msg=\"failed to load dashboard\" file={file} "
                          f"error=\"{exc}\"", flush=True)
                    continue
                dashboards.append({"dashboard": dashboard, "folder": provider.get("folder", ""), "file": str(file)})
    return datasources, dashboards


def server(argv: list[str]) -> None:
    values, _ = settings(argv)
    data = Path(values["paths"]["data"])
    data.mkdir(parents=True, exist_ok=True)
    connection = database(values)
    if connection.execute("SELECT COUNT(*) FROM user").fetchone()[0] == 0:
        salt = secrets.token_hex(5)
        login, password = values["security"]["admin_user"], values["security"]["admin_password"]
        connection.execute("INSERT INTO user (login, password, salt, is_admin) VALUES (?, ?, ?, 1)",
                           (login, encode_password(password, salt), salt))
        connection.commit()
        print(f"logger=sqlstore level=info msg=\"Created default admin\" user={login}", flush=True)
    datasources, dashboards = provisioning(Path(values["paths"]["provisioning"]))
    print(f"logger=provisioning level=info msg=\"provisioned\" datasources={len(datasources)} "
          f"dashboards={len(dashboards)}", flush=True)

    def authenticated(login: str, password: str) -> bool:
        row = connection.execute("SELECT password, salt FROM user WHERE login = ?", (login,)).fetchone()
        return row is not None and hmac.compare_digest(row[0], encode_password(password, row[1]))

    class Api(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            if path == "/api/health":
                return self.reply(200, {"database": "ok", "version": VERSION, "commit": "stand-in"})
            login = self.basic_login()
            if login is None:
                return self.reply(401, {"message": "Unauthorized"})
            if path == "/api/user":
                return self.reply(200, {"login": login, "isGrafanaAdmin": True})
            if path == "/api/search":
                return self.reply(200, [{"uid": d["dashboard"].get("uid"), "title": d["dashboard"].get("title"),
                                         "type": "dash-db", "tags": d["dashboard"].get("tags", []),
                                         "folderTitle": d["folder"], "isStarred": False,
                                         "url": f"/d/{d['dashboard'].get('uid')}"} for d in dashboards])
            if path == "/api/datasources":
                return self.reply(200, [{"name": s["name"], "type": s["type"], "uid": s.get("uid"),
                                         "url": s.get("url", ""), "access": s.get("access", "proxy"),
                                         "isDefault": bool(s.get("isDefault")), "readOnly": True,
                                         "jsonData": s.get("jsonData", {})} for s in datasources])
            match = re.fullmatch(r"/api/dashboards/uid/([^/]+)", path)
            found = [d for d in dashboards if match and d["dashboard"].get("uid") == match.group(1)]
            if found:
                return self.reply(200, {"dashboard": found[0]["dashboard"],
                                        "meta": {"provisioned": True, "folderTitle": found[0]["folder"]}})
            self.reply(404, {"message": "Not found"})

        def do_POST(self) -> None:
            if self.path.split("?")[0] != "/login":
                return self.reply(404, {"message": "Not found"})
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            except ValueError:
                return self.reply(400, {"message": "bad request data"})
            if authenticated(str(body.get("user", "")), str(body.get("password", ""))):
                return self.reply(200, {"message": "Logged in"})
            self.reply(401, {"message": "Invalid username or password"})

        def basic_login(self) -> str | None:
            header = self.headers.get("Authorization", "")
            if not header.startswith("Basic "):
                return None
            login, _, password = base64.b64decode(header[6:]).decode(errors="replace").partition(":")
            return login if authenticated(login, password) else None

        def reply(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    address = (values["server"]["http_addr"] or "0.0.0.0", int(values["server"]["http_port"]))
    print(f"logger=http.server level=info msg=\"HTTP Server Listen\" address={address[0]}:{address[1]} "
          f"version={VERSION} (stand-in)", flush=True)
    ThreadingHTTPServer(address, Api).serve_forever()


if __name__ == "__main__":
    if sys.argv[1:2] == ["server"]:
        server(sys.argv[2:])
    elif sys.argv[1:2] == ["cli"]:
        sys.exit(cli(sys.argv[2:]))
    else:
        sys.exit("usage: grafana server [--config=F] [cfg:default.S.K=V...] | grafana cli admin reset-admin-password")
