"""What a data stage reads: every file under an input (local path, PVC mount or ``s3://`` prefix).

:func:`list_inputs` walks the input once and sorts every file into one of two lists: the files a
reader understands (:data:`FORMATS`) and the ones it skips, each with its reason, so a Parquet or
``.jsonl.zst`` shard next to the JSONL is either read or reported, never silently ignored. Files are
identified by their path relative to the input root and a version (size and mtime locally, the
ETag on S3), which is what a resumed run compares to decide whether a shard is still valid.

:func:`open_input` opens one file as a byte stream: a local file, or an S3 object streamed through
boto3's ``StreamingBody`` (nothing is downloaded before it is read).
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import BinaryIO

from medgo.errors import InputError
from medgo.storage import is_s3, s3_client, split_s3

#: File name suffix → format name, longest suffix first.
FORMATS: dict[str, str] = {
    ".jsonl.gz": "jsonl.gz",
    ".jsonl.zst": "jsonl.zst",
    ".jsonl": "jsonl",
    ".parquet": "parquet",
}

_S3_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class InputFile:
    """One readable file: where it is, its path under the input root, its size, version and format."""

    uri: str
    relpath: str
    size: int
    version: str
    format: str

    @property
    def is_s3(self) -> bool:
        return is_s3(self.uri)


@dataclass(frozen=True, slots=True)
class SkippedFile:
    """A file under the input that no reader takes, and why."""

    relpath: str
    reason: str


@dataclass
class InputListing:
    """Every file under one input: the ones to read (sorted by relative path) and the ones skipped."""

    root: str
    files: list[InputFile] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)

    def skipped_entries(self) -> list[dict[str, str]]:
        return [asdict(s) for s in self.skipped]


def file_format(name: str) -> str | None:
    """The format of a file name, or None when no reader takes it."""
    for suffix, fmt in FORMATS.items():
        if name.endswith(suffix):
            return fmt
    return None


def _skip_reason(name: str) -> str:
    suffixes = "".join(Path(name).suffixes[-2:]) or "no suffix"
    return f"unsupported format ({suffixes}); readable: {', '.join(sorted(FORMATS))}"


def list_inputs(uri: str | os.PathLike, *, what: str = "input") -> InputListing:
    """Sort every file under ``uri`` into read and skipped; raises :class:`InputError` when nothing is readable.

    Hidden files and directories (``.name``: another writer's temporary files, caches) are skipped
    and listed like any other file a reader does not take.
    """
    listing = _list_s3(str(uri), what) if is_s3(uri) else _list_local(Path(uri), what)
    listing.files.sort(key=lambda f: f.relpath)
    listing.skipped.sort(key=lambda s: s.relpath)
    if not listing.files:
        skipped = "; ".join(f"{s.relpath}: {s.reason}" for s in listing.skipped[:5])
        raise InputError(
            f"no readable {what} files ({', '.join('*' + s for s in FORMATS)}) under {uri}"
            + (f" (skipped: {skipped})" if skipped else "")
        )
    return listing


def _list_local(root: Path, what: str) -> InputListing:
    root = root.expanduser()
    if not root.exists():
        raise InputError(f"{what} not found: {root}")
    listing = InputListing(str(root))
    if root.is_file():
        _add_local(listing, root, root.name)
        return listing
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames) + [d for d in dirnames if Path(dirpath, d).is_symlink()]:
            path = Path(dirpath) / name
            _add_local(listing, path, path.relative_to(root).as_posix())
    return listing


def _add_local(listing: InputListing, path: Path, relpath: str) -> None:
    if any(part.startswith(".") for part in Path(relpath).parts):
        listing.skipped.append(SkippedFile(relpath, "hidden file"))
        return
    try:
        info = path.stat()
    except OSError as exc:
        listing.skipped.append(SkippedFile(relpath, f"cannot stat: {exc.strerror or exc}"))
        return
    if not stat.S_ISREG(info.st_mode):
        listing.skipped.append(SkippedFile(relpath, "not a regular file"))
        return
    fmt = file_format(path.name)
    if fmt is None:
        listing.skipped.append(SkippedFile(relpath, _skip_reason(path.name)))
        return
    version = f"{info.st_size}:{info.st_mtime_ns}"
    listing.files.append(InputFile(str(path.resolve()), relpath, info.st_size, version, fmt))


def _list_s3(uri: str, what: str) -> InputListing:
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, prefix = split_s3(uri)
    listing = InputListing(uri)
    client = s3_client()
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                key = obj["Key"]
                if key == prefix:
                    relpath = key.rsplit("/", 1)[-1]
                elif not prefix or key.startswith(prefix.rstrip("/") + "/"):
                    relpath = key[len(prefix) :].lstrip("/") if prefix else key
                else:
                    continue  # "corpus2/…" is not under "corpus"
                if key.endswith("/"):
                    continue  # a folder marker object
                if any(part.startswith(".") for part in relpath.split("/")):
                    listing.skipped.append(SkippedFile(relpath, "hidden file"))
                    continue
                fmt = file_format(relpath)
                if fmt is None:
                    listing.skipped.append(SkippedFile(relpath, _skip_reason(relpath)))
                    continue
                version = f"{obj['Size']}:{obj.get('ETag', '').strip(chr(34))}"
                listing.files.append(InputFile(f"s3://{bucket}/{key}", relpath, obj["Size"], version, fmt))
    except (ClientError, BotoCoreError) as exc:
        raise InputError(f"cannot list {what} {uri}: {exc}") from None
    if not listing.files and not listing.skipped:
        raise InputError(f"{what} not found: {uri} (no objects under that prefix)")
    return listing


class _S3Stream(io.RawIOBase):
    """A boto3 ``StreamingBody`` as a readable raw stream (what gzip, zstd and the line splitter read)."""

    def __init__(self, body) -> None:
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._body.read(min(len(buffer), _S3_CHUNK))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._body.close()
        super().close()


@contextmanager
def open_input(file: InputFile, start: int = 0) -> Iterator[BinaryIO]:
    """``file``'s bytes from offset ``start``: a local file, or the S3 object streamed (ranged from ``start``)."""
    if not file.is_s3:
        try:
            fh = open(file.uri, "rb")
        except OSError as exc:
            raise InputError(f"cannot read: {exc.strerror or exc}", source=file.relpath) from None
        with fh:
            if start:
                fh.seek(start)
            yield fh
        return
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = split_s3(file.uri)
    try:
        extra = {"Range": f"bytes={start}-"} if start else {}
        body = s3_client().get_object(Bucket=bucket, Key=key, **extra)["Body"]
    except (ClientError, BotoCoreError) as exc:
        raise InputError(f"cannot read {file.uri}: {exc}", source=file.relpath) from None
    with io.BufferedReader(_S3Stream(body), buffer_size=_S3_CHUNK) as stream:
        yield stream


@contextmanager
def local_copy(file: InputFile) -> Iterator[Path]:
    """A local path holding ``file`` (formats that need random access, like Parquet, read from it).

    A local file is used in place; an S3 object is downloaded to a temporary file that is removed
    afterwards, one object at a time.
    """
    if not file.is_s3:
        yield Path(file.uri)
        return
    import tempfile

    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = split_s3(file.uri)
    with tempfile.TemporaryDirectory(prefix="medgo-obj-") as tmp:
        target = Path(tmp) / Path(key).name
        try:
            s3_client().download_file(bucket, key, str(target))
        except (ClientError, BotoCoreError) as exc:
            raise InputError(f"cannot read {file.uri}: {exc}", source=file.relpath) from None
        yield target


def check_output_outside_inputs(output: str | os.PathLike, inputs: list[str | os.PathLike]) -> None:
    """Refuse an output that is, holds or lies inside one of the inputs (it would be read back next run)."""
    out = str(output)
    for source in inputs:
        source = str(source)
        if is_s3(out) != is_s3(source):
            continue
        if is_s3(out):
            o, i = out.rstrip("/") + "/", source.rstrip("/") + "/"
        else:
            o = Path(out).expanduser().resolve().as_posix().rstrip("/") + "/"
            i = Path(source).expanduser().resolve().as_posix().rstrip("/") + "/"
        if o == i or i.startswith(o):
            raise InputError(f"output directory {out} would overwrite the input {source}")
        if o.startswith(i):
            raise InputError(
                f"output directory {out} is inside the input {source}; the next run would read it back "
                "as input. Choose an output outside the input"
            )
