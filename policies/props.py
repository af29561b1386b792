"""Read pulumi-docker properties as the engine hands them to a policy: camelCase names, proxied values.

Props arrive wrapped by pulumi_policy's unknown-checking proxy: reading an unknown value raises
UnknownValueError, which the rules let through so an unknown is reported instead of silently passing.
Proxied dicts and lists are `Mapping`/`Sequence`, not `dict`/`list`, so every test here uses the ABCs.
"""

from __future__ import annotations

import base64
import binascii
import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, UnknownValueError

CONTAINER = "docker:index/container:Container"
SERVICE = "docker:index/service:Service"
NETWORK = "docker:index/network:Network"
REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"
IMAGE = "docker:index/image:Image"
REGISTRY_IMAGE = "docker:index/registryImage:RegistryImage"
SERVICE_CONFIG = "docker:index/serviceConfig:ServiceConfig"
SECRET = "docker:index/secret:Secret"
DOCKER_PROVIDER = "pulumi:providers:docker"
RANDOM_PASSWORD = "random:index/randomPassword:RandomPassword"
RANDOM_BYTES = "random:index/randomBytes:RandomBytes"
TLS_PRIVATE_KEY = "tls:index/privateKey:PrivateKey"
TLS_SELF_SIGNED_CERT = "tls:index/selfSignedCert:SelfSignedCert"
TLS_LOCALLY_SIGNED_CERT = "tls:index/locallySignedCert:LocallySignedCert"
WORKLOADS = (CONTAINER, SERVICE)
FILE_OBJECTS = (SERVICE_CONFIG, SECRET)
"""Swarm configs and secrets: each carries one file of a service (label PATH_LABEL), judged by the rules that
read files, as a never-started container carries a plain container's files."""

ROLE_LABEL = "platform.role"
SERVICE_LABEL = "platform.service"
FILES_DIGEST_LABEL = "platform.files-digest"
PATH_LABEL = "platform.path"
ROLES = ("app", "ds", "mon", "lb", "egress")

# Image/service name fragments -> kind, and kind -> role. Exporters and backup tools carry a
# data store's name too ("postgres-exporter", "clickhouse-backup"), so they are matched first.
KIND_PATTERNS = (
    # A socket proxy is named after its client (`cadvisor-socket-proxy`), which it is not.
    ("socket-proxy", re.compile(r"socket-proxy")),
    ("exporter", re.compile(r"exporter|kminion|cadvisor")),
    ("backup", re.compile(r"backup|pgbackrest|wal-g|walg")),
    ("postgres", re.compile(r"postgres")),
    ("redis", re.compile(r"redis")),
    ("zookeeper", re.compile(r"zookeeper")),
    ("kafka", re.compile(r"kafka")),
    ("clickhouse", re.compile(r"clickhouse")),
    ("alertmanager", re.compile(r"alertmanager")),
    ("prometheus", re.compile(r"prometheus")),
    ("grafana", re.compile(r"grafana")),
    ("nginx", re.compile(r"nginx")),
    ("haproxy", re.compile(r"haproxy")),
    ("traefik", re.compile(r"traefik")),
)
KIND_ROLE = {
    "socket-proxy": "mon",
    "postgres": "ds",
    "redis": "ds",
    "zookeeper": "ds",
    "kafka": "ds",
    "clickhouse": "ds",
    "backup": "ds",
    "prometheus": "mon",
    "alertmanager": "mon",
    "grafana": "mon",
    "exporter": "mon",
    "nginx": "lb",
    "haproxy": "lb",
    "traefik": "lb",
}
THIRD_PARTY_KINDS = frozenset(KIND_ROLE) - {"backup", "exporter"}
_SHARED_LIMIT = 4096
"""Facts derived from props are shared while the same props object is read again (every policy of one
`infra check` run gets the same props, see platform_infra.infra.analyze_once); the engine hands each policy fresh props,
so past this many entries the caches start over."""


def get(node: Any, *path: Any, default: Any = None) -> Any:
    """Walk Mappings/Sequences by key or index; missing -> default. Unknown values raise (on purpose)."""
    for key in path:
        if isinstance(node, Mapping):
            if key not in node:  # touches the value, so an unknown one raises here
                return default
            node = node[key]
        elif isinstance(node, Sequence) and not isinstance(node, str) and isinstance(key, int):
            if not -len(node) <= key < len(node):
                return default
            node = node[key]
        else:
            return default
        if node is None:
            return default
    return node


