"""The load balancer's nginx runs as its own user (101) on a read-only root: every temp path its configuration
names must be creatable by that user on the tmpfs the engine mounts there, in either runtime.

runc gives a tmpfs the mode (and owner) of the directory it covers (runc 1.1 libcontainer/rootfs_linux.go
mountToRootfs, case "tmpfs": os.Chmod(dest, stat.Mode()), whatever `mode=` says), and Swarm's tmpfs mount takes
no uid (TmpfsOptions: size and mode only). The image's /var/cache/nginx is root's, 0755 (nginx.org's package, and
the stand-in built as it): nginx, unprivileged, cannot create its temp directories there and exits at start.
"""

from __future__ import annotations

import base64
import re

import docker

from tests.live.deploy import CONTAINER, live_plan
from tests.live.plan import image_reference, load_prod_plan
from tests.live.swarm_engine import wire_values as reveal

SERVICE = "docker:index/service:Service"
CONFIG = "docker:index/serviceConfig:ServiceConfig"


def _temp_paths(conf: str) -> list[str]:
    paths = re.findall(r"^\s*\w+_temp_path\s+(\S+?);", conf, re.MULTILINE)
    assert paths, "the configuration names no temp path"
    return paths


def _try_mkdir(engine, image: str, user: str, paths: list[str], **mounts) -> tuple[int, str]:
    container = engine.containers.run(image, ["sh", "-c", " && ".join(f"mkdir {p}" for p in paths)],
                                      entrypoint=[], user=user, read_only=True, detach=True, **mounts)
    try:
        code = container.wait(timeout=60)["StatusCode"]
        return code, container.logs().decode(errors="replace")
    finally:
        container.remove(force=True)


def test_nginx_creates_its_temp_paths_as_its_user_on_the_swarm_services_tmpfs(engine, live_images):
    run = live_plan("prod", {"runtime": "swarm"})
    service = next(reveal(r.inputs) for r in run.resources if r.type == SERVICE and r.name == "load-balancer")
    spec = service["taskSpec"]["containerSpec"]
    conf_ref = next(c for c in spec["configs"] if c["fileName"].endswith("nginx.conf"))
    conf = next(base64.b64decode(reveal(r.inputs)["data"]).decode() for r in run.resources
                if r.type == CONFIG and f"{r.name}-id" == conf_ref["configId"])
    # The tmpfs mounts as the Swarm runtime sends them (TmpfsOptions).
    mounts = [docker.types.Mount(m["target"], None, type="tmpfs", tmpfs_size=m["tmpfsOptions"]["sizeBytes"],
                                 tmpfs_mode=m["tmpfsOptions"].get("mode"))
              for m in spec["mounts"] if m["type"] == "tmpfs"]
    code, output = _try_mkdir(engine, spec["image"].partition("@")[0], spec["user"], _temp_paths(conf),
                              mounts=mounts)
    assert code == 0, output


def test_nginx_creates_its_temp_paths_as_its_user_on_the_containers_tmpfs(engine, live_images):
    run = live_plan("prod")
    container = next(reveal(r.inputs) for r in run.resources if r.type == CONTAINER and r.name == "load-balancer")
    # Its files come from the carrier container that fills its volume (components/runtime.py).
    files = next(reveal(r.inputs) for r in run.resources if r.type == CONTAINER and r.name == "load-balancer-files")
    conf = next(u["content"] for u in files["uploads"] if u["file"].endswith("nginx.conf"))
    image = image_reference(load_prod_plan(), container["image"])
    code, output = _try_mkdir(engine, image, container["user"], _temp_paths(conf), tmpfs=container["tmpfs"])
    assert code == 0, output


