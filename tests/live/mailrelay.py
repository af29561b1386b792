"""The alerts drill's receiver in the live tests: a stand-in mail relay (SMTP, RFC 5321's plain dialogue) on the
stack's egress network, where the stack's own `critical-email` receiver reaches it through the settings'
`monitoring.email.smarthost`. The stack's receivers are unchanged; only their relay's address is the test's.
Slack, the other integration, needs an https:// webhook Alertmanager verifies against its system CAs, which no
local endpoint can satisfy here without changing the image.

No STARTTLS: the live settings turn `require_tls` off for this relay only (Alertmanager then sends in plain,
notify/email/email.go: STARTTLS only when `require_tls`; AUTH only when the server advertises it, and this one
does not). Each message it accepts is one `MESSAGE <json>` line of its log."""

from __future__ import annotations

import json
import time

import docker

from tests.live.store import PYTHON_IMAGE

RELAY_HOST, RELAY_PORT = "drill-mail-relay", 2525
SERVER = r'''
import json, socketserver, sys, threading
LOG = threading.Lock()
class Session(socketserver.StreamRequestHandler):
    def say(self, line):
        self.wfile.write((line + "\r\n").encode()); self.wfile.flush()
    def handle(self):
        self.say("220 drill-mail-relay ESMTP")
        body, in_data = [], False
        for raw in self.rfile:
            line = raw.decode(errors="replace").rstrip("\r\n")
            if in_data:
                if line == ".":
                    with LOG:  # sessions run in threads: one message, one whole line
                        sys.stdout.write("MESSAGE " + json.dumps("\n".join(body)) + "\n")
                        sys.stdout.flush()
                    body, in_data = [], False
                    self.say("250 queued")
                else:
                    body.append(line[1:] if line.startswith("..") else line)
                continue
            verb = line[:4].upper()
            if verb == "EHLO":
                self.say("250-drill-mail-relay"); self.say("250 8BITMIME")
            elif verb == "DATA":
                in_data = True; self.say("354 end with <CRLF>.<CRLF>")
            elif verb == "QUIT":
                self.say("221 bye"); return
            else:
                self.say("250 ok")
socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer(("0.0.0.0", RELAY_PORT), Session).serve_forever()
'''.replace("RELAY_PORT", str(RELAY_PORT))


def relay_settings() -> dict:
    """The live settings' change: the stack's e-mail receiver sends through the relay."""
    return {"monitoring": {"email": {"smarthost": f"{RELAY_HOST}:{RELAY_PORT}", "require_tls": False}}}


class MailRelay:
    def __init__(self, client: docker.DockerClient, prefix: str):
        self.client, self.name = client, f"{prefix}-mail-relay"
        self.swarm = False

    def start(self, network: str) -> None:
        container = self.client.containers.create(PYTHON_IMAGE, ["python", "-u", "-c", SERVER], name=self.name)
        self.client.api.connect_container_to_network(container.id, network, aliases=[RELAY_HOST])
        container.start()
        time.sleep(1)
        container.reload()
        if container.status != "running":
            raise RuntimeError(f"the mail relay did not start: {container.logs().decode()[-2000:]}")

    def start_swarm(self, network: str) -> None:
        """The relay as a Swarm service on `network` (the stack's egress overlay, which only services may join),
        answering there to RELAY_HOST by its task's address (dnsrr: no IPVS needed)."""
        from docker.types import EndpointSpec, NetworkAttachmentConfig

        self.swarm = True
        # init: Python as PID 1 would ignore the stop signal until the grace period's SIGKILL.
        self.client.services.create(PYTHON_IMAGE, ["python", "-u", "-c", SERVER], name=self.name, init=True,
                                    networks=[NetworkAttachmentConfig(network, aliases=[RELAY_HOST])],
                                    endpoint_spec=EndpointSpec(mode="dnsrr"))
        deadline = time.monotonic() + 90
        while not self._serving():
            if time.monotonic() > deadline:
                raise RuntimeError(f"the mail relay's service does not answer: {self._logs()[-2000:]}")
            time.sleep(1)

    def _serving(self) -> bool:
        """Its greeting read from inside its task's container (a session without a message logs nothing)."""
        probe = (f"import socket; s = socket.create_connection(('127.0.0.1', {RELAY_PORT}), 5); "
                 "assert s.recv(64).startswith(b'220')")
        return any(c.exec_run(["python", "-c", probe])[0] == 0 for c in self._containers())

    def _containers(self) -> list:
        return self.client.containers.list(filters={"label": f"com.docker.swarm.service.name={self.name}",
                                                    "status": "running"})

    def _logs(self) -> str:
        if not self.swarm:
            return self.client.containers.get(self.name).logs().decode(errors="replace")
        return "".join(c.logs().decode(errors="replace") for c in self._containers())

    def messages(self) -> list[str]:
        return [json.loads(line.removeprefix("MESSAGE ")) for line in self._logs().splitlines()
                if line.startswith("MESSAGE ")]

    def remove(self) -> None:
        try:
            if self.swarm:
                self.client.api.remove_service(self.name)
                deadline = time.monotonic() + 60  # its task leaves the stack's network before that is removed
                while time.monotonic() < deadline and self.client.api.containers(
                        all=True, filters={"label": f"com.docker.swarm.service.name={self.name}"}):
                    time.sleep(1)
            else:
                self.client.api.remove_container(self.name, force=True)
        except docker.errors.NotFound:
            pass
