"""Run any Pulumi Python program under Pulumi's mocks and record what it registers.

This is the engine-free half of `pulumi preview`: the program sees its stack's config (encrypted values as
unknown secrets), every registration is recorded in the engine's own wire form (camelCase properties, secret
and unknown sentinels), and nothing is created anywhere.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import runpy
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from google.protobuf import empty_pb2, json_format
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc, settings
from pulumi.runtime.config import set_all_config
from pulumi.runtime.stack import run_in_stack

from platform_infra.components.images import PROJECT_ROOT
from platform_infra.infra.fastrun import collector_paused, settle_outputs

UNKNOWN = rpc.UNKNOWN
SIG_KEY = rpc._special_sig_key
SECRET_SIG = rpc._special_secret_sig
STACK_TYPE = "pulumi:pulumi:Stack"
DEFAULT_PROJECT = str(PROJECT_ROOT) if (PROJECT_ROOT / "Pulumi.yaml").is_file() else "."
"""`--project` by default: this repository's own program in a checkout; installed from the wheel (no
Pulumi.yaml beside the package), the current directory, as `pulumi` looks there."""


class ProgramInputError(ValueError):
    """The project directory, stack name or stack file cannot be used; exit code 2."""


@dataclass
class Registration:
    urn: str
    type: str
    name: str
    parent: str | None
    custom: bool
    inputs: dict[str, Any]
    """Engine wire form: camelCase keys, secrets as signature objects, unknowns as the UNKNOWN sentinel."""
    outputs: dict[str, Any] = field(default_factory=dict)
    provider: str | None = None
    dependencies: list[str] = field(default_factory=list)
    property_dependencies: dict[str, list[str]] = field(default_factory=dict)
    """Input property (wire name) -> URNs of the resources its value came from."""
    protect: bool = False
    additional_secret_outputs: list[str] = field(default_factory=list)
    ignore_changes: list[str] = field(default_factory=list)
    retain_on_delete: bool = False


@dataclass
class ProgramRun:
    project: str
    stack: str
    resources: list[Registration]
    stack_outputs: dict[str, Any]
    """Wire form, like `inputs`."""


@dataclass(frozen=True)
class Project:
    name: str
    directory: Path
    main: Path
    config: dict[str, str]
    secret_keys: list[str]
    workdir: Path
    """Where the engine runs the program and its providers (see `engine_workdir`)."""


def _fake_text(seed: str, length: int, alphabet: str = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789") -> str:
    digest = b""
    counter = 0
    while len(digest) < length:
        digest += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return "".join(alphabet[b % len(alphabet)] for b in digest[:length])


def _pem(kind: str, seed: str) -> str:
    body = base64.b64encode(hashlib.sha512(seed.encode()).digest() * 4).decode()
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return "\n".join([f"-----BEGIN {kind}-----", *lines, f"-----END {kind}-----", ""])


class ProviderCheckError(Exception):
    """A provider's Check refused a resource's inputs: preview fails with the provider's message."""


def _go_path_error(op: str, path: str, error: OSError) -> str:
    """An *os.PathError as Go prints it: "stat images/x: no such file or directory"."""
    reason = os.strerror(error.errno) if error.errno else str(error)
    return f"{op} {path}: {reason[:1].lower()}{reason[1:]}"


def _go_eval_symlinks_error(path: str) -> str:
    """The error Go's filepath.EvalSymlinks gives for a path that does not resolve: an lstat of the first
    missing prefix."""
    parts = Path(path).parts
    for end in range(1, len(parts) + 1):
        prefix = str(Path(*parts[:end]))
        try:
            os.lstat(prefix)
        except OSError as exc:
            return _go_path_error("lstat", prefix, exc)
    return _go_path_error("lstat", path, FileNotFoundError(2, "no such file or directory"))


