"""The backup store of the live stack: an S3-compatible endpoint on the stack's egress network, served by moto's
S3 server behind nginx's TLS (a certificate from a private CA, which the stack is given as
`backups.endpoint_ca`), as a MinIO or Ceph endpoint would be. It is outside the stack, where the bucket lives.

moto is a stand-in for S3 (reports name it so); nginx terminates TLS because pgBackRest's TLS client and
moto's own (werkzeug) TLS do not get on. The deploying machine reaches moto on a published loopback port, as
the stack's BackupStore dynamic provider would reach the endpoint.

In Swarm the two are services (`start_swarm`): the stack's overlays are not attachable (components/swarm.py),
so no container can join its egress network, and the stack's definitions stay as they are."""

from __future__ import annotations

import datetime
import io
import tarfile
import time
import urllib.request
import uuid
from dataclasses import dataclass, field

import docker
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.live.plan import free_port

STORE_HOST = "s3.live.internal"
MOTO_VERSION = "5.2.6"
MOTO_IMAGE = f"platform-live-moto:{MOTO_VERSION}"
PYTHON_IMAGE = "python:3.13.5-slim"
"""The python stand-in the builder makes (images/standins/python): pip there reaches PyPI."""
NGINX_IMAGE = "nginx:1.26.3-bookworm"
"""The nginx stand-in (images/standins/nginx)."""
MOTO_PORT = 5000


# moto's server authorizes an S3 request by the name of its API operation (botocore's, from method and URI:
# moto/core/responses.py _get_action), not by the IAM action AWS evaluates: the stand-in's job user gets the
# job policy with each IAM action spelt as the operations it covers. moto cannot tell two of them apart:
# s3:DeleteObjectVersion is a DeleteObject with a VersionId, and s3:BypassGovernanceRetention is not checked (any
# key sending x-amz-bypass-governance-retention bypasses a GOVERNANCE lock). There the lock stands in: in
# COMPLIANCE mode moto refuses a locked version's delete to every key (moto/s3/models.py FakeKey.is_locked).
MOTO_OPERATIONS = {
    "s3:GetObject": ("s3:GetObject", "s3:HeadObject"),
    "s3:PutObject": ("s3:PutObject", "s3:CreateMultipartUpload", "s3:UploadPart", "s3:CompleteMultipartUpload"),
    "s3:DeleteObject": ("s3:DeleteObject", "s3:DeleteObjects"),
    "s3:AbortMultipartUpload": ("s3:AbortMultipartUpload",),
    "s3:ListMultipartUploadParts": ("s3:ListParts",),
    "s3:ListBucket": ("s3:ListObjects", "s3:ListObjectsV2", "s3:HeadBucket"),
    "s3:ListBucketMultipartUploads": ("s3:ListMultipartUploads",),
    "s3:GetBucketLocation": ("s3:GetBucketLocation",),
    "s3:DeleteObjectVersion": (),
    "s3:BypassGovernanceRetention": (),
    "s3:PutObjectRetention": ("s3:PutObjectRetention",),
    "s3:PutObjectLegalHold": ("s3:PutObjectLegalHold",),
    "s3:PutBucketObjectLockConfiguration": ("s3:PutObjectLockConfiguration",),
    "s3:PutLifecycleConfiguration": ("s3:PutBucketLifecycleConfiguration", "s3:DeleteBucketLifecycle"),
    "s3:PutBucketPolicy": ("s3:PutBucketPolicy",),
    "s3:DeleteBucketPolicy": ("s3:DeleteBucketPolicy",),
    "s3:PutBucketVersioning": ("s3:PutBucketVersioning",),
    "s3:PutEncryptionConfiguration": ("s3:PutBucketEncryption", "s3:DeleteBucketEncryption"),
    "s3:PutBucketPublicAccessBlock": ("s3:PutPublicAccessBlock", "s3:DeletePublicAccessBlock"),
    "s3:DeleteBucket": ("s3:DeleteBucket",),
    "s3:CreateBucket": ("s3:CreateBucket",),
}
ADMIN_POLICY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:*"], "Resource": "*"}]}


def moto_policy(policy: dict) -> dict:
    """`policy` with every IAM action as the operations moto checks (a KeyError for one not in the table)."""
    return {**policy, "Statement": [
        {**statement, "Action": sorted({op for action in statement["Action"] for op in MOTO_OPERATIONS[action]})}
        for statement in policy["Statement"]]}


