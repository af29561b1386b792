"""The container engine's API: only a socket proxy holds the socket, and it passes only its client's calls.

A read-only bind of the Docker socket restricts nothing (the Engine API writes over it), so the socket is
mounted into a socket proxy alone (components/socketproxy.py: HAProxy, one per client), and the proxy's
haproxy.cfg allows no write call beyond its client's list (platform_infra.components.socketproxy.CLIENT_WRITES).
"""

from __future__ import annotations

import re
import shlex

from platform_infra.components.socketproxy import API_VERSION, CLIENT_WRITES, PROXY_SERVICE, READ_METHODS
from platform_infra.policies.props import SERVICE_LABEL, WORKLOADS, Workload, get, kind_of
from platform_infra.policies.registry import MANDATORY, resource_rule
from platform_infra.policies.rules.containers import RUNTIME_SOCKETS
from platform_infra.policies.scope import reads_identity

SCAN = ["success.security-scan"]
ROOT_USERS = ("", "0", "root")


def _socket_parents() -> set[str]:
    """Every directory holding a runtime socket: a bind of one of them reaches the socket too."""
    parents = set()
    for socket in RUNTIME_SOCKETS:
        parts = socket.split("/")[:-1]
        parents |= {"/".join(parts[:i]) or "/" for i in range(1, len(parts) + 1)}
    # /var/run is a link to /run on the hosts the stack runs on.
    return parents | {"/run", "/var/run"}


SOCKET_PARENTS = _socket_parents()


def proxy_client(w: Workload) -> str | None:
    """The client a socket proxy serves: its service name `<client>-socket-proxy`, a known client."""
    match = PROXY_SERVICE.match(w.labels.get(SERVICE_LABEL, ""))
    return match["client"] if match and match["client"] in CLIENT_WRITES else None


def runs_as_root(w: Workload) -> bool:
    user = str(get(w.spec, "user", default="") or "")
    return user.split(":", 1)[0].strip() in ROOT_USERS


@resource_rule(
    "ENG-001",
    "docker-socket-only-in-proxy",
    "The runtime socket only in a socket proxy",
    types=WORKLOADS,
    severity="critical",
    prod=MANDATORY,
    label_waivable=False,
    checklist=SCAN,
    sources=["CIS 5.32", "Docker docs: Docker daemon attack surface", "tecnativa/docker-socket-proxy"],
    remediation="Give the client a socket proxy (components/socketproxy.py) and its URL (tcp://<client>-socket-"
    "proxy:2375); mount no socket, nor a directory holding one into a root container.",
)
@reads_identity
def docker_socket_only_in_proxy(w: Workload, report, options) -> None:
    """No workload but a socket proxy (HAProxy named `<client>-socket-proxy`) mounts a container runtime
    socket, read-only or not; nor does a root workload mount a directory holding one (`/`, `/run`, `/var/run`)."""
    for mount in w.mounts:
        source = mount.source.rstrip("/") or "/"
        if source in RUNTIME_SOCKETS:
            if kind_of(w.identity_image) != "haproxy" or proxy_client(w) is None:
                report(f"mounts {mount.source}: only a socket proxy (HAProxy `<client>-socket-proxy`, client one of "
                       f"{sorted(CLIENT_WRITES)}) may; a read-only bind does not restrict the Engine API")
        elif mount.type == "bind" and source in SOCKET_PARENTS and runs_as_root(w):
            report(f"mounts {mount.source} as root: the runtime socket under it is the whole Engine API")


WRITE_CONDITION = re.compile(r"(\|\||\bor\b|!)")


def _terms(tokens: list[str], acls: dict[str, list[list[str]]]) -> list[list[str]] | None:
    """The ACL terms of a condition, all ANDed: `{ fetch values }` and named ACLs; None when it ORs or negates
    (the pack does not judge such a condition: it fails closed)."""
    terms, i = [], 0
    while i < len(tokens):
        token = tokens[i]
        if token == "{":
            end = tokens.index("}", i) if "}" in tokens[i:] else len(tokens)
            terms.append(tokens[i + 1:end])
            i = end + 1
        elif WRITE_CONDITION.fullmatch(token) or token.startswith("!"):
            return None
        elif token in acls:
            if len(acls[token]) != 1:  # several lines of one name are ORed
                return None
            terms.append(acls[token][0])
            i += 1
        else:
            return None
    return terms