def items(value: Any) -> list[Any]:
    """A proxied list as a plain list (every element read, so unknown elements raise)."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        return list(value)
    return []


def strings(value: Any) -> list[str]:
    return [str(v) for v in items(value)]


def truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "on"))


def labels(props: Any, *path: str) -> dict[str, str]:
    """pulumi-docker labels (`[{label, value}]`) at `path` as a dict."""
    return {
        str(get(entry, "label")): str(get(entry, "value", default="")) for entry in items(get(props, *path))
    }


def image_repository(image: str) -> str:
    """`registry/ns/name:tag@sha256:...` -> `registry/ns/name`."""
    image = image.split("@", 1)[0]
    last_slash = image.rfind("/")
    colon = image.rfind(":")
    return image[:colon] if colon > last_slash else image


def image_tag(image: str) -> str | None:
    without_digest = image.split("@", 1)[0]
    colon = without_digest.rfind(":")
    return without_digest[colon + 1 :] if colon > without_digest.rfind("/") else None


def is_image_id(image: str) -> bool:
    """Containers usually get `RemoteImage.imageId` (`sha256:...`), not a name: nothing to check there."""
    return image.startswith("sha256:")


def kind_of(*names: str | None) -> str | None:
    for name in names:
        if not name:
            continue
        lowered = name.lower()
        if is_image_id(lowered):
            continue
        base = image_repository(lowered).rsplit("/", 1)[-1] if ":" in lowered or "/" in lowered else lowered
        for kind, pattern in KIND_PATTERNS:
            if pattern.search(base):
                return kind
    return None


def decode_base64(value: str) -> str | None:
    try:
        return base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None


@dataclass(frozen=True)
class ImageSource:
    """A docker.RemoteImage or docker.Image a workload takes its image from; None where not known yet."""

    name: str | None
    """What the image is: RemoteImage.name, Image.imageName."""
    references: tuple[str, ...]
    """What a workload's `image` may hold instead: RemoteImage.imageId and repoDigest, Image.repoDigest."""


IMAGE_SOURCE_FIELDS = {REMOTE_IMAGE: ("name", ("imageId", "repoDigest")), IMAGE: ("imageName", ("repoDigest",))}


_SOURCES: dict[int, tuple[Any, ImageSource]] = {}


def image_source(resource_type: str, props: Any) -> ImageSource | None:
    """The image resource's name and the references to it (pulumi-docker's RemoteImage and Image outputs)."""
    if resource_type not in IMAGE_SOURCE_FIELDS:
        return None
    shared = _SOURCES.get(id(props))
    if shared is not None and shared[0] is props:
        return shared[1]
    if len(_SOURCES) >= _SHARED_LIMIT:
        _SOURCES.clear()
    found = _read_image_source(resource_type, props)
    _SOURCES[id(props)] = (props, found)
    return found


def _read_image_source(resource_type: str, props: Any) -> ImageSource:
    name_field, reference_fields = IMAGE_SOURCE_FIELDS[resource_type]

    def known(field_name: str) -> str | None:
        try:
            value = get(props, field_name)
        except UnknownValueError:
            return None
        return str(value) if value else None

    return ImageSource(known(name_field), tuple(r for r in map(known, reference_fields) if r))


def host_path_as_resolved(path: str) -> str:
    """An absolute host path as the kernel resolves it (`//etc`, `/srv/../etc/` are `/etc`), so that a rule
    comparing paths cannot be sidestepped by spelling one differently; a volume's name stays as it is."""
    return "/" + posixpath.normpath(path).lstrip("/") if path.startswith("/") else path


@dataclass(frozen=True)
class Mount:
    source: str
    target: str
    type: str
    read_only: bool
    propagation: str | None


@dataclass(frozen=True)
class Port:
    internal: int | None
    external: int | None
    ip: str | None
    mode: str | None


