"""Reading recorded registrations (engine wire form) in assertions; a loopback DNS server for live tests."""

from __future__ import annotations

import socket
import threading
from typing import Any

from dnslib import QTYPE, RCODE, RR, A, DNSRecord

from platform_infra.infra.mockrun import SECRET_SIG, SIG_KEY

LOOPBACK = "127.0.0.1"


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SIG_KEY) == SECRET_SIG


def reveal(value: Any) -> Any:
    """The value with every secret wrapper removed."""
    if is_secret(value):
        return reveal(value["value"])
    if isinstance(value, dict):
        return {k: reveal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [reveal(v) for v in value]
    return value


def env_of(container_inputs: dict) -> dict[str, str]:
    return dict(item.split("=", 1) for item in reveal(container_inputs.get("envs", [])))


def secret_env_keys(container_inputs: dict) -> set[str]:
    return {reveal(item).split("=", 1)[0] for item in container_inputs.get("envs", []) if is_secret(item)}


def labels_of(inputs: dict) -> dict[str, str]:
    return {item["label"]: item["value"] for item in inputs.get("labels", [])}


CONTAINER = "docker:index/container:Container"


def running_containers(resources) -> dict[str, dict]:
    """Inputs of every container that runs (never-started file carriers excluded), by hostname."""
    return {r.inputs["hostname"]: r.inputs for r in resources
            if r.type == CONTAINER and r.inputs.get("start", True) is not False}


def files_of(resources, service: str) -> dict[str, dict]:
    """The upload entries a service's containers receive, by path: from its file carrier when it runs
    read-only, else from its own container."""
    return {upload["file"]: upload for r in resources
            if r.type == CONTAINER and labels_of(r.inputs).get("platform.service") == service
            for upload in r.inputs.get("uploads", [])}


class LoopbackDns:
    """A DNS server on loopback standing in for Docker's embedded one: `name` resolves to the addresses in
    `up` (the containers answering to it that are running), and to nothing (NXDOMAIN) when none is."""

    def __init__(self, name: str) -> None:
        self.name, self.up = name, set[str]()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOOPBACK, 0))
        self.address = f"{LOOPBACK}:{self.sock.getsockname()[1]}"

        def serve() -> None:
            while True:
                try:
                    data, client = self.sock.recvfrom(512)
                except OSError:
                    return
                query = DNSRecord.parse(data)
                reply = query.reply()
                asked = str(query.q.qname).rstrip(".")
                if asked == self.name and query.q.qtype == QTYPE.A and self.up:
                    for address in sorted(self.up):
                        reply.add_answer(RR(query.q.qname, QTYPE.A, rdata=A(address), ttl=1))
                elif asked != self.name or not self.up:
                    reply.header.rcode = RCODE.NXDOMAIN
                self.sock.sendto(reply.pack(), client)

        threading.Thread(target=serve, daemon=True).start()

    def close(self) -> None:
        self.sock.close()