def _allowed_calls(config: str) -> tuple[list[tuple[set[str] | None, str | None, str]], bool]:
    """Each `http-request allow` of the config: (its methods, None for any; its path regex, None for any path;
    the line), and whether the last http-request rule refuses everything else."""
    acls: dict[str, list[list[str]]] = {}
    allows, last = [], None
    for raw in config.splitlines():
        line = raw.strip()
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError:  # an unbalanced quote: judged word by word
            tokens = line.split()
        if not tokens:
            continue
        if tokens[:1] == ["acl"] and len(tokens) > 2:
            acls.setdefault(tokens[1], []).append(tokens[2:])
        elif tokens[:2] == ["http-request", "allow"]:
            last = "allow"
            condition = tokens[3:] if len(tokens) > 2 and tokens[2] in ("if", "unless") else None
            terms = _terms(condition, acls) if condition is not None and tokens[2] == "if" else None
            if terms is None:
                allows.append((None, None, line))
                continue
            methods: set[str] | None = None
            path: str | None = None
            for term in terms:
                fetch, values = (term[0].split("(")[0] if term else ""), term[1:]
                if fetch == "method":
                    found = {v.upper() for v in values if not v.startswith("-")}
                    methods = found if methods is None else methods & found
                elif fetch == "path_reg" and len(values) == 1:
                    path = values[0]
            allows.append((methods, path, line))
        elif tokens[:2] == ["http-request", "deny"]:
            last = "deny" if not {"if", "unless"} & set(tokens) else "deny-if"
        elif tokens[:1] == ["http-request"]:
            last = tokens[1] if len(tokens) > 1 else None
    return allows, last == "deny"


def _client_write(client: str, methods: set[str], path: str | None) -> bool:
    """The one write call the client may make: its method and, for its path, one concrete resource."""
    write = CLIENT_WRITES.get(client)
    if write is None or path is None or methods != {write[0]}:
        return False
    # The proxy's own form: anchored, the version prefix, then the call's path (EngineCall.regex).
    return re.fullmatch(re.escape(f"^{API_VERSION}") + f"({write[1]})" + re.escape("$"), path) is not None


def forwards_to_socket(config: str) -> bool:
    return any(re.search(rf"^\s*server\s+\S+\s+(unix@)?{re.escape(socket)}\b", config, re.MULTILINE)
               for socket in RUNTIME_SOCKETS)


@resource_rule(
    "ENG-002",
    "socket-proxy-allow-list",
    "A socket proxy allows no write beyond its client's",
    reads_files=True,
    types=WORKLOADS,
    severity="critical",
    prod=MANDATORY,
    label_waivable=False,
    checklist=SCAN,
    sources=["tecnativa/docker-socket-proxy haproxy.cfg", "HAProxy configuration manual: http-request, ACLs"],
    remediation="Render the proxy's haproxy.cfg from platform_infra.components.socketproxy (its client's calls); "
    "allow each call by `{ method ... } { path_reg '^...$' }` and end with `http-request deny`.",
)
def socket_proxy_allow_list(w: Workload, report, options) -> None:
    """An HAProxy config forwarding to a runtime socket belongs to a known client's proxy, refuses whatever it
    does not allow (its last `http-request` rule denies), and allows no write method (anything but GET and
    HEAD) but its client's own (the autoscaler: POST /services/<one service>/update; cAdvisor: none)."""
    for path, config in w.uploads.items():
        if not forwards_to_socket(config):
            continue
        client = proxy_client(w)
        if client is None:
            report(f"{path} forwards to the runtime socket, but {w.labels.get(SERVICE_LABEL, w.name)!r} is no "
                   f"client's socket proxy (`<client>-socket-proxy`, client one of {sorted(CLIENT_WRITES)})")
            continue
        allows, denies_the_rest = _allowed_calls(config)
        if not denies_the_rest:
            report(f"{path}: the last http-request rule must be `http-request deny` (refuse every other call)")
        for methods, regex, line in allows:
            writes = None if methods is None else methods - READ_METHODS
            if writes is None or (writes and not _client_write(client, methods, regex)):
                report(f"{path}: `{line}` allows {'any method' if methods is None else ', '.join(sorted(writes))}"
                       f" beyond {client}'s calls")
