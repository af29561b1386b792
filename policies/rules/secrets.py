"""Credentials, JWT keys, generated secrets and TLS keys. Messages name fields, never values."""

from __future__ import annotations

import base64
import binascii
import math
import re
import shlex
from collections import Counter

from platform_infra.policies.props import (
    CONTAINER,
    JWT_NAME,
    PRIVATE_KEY_TEXT,
    RANDOM_BYTES,
    RANDOM_PASSWORD,
    SENSITIVE_NAME,
    SERVICE_CONFIG,
    TLS_LOCALLY_SIGNED_CERT,
    TLS_PRIVATE_KEY,
    TLS_SELF_SIGNED_CERT,
    WORKLOADS,
    Workload,
    decode_base64,
    get,
    items,
    number,
    sensitive_env,
    truthy,
)
from platform_infra.policies.registry import ADVISORY, MANDATORY, resource_rule
from platform_infra.policies.scope import has_jwt_env

EMBEDDED_PASSWORD = re.compile(r"password\s*=\s*\"[^\"$][^\"]*\"", re.IGNORECASE)
CONFIG_FILE_SUFFIXES = (".conf", ".yml", ".yaml", ".json", ".ini", ".properties", ".xml", ".env", ".cfg")


@resource_rule(
    "SEC-001",
    "no-plaintext-secret-env",
    "No plaintext secrets in container env",
    reads_files=True,
    types=[CONTAINER],
    severity="high",
    prod=ADVISORY,
    checklist=["security.database-passwords"],
    sources=["Polaris sensitiveContainerEnvVar", "CKV_K8S_35", "CIS 4.10", "CIS 7.4", "CKV_SECRET_13"],
    remediation="Pass credentials as files (`*_FILE` from a tmpfs upload or docker secret); at least "
    "make the env value a Pulumi secret. Never put private keys in env or config files.",
)
def no_plaintext_secret_env(w: Workload, report, options) -> None:
    """Credentials reach containers as files rather than env values (visible in `docker inspect`); private
    keys never sit in env or in a config file. Whether an env value is a Pulumi secret is invisible to a
    policy (pulumi-policy#241), so on single-host Containers this stays advisory."""
    env = w.env
    credentials = sensitive_env(env)
    for key in sorted(credentials):
        report(f"env {key} carries a credential; prefer {key}_FILE")
    for key, value in sorted(env.items()):
        if PRIVATE_KEY_TEXT.search(value):
            report(f"env {key} holds a private key")
        elif key not in credentials and EMBEDDED_PASSWORD.search(value):
            report(f"env {key} embeds a password (e.g. a JAAS config); prefer a mounted file")
    for path, content in sorted(w.uploads.items()):
        if path.endswith(CONFIG_FILE_SUFFIXES) and PRIVATE_KEY_TEXT.search(content):
            report(f"upload {path} embeds a private key")


CREDENTIAL_FLAG = re.compile(
    r"^--?(?:[\w.-]*[-_.])?(?:password|passwd|pass|pwd|secret|token|requirepass|masterauth|api[-_]?key"
    r"|access[-_]?key|secret[-_]?key|credentials?|auth)$",
    re.IGNORECASE,
)
URL_PASSWORD = re.compile(r"\b[a-z][a-z0-9+.-]*://[^/\s:@]+:([^@\s/]+)@", re.IGNORECASE)


def _literal(value: str) -> bool:
    """A value written out, not taken from elsewhere at run time ($VAR, $(cat file), a file or stdin)."""
    return bool(value) and not value.startswith(("$", "<", "@"))


def _tokens(part: str) -> list[str]:
    if not any(c.isspace() for c in part):
        return [part]
    try:
        return shlex.split(part)
    except ValueError:
        return part.split()


def command_line_credentials(args: list[str]) -> list[str]:
    """What carries a literal credential in one command line (exec form: one argument each; shell form: a
    string the shell splits): `--password=x`, `--password x`, `PGPASSWORD=x cmd`, `scheme://user:x@host`."""
    tokens = [token for part in args for token in _tokens(part)]
    found = []
    for index, token in enumerate(tokens):
        name, equals, value = token.partition("=")
        following = tokens[index + 1] if index + 1 < len(tokens) else ""
        if equals and _literal(value) and (CREDENTIAL_FLAG.match(name) or _credential_variable(name)):
            found.append(name)  # --password=x, PGPASSWORD=x
        elif not equals and _literal(following) and not following.startswith("-") and (
            CREDENTIAL_FLAG.match(token) or (token == "-a" and "redis-cli" in tokens[:index])
        ):
            found.append(token)  # --password x, redis-cli -a x
        for password in URL_PASSWORD.findall(token):
            if _literal(password):
                found.append("a URL's password")
    return found


