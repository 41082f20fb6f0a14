"""Artifact storage: local paths, PVC mounts (also local paths) and ``s3://`` URIs.

Every stage reads its inputs through :func:`localize` and publishes its outputs through
:func:`publish`, so the same code runs on a laptop, on a PVC and against S3. S3 access uses
boto3's standard credential chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` from a
Kubernetes Secret, IRSA, …) and ``AWS_ENDPOINT_URL`` for on-prem object stores.

Every output directory carries a ``manifest.json`` (see :func:`write_manifest`).
"""

from __future__ import annotations

import fcntl
import fnmatch
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from medgo.errors import InputError, MedgoError
from medgo.logs import fields

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
MANIFEST_SCHEMA_VERSION = 1


#: URI schemes served by the S3 API. KFP names artifacts in its MinIO store ``minio://bucket/…``.
S3_SCHEMES = ("s3://", "minio://")


def is_s3(uri: str | os.PathLike) -> bool:
    return str(uri).startswith(S3_SCHEMES)


def split_s3(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` (or ``minio://…``) → ``("bucket", "a/b")``."""
    if not is_s3(uri):
        raise ValueError(f"not an s3:// URI: {uri}")
    bucket, _, key = uri.split("://", 1)[1].partition("/")
    if not bucket:
        raise InputError(f"S3 URI has no bucket: {uri}")
    return bucket, key.strip("/")


def s3_client():
    """A boto3 S3 client; endpoint from ``AWS_ENDPOINT_URL``/``S3_ENDPOINT_URL`` for on-prem stores."""
    import boto3
    from botocore.config import Config

    endpoint = os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("S3_ENDPOINT_URL")
    return boto3.client(
        "s3",
        endpoint_url=endpoint or None,
        region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        config=Config(retries={"max_attempts": 5, "mode": "standard"}, s3={"addressing_style": "path"}),
    )


def _cache_root() -> Path:
    root = Path(os.environ.get("MEDGO_CACHE_DIR", Path(tempfile.gettempdir()) / "medgo-cache"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def localize(uri: str | os.PathLike, *, what: str = "input", include: Iterable[str] | None = None) -> Path:
    """Return a local path holding ``uri``'s content, downloading ``s3://`` prefixes to a cache.

    ``include`` (glob patterns on file names, e.g. ``["tokenizer*", "*.json"]``) limits what is
    downloaded, so reading a tokenizer does not fetch a 72B model's weights. The cache
    (``MEDGO_CACHE_DIR``) is safe to share between processes: one downloads under a file lock while
    the others wait, then all reuse the copy for as long as the objects' ETags are unchanged. Raises
    :class:`InputError` naming ``what`` when the input does not exist.
    """
    uri = str(uri)
    if not is_s3(uri):
        path = Path(uri).expanduser()
        if not path.exists():
            raise InputError(f"{what} not found: {uri}")
        return path
    bucket, key = split_s3(uri)
    client = s3_client()
    dest = _cache_root() / "s3" / bucket / key
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        objects = _list_objects(client, bucket, key)
        if include is not None:
            patterns = list(include)
            objects = {
                k: tag
                for k, tag in objects.items()
                if any(fnmatch.fnmatch(k.rsplit("/", 1)[-1], p) for p in patterns)
            }
        if not objects:
            raise InputError(f"{what} not found: {uri} (no objects under that prefix)")
        signature = hashlib.sha256(json.dumps(sorted(objects.items())).encode()).hexdigest()
        dest.parent.mkdir(parents=True, exist_ok=True)
        marker = dest.parent / f".{dest.name}.complete"
        with open(dest.parent / f".{dest.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # other ranks on this node wait for one download
            if marker.exists() and marker.read_text() == signature:
                return dest
            marker.unlink(missing_ok=True)
            for obj_key in sorted(objects):
                rel = obj_key[len(key) :].lstrip("/") if key else obj_key
                target = dest / rel if rel else dest
                target.parent.mkdir(parents=True, exist_ok=True)
                client.download_file(bucket, obj_key, str(target))
            marker.write_text(signature)
    except (ClientError, BotoCoreError) as exc:
        raise InputError(f"cannot read {what} {uri}: {exc}") from None
    log.info("downloaded from S3", extra=fields(uri=uri, objects=len(objects), to=str(dest)))
    return dest


def _list_objects(client, bucket: str, prefix: str) -> dict[str, str]:
    """``{key: etag}`` of the object ``prefix`` or everything under ``prefix/``."""
    objects: dict[str, str] = {}
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            k = obj["Key"]
            if k == prefix or not prefix or k.startswith(prefix.rstrip("/") + "/"):
                objects[k] = obj.get("ETag", "")
    return objects


def publish(local: str | os.PathLike, uri: str | os.PathLike) -> str:
    """Copy a local file or directory to ``uri`` (a local path or ``s3://``); returns ``uri``.

    Uploads use boto3's managed transfer (multipart for large files). The manifest is
    uploaded last so a reader that sees it sees a complete artifact.
    """
    local, uri = Path(local), str(uri)
    if not is_s3(uri):
        dest = Path(uri)
        if dest.resolve() != local.resolve():
            if local.is_dir():
                shutil.copytree(local, dest, dirs_exist_ok=True)
            else:
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(local, dest)
        return uri
    bucket, key = split_s3(uri)
    client = s3_client()
    files = sorted(p for p in local.rglob("*") if p.is_file()) if local.is_dir() else [local]
    files.sort(key=lambda p: p.name == MANIFEST_NAME)
    for path in files:
        rel = path.relative_to(local).as_posix() if local.is_dir() else ""
        obj_key = f"{key}/{rel}".strip("/") if rel else key
        client.upload_file(str(path), bucket, obj_key)
    log.info("uploaded to S3", extra=fields(uri=uri, objects=len(files)))
    return uri


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary file beside ``path`` that replaces ``path`` only if the block exits cleanly.

    Readers never see a partial file, and a failed write leaves no debris. The result is
    world-readable (0644) like any artifact, not ``mkstemp``'s private 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` so readers never see a partial file."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    return Path(path)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(
        path, json.dumps(obj, ensure_ascii=False, indent=2, sort_keys=True, default=str) + "\n"
    )


