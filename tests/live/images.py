"""The images the live tests run, built on this machine from Debian's archive (no registry is reachable).

1. `platform-base:<suite>` for trixie and bookworm: `debootstrap --variant=minbase`, the suite's updates and
   security archives added, imported with `docker import`.
2. Every `images/standins/<name>/` FROM its suite's base (build-arg BASE), tagged with the stack's own
   reference, from its `standin.yaml`:
   - `settings_key`: a field of platform_infra.infra.settings.Images (its default), or the name of one of the platform's own
     images (`settings.image(name)` of the prod stack); a list tags the image with each; null for none;
   - `tag` (or `tags`, a list): references to tag it with besides (an image another Dockerfile names in its FROM);
   - `package`: the Debian package whose version is the real software's (compared with the pinned tag);
   - `real`, `standin`, `contract`: what it runs, what it only imitates, what of the official image it honours.
3. The project's own images from their real Dockerfiles: images/postgres-backup FROM the postgres stand-in
   (its POSTGRES_IMAGE build arg), images/autoscaler FROM the python stand-in its FROM names.

An image is built only when no image of its tag carries the label `platform.inputs-hash` of the same inputs:
its base's hash and every file of its build context. `python -m tests.live.images` builds what is missing
and prints what each image is, and whether it was built or found.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
STANDINS = REPO_ROOT / "images" / "standins"
HASH_LABEL = "platform.inputs-hash"
MIRROR = "http://deb.debian.org/debian"
SECURITY_MIRROR = "http://deb.debian.org/debian-security"
SUITES = ("trixie", "bookworm")
POSTGRES_BACKUP = REPO_ROOT / "images" / "postgres-backup"
AUTOSCALER_DOCKERFILE = REPO_ROOT / "images" / "autoscaler" / "Dockerfile"
HOST_CA_DIR = Path("/usr/local/share/ca-certificates")
"""The host's own trusted CAs (Debian's place for a site's CA, e.g. of a TLS-inspecting proxy in front of
PyPI): a stand-in whose Dockerfile copies `host-ca/` gets them in its build context (see `build_standin`)."""
HOST_CA = "host-ca"


class ImageBuildError(RuntimeError):
    """One line naming the image and why it could not be built."""


def base_tag(suite: str) -> str:
    return f"platform-base:{suite}"


def base_files(suite: str) -> dict[str, tuple[str, int]]:
    """What the base adds to debootstrap's tree: path -> (content, mode)."""
    return {
        "etc/apt/sources.list": ("".join(f"deb {mirror} {dist} main\n" for mirror, dist in (
            (MIRROR, suite), (MIRROR, f"{suite}-updates"), (SECURITY_MIRROR, f"{suite}-security"))), 0o644),
        # No package's maintainer script starts a service while an image is built.
        "usr/sbin/policy-rc.d": ("#!/bin/sh\nexit 101\n", 0o755),
    }


# The image configuration of Debian's official images (docker-library/debian): PATH, and bash as the command.
BASE_CHANGES = ("ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", 'CMD ["bash"]')


def base_hash(suite: str) -> str:
    recipe = {"suite": suite, "mirror": MIRROR, "variant": "minbase", "files": base_files(suite),
              "changes": BASE_CHANGES}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()


def _files(root: Path, paths: list[Path] | None = None) -> Iterator[Path]:
    for top in paths or [root]:
        candidates = [top] if top.is_file() else sorted(top.rglob("*"))
        for path in candidates:
            if path.is_file() and "__pycache__" not in path.parts and not path.name.endswith(".pyc"):
                yield path