def _credential_variable(name: str) -> bool:
    """A shell variable assignment of a credential (`PGPASSWORD=x psql`); `*_FILE` names a file."""
    return bool(re.fullmatch(r"[A-Za-z_]\w*", name) and SENSITIVE_NAME.search(name)) and not name.upper().endswith(
        "_FILE"
    )


@resource_rule(
    "SEC-005",
    "no-credentials-on-command-line",
    "No credentials on command lines",
    types=WORKLOADS,
    severity="high",
    prod=MANDATORY,
    label_waivable=False,
    checklist=["security.database-passwords"],
    sources=["CWE-214 (sensitive information in process arguments)", "CIS 4.10", "docker inspect"],
    remediation="Read the credential from a file at run time (`--password-file`, `$(cat /run/secrets/x)` in a "
    "shell command, the tool's *_FILE variable or its config file).",
)
def no_credentials_on_command_line(w: Workload, report, options) -> None:
    """No credential is written out on a command line (entrypoint, command or Swarm args, and healthcheck
    tests), where `docker inspect`, `ps` and /proc show it to whoever can read them."""
    for where, args in (("command", w.command), ("healthcheck", w.healthcheck_tests)):
        for what in dict.fromkeys(command_line_credentials(args)):
            report(f"{where} passes {what} as a literal value")


# What a rule can tell of an uploaded file's secrecy (a Pulumi secret is invisible to a policy: pulumi-policy#241):
# it sits in a `secrets/` directory, its name says credential or key, or its text holds a private key or a Redis
# password directive.
# A Redis password, or an ACL user's password (`>plain`) or its SHA-256 (`#hex`: enough to log in offline-guessed
# passwords against, so kept as secret as the password).
REDIS_PASSWORD_DIRECTIVE = re.compile(r"^\s*(?:requirepass|masterauth)\s+\S|^\s*user\s.*\s(?:>\S|#[0-9a-fA-F]{64})",
                                      re.MULTILINE)
DOCKER_UPLOAD_DEFAULT_MODE = 0o644
"""An upload without `permissions` (kreuzwerker/terraform-provider-docker resource_docker_container_funcs.go)."""
DOCKER_SECRET_DEFAULT_MODE = 0o444
"""A Swarm secret without `fileMode`: 0444, the Docker CLI's and the provider's default."""


def is_secret_file(path: str, content: str) -> bool:
    directory, _, name = path.rpartition("/")
    return ("/secrets" in f"/{directory}/" or bool(SENSITIVE_NAME.search(name)) or name.endswith(".key")
            or bool(PRIVATE_KEY_TEXT.search(content)) or bool(REDIS_PASSWORD_DIRECTIVE.search(content)))


def _mode(value, default: int) -> int | None:
    """A file mode as the provider takes it: an octal string (uploads) or a number (Swarm file targets)."""
    if value is None or value == "":
        return default
    try:
        return int(value, 8) if isinstance(value, str) else int(value)
    except ValueError:
        return None


@resource_rule(
    "SEC-006",
    "secret-file-mode",
    "Secret files readable by their service's user alone",
    reads_files=True,
    types=WORKLOADS,
    severity="high",
    prod=MANDATORY,
    label_waivable=False,
    checklist=["security.database-passwords"],
    sources=["CIS Docker 4.10", "CWE-732 (incorrect permission assignment for critical resource)"],
    remediation="Give the container's secret files mode 0440, owned by its service user and group (a spec's "
    "`user`, or `service_group` for an image that steps down from root).",
)
def secret_file_mode(w: Workload, report, options) -> None:
    """A secret file (a Swarm secret, or an upload that holds a credential or key) grants nothing to other users:
    any process of the container under another uid (a compromised helper, an exec'd shell) cannot read it."""
    if w.is_service:
        for secret in items(get(w.spec, "secrets")):
            mode = _mode(get(secret, "fileMode"), DOCKER_SECRET_DEFAULT_MODE)
            if mode is None or mode & 0o007:
                report(f"secret {get(secret, 'fileName', default='?')} has mode "
                       f"{'?' if mode is None else f'{mode:04o}'}, readable by every user of the container")
        return
    for upload in items(get(w.props, "uploads")):
        path = str(get(upload, "file", default=""))
        if not is_secret_file(path, w.uploads.get(path, "")):
            continue
        mode = _mode(get(upload, "permissions"), DOCKER_UPLOAD_DEFAULT_MODE)
        if mode is None or mode & 0o007:
            report(f"upload {path} has mode {'?' if mode is None else f'{mode:04o}'}, readable by every user of "
                   "the container")


