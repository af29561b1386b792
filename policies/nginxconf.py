"""Read an nginx configuration uploaded into a container, with crossplane, for the edge rules.

`components/edge/nginx.py` has a `parse_nginx_conf` for the one file it renders; the pack works on any
program, so it parses every uploaded file itself, inlines `include`s between uploaded files and models
the nginx semantics the rules depend on: `add_header`/`limit_req` inheritance (a level that sets any
replaces all inherited ones) and location selection for a URI.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
import re
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import crossplane

Directive = dict[str, Any]


class NginxConfigError(ValueError):
    pass


@lru_cache(maxsize=256)
def _parse_cached(text: str) -> tuple[Any, ...] | str:
    # crossplane reads files only; the temp file lives just for the parse.
    with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as handle:
        handle.write(text)
    try:
        # Context checks are off: included files hold `server` blocks at their top level.
        payload = crossplane.parse(handle.name, single=True, comments=False, check_ctx=False)
    finally:
        os.unlink(handle.name)
    if payload["errors"]:
        return "; ".join(e["error"].replace(handle.name, "<upload>") for e in payload["errors"])
    return tuple(payload["config"][0]["parsed"])


def parse(text: str) -> list[Directive]:
    result = _parse_cached(text)
    if isinstance(result, str):
        raise NginxConfigError(result)
    return list(result)


def is_nginx_file(path: str) -> bool:
    return path.endswith(".conf") and ("nginx" in path or path.endswith("nginx.conf"))


def load(uploads: dict[str, str]) -> list[Directive] | None:
    """The main nginx.conf among `uploads`, with includes of other uploaded files inlined; None if absent."""
    main = next((path for path in sorted(uploads) if path.endswith("nginx.conf")), None)
    if main is None:
        return None
    return _inline(parse(uploads[main]), uploads, posixpath.dirname(main), 0)


def _inline(block: list[Directive], uploads: dict[str, str], base: str, depth: int) -> list[Directive]:
    result: list[Directive] = []
    for directive in block:
        if directive["directive"] == "include" and directive["args"] and depth < 8:
            pattern = directive["args"][0]
            pattern = pattern if pattern.startswith("/") else posixpath.join(base, pattern)
            for path in sorted(p for p in uploads if fnmatch.fnmatchcase(p, pattern)):
                result.extend(_inline(parse(uploads[path]), uploads, base, depth + 1))
        elif "block" in directive:
            result.append({**directive, "block": _inline(directive["block"], uploads, base, depth)})
        else:
            result.append(directive)
    return result


def children(block: list[Directive], name: str) -> list[Directive]:
    return [d for d in block if d["directive"] == name]


def args_of(block: list[Directive], name: str) -> list[list[str]]:
    return [d["args"] for d in children(block, name)]


def walk(block: list[Directive]):
    for directive in block:
        yield directive
        yield from walk(directive.get("block", []))


def http_block(config: list[Directive]) -> list[Directive]:
    found = children(config, "http")
    return found[0]["block"] if found else []


def effective(chain: list[list[Directive]], name: str) -> list[list[str]]:
    """Array-like directives (add_header, limit_req, ...): the innermost level that sets any wins whole."""
    for level in reversed(chain):
        found = args_of(level, name)
        if found:
            return found
    return []


def headers(chain: list[list[Directive]]) -> dict[str, tuple[str, bool]]:
    """Effective `add_header` name (lower case) -> (value, always)."""
    return {
        a[0].lower(): (a[1] if len(a) > 1 else "", "always" in a[2:]) for a in effective(chain, "add_header")
    }


@dataclass
class Location:
    modifier: str
    path: str
    block: list[Directive]
    chain: list[list[Directive]]

    @property
    def proxies(self) -> bool:
        return any(
            d["directive"] in ("proxy_pass", "fastcgi_pass", "grpc_pass", "uwsgi_pass") for d in self.block
        )

    @property
    def refuses(self) -> bool:
        """Returns a 4xx itself, or denies everyone."""
        if any(a and a[0].isdigit() and a[0].startswith("4") for a in args_of(self.block, "return")):
            return True
        return ["all"] in args_of(self.block, "deny")


@dataclass
class Server:
    block: list[Directive]
    http: list[Directive]

    @property
    def listens(self) -> list[tuple[int, bool]]:
        found = []
        for args in args_of(self.block, "listen"):
            port_text = args[0].rsplit(":", 1)[-1] if not args[0].startswith("unix:") else ""
            if port_text.isdigit():
                found.append((int(port_text), "ssl" in args[1:]))
        return found or [(80, False)]

    @property
    def is_tls(self) -> bool:
        return any(ssl for _, ssl in self.listens)

    @property
    def returns(self) -> list[list[str]]:
        return args_of(self.block, "return")

    def locations(self) -> list[Location]:
        found: list[Location] = []

        def visit(block: list[Directive], chain: list[list[Directive]]) -> None:
            for directive in children(block, "location"):
                args = directive["args"]
                modifier, path = (args[0], args[1]) if len(args) > 1 else ("", args[0])
                inner = [*chain, directive["block"]]
                found.append(Location(modifier, path, directive["block"], inner))
                visit(directive["block"], inner)

        visit(self.block, [self.http, self.block])
        return found

    def match(self, uri: str) -> Location | None:
        """nginx's location selection among this server's top-level locations."""
        top = [loc for loc in self.locations() if len(loc.chain) == 3 and not loc.path.startswith("@")]
        for loc in top:
            if loc.modifier == "=" and loc.path == uri:
                return loc
        prefixes = [loc for loc in top if loc.modifier in ("", "^~") and uri.startswith(loc.path)]
        longest = max(prefixes, key=lambda loc: len(loc.path), default=None)
        if longest is not None and longest.modifier == "^~":
            return longest
        for loc in top:
            if loc.modifier in ("~", "~*"):
                flags = re.IGNORECASE if loc.modifier == "~*" else 0
                try:
                    if re.search(loc.path, uri, flags):
                        return loc
                except re.error:
                    continue
        return longest


def servers(config: list[Directive]) -> list[Server]:
    http = http_block(config)
    return [Server(s["block"], http) for s in children(http, "server")]