def enforce_iam(endpoint: str, bucket: str, ca_file: str | None = None,
                job_extra: dict | None = None) -> tuple[dict[str, str], dict[str, str]]:
    """The store's administrative user (s3:*) and the jobs' user (the job policy) in moto's IAM, then moto told
    to authenticate and authorize every request from now on (moto/moto_api/_internal/responses.py
    reset_auth_response). `job_extra`: a second policy on the jobs' user. Returns their (access key id, secret) as
    boto3 keyword arguments."""
    import json

    import boto3

    from platform_infra.components.backup.store import job_key_policy

    iam = boto3.client("iam", region_name="us-east-1", endpoint_url=endpoint, aws_access_key_id="bootstrap",
                       aws_secret_access_key="bootstrap", verify=ca_file)
    keys = []
    for name, policy in (("backup-admin", ADMIN_POLICY), ("backup-jobs", moto_policy(job_key_policy(bucket)))):
        user = f"{name}-{uuid.uuid4().hex[:6]}"  # moto's IAM lives as long as its process
        iam.create_user(UserName=user)
        iam.put_user_policy(UserName=user, PolicyName=name, PolicyDocument=json.dumps(policy))
        if name == "backup-jobs" and job_extra:  # another policy on the same user (its explicit Deny must win)
            iam.put_user_policy(UserName=user, PolicyName="extra", PolicyDocument=json.dumps(job_extra))
        key = iam.create_access_key(UserName=user)["AccessKey"]
        keys.append({"aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"]})
    authenticate_after(endpoint, b"0", ca_file)
    return keys[0], keys[1]


def authenticate_after(endpoint: str, count: bytes, ca_file: str | None = None) -> None:
    """moto's server authenticates every request once `count` more went unchecked (b"inf": never again)."""
    import ssl

    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset-auth", data=count,
                                                  headers={"Content-Type": "text/plain"}), timeout=10,
                           context=ssl.create_default_context(cafile=ca_file) if ca_file else None)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def private_ca_and_server_cert(hosts: list[str]) -> tuple[str, str, str]:
    """(CA certificate, server certificate, server key) as PEM: a private CA issuing one server certificate."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("live store CA")).issuer_name(_name("live store CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    server = (x509.CertificateBuilder().subject_name(_name(hosts[0])).issuer_name(ca.subject)
              .public_key(key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=2))
              .add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in hosts]), critical=False)
              .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
              # Python 3.13's default verification (VERIFY_X509_STRICT, the ClickHouse-backup stand-in's client)
              # refuses a certificate without its issuer's key identifier (RFC 5280 4.2.1.1).
              .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
              .sign(ca_key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return _pem(ca), _pem(server), key_pem


def moto_image(client: docker.DockerClient) -> str:
    """moto's S3 server, pip-installed into the python stand-in (once: the tag names moto's version)."""
    try:
        client.images.get(MOTO_IMAGE)
        return MOTO_IMAGE
    except docker.errors.ImageNotFound:
        pass
    dockerfile = (f"FROM {PYTHON_IMAGE}\nRUN pip install --no-cache-dir 'moto[s3,server]=={MOTO_VERSION}'\n"
                  f'ENTRYPOINT ["moto_server", "-H", "0.0.0.0", "-p", "{MOTO_PORT}"]\n')
    client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=MOTO_IMAGE, network_mode="host", rm=True)
    return MOTO_IMAGE


def _nginx_conf() -> str:
    return f"""