def check_image_build(build: Any) -> None:
    """What pulumi-docker's Check verifies of `docker.Image` build inputs before anything is built (preview too),
    with its messages: the Dockerfile exists (relative paths from the working directory, which is the engine's),
    and the build context can be hashed.

    pulumi/pulumi-docker provider/provider.go `Check` ("Verify Dockerfile at given location", then
    `hashContext`) and provider/image.go `marshalBuildAndApplyDefaults` (context "." and dockerfile
    path.Join(context, "Dockerfile") by default), at 237b7899 (v5.1.0+24; pulumi-docker 5.2 is installed);
    the context's error is tonistiigi/fsutil fs.go `NewFS` ("resolve", filepath.EvalSymlinks, then stat)."""
    build = build if isinstance(build, dict) else {}
    context = build.get("context", ".")
    dockerfile = build.get("dockerfile", os.path.normpath(os.path.join(context, "Dockerfile"))
                           if isinstance(context, str) else UNKNOWN)
    if not isinstance(dockerfile, str) or dockerfile == UNKNOWN:
        return  # an unknown Dockerfile is checked when it is known
    try:
        os.stat(dockerfile)
    except OSError as exc:
        stat_error = _go_path_error("stat", dockerfile, exc)
        if os.path.isabs(dockerfile):
            raise ProviderCheckError(
                f"expected a relative Dockerfile path; got {json.dumps(dockerfile)} instead: {stat_error}") from None
        joined = os.path.join(context, dockerfile) if isinstance(context, str) else dockerfile
        if not os.path.exists(joined):
            raise ProviderCheckError(
                f"could not open dockerfile at relative path {json.dumps(dockerfile)}: {stat_error}") from None
        raise ProviderCheckError(f"could not open dockerfile at relative path {json.dumps(dockerfile)}. "
                                 f"Try setting `dockerfile` to {json.dumps(joined)}") from None
    if not isinstance(context, str) or context == UNKNOWN:
        return
    if not os.path.exists(context):
        raise ProviderCheckError(f"unable to hash build context: resolve : {_go_eval_symlinks_error(context)}")
    if not os.path.isdir(context):
        raise ProviderCheckError(f"unable to hash build context: stat {os.path.realpath(context)}: not a directory")


class PlanMocks(pulumi_mocks.Mocks):
    """Outputs shaped like each provider's real ones (camelCase), so programs that read them behave."""

    def new_resource(self, args: pulumi_mocks.MockResourceArgs) -> tuple[str | None, dict]:
        state = dict(args.inputs)
        seed = f"{args.typ}::{args.name}"
        outputs: dict[str, Any] = {}
        match args.typ:
            case "docker:index/image:Image":
                check_image_build(args.inputs.get("build"))
            case "docker:index/remoteImage:RemoteImage":
                digest = hashlib.sha256(str(args.inputs.get("name")).encode()).hexdigest()
                outputs = {"imageId": f"sha256:{digest}", "repoDigest": f"{args.inputs.get('name')}@sha256:{digest}"}
            case "docker:index/network:Network":
                outputs = {"name": args.inputs.get("name", args.name), "driver": args.inputs.get("driver", "bridge"),
                           "scope": "local"}
            case "docker:index/volume:Volume":
                name = args.inputs.get("name", args.name)
                outputs = {"name": name, "driver": "local", "mountpoint": f"/var/lib/docker/volumes/{name}/_data"}
            case "docker:index/container:Container":
                outputs = {"name": args.inputs.get("name", args.name), "exitCode": 0,
                           "networkDatas": [{"networkName": n.get("name"), "ipAddress": "172.18.0.2"}
                                            for n in args.inputs.get("networksAdvanced", [])]}
            case "random:index/randomPassword:RandomPassword" | "random:index/randomString:RandomString":
                result = _fake_text(seed, int(args.inputs.get("length", 16)))
                outputs = {"result": result, "bcryptHash": "$2a$10$" + _fake_text(seed + "b", 53)}
            case "random:index/randomBytes:RandomBytes":
                raw = hashlib.sha512(seed.encode()).digest() * 8
                raw = raw[: int(args.inputs.get("length", 32))]
                outputs = {"base64": base64.b64encode(raw).decode(), "hex": raw.hex()}
            case "tls:index/privateKey:PrivateKey":
                outputs = {"privateKeyPem": _pem("PRIVATE KEY", seed), "publicKeyPem": _pem("PUBLIC KEY", seed),
                           "privateKeyPemPkcs8": _pem("PRIVATE KEY", seed + "8"), "publicKeyFingerprintSha256": "SHA256:"}
            case "tls:index/selfSignedCert:SelfSignedCert" | "tls:index/locallySignedCert:LocallySignedCert":
                outputs = {"certPem": _pem("CERTIFICATE", seed), "validityStartTime": "2026-01-01T00:00:00Z",
                           "validityEndTime": "2026-04-01T00:00:00Z", "readyForRenewal": False}
            case "tls:index/certRequest:CertRequest":
                outputs = {"certRequestPem": _pem("CERTIFICATE REQUEST", seed)}
        state.update(outputs)
        return (f"{args.name}-id" if args.custom else None), state

    def call(self, args: pulumi_mocks.MockCallArgs) -> tuple[dict, list]:
        if args.token == "docker:index/getRegistryImage:getRegistryImage":
            name = str(args.args.get("name"))
            return {"name": name, "sha256Digest": f"sha256:{hashlib.sha256(name.encode()).hexdigest()}"}, []
        return {}, []


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """The SDK's mock monitor, keeping each request whole (parent, wire-form inputs) in order."""

    def __init__(self, mocks: pulumi_mocks.Mocks):
        super().__init__(mocks)
        self.registrations: list[Registration] = []
        self.stack_outputs: dict[str, Any] = {}
        self.stack_urn = ""

    def make_urn(self, parent: str, type_: str, name: str) -> str:
        # The engine leaves the root stack out of its children's type chain.
        return super().make_urn("" if parent == self.stack_urn else parent, type_, name)

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        if request.type == STACK_TYPE:
            self.stack_urn = response.urn
            return response
        # As the engine does, outputs a provider declares secret come back wrapped as secrets.
        state = json_format.MessageToDict(response.object)
        for key in set(request.additionalSecretOutputs) & set(state):
            if not (isinstance(state[key], dict) and state[key].get(SIG_KEY) == SECRET_SIG):
                response.object.update({key: {SIG_KEY: SECRET_SIG, "value": state[key]}})
        self.registrations.append(Registration(
            urn=response.urn,
            type=request.type,
            name=request.name,
            parent=request.parent if request.parent and request.parent != self.stack_urn else None,
            custom=bool(request.custom),
            inputs=json_format.MessageToDict(request.object),
            outputs=json_format.MessageToDict(response.object),
            provider=request.provider or None,
            dependencies=list(request.dependencies),
            property_dependencies={key: list(deps.urns) for key, deps in request.propertyDependencies.items()},
            protect=bool(request.protect),
            additional_secret_outputs=list(request.additionalSecretOutputs),
            ignore_changes=list(request.ignoreChanges),
            retain_on_delete=bool(request.retainOnDelete),
        ))
        return response

    def RegisterResourceOutputs(self, request):
        if request.urn == self.stack_urn:
            self.stack_outputs = json_format.MessageToDict(request.outputs)
        return super().RegisterResourceOutputs(request)