class Workload:
    """A docker.Container or docker.Service seen through one interface (S.taskSpec.containerSpec for S)."""

    def __init__(self, type_: str, props: Any, name: str, urn: str = "", images: tuple[ImageSource, ...] = ()):
        self.type = type_
        self.props = props
        self.resource_name = name
        self.urn = urn
        self.images = images
        """The image resources its image comes from (stack rules see them through the resource graph)."""
        self.is_service = type_ == SERVICE
        self.is_file_object = type_ in FILE_OBJECTS
        self.spec = get(props, "taskSpec", "containerSpec", default={}) if self.is_service else props

    @cached_property
    def labels(self) -> dict[str, str]:
        merged = labels(self.props, "labels")
        if self.is_service:
            merged.update(labels(self.spec, "labels"))
        return merged

    @cached_property
    def name(self) -> str:
        return str(get(self.props, "name", default=self.resource_name))

    @cached_property
    def image(self) -> str:
        return str(get(self.spec, "image", default=""))

    @cached_property
    def identity_image(self) -> str:
        """The image reference that says what runs: the image when it is a name, else the name of the image
        resource it was taken from (`image=remote.image_id` is a `sha256:` id, unknown in a preview before the
        pull). Raises UnknownValueError when neither is known."""
        try:
            image = self.image
        except UnknownValueError:
            image = None
        if image and not is_image_id(image) and not any(image in source.references for source in self.images):
            return image
        matches = [s for s in self.images if image in s.references] if image else list(self.images)
        if len(matches) == 1 and matches[0].name:
            return matches[0].name
        if image is None or len(matches) == 1:
            raise UnknownValueError(UNKNOWN_STRING_VALUE, ["image"])
        return image

    @cached_property
    def kind(self) -> str | None:
        return kind_of(self.labels.get(SERVICE_LABEL)) or kind_of(self.identity_image, self.name, self.resource_name)

    @cached_property
    def role(self) -> str:
        role = self.labels.get(ROLE_LABEL)
        return role if role else KIND_ROLE.get(self.kind or "", "app")

    @cached_property
    def env(self) -> dict[str, str]:
        if self.is_service:
            return {str(k): str(v) for k, v in (get(self.spec, "env", default={}) or {}).items()}
        env: dict[str, str] = {}
        for entry in strings(get(self.props, "envs")):
            key, _, value = entry.partition("=")
            env[key] = value
        return env

    @cached_property
    def command(self) -> list[str]:
        if self.is_service:
            return strings(get(self.spec, "commands")) + strings(get(self.spec, "args"))
        return strings(get(self.props, "entrypoints")) + strings(get(self.props, "command"))

    @cached_property
    def runs(self) -> bool:
        """False for a container created with `start: false`: it never runs, it only carries files (uploads)
        onto a volume that a read-only container mounts."""
        if self.is_file_object:
            return False
        return self.is_service or get(self.props, "start", default=True) is not False

    @cached_property
    def holds_its_files(self) -> bool:
        """Its files, if any, are all in its own uploads: a rule may report one that is missing. Not so for a
        workload whose files live elsewhere (FILES_DIGEST_LABEL), nor for a config or secret, which carries
        one file of its service."""
        return not self.files_on_volume and not self.is_file_object

    @cached_property
    def files_on_volume(self) -> bool:
        """Its files come from a volume filled by a never-started container (label FILES_DIGEST_LABEL); rules
        read them there."""
        return FILES_DIGEST_LABEL in self.labels

    @cached_property
    def uploads(self) -> dict[str, str]:
        """File path -> text of every `uploads` entry (Containers only; Services use docker configs)."""
        files: dict[str, str] = {}
        if self.is_file_object:
            content = decode_base64(str(get(self.props, "data", default="")))
            path = self.labels.get(PATH_LABEL, self.name)
            return {path: content} if content is not None else files
        if self.is_service:
            return files
        for upload in items(get(self.props, "uploads")):
            content = get(upload, "content")
            if content is None and get(upload, "contentBase64") is not None:
                content = decode_base64(str(get(upload, "contentBase64")))
            if content is not None:
                files[str(get(upload, "file", default=""))] = str(content)
        return files

    @cached_property
    def uploaded_files(self) -> list[str]:
        if self.is_file_object:
            return [self.labels.get(PATH_LABEL, self.name)]
        return (
            []
            if self.is_service
            else [str(get(u, "file", default="")) for u in items(get(self.props, "uploads"))]
        )

    @cached_property
    def security_opts(self) -> list[str]:
        return (
            [] if self.is_service else [o.strip().lower() for o in strings(get(self.props, "securityOpts"))]
        )

    @cached_property
    def cap_adds(self) -> list[str]:
        raw = (
            strings(get(self.spec, "capAdds"))
            if self.is_service
            else strings(get(self.props, "capabilities", "adds"))
        )
        return [normalise_capability(c) for c in raw]

    @cached_property
    def cap_drops(self) -> list[str]:
        raw = (
            strings(get(self.spec, "capDrops"))
            if self.is_service
            else strings(get(self.props, "capabilities", "drops"))
        )
        return [normalise_capability(c) for c in raw]

    @cached_property
    def mounts(self) -> list[Mount]:
        found: list[Mount] = []
        if not self.is_service:
            for volume in items(get(self.props, "volumes")):
                host_path = get(volume, "hostPath")
                source = host_path_as_resolved(str(host_path)) if host_path else get(volume, "volumeName") or ""
                found.append(
                    Mount(
                        str(source),
                        str(get(volume, "containerPath", default="")),
                        "bind" if host_path else "volume",
                        truthy(get(volume, "readOnly")),
                        None,
                    )
                )
        for mount in items(get(self.spec, "mounts")):
            found.append(
                Mount(
                    host_path_as_resolved(str(get(mount, "source", default=""))),
                    str(get(mount, "target", default="")),
                    str(get(mount, "type", default="volume")),
                    truthy(get(mount, "readOnly")),
                    get(mount, "bindOptions", "propagation"),
                )
            )
        return found

    @cached_property
    def ports(self) -> list[Port]:
        if self.is_service:
            return [
                Port(
                    _int(get(p, "targetPort")),
                    _int(get(p, "publishedPort")),
                    None,
                    str(get(p, "publishMode", default="ingress")),
                )
                for p in items(get(self.props, "endpointSpec", "ports"))
            ]
        return [
            Port(
                _int(get(p, "internal")), _int(get(p, "external")), str(get(p, "ip", default="0.0.0.0")), None
            )
            for p in items(get(self.props, "ports"))
        ]

    @cached_property
    def networks(self) -> list[str]:
        if self.is_service:
            return [
                str(get(n, "name", default=None) or get(n, "id", default=""))
                for n in items(get(self.props, "taskSpec", "networksAdvanceds"))
            ]
        return [str(get(n, "name", default="")) for n in items(get(self.props, "networksAdvanced"))]

    @cached_property
    def healthcheck_tests(self) -> list[str]:
        return strings(get(self.spec, "healthcheck", "tests"))