HMAC_MIN_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}
PLACEHOLDERS = {
    "secret",
    "changeme",
    "change-me",
    "change-me-in-production",
    "dev-secret-change-me",
    "your-256-bit-secret",
    "mysecret",
    "jwtsecret",
    "jwt-secret",
    "password",
    "default",
}


def _key_bytes(value: str) -> int:
    """Bytes of key material: a value that is valid base64 counts decoded (the smaller, cautious reading)."""
    raw = len(value.encode())
    if len(value) % 4 == 0 and re.fullmatch(r"[A-Za-z0-9+/]+={0,2}", value):
        try:
            return min(raw, len(base64.b64decode(value, validate=True)))
        except binascii.Error:
            return raw
    return raw


def _entropy_bits_per_char(value: str) -> float:
    counts = Counter(value)
    return -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())


@resource_rule(
    "SEC-002",
    "jwt-hs-key-length",
    "JWT HMAC key of at least 256 bits",
    types=WORKLOADS,
    scope=has_jwt_env,
    severity="critical",
    prod=MANDATORY,
    checklist=["security.jwt-secret"],
    sources=["RFC 7518 §3.2", "jjwt WeakKeyException", "Nimbus JOSE MACProvider"],
    options={
        "algorithm": {"enum": ["HS256", "HS384", "HS512"], "default": "HS256"},
        "minEntropyBitsPerChar": {"type": "number", "minimum": 0, "default": 3.0},
    },
    remediation="Generate the key (random.RandomPassword length >= 64, or RandomBytes 32+) and pass it "
    "as a secret; HS384/HS512 need 48/64 bytes.",
)
def jwt_hs_key_length(w: Workload, report, options) -> None:
    """JWT HMAC secrets are at least as long as the hash (32 bytes for HS256), random and not a
    placeholder."""
    algorithm = w.env.get("JWT_ALGORITHM", options["algorithm"]).upper()
    needed = HMAC_MIN_BYTES.get(algorithm, 32)
    for key, value in sorted(w.env.items()):
        if not JWT_NAME.search(key) or key.upper().endswith("_FILE"):
            continue
        if value.strip().lower() in PLACEHOLDERS:
            report(f"env {key} is a placeholder value")
        elif _key_bytes(value) < needed:
            report(f"env {key} is shorter than {needed} bytes ({needed * 8} bits) for {algorithm}")
        elif _entropy_bits_per_char(value) < options["minEntropyBitsPerChar"]:
            report(f"env {key} has too little entropy (repeated or patterned characters)")


WEAK_VALUES = {
    "",
    "admin",
    "admin123",
    "password",
    "passw0rd",
    "postgres",
    "root",
    "guest",
    "changeme",
    "mysecretpassword",
    "example",
    "secret",
    "123456",
    "12345678",
    "default",
    "test",
    "redis",
    "clickhouse",
    "grafana",
    "kafka",
    "letmein",
    "qwerty",
}
CREDENTIAL_LINE = re.compile(
    r"^\s*(?:[\w.-]*password[\w.-]*|requirepass|masterauth)\s*(?:[:=]\s*|\s+)['\"]?([^'\"\s#]*)['\"]?\s*$",
    re.IGNORECASE | re.MULTILINE,
)


def _weakness(value: str, min_length: int) -> str | None:
    if value.strip().lower() in WEAK_VALUES:
        return "a default or well-known weak value"
    if len(value) < min_length:
        return f"shorter than {min_length} characters"
    return None


def _credential_values(w: Workload) -> list[tuple[str, str]]:
    found = [
        (f"env {key}", value)
        for key, value in w.env.items()
        if re.search(r"PASSWORD|PASSWD|SECRET", key, re.IGNORECASE)
        and not key.upper().endswith("_FILE")
        and not value.startswith("$")
    ]
    command = w.command
    for index, part in enumerate(command[:-1]):
        if part in ("--requirepass", "--masterauth") and not command[index + 1].startswith("$"):
            found.append((f"command {part}", command[index + 1]))
    for path, content in w.uploads.items():
        for match in CREDENTIAL_LINE.finditer(content):
            if not match.group(1).startswith(("$", "/")) and "<password_sha256_hex>" not in match.group(0):
                found.append((f"upload {path}", match.group(1)))
    return found