def _config_value(value: Any) -> tuple[str, bool]:
    """Render one stack-file value the way the engine hands it to a program; True when it is secret."""
    secret = False

    def walk(node: Any) -> Any:
        nonlocal secret
        if isinstance(node, dict):
            if set(node) == {"secure"}:
                secret = True
                return UNKNOWN
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    rendered = walk(value)
    if isinstance(rendered, str):
        return rendered, secret
    if isinstance(rendered, bool):
        return ("true" if rendered else "false"), secret
    if isinstance(rendered, (int, float)):
        return str(rendered), secret
    return json.dumps(rendered), secret


class _ConfigLoader(yaml.SafeLoader):
    """YAML as Pulumi reads config: scalars stay strings, numbers and booleans; no timestamps."""


_ConfigLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.load(path.read_text(), Loader=_ConfigLoader) or {}  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ProgramInputError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ProgramInputError(f"{path}: must be a YAML mapping")
    return data


def load_project(directory: Path, stack: str) -> Project:
    directory = directory.resolve()
    project_file = directory / "Pulumi.yaml"
    if not project_file.is_file():
        raise ProgramInputError(f"--project: no Pulumi.yaml in {directory}")
    project = _read_yaml(project_file)
    name = project.get("name")
    runtime = project.get("runtime")
    runtime_name = runtime.get("name") if isinstance(runtime, dict) else runtime
    if not isinstance(name, str) or runtime_name != "python":
        raise ProgramInputError(f"{project_file}: needs a name and `runtime: python` (got {runtime_name!r})")
    main = directory / project.get("main", ".")
    workdir = engine_workdir(directory, main)
    if main.is_dir():
        main = main / "__main__.py"
    if not main.is_file():
        raise ProgramInputError(f"{project_file}: program entry {main} does not exist")

    stack_file = directory / f"Pulumi.{stack}.yaml"
    if not stack_file.is_file():
        known = sorted(p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in directory.glob("Pulumi.*.yaml"))
        raise ProgramInputError(f"--stack: no Pulumi.{stack}.yaml in {directory}; stacks: {', '.join(known) or 'none'}")

    config: dict[str, str] = {}
    secret_keys: list[str] = []

    def add(key: str, value: Any) -> None:
        full = key if ":" in key else f"{name}:{key}"
        config[full], secret = _config_value(value)
        if secret:
            secret_keys.append(full)
        elif full in secret_keys:
            secret_keys.remove(full)

    for key, spec in (project.get("config") or {}).items():
        if isinstance(spec, dict) and ("default" in spec or "value" in spec):
            add(key, spec.get("value", spec.get("default")))
        elif not isinstance(spec, dict) or "type" not in spec:
            add(key, spec)
    stack_config = _read_yaml(stack_file).get("config") or {}
    if not isinstance(stack_config, dict):
        raise ProgramInputError(f"{stack_file}: config must be a mapping")
    for key, value in stack_config.items():
        add(key, value)
    return Project(name, directory, main, config, secret_keys, workdir)