events {{}}
http {{
  access_log /dev/stdout;
  client_max_body_size 0;
  server {{
    listen 443 ssl;
    ssl_certificate /etc/nginx/store.pem;
    ssl_certificate_key /etc/nginx/store.key;
    location / {{
      proxy_pass http://moto:{MOTO_PORT};
      proxy_set_header Host $http_host;
      proxy_http_version 1.1;
      proxy_request_buffering off;
      proxy_buffering off;
    }}
  }}
}}
"""


def _archive(files: dict[str, str]) -> bytes:
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        for path, text in files.items():
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(text.encode()), 0o644
            tar.addfile(info, io.BytesIO(text.encode()))
    return data.getvalue()


@dataclass
class LiveStore:
    """`endpoint` and `ca_pem` are the stack's backups.endpoint and backups.endpoint_ca; `host_endpoint` is
    moto on loopback, for the deploying machine."""

    client: docker.DockerClient
    prefix: str
    ca_pem: str
    cert_pem: str
    key_pem: str
    host_port: int = field(default_factory=free_port)
    containers: list[str] = field(default_factory=list)
    services: list[str] = field(default_factory=list)
    swarm_files: list[tuple[str, str]] = field(default_factory=list)
    """(kind, id) of the docker configs and secrets of the Swarm services."""
    keys: tuple[dict[str, str], dict[str, str]] | None = None
    """(administrative, jobs') keys of moto's IAM users, once `enforce_iam` made moto authenticate."""

    @property
    def endpoint(self) -> str:
        return f"https://{STORE_HOST}"

    @property
    def host_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.host_port}"

    @classmethod
    def new(cls, client: docker.DockerClient, prefix: str) -> LiveStore:
        ca, cert, key = private_ca_and_server_cert([STORE_HOST, f"*.{STORE_HOST}"])
        return cls(client, prefix, ca, cert, key)

    def start(self) -> None:
        """moto, on the default bridge and a loopback port, before the stack: its bucket can be made first."""
        moto = self.client.containers.run(moto_image(self.client), name=f"{self.prefix}-moto", detach=True,
                                          ports={f"{MOTO_PORT}/tcp": ("127.0.0.1", self.host_port)})
        self.containers.append(moto.name)
        deadline = time.monotonic() + 60
        probe = f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{MOTO_PORT}/')"
        while moto.exec_run(["python", "-c", probe])[0] != 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"moto did not start: {moto.logs().decode()[-2000:]}")
            time.sleep(1)

    def enforce_iam(self, bucket: str) -> None:
        """moto's IAM users for the store's administrator and the backup jobs; every request authenticated."""
        self.keys = enforce_iam(self.host_endpoint, bucket)

    def attach(self, network: str) -> None:
        """moto and its TLS front on `network` (the stack's egress network), the front answering to the store's
        name, where the stack's gateway resolves it."""
        self.client.api.connect_container_to_network(f"{self.prefix}-moto", network, aliases=["moto"])
        front = self.client.containers.create(NGINX_IMAGE, name=f"{self.prefix}-s3-front", network=network)
        self.containers.append(front.name)
        self.client.api.disconnect_container_from_network(front.id, network)
        self.client.api.connect_container_to_network(front.id, network, aliases=[STORE_HOST])
        front.put_archive("/etc/nginx", _archive({"nginx.conf": _nginx_conf(), "store.pem": self.cert_pem,
                                                  "store.key": self.key_pem}))
        front.start()
        time.sleep(2)
        front.reload()
        if front.status != "running":
            raise RuntimeError(f"the store's TLS front did not start: {front.logs().decode()[-2000:]}")

    def start_swarm(self, network: str) -> None:
        """moto and its TLS front as Swarm services on `network` (the stack's egress overlay, which only services
        may join), answering there to `moto` and the store's name by their tasks' addresses (dnsrr: this kernel
        may lack the IPVS a virtual IP needs); moto published on the host (host mode: Swarm's routing mesh is
        IPVS too), for the deploying machine."""
        from docker.types import ConfigReference, EndpointSpec, NetworkAttachmentConfig, SecretReference

        def service(name: str, image: str, alias: str, **options) -> None:
            self.client.services.create(image, name=f"{self.prefix}-{name}",
                                        networks=[NetworkAttachmentConfig(network, aliases=[alias])], **options)
            self.services.append(f"{self.prefix}-{name}")

        # init: Python as PID 1 would ignore the stop signal until the grace period's SIGKILL.
        service("moto", moto_image(self.client), "moto", init=True, endpoint_spec=EndpointSpec(
            mode="dnsrr", ports={self.host_port: (MOTO_PORT, "tcp", "host")}))
        deadline = time.monotonic() + 480  # moto starts in minutes on a shared host under load (118 s at an average of 30)
        while not self._answers():
            if time.monotonic() > deadline:
                raise RuntimeError(f"moto's service did not answer on port {self.host_port}")
            time.sleep(1)
        files = []
        for path, text in {"nginx.conf": _nginx_conf(), "store.pem": self.cert_pem, "store.key": self.key_pem}.items():
            kind = "secret" if path.endswith(".key") else "config"
            name = f"{self.prefix}-store-{path}"
            created = getattr(self.client, f"{kind}s").create(name=name, data=text.encode())
            self.swarm_files.append((kind, created.id))
            reference = SecretReference if kind == "secret" else ConfigReference
            files.append((kind, reference(created.id, name, filename=f"/etc/nginx/{path}")))
        service("s3-front", NGINX_IMAGE, STORE_HOST, endpoint_spec=EndpointSpec(mode="dnsrr"),
                configs=[ref for kind, ref in files if kind == "config"],
                secrets=[ref for kind, ref in files if kind == "secret"])
        deadline = time.monotonic() + 240
        while not any(t["Status"]["State"] == "running" for t in self.client.api.tasks(
                filters={"service": f"{self.prefix}-s3-front", "desired-state": "running"})):
            if time.monotonic() > deadline:
                raise RuntimeError("the store's TLS front did not start as a service")
            time.sleep(1)

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.host_endpoint + "/", timeout=5):
                return True
        except OSError:
            return False

    def remove(self) -> None:
        for name in self.services:
            try:
                self.client.api.remove_service(name)
            except docker.errors.NotFound:
                pass
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(self.client.api.containers(
                all=True, filters={"label": f"com.docker.swarm.service.name={name}"}) for name in self.services):
            time.sleep(1)
        for kind, object_id in self.swarm_files:
            try:
                getattr(self.client.api, f"remove_{kind}")(object_id)
            except docker.errors.NotFound:
                pass
        for name in self.containers:
            try:
                self.client.api.remove_container(name, force=True, v=True)
            except docker.errors.NotFound:
                pass