_SHARED: dict[tuple[str, int, str, str, tuple[ImageSource, ...]], Workload] = {}


def workload(type_: str, props: Any, name: str, urn: str = "", images: tuple[ImageSource, ...] = ()) -> Workload:
    """The one Workload for these props: rules reading the same props object (every policy of one
    `infra check` run, see platform_infra.infra.analyze_once) share what it derives, each fact computed once."""
    key = (type_, id(props), name, urn, images)
    found = _SHARED.get(key)
    if found is None or found.props is not props:
        if len(_SHARED) >= _SHARED_LIMIT:
            _SHARED.clear()  # the engine hands each policy fresh props: nothing to share across resources
        found = _SHARED[key] = Workload(type_, props, name, urn, images)
    return found


def normalise_capability(cap: str) -> str:
    cap = cap.strip().upper()
    return cap.removeprefix("CAP_")


def _int(value: Any) -> int | None:
    try:
        return int(float(value)) if value is not None else None
    except (TypeError, ValueError):
        return None


def number(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


SENSITIVE_NAME = re.compile(
    r"PASSWORD|PASSWD|SECRET|TOKEN|BEARER|API_?KEY|PRIVATE_?KEY|ACCESS_?KEY|CREDENTIAL", re.IGNORECASE
)
JWT_NAME = re.compile(r"JWT.*(SECRET|KEY)|(SECRET|KEY).*JWT", re.IGNORECASE)
PRIVATE_KEY_TEXT = re.compile(r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----")


def sensitive_env(env: dict[str, str]) -> dict[str, str]:
    """Credential-looking variables carrying a literal value (`*_FILE` paths and `$refs` excluded)."""
    return {
        k: v
        for k, v in env.items()
        if SENSITIVE_NAME.search(k) and not k.upper().endswith("_FILE") and v and not v.startswith("$")
    }
