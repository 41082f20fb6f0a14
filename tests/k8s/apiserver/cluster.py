"""A real Kubernetes control plane for the tests: etcd + kube-apiserver 1.20 on 127.0.0.1.

``build.sh`` beside this file builds kube-apiserver from Debian's source package and caches it under
``~/.cache/medgo/kube/<debian version>/`` (with the path of Debian's etcd). :func:`running_cluster` starts
both on free loopback ports with RBAC authorization, token authentication (an admin in ``system:masters``
and the pipeline's ServiceAccount identity), service-account signing flags and an audit log of the
pipeline's requests; installs the vendored CRDs (minus CEL rules and descriptions) and applies the
Namespace, ServiceAccounts, PriorityClasses and RBAC of ``manifests/base``. No controllers run: no
scheduler, no controller-manager, no training operator, no KServe. Tests play those by writing status
(see ``controllers.py``).
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import ipaddress
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[2]
CRD_DIR = REPO_ROOT / "tests" / "fixtures" / "crds"
BASE_MANIFESTS = REPO_ROOT / "manifests" / "base"

BUILD_HINT = (
    "no kube-apiserver built (by the current recipe); run tests/k8s/apiserver/build.sh "
    "(once, 5-15 min, cached in ~/.cache/medgo/kube)"
)

NAMESPACE = "medgo"
PIPELINE_SA = "medgo-pipeline"
PIPELINE_USER = f"system:serviceaccount:{NAMESPACE}:{PIPELINE_SA}"
PIPELINE_GROUPS = ("system:serviceaccounts", f"system:serviceaccounts:{NAMESPACE}", "system:authenticated")
ADMIN_USER = "medgo-test-admin"

#: The CRDs the fixture installs, all vendored in tests/fixtures/crds (provenance in its README).
CRD_FILES = (
    "kubeflow.org_pytorchjobs.yaml",
    "trainer.kubeflow.org_trainjobs.yaml",
    "trainer.kubeflow.org_clustertrainingruntimes.yaml",
    "serving.kserve.io_inferenceservices.yaml",
    "serving.kserve.io_servingruntimes.yaml",
    "serving.kserve.io_clusterservingruntimes.yaml",
)
#: Kinds of manifests/base the fixture applies: who the pipeline is and what it may do, and what pods need.
CLUSTER_SETUP_KINDS = ("Namespace", "ServiceAccount", "Role", "RoleBinding", "PriorityClass")

_START_TIMEOUT_S = 90.0


def build_env() -> dict[str, str]:
    """``build.env``: the Debian version and recipe number build.sh builds (``MEDGO_KUBE_DEBIAN_VERSION`` overrides)."""
    values = dict(
        line.split("=", 1)
        for line in (HERE / "build.env").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    if os.environ.get("MEDGO_KUBE_DEBIAN_VERSION"):
        values["DEBIAN_VERSION"] = os.environ["MEDGO_KUBE_DEBIAN_VERSION"]
    return values


def cache_dir() -> Path:
    """Where build.sh puts the binary: ``$MEDGO_KUBE_CACHE/<debian version>`` (default ``~/.cache/medgo/kube``)."""
    root = Path(os.environ.get("MEDGO_KUBE_CACHE") or Path.home() / ".cache" / "medgo" / "kube")
    return root / build_env()["DEBIAN_VERSION"]


def binaries() -> tuple[Path, Path] | None:
    """``(kube-apiserver, etcd)`` as build.sh cached them by the current recipe, or ``None``."""
    cached = cache_dir()
    apiserver, etcd_note, recipe = cached / "kube-apiserver", cached / "etcd-path", cached / "recipe"
    if not (
        apiserver.is_file() and os.access(apiserver, os.X_OK) and etcd_note.is_file() and recipe.is_file()
    ):
        return None
    if recipe.read_text().strip() != build_env()["RECIPE"]:
        return None  # built by an older build.sh: re-running it rebuilds
    etcd = Path(etcd_note.read_text().strip())
    if not (etcd.is_file() and os.access(etcd, os.X_OK)):
        return None
    return apiserver, etcd


# -- PKI ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pki:
    """A test CA, a serving certificate for 127.0.0.1/localhost, and the service-account signing key."""

    ca_cert: Path
    ca_key: Path
    serving_cert: Path
    serving_key: Path
    sa_key: Path
    sa_pub: Path

    def issue_serving_cert(self, directory: Path, name: str) -> tuple[Path, Path]:
        """Another 127.0.0.1 serving certificate signed by the test CA (fake kubelet, webhooks)."""
        return _issue(directory, name, self.ca_cert, self.ca_key)


def _pem_key(key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def _issue(directory: Path, name: str, ca_cert_path: Path, ca_key_path: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_cert = x509.load_pem_x509_certificate(ca_cert_path.read_bytes())
    ca_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(_pem_key(key))
    return cert_path, key_path


def make_pki(directory: Path) -> Pki:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "medgo-test-ca")])
    now = datetime.datetime.now(datetime.UTC)
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_cert_path, ca_key_path = directory / "ca.crt", directory / "ca.key"
    ca_cert_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    ca_key_path.write_bytes(_pem_key(ca_key))
    serving_cert, serving_key = _issue(directory, "apiserver", ca_cert_path, ca_key_path)
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sa_key_path, sa_pub_path = directory / "sa.key", directory / "sa.pub"
    sa_key_path.write_bytes(_pem_key(sa_key))
    sa_pub_path.write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return Pki(ca_cert_path, ca_key_path, serving_cert, serving_key, sa_key_path, sa_pub_path)


# -- processes ------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(
    predicate: Callable[[], Any],
    *,
    timeout_s: float,
    what: str,
    interval_s: float = 0.05,
    alive: Callable[[], str | None] = lambda: None,
) -> Any:
    """Poll ``predicate`` until it returns something truthy; raise ``TimeoutError`` naming ``what``.

    ``alive`` returns an error message once a process the wait depends on has died, so a crashed server
    fails at once with its log instead of after the whole timeout.
    """
    deadline = time.monotonic() + timeout_s
    last_error: BaseException | None = None
    while True:
        try:
            result = predicate()
            if result:
                return result
        except Exception as exc:  # noqa: BLE001 - kept for the timeout message
            last_error = exc
        dead = alive()
        if dead:
            raise RuntimeError(f"{what}: {dead}")
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} not reached within {timeout_s:g}s (last error: {last_error!r})")
        threading.Event().wait(interval_s)


@dataclass
class _Process:
    name: str
    popen: subprocess.Popen
    log: Path

    def died(self) -> str | None:
        if self.popen.poll() is None:
            return None
        tail = "".join(self.log.read_text(errors="replace").splitlines(keepends=True)[-30:])
        return f"{self.name} exited with code {self.popen.returncode}; last log lines:\n{tail}"

    def stop(self, timeout_s: float = 15.0) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=timeout_s)


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the test process dies, so a killed pytest leaves no server behind."""
    import ctypes
    import signal

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _start(name: str, argv: list[str], log: Path) -> _Process:
    with open(log, "wb") as fh:
        popen = subprocess.Popen(
            argv,
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
    return _Process(name, popen, log)


# -- CRDs -----------------------------------------------------------------------------------------------
def _schema_for_kube_1_20(schema: Any) -> Any:
    """``schema`` without what 1.20 does not know (CEL rules) or does not need (descriptions)."""
    if isinstance(schema, list):
        return [_schema_for_kube_1_20(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    return {
        key: _schema_for_kube_1_20(value)
        for key, value in schema.items()
        if key not in ("x-kubernetes-validations", "description") or isinstance(value, dict)
    }


def crd_for_kube_1_20(crd: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``crd`` that a 1.20 API server accepts, keeping every schema rule 1.20 can enforce.

    Removed: ``x-kubernetes-validations`` (CEL rules, 1.25+; 1.20 would drop them silently),
    ``selectableFields`` (1.30+) and ``description`` texts (they validate nothing, and without them the 2 MB
    InferenceService CRD stays far below etcd's request limit). A ``description`` or
    ``x-kubernetes-validations`` that is a property's name (a dict schema) stays. The ``default: ""``
    entries that 1.20 seemed to refuse are kept: that refusal came from building 1.20 with Go 1.19, which
    build.sh fixes (see its header).
    """
    result = copy.deepcopy(crd)
    for version in result["spec"]["versions"]:
        version.pop("selectableFields", None)
        if "schema" in version:
            version["schema"] = _schema_for_kube_1_20(version["schema"])
    result["metadata"] = {k: v for k, v in result["metadata"].items() if k in ("name", "labels")}
    return result


def load_crds() -> list[dict[str, Any]]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return [crd_for_kube_1_20(yaml.load((CRD_DIR / name).read_text(), Loader=loader)) for name in CRD_FILES]


# -- the cluster ----------------------------------------------------------------------------------------
@dataclass
class KubeCluster:
    """A running etcd + kube-apiserver; clients, kubectl and the audit log of the pipeline's requests."""

    url: str
    ca_file: Path
    pki: Pki
    admin_token: str
    pipeline_token: str
    kubeconfig: Path
    audit_log: Path
    workdir: Path
    version: str = ""
    _marker_count: int = 0

    def configuration(self, token: str) -> client.Configuration:
        cfg = client.Configuration()
        cfg.host = self.url
        cfg.ssl_ca_cert = str(self.ca_file)
        cfg.api_key = {"authorization": token}
        cfg.api_key_prefix = {"authorization": "Bearer"}
        return cfg

    def admin_client(self) -> client.ApiClient:
        """Client of ``system:masters``: bypasses RBAC (the test's controllers and set-up)."""
        return client.ApiClient(self.configuration(self.admin_token))

    def pipeline_client(self) -> client.ApiClient:
        """Client of ``system:serviceaccount:medgo:medgo-pipeline``: every call goes through RBAC."""
        return client.ApiClient(self.configuration(self.pipeline_token))

    def kubectl(
        self, *args: str, as_pipeline: bool = False, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess:
        """Run the machine's kubectl against this server (``--context pipeline`` with ``as_pipeline``)."""
        argv = [
            "kubectl",
            "--kubeconfig",
            str(self.kubeconfig),
            "--context",
            "pipeline" if as_pipeline else "admin",
            *args,
        ]
        env = {**os.environ, "KUBECACHEDIR": str(self.workdir / "kubectl-cache")}
        done = subprocess.run(argv, input=input, capture_output=True, text=True, env=env, timeout=120)
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(args[:3])} failed ({done.returncode}): {done.stderr.strip()}")
        return done

    def apply_dry_run(
        self, objects: list[dict[str, Any]], *, kubectl_validation: bool
    ) -> list[dict[str, Any]]:
        """``kubectl apply --dry-run=server -o json`` of ``objects``; what the server would store.

        ``kubectl_validation=False`` passes ``--validate=false``: kubectl 1.32 then leaves all checking to
        the server, which (1.20: no server-side field validation) prunes unknown fields silently, so
        compare the result with what was sent (:func:`dropped_fields`). With ``True`` kubectl first checks
        the objects against the OpenAPI schemas the server publishes (CRDs' included). Raises
        ``AssertionError`` with kubectl's message when the objects are refused.
        """
        args = ["apply", "--dry-run=server", "-o", "json", "-f", "-"]
        if not kubectl_validation:
            args.insert(1, "--validate=false")
        out = self.kubectl(*args, input=yaml.safe_dump_all(objects)).stdout
        returned = json.loads(out)
        return returned["items"] if returned.get("kind") == "List" else [returned]

    # -- audit ------------------------------------------------------------------------------------------
    def audit_offset(self) -> int:
        """A mark in the audit log; :meth:`audit_events` returns what was logged after it."""
        return self.audit_log.stat().st_size if self.audit_log.exists() else 0

    def audit_events(self, since: int, user: str = PIPELINE_USER) -> list[dict[str, Any]]:
        """The audit events (stage ResponseComplete) of ``user`` logged after ``since``.

        The log is written as requests complete, so a marker request is sent as the pipeline and the log
        is read until the marker shows up: every earlier request of that client is in the log by then.
        """
        self._marker_count += 1
        marker = f"audit-marker-{self._marker_count}-{secrets.token_hex(4)}"
        with self.pipeline_client() as api:
            with contextlib.suppress(client.exceptions.ApiException):
                client.CoreV1Api(api).read_namespaced_pod(marker, NAMESPACE)

        def read() -> list[dict[str, Any]] | None:
            with open(self.audit_log, "rb") as fh:
                fh.seek(since)
                events = [json.loads(line) for line in fh.read().splitlines() if line.strip()]
            if not any((e.get("objectRef") or {}).get("name") == marker for e in events):
                return None
            return [
                e
                for e in events
                if (e.get("objectRef") or {}).get("name") != marker
                and e.get("user", {}).get("username") == user
            ]

        return wait_until(read, timeout_s=10, what="audit marker in the audit log")

    # -- housekeeping -----------------------------------------------------------------------------------
    def clean_namespace(self, namespace: str = NAMESPACE) -> None:
        """Delete every custom object and pod the tests create in ``namespace`` and wait until they are gone."""
        with self.admin_client() as api:
            custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
            kinds = [
                ("kubeflow.org", "v1", "pytorchjobs"),
                ("trainer.kubeflow.org", "v1alpha1", "trainjobs"),
                ("serving.kserve.io", "v1beta1", "inferenceservices"),
            ]
            for group, version, plural in kinds:
                custom.delete_collection_namespaced_custom_object(group, version, namespace, plural)
            core.delete_collection_namespaced_pod(namespace, grace_period_seconds=0)

            def empty() -> bool:
                return not core.list_namespaced_pod(namespace).items and not any(
                    custom.list_namespaced_custom_object(g, v, namespace, p)["items"] for g, v, p in kinds
                )

            wait_until(empty, timeout_s=30, what=f"namespace {namespace} emptied")


def dropped_fields(sent: Any, stored: Any, path: str = "") -> list[str]:
    """Paths of fields in ``sent`` that ``stored`` lacks: what a 1.20 server pruned as unknown.

    Values the server normalises (quantities, defaults it adds) are not compared, only presence; lists
    are compared element by element when the server kept their length. A field sent with a zero value
    (``false``, ``0``, ``""``, empty) may be missing: Go's ``omitempty`` drops those when it answers.
    """
    if isinstance(sent, dict):
        if not isinstance(stored, dict):
            return [path or "."]
        missing = []
        for key, value in sent.items():
            where = f"{path}.{key}" if path else key
            if key not in stored:
                if value not in (None, {}, [], False, 0, ""):
                    missing.append(where)
            else:
                missing += dropped_fields(value, stored[key], where)
        return missing
    if isinstance(sent, list) and isinstance(stored, list) and len(sent) == len(stored):
        return [
            m
            for i, (a, b) in enumerate(zip(sent, stored, strict=True))
            for m in dropped_fields(a, b, f"{path}[{i}]")
        ]
    return []


def object_key(obj: dict[str, Any]) -> tuple[str, str, str, str]:
    meta = obj.get("metadata") or {}
    return (
        obj["apiVersion"].split("/")[0] if "/" in obj["apiVersion"] else "",
        obj["kind"],
        meta.get("namespace", ""),
        meta["name"],
    )


def _kubeconfig(path: Path, url: str, ca_file: Path, admin_token: str, pipeline_token: str) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "admin",
        "clusters": [
            {"name": "medgo-test", "cluster": {"server": url, "certificate-authority": str(ca_file)}}
        ],
        "users": [
            {"name": "admin", "user": {"token": admin_token}},
            {"name": "pipeline", "user": {"token": pipeline_token}},
        ],
        "contexts": [
            {"name": "admin", "context": {"cluster": "medgo-test", "user": "admin"}},
            {
                "name": "pipeline",
                "context": {"cluster": "medgo-test", "user": "pipeline", "namespace": NAMESPACE},
            },
        ],
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)


_AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {"level": "Request", "userGroups": [f"system:serviceaccounts:{NAMESPACE}"]},
        {"level": "None"},
    ],
}


def render_base() -> list[dict[str, Any]]:
    """``kubectl kustomize manifests/base`` as a list of objects."""
    out = subprocess.run(
        ["kubectl", "kustomize", str(BASE_MANIFESTS)], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def _start_etcd(etcd: Path, workdir: Path) -> tuple[_Process, str]:
    import shutil

    shutil.rmtree(workdir / "etcd-data", ignore_errors=True)
    client_port, peer_port = free_port(), free_port()
    client_url, peer_url = f"http://127.0.0.1:{client_port}", f"http://127.0.0.1:{peer_port}"
    process = _start(
        "etcd",
        [
            str(etcd),
            "--name",
            "medgo-test",
            "--data-dir",
            str(workdir / "etcd-data"),
            "--listen-client-urls",
            client_url,
            "--advertise-client-urls",
            client_url,
            "--listen-peer-urls",
            peer_url,
            "--initial-advertise-peer-urls",
            peer_url,
            "--initial-cluster",
            f"medgo-test={peer_url}",
            "--max-request-bytes",
            str(8 * 1024 * 1024),
            "--quota-backend-bytes",
            str(2 * 1024**3),
            "--log-level",
            "warn",
        ],
        workdir / "etcd.log",
    )
    return process, client_url


def _health(url: str) -> bool:
    import urllib.request

    with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
        return json.loads(resp.read()).get("health") == "true"


def _ready(url: str, ca_file: Path, token: str) -> bool:
    import ssl
    import urllib.request

    request = urllib.request.Request(f"{url}/readyz", headers={"Authorization": f"Bearer {token}"})
    context = ssl.create_default_context(cafile=str(ca_file))
    with urllib.request.urlopen(request, timeout=2, context=context) as resp:
        return resp.status == 200


def _start_apiserver(
    apiserver: Path, etcd_url: str, pki: Pki, workdir: Path, admin_token: str, pipeline_token: str
) -> tuple[_Process, str]:
    tokens = workdir / "tokens.csv"
    tokens.write_text(
        f'{admin_token},{ADMIN_USER},uid-admin,"system:masters"\n'
        f'{pipeline_token},{PIPELINE_USER},uid-{PIPELINE_SA},"{",".join(PIPELINE_GROUPS)}"\n'
    )
    tokens.chmod(0o600)
    policy = workdir / "audit-policy.yaml"
    policy.write_text(yaml.safe_dump(_AUDIT_POLICY))
    port = free_port()
    process = _start(
        "kube-apiserver",
        [
            str(apiserver),
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={port}",
            "--insecure-port=0",
            f"--cert-dir={workdir / 'apiserver-certs'}",
            f"--tls-cert-file={pki.serving_cert}",
            f"--tls-private-key-file={pki.serving_key}",
            f"--token-auth-file={tokens}",
            "--authorization-mode=RBAC",
            "--anonymous-auth=false",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-signing-key-file={pki.sa_key}",
            f"--service-account-key-file={pki.sa_pub}",
            "--service-cluster-ip-range=10.96.0.0/16",
            f"--kubelet-certificate-authority={pki.ca_cert}",
            "--kubelet-preferred-address-types=InternalIP",
            f"--audit-log-path={workdir / 'audit.log'}",
            f"--audit-policy-file={policy}",
            "--audit-log-format=json",
            "--audit-log-mode=blocking",
            "--enable-priority-and-fairness=false",
            "--profiling=false",
            "--endpoint-reconciler-type=none",
        ],
        workdir / "kube-apiserver.log",
    )
    return process, f"https://127.0.0.1:{port}"


def _install_crds(api: client.ApiClient) -> None:
    ext = client.ApiextensionsV1Api(api)
    names = []
    for crd in load_crds():
        try:
            ext.create_custom_resource_definition(crd)
        except client.exceptions.ApiException as exc:
            raise RuntimeError(f"the API server refused CRD {crd['metadata']['name']}: {exc.body}") from None
        names.append(crd["metadata"]["name"])

    def established() -> bool:
        for name in names:
            conditions = ext.read_custom_resource_definition(name).status.conditions or []
            if not any(c.type == "Established" and c.status == "True" for c in conditions):
                return False
        return True

    wait_until(established, timeout_s=60, what="CRDs Established")


def _apply_cluster_setup(cluster: KubeCluster) -> None:
    objects = [o for o in render_base() if o["kind"] in CLUSTER_SETUP_KINDS]
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objects))


def _start_until_ready(
    start: Callable[[], tuple[_Process, Any]],
    ready: Callable[[Any], bool],
    what: str,
    also_alive: Callable[[], str | None] = lambda: None,
) -> tuple[_Process, Any]:
    """Start a server and wait until ``ready``; start again on fresh ports if another process took one."""
    for attempt in range(3):
        process, address = start()
        try:
            wait_until(
                lambda address=address: ready(address),
                timeout_s=_START_TIMEOUT_S,
                what=what,
                alive=lambda process=process: process.died() or also_alive(),
            )
            return process, address
        except RuntimeError as exc:
            process.stop()
            if "address already in use" not in str(exc) or attempt == 2:
                raise
    raise AssertionError("unreachable")


@contextlib.contextmanager
def running_cluster(workdir: Path) -> Iterator[KubeCluster]:
    """Start etcd and kube-apiserver in ``workdir``, set the cluster up, yield it, stop both by PID."""
    found = binaries()
    if found is None:
        raise FileNotFoundError(BUILD_HINT)
    apiserver_bin, etcd_bin = found
    workdir.mkdir(parents=True, exist_ok=True)
    pki = make_pki(workdir / "pki")
    processes: list[_Process] = []
    try:
        etcd, etcd_url = _start_until_ready(lambda: _start_etcd(etcd_bin, workdir), _health, "etcd healthy")
        processes.append(etcd)
        admin_token, pipeline_token = secrets.token_hex(16), secrets.token_hex(16)
        server, url = _start_until_ready(
            lambda: _start_apiserver(apiserver_bin, etcd_url, pki, workdir, admin_token, pipeline_token),
            lambda address: _ready(address, pki.ca_cert, admin_token),
            "kube-apiserver /readyz",
            also_alive=etcd.died,
        )
        processes.append(server)
        kubeconfig = workdir / "kubeconfig"
        _kubeconfig(kubeconfig, url, pki.ca_cert, admin_token, pipeline_token)
        cluster = KubeCluster(
            url=url,
            ca_file=pki.ca_cert,
            pki=pki,
            admin_token=admin_token,
            pipeline_token=pipeline_token,
            kubeconfig=kubeconfig,
            audit_log=workdir / "audit.log",
            workdir=workdir,
        )
        with cluster.admin_client() as api:
            cluster.version = client.VersionApi(api).get_code().git_version
            _install_crds(api)
        _apply_cluster_setup(cluster)
        yield cluster
    finally:
        for process in reversed(processes):
            process.stop()