def inputs_hash(parent_hash: str, root: Path, paths: list[Path] | None = None) -> str:
    """sha256 of the parent image's hash and every file (path, executable bit, content) under `paths`."""
    digest = hashlib.sha256(parent_hash.encode())
    for path in sorted(_files(root, paths)):
        digest.update(b"\0" + str(path.relative_to(root)).encode() + b"\0")
        digest.update(b"x" if path.stat().st_mode & 0o111 else b"-")
        digest.update(path.read_bytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class Standin:
    name: str
    directory: Path
    suite: str
    tags: tuple[str, ...]
    real: str | None
    standin: str | None
    package: str | None

    @property
    def wants_host_ca(self) -> bool:
        return f"{HOST_CA}/" in (self.directory / "Dockerfile").read_text()

    @property
    def hash(self) -> str:
        with self.context() as context:
            return inputs_hash(base_hash(self.suite), context)

    @contextmanager
    def context(self) -> Iterator[Path]:
        """The directory, plus the host's CAs under host-ca/ when its Dockerfile copies them."""
        if not self.wants_host_ca:
            yield self.directory
            return
        with tempfile.TemporaryDirectory(prefix=f"standin-{self.name}-") as scratch:
            context = Path(scratch) / self.name
            shutil.copytree(self.directory, context)
            (context / HOST_CA).mkdir()
            for ca in sorted(HOST_CA_DIR.rglob("*.crt")) if HOST_CA_DIR.is_dir() else []:
                shutil.copyfile(ca, context / HOST_CA / ca.name)
            yield context


def prod_settings():
    from platform_infra.infra.mockrun import load_project
    from platform_infra.infra.settings import NAMESPACE, SETTINGS_KEY, parse_settings

    project = load_project(REPO_ROOT, "prod")
    return parse_settings(json.loads(project.config.get(f"{NAMESPACE}:{SETTINGS_KEY}", "null")), "Pulumi.prod.yaml")


def reference(key: str) -> str:
    """The stack's reference for a settings key: Images().<key>, else the prod stack's settings.image(key)."""
    from platform_infra.infra.settings import Images

    if key in Images.model_fields:
        return getattr(Images(), key)
    return prod_settings().image(key)


def references(key: str) -> list[str]:
    """Every reference a settings key's image goes by: `reference(key)`, and for a third-party image the one the
    prod stack pulls it by (through its image_mirror): the live tests run the prod plan's own references."""
    from platform_infra.infra.settings import Images

    pulled = getattr(prod_settings().pulled_images, key) if key in Images.model_fields else None
    return list(dict.fromkeys(filter(None, [reference(key), pulled])))


def _shown(path: Path) -> str:
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def load_standins(directory: Path = STANDINS) -> list[Standin]:
    standins = []
    for folder in sorted(p for p in directory.iterdir() if p.is_dir()):
        meta_file = folder / "standin.yaml"
        if not (folder / "Dockerfile").is_file() or not meta_file.is_file():
            raise ImageBuildError(f"{_shown(folder)}: needs a Dockerfile and a standin.yaml")
        meta: dict[str, Any] = yaml.safe_load(meta_file.read_text()) or {}
        if meta.get("suite") not in SUITES:
            raise ImageBuildError(f"{_shown(meta_file)}: suite must be one of {', '.join(SUITES)}, "
                                  f"got {meta.get('suite')!r}")
        keys = meta.get("settings_key")
        keys = [] if keys is None else [keys] if isinstance(keys, str) else list(keys)
        extra = meta.get("tags") or meta.get("tag") or []
        extra = [extra] if isinstance(extra, str) else list(extra)
        tags = tuple(dict.fromkeys([*(tag for key in keys for tag in references(key)), *extra]))
        if not tags:
            raise ImageBuildError(f"{_shown(meta_file)}: no settings_key nor tag to tag the image with")
        standins.append(Standin(folder.name, folder, meta["suite"], tags, meta.get("real"), meta.get("standin"),
                                meta.get("package")))
    return standins


def pinned_version(tag: str) -> str | None:
    """`15.20-bookworm` -> 15.20, `v1.69.0-alpine` -> 1.69.0, `3.13.5-slim` -> 3.13.5."""
    match = re.match(r"v?(\d+(?:\.\d+)*)", tag.rpartition(":")[2])
    return match.group(1) if match else None


def upstream_version(debian_version: str) -> str:
    """`5:8.0.2-3+deb13u3` -> 8.0.2, `2.53.3+ds1-2` -> 2.53.3, `15.20-0+deb12u1` -> 15.20."""
    match = re.match(r"(?:\d+:)?(\d+(?:\.\d+)*)", debian_version)
    return match.group(1) if match else debian_version


@dataclass
class Result:
    reference: str
    software: str
    outcome: str
    seconds: float


def _labelled(client, tag: str) -> str | None:
    import docker

    try:
        return (client.images.get(tag).labels or {}).get(HASH_LABEL)
    except docker.errors.ImageNotFound:
        return None


def _run(command: list[str], what: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise ImageBuildError(f"{what}: `{' '.join(command[:3])} ...` exited {done.returncode}\n{tail}")


def build_base(client, suite: str) -> str:
    """platform-base:<suite>; "built" or "cached"."""
    wanted = base_hash(suite)
    if _labelled(client, base_tag(suite)) == wanted:
        return "cached"
    debootstrap = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    with tempfile.TemporaryDirectory(prefix=f"platform-base-{suite}-") as scratch:
        root = Path(scratch) / "root"
        _run([debootstrap, "--variant=minbase", suite, str(root), MIRROR], base_tag(suite))
        for relative, (content, mode) in base_files(suite).items():
            path = root / relative
            path.write_text(content)
            path.chmod(mode)
        # The package lists are fetched by each image's own `apt-get update`.
        shutil.rmtree(root / "var" / "lib" / "apt" / "lists")
        (root / "var" / "lib" / "apt" / "lists" / "partial").mkdir(parents=True)
        for cache in (root / "var" / "cache" / "apt").glob("*.bin"):
            cache.unlink()
        archive = Path(scratch) / "root.tar"
        _run(["tar", "--numeric-owner", "-C", str(root), "-cf", str(archive), "."], base_tag(suite))
        client.api.import_image_from_file(str(archive), repository="platform-base", tag=suite,
                                          changes=[f"LABEL {HASH_LABEL}={wanted}", *BASE_CHANGES])
    return "built"


def build_image(client, *, context: Path, tags: tuple[str, ...], wanted: str, dockerfile: Path | None = None,
                buildargs: dict[str, str] | None = None) -> str:
    """Build `context` and tag it with every tag, unless each already carries `wanted`; "built", "cached", or
    "tagged" (an image of these inputs had some of the tags: the others are added to it)."""
    import docker

    labelled = {tag: _labelled(client, tag) for tag in tags}
    if all(label == wanted for label in labelled.values()):
        return "cached"
    built = next((tag for tag, label in labelled.items() if label == wanted), None)
    if built is not None:
        image = client.images.get(built)
        for tag in (t for t, label in labelled.items() if label != wanted):
            repository, _, version = tag.rpartition(":")
            image.tag(repository, version)
        return "tagged"
    try:
        image, _ = client.images.build(
            path=str(context), dockerfile=str(dockerfile.relative_to(context)) if dockerfile else None,
            tag=tags[0], buildargs=buildargs or {}, labels={HASH_LABEL: wanted},
            network_mode="host", rm=True, forcerm=True, pull=False)
    except docker.errors.BuildError as error:
        log = "".join(str(item.get("stream") or item.get("error") or "") for item in error.build_log)
        tail = "\n".join(log.strip().splitlines()[-15:])
        raise ImageBuildError(f"{tags[0]}: the build of {context} failed: {error.msg}\n"
                              f"{tail}") from None
    for tag in tags[1:]:
        repository, _, version = tag.rpartition(":")
        image.tag(repository, version)
    return "built"


def _dockerfile_from(dockerfile: Path) -> str:
    return next(line.split()[1] for line in dockerfile.read_text().splitlines() if line.startswith("FROM "))


def _copied_paths(dockerfile: Path, context: Path) -> list[Path]:
    """What the Dockerfile's COPY instructions take from `context`, and the Dockerfile itself."""
    paths = [dockerfile]
    for line in dockerfile.read_text().splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            paths += [context / source for source in line.split()[1:-1]]
    return paths


def installed_version(client, image: str, package: str) -> str | None:
    container = client.containers.create(image, entrypoint=["dpkg-query", "-W", "-f=${Version}\\n", package],
                                         user="0", network_mode="none")
    try:
        container.start()
        status = container.wait(timeout=60)
        output = container.logs(stdout=True, stderr=False).decode().strip()
    finally:
        container.remove(force=True, v=True)
    return output if status.get("StatusCode") == 0 and output else None


def describe(client, standin: Standin) -> str:
    """What the image runs, and where the pinned tag's version differs from Debian's."""
    if standin.standin:
        return f"stand-in: {standin.standin}"
    text = standin.real or "?"
    if not standin.package:
        return text
    version = installed_version(client, standin.tags[0], standin.package)
    if version is None:
        return f"{text}; {standin.package} not installed"
    text = f"{text}: {standin.package} {version}"
    pinned = {tag: pinned_version(tag) for tag in standin.tags}
    differing = {tag: pin for tag, pin in pinned.items() if pin and pin != upstream_version(version)}
    if differing:
        text += "; DIFFERS from " + ", ".join(f"{tag} ({pin})" for tag, pin in differing.items())
    return text


def build_all(client, describe_images: bool = False, log=print) -> list[Result]:
    """Every image the live tests run; each result as it is built is also passed to `log`."""
    results: list[Result] = []

    def record(reference: str, software: str, action) -> str:
        started = time.monotonic()
        outcome = action()
        results.append(Result(reference, software, outcome, time.monotonic() - started))
        log(f"{outcome:>6}  {reference}")
        return outcome

    for suite in SUITES:
        record(base_tag(suite), f"Debian {suite} (debootstrap --variant=minbase)", lambda s=suite: build_base(client, s))
    standins = load_standins()
    by_tag: dict[str, str] = {}
    for standin in standins:
        wanted = standin.hash
        with standin.context() as context:
            record(", ".join(standin.tags), "", lambda s=standin, w=wanted, c=context: build_image(
                client, context=c, tags=s.tags, wanted=w, buildargs={"BASE": base_tag(s.suite)}))
        if describe_images:
            results[-1].software = describe(client, standin)
        by_tag.update(dict.fromkeys(standin.tags, wanted))

    postgres = reference("postgres")
    if postgres not in by_tag:
        raise ImageBuildError(f"images/postgres-backup: no stand-in is tagged {postgres} (settings_key: postgres)")
    record(reference("postgres-backup"), f"images/postgres-backup/Dockerfile FROM {postgres}", lambda: build_image(
        client, context=POSTGRES_BACKUP, tags=(reference("postgres-backup"),),
        wanted=inputs_hash(by_tag[postgres], POSTGRES_BACKUP), buildargs={"POSTGRES_IMAGE": postgres}))
    python = _dockerfile_from(AUTOSCALER_DOCKERFILE)
    if python not in by_tag:
        raise ImageBuildError(f"images/autoscaler/Dockerfile: FROM {python}, which no stand-in is tagged with")
    record(reference("autoscaler"), f"images/autoscaler/Dockerfile FROM {python}", lambda: build_image(
        client, context=REPO_ROOT, dockerfile=AUTOSCALER_DOCKERFILE, tags=(reference("autoscaler"),),
        wanted=inputs_hash(by_tag[python], REPO_ROOT, _copied_paths(AUTOSCALER_DOCKERFILE, REPO_ROOT))))
    return results


def table(results: list[Result]) -> str:
    rows = [("image", "software", "result", "seconds"),
            *((r.reference, r.software, r.outcome, f"{r.seconds:.0f}") for r in results)]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join(f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:<{widths[2]}}  {d:>7}" for a, b, c, d in rows)


def main(argv: list[str] | None = None) -> int:
    import docker

    client = docker.from_env(timeout=1800)
    try:
        results = build_all(client, describe_images=True)
    except ImageBuildError as error:
        print(f"images: {error}", file=sys.stderr)
        return 1
    finally:
        client.close()
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