def engine_workdir(directory: Path, main: Path) -> Path:
    """The working directory the engine gives the program and its providers: `main` when it is a directory,
    the directory holding it when it is a file (the project directory when `main` is unset).

    pulumi/pulumi pkg/engine/project.go getPwdMain: "if maininfo.IsDir() { pwd = main } else
    { pwd = filepath.Dir(main) }"."""
    return main if main.is_dir() else main.parent


@contextmanager
def _program_environment(project: Project) -> Iterator[None]:
    saved_path, saved_cwd, saved_modules = list(sys.path), os.getcwd(), set(sys.modules)
    sys.path.insert(0, str(project.main.parent))
    os.chdir(project.workdir)
    try:
        yield
    finally:
        os.chdir(saved_cwd)
        sys.path[:] = saved_path
        # A program's own modules are imported fresh by the next run, as a new process would.
        for module in set(sys.modules) - saved_modules:
            origin = getattr(sys.modules[module], "__file__", None) or ""
            if origin.startswith(str(project.directory)) and "site-packages" not in origin:
                del sys.modules[module]


def run_under_mocks(program: Callable[[], object], project: str, stack: str, config: dict[str, str] | None = None,
                    secret_keys: list[str] | None = None, mocks: pulumi_mocks.Mocks | None = None,
                    preview: bool = True) -> ProgramRun:
    """Run `program` as the Pulumi language host would (inside a root stack), against recording mocks.

    Resources come back in URN order: the SDK's tasks finish in an order that differs from run to run, and
    plans are compared as text."""
    monitor = RecordingMonitor(mocks or PlanMocks())
    features = set(monitor.GetDeploymentInfo(empty_pb2.Empty()).supportedFeatures)
    settings.configure(pulumi_mocks.MockSettings(
        monitor=monitor, monitor_features=features, engine=pulumi_mocks.MockEngine(None), project=project,
        stack=stack, dry_run=preview, organization=None, callbacks=None))
    settings.ROOT.set(None)
    set_all_config(config or {}, secret_keys or [])
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)

    def settled() -> object:
        program()
        return settle_outputs()

    try:
        with collector_paused():
            loop.run_until_complete(run_in_stack(settled))
    finally:
        set_all_config({}, [])
        settings.reset_options()
        loop.close()
        asyncio.set_event_loop(None)
    resources = sorted(monitor.registrations, key=lambda r: r.urn)
    return ProgramRun(project, stack, resources, monitor.stack_outputs)


def run_program(project: Project, stack: str, mocks: pulumi_mocks.Mocks | None = None,
                preview: bool = True) -> ProgramRun:
    """Run the project's program once, as `pulumi preview` would, and return every registration."""
    with _program_environment(project):
        return run_under_mocks(lambda: runpy.run_path(str(project.main), run_name="__main__"), project.name, stack,
                               project.config, project.secret_keys, mocks, preview)



def run_project(args: argparse.Namespace) -> ProgramRun:
    """The program of the stack the command's `--project` and `--stack` name, run once."""
    return run_program(load_project(Path(args.project), args.stack), args.stack)


def redact(value: Any) -> Any:
    """Wire-form value with every secret replaced by "[secret]" and every unknown by "[unknown]"."""
    if isinstance(value, dict):
        if value.get(SIG_KEY) == SECRET_SIG:
            return "[secret]"
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    if value == UNKNOWN:
        return "[unknown]"
    return value