@resource_rule(
    "SEC-003",
    "weak-password-list",
    "No default or weak credentials",
    reads_files=True,
    types=[*WORKLOADS, SERVICE_CONFIG],
    severity="critical",
    prod=MANDATORY,
    checklist=["security.default-passwords", "security.grafana-admin-password", "security.app-admin-password"],
    sources=[
        "vendor documentation of default credentials",
        "postgres/postgres",
        "Grafana admin/admin",
        "ClickHouse empty default password",
        "admin/admin123",
    ],
    options={"minLength": {"type": "integer", "minimum": 1, "default": 16}},
    remediation="Generate every credential (random.RandomPassword, length >= 24) and pass it as a secret.",
)
def weak_password_list(resource, report, options) -> None:
    """No credential in env, command line or uploaded config is a vendor default, a well-known weak value,
    empty, or shorter than 16 characters."""
    if isinstance(resource, Workload):
        values = _credential_values(resource)
    else:
        text = decode_base64(str(get(resource.props, "data", default=""))) or ""
        values = [("data", m.group(1)) for m in CREDENTIAL_LINE.finditer(text)]
    for where, value in sorted(values):
        weakness = _weakness(value, options["minLength"])
        if weakness:
            report(f"{where} is {weakness}")


@resource_rule(
    "SEC-004",
    "generated-secret-strength",
    "Strong generated secrets",
    types=[RANDOM_PASSWORD, RANDOM_BYTES],
    severity="high",
    prod=MANDATORY,
    checklist=["security.default-passwords", "security.jwt-secret"],
    sources=["NIST SP 800-63B §5.1.1", "RFC 7518 §3.2"],
    options={
        "minLength": {"type": "integer", "minimum": 8, "default": 16},
        "minBytes": {"type": "integer", "minimum": 16, "default": 32},
    },
    remediation="Use RandomPassword length >= 24 with at least two character classes; RandomBytes >= 32.",
)
def generated_secret_strength(resource, report, options) -> None:
    """Generated credentials are long enough: passwords of 16+ characters from 2+ character classes, random
    bytes of 32+ (256 bits)."""
    length = number(get(resource.props, "length")) or 0
    if resource.resource_type == RANDOM_BYTES:
        if length < options["minBytes"]:
            report(f"length {length:.0f} is below {options['minBytes']} bytes")
        return
    if length < options["minLength"]:
        report(f"length {length:.0f} is below {options['minLength']}")
    # Each class defaults to enabled in the random provider.
    classes = [
        c
        for c in ("upper", "lower", "numeric", "special")
        if get(resource.props, c) is None or truthy(get(resource.props, c))
    ]
    if len(classes) < 2:
        report("fewer than two character classes enabled")


RSA_MIN_BITS = 2048
STRONG_CURVES = ("P256", "P384", "P521")


@resource_rule(
    "TLS-001",
    "tls-key-strength",
    "TLS key strength",
    types=[TLS_PRIVATE_KEY],
    severity="high",
    prod=MANDATORY,
    checklist=["security.tls"],
    sources=["Mozilla intermediate rsa_key_size 2048", "EDGE-005"],
    remediation="Use `algorithm='ECDSA', ecdsa_curve='P256'` (or P384), or RSA with rsa_bits >= 2048.",
)
def tls_key_strength(resource, report, options) -> None:
    """TLS private keys are at least RSA-2048 or ECDSA P-256 (the tls provider's ECDSA default is P224)."""
    algorithm = str(get(resource.props, "algorithm", default="")).upper()
    if algorithm == "RSA":
        bits = number(get(resource.props, "rsaBits")) or 2048
        if bits < RSA_MIN_BITS:
            report(f"RSA key of {bits:.0f} bits (minimum {RSA_MIN_BITS})")
    elif algorithm == "ECDSA":
        curve = str(get(resource.props, "ecdsaCurve", default="P224")).upper()
        if curve not in STRONG_CURVES:
            report(f"ECDSA curve {curve} (use {' or '.join(STRONG_CURVES[:2])})")


@resource_rule(
    "TLS-002",
    "cert-lifetime",
    "Certificate lifetime",
    types=[TLS_SELF_SIGNED_CERT, TLS_LOCALLY_SIGNED_CERT],
    severity="medium",
    prod=ADVISORY,
    checklist=["security.tls"],
    sources=["Mozilla maximum_certificate_lifespan 366 d", "EDGE-005"],
    options={
        "maxHours": {"type": "integer", "minimum": 1, "default": 366 * 24},
        "maxCaHours": {"type": "integer", "minimum": 1, "default": 10 * 366 * 24},
    },
    remediation="Issue server certificates for 90 days (at most 366) and renew early.",
)
def cert_lifetime(resource, report, options) -> None:
    """Server certificates live at most 366 days; CA certificates at most ten years."""
    hours = number(get(resource.props, "validityPeriodHours")) or 0
    limit = options["maxCaHours"] if truthy(get(resource.props, "isCaCertificate")) else options["maxHours"]
    if hours > limit:
        report(f"validityPeriodHours {hours:.0f} exceeds {limit}")