def write_jsonl(path: str | os.PathLike, records: Iterable[Mapping]) -> int:
    """Atomically write records as JSON Lines; returns the count."""
    lines = [json.dumps(r, ensure_ascii=False) for r in records]
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    return len(lines)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def write_manifest(
    out_dir: str | os.PathLike,
    *,
    stage: str,
    counts: Mapping[str, Any],
    config: Any = None,
    inputs: Mapping[str, str | os.PathLike] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict:
    """Write ``manifest.json`` describing every file in ``out_dir``.

    ``inputs`` maps a name to an input directory; the inputs' own manifests are embedded so
    lineage can be followed back to the raw data.
    """
    out_dir = Path(out_dir)
    files = {
        p.relative_to(out_dir).as_posix(): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
        for p in sorted(out_dir.rglob("*"))
        if p.is_file() and p.name != MANIFEST_NAME and not p.name.startswith(".")
    }
    if hasattr(config, "model_dump"):
        config = config.model_dump(mode="json")
    lineage = {}
    for name, path in (inputs or {}).items():
        upstream = read_manifest(path) if path and not is_s3(path) else None
        lineage[name] = {"uri": str(path), "manifest": upstream}
    manifest = {
        "schema_version": MANIFEST_SCHEMA_VERSION,
        "stage": stage,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "counts": dict(counts),
        "files": files,
        "config": config,
        "inputs": lineage,
        **(dict(extra) if extra else {}),
    }
    atomic_write_json(out_dir / MANIFEST_NAME, manifest)
    return manifest


def read_manifest(path: str | os.PathLike) -> dict | None:
    """The manifest of an artifact directory, or None if it has none."""
    p = Path(path)
    p = p / MANIFEST_NAME if p.is_dir() else p.parent / MANIFEST_NAME
    if not p.exists():
        return None
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise MedgoError(f"{p}: corrupt manifest ({exc})") from None


def localize_artifact(uri: str | os.PathLike, *, what: str = "input") -> Path:
    """:func:`localize` an upstream stage's output and, when it carries a manifest, verify its files.

    A stage that reads a damaged or half-copied artifact fails here, naming the file, instead of
    training on what is left of it.
    """
    path = localize(uri, what=what)
    verify_artifact(path if path.is_dir() else path.parent)
    return path


def verify_artifact(directory: str | os.PathLike) -> None:
    """:func:`verify_manifest` when ``directory`` has a manifest; a directory without one is not checked."""
    if (Path(directory) / MANIFEST_NAME).is_file():
        verify_manifest(directory)


def verify_manifest(path: str | os.PathLike) -> None:
    """Check that every file listed in the manifest exists with its recorded sha256."""
    path = Path(path)
    manifest = read_manifest(path)
    if manifest is None:
        raise InputError(f"{path}: no {MANIFEST_NAME}; not a medgo artifact")
    for rel, meta in manifest["files"].items():
        f = path / rel
        if not f.exists():
            raise InputError(f"{path}: file listed in manifest is missing: {rel}")
        if sha256_file(f) != meta["sha256"]:
            raise InputError(f"{path}: checksum mismatch for {rel}")
