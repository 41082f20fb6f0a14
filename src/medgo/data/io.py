"""Reading JSONL shards without losing a line, and writing stage outputs atomically.

Every data builder reads its input through :func:`iter_records`, which turns each line of
every ``*.jsonl``/``*.jsonl.gz`` file under a directory into either a :class:`Record` or a
:class:`Quarantined` entry saying why the line could not be used (malformed JSON, not an
object, undecodable bytes, a truncated or corrupt gzip member). Builders never see an
exception for a bad line and never skip one silently: what they cannot use they quarantine.
A quarantine entry carries a short preview of the line, scrubbed of patient identifiers
(:func:`medgo.data.pii.scrub_preview`) because quarantine files are published beside the
scrubbed outputs.

Outputs are written with :class:`JsonlWriter` (streamed to a temporary file, renamed into
place on success) inside :func:`output_directory`, which also publishes to ``s3://``.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import shutil
import tempfile
import zlib
from collections.abc import Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medgo.data.pii import scrub_preview
from medgo.errors import InputError
from medgo.logs import fields
from medgo.storage import MANIFEST_NAME, atomic_path, is_s3, localize, publish

log = logging.getLogger(__name__)

JSONL_SUFFIXES = (".jsonl", ".jsonl.gz")
RAW_PREVIEW_CHARS = 200
_READ_CHUNK = 1 << 20
_UTF8_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class Record:
    """One parsed JSON object and where it came from.

    ``source`` is the file's path relative to the input root (stable across machines and
    caches, so ids derived from it are stable too); ``line`` is 1-based. ``encoding`` is
    ``"gb18030"`` when the line was not UTF-8 and was decoded with the GB18030 fallback.
    """

    data: dict[str, Any]
    source: str
    line: int
    encoding: str = "utf-8"


@dataclass(frozen=True, slots=True)
class Quarantined:
    """A line or record that cannot be used, with the reason and a short preview of it.

    ``raw`` is at most :data:`RAW_PREVIEW_CHARS` characters and must already be scrubbed of
    patient identifiers: build it with :func:`raw_preview` (or :meth:`of`), never from the
    text as read.
    """

    source: str
    line: int
    reason: str
    raw: str = ""

    @classmethod
    def of(cls, record: Record, reason: str) -> Quarantined:
        """Quarantine a parsed record that failed validation, with a scrubbed preview of it."""
        preview = raw_preview(json.dumps(record.data, ensure_ascii=False))
        return cls(record.source, record.line, reason, preview)

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "line": self.line, "reason": self.reason, "raw": self.raw}


RecordOrError = Record | Quarantined


def raw_preview(text: str) -> str:
    """The start of an unusable line for its quarantine entry, patient identifiers masked."""
    return scrub_preview(text, RAW_PREVIEW_CHARS)


def list_jsonl_files(root: Path) -> list[Path]:
    """The JSONL shards under ``root`` (or ``root`` itself), in sorted relative-path order.

    Hidden files (``.name``, e.g. another writer's temporary files) are ignored.
    """
    if root.is_file():
        return [root]
    files = [
        p
        for p in root.rglob("*")
        if p.is_file()
        and p.name.endswith(JSONL_SUFFIXES)
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    ]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def iter_records(input_uri: str | os.PathLike, *, what: str = "input") -> Iterator[RecordOrError]:
    """Yield every non-blank line of the JSONL shards at ``input_uri`` as a record or a quarantine entry.

    ``input_uri`` is a directory (searched recursively), a single file, or an ``s3://``
    prefix. Files are read in sorted order and lines in file order, so "first occurrence"
    is well defined for deduplication. Raises :class:`InputError` when there is nothing to read.
    """
    root = localize(input_uri, what=what)
    files = list_jsonl_files(root)
    if not files:
        raise InputError(f"no {' or '.join('*' + s for s in JSONL_SUFFIXES)} files under {input_uri}")
    for path in files:
        source = path.name if root.is_file() else path.relative_to(root).as_posix()
        yield from _iter_file(path, source)


def _iter_file(path: Path, source: str) -> Iterator[RecordOrError]:
    fallback_lines = 0
    for line_no, raw, failure in _iter_raw_lines(path):
        if failure is not None:
            log.warning(
                "unreadable shard tail quarantined", extra=fields(source=source, line=line_no, reason=failure)
            )
            yield Quarantined(source, line_no, failure, raw_preview(raw.decode("utf-8", errors="replace")))
            break
        if line_no == 1 and raw.startswith(_UTF8_BOM):
            raw = raw[len(_UTF8_BOM) :]
        if not raw.strip():
            continue
        item = _parse_line(raw, source, line_no)
        if isinstance(item, Record) and item.encoding != "utf-8":
            fallback_lines += 1
        yield item
    if fallback_lines:
        log.info("decoded non-UTF-8 lines with GB18030", extra=fields(source=source, lines=fallback_lines))


def _iter_raw_lines(path: Path) -> Iterator[tuple[int, bytes, str | None]]:
    """Yield ``(line_no, bytes, None)`` per line; on a broken gzip stream, a last ``(n, partial, reason)``.

    Reading with ``read1`` keeps every byte the decompressor produced before the stream
    broke, so the partial last line can be shown in the quarantine entry.
    """
    opener = gzip.open if path.name.endswith(".gz") else open
    line_no = 0
    pending = b""
    try:
        with opener(path, "rb") as fh:
            while True:
                try:
                    chunk = fh.read1(_READ_CHUNK)
                except EOFError:
                    yield line_no + 1, pending, "truncated_gzip"
                    return
                except (gzip.BadGzipFile, zlib.error):
                    yield line_no + 1, pending, "corrupt_gzip"
                    return
                if not chunk:
                    break
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    line_no += 1
                    yield line_no, line.rstrip(b"\r"), None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", source=str(path)) from None
    if pending:
        yield line_no + 1, pending.rstrip(b"\r"), None


def _parse_line(raw: bytes, source: str, line_no: int) -> RecordOrError:
    encoding = "utf-8"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        try:
            text = raw.decode("gb18030")
            encoding = "gb18030"
        except UnicodeDecodeError:
            return Quarantined(
                source,
                line_no,
                "undecodable_bytes",
                raw_preview(raw.decode("utf-8", errors="replace")),
            )
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return Quarantined(source, line_no, "malformed_json", raw_preview(text))
    if not isinstance(data, dict):
        return Quarantined(source, line_no, "not_an_object", raw_preview(text))
    return Record(data, source, line_no, encoding)


class JsonlWriter:
    """Stream JSON objects to ``path``; the file appears (atomically renamed) only on a clean exit."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.count = 0
        self._stack = ExitStack()
        self._fh = None

    def __enter__(self) -> JsonlWriter:
        tmp = self._stack.enter_context(atomic_path(self.path))
        self._fh = self._stack.enter_context(open(tmp, "w", encoding="utf-8"))
        return self

    def write(self, obj: Mapping[str, Any] | Quarantined) -> None:
        if isinstance(obj, Quarantined):
            obj = obj.as_dict()
        self._fh.write(json.dumps(obj, ensure_ascii=False) + "\n")
        self.count += 1

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
        return self._stack.__exit__(exc_type, exc, tb)


@contextmanager
def output_directory(
    output_uri: str | os.PathLike, inputs: Iterable[str | os.PathLike] = ()
) -> Iterator[Path]:
    """A local directory to write a stage's outputs into, published to ``output_uri`` on success.

    A local ``output_uri`` is used in place. An existing non-empty directory is reused only
    if it is a previous medgo artifact (it has a manifest), whose contents are replaced;
    anything else is refused rather than mixed with or deleted, and so is an output
    directory that is, or holds, one of the stage's local ``inputs``. For ``s3://`` the
    outputs are staged in a temporary directory and uploaded (manifest last) when the
    block succeeds.
    """
    if is_s3(output_uri):
        with tempfile.TemporaryDirectory(prefix="medgo-out-") as staging:
            yield Path(staging)
            publish(staging, str(output_uri))
        return
    out = Path(output_uri)
    for source in inputs:
        if is_s3(source):
            continue
        resolved_out, resolved_in = out.resolve(), Path(source).resolve()
        if resolved_in == resolved_out or resolved_out in resolved_in.parents:
            raise InputError(f"output directory {out} would overwrite the input {source}")
    if out.exists() and not out.is_dir():
        raise InputError(f"output path exists and is not a directory: {out}")
    if out.is_dir() and any(out.iterdir()):
        if not (out / MANIFEST_NAME).is_file():
            raise InputError(
                f"output directory {out} is not empty and is not a medgo artifact; "
                "choose an empty or new directory"
            )
        log.info("replacing previous artifact", extra=fields(dir=str(out)))
        _clear_directory(out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        yield out
    except BaseException:
        # Everything in ``out`` was written by this run (it started empty), so a failed run
        # leaves an empty directory that the next run may reuse, not a half-written artifact.
        _clear_directory(out)
        raise


def _clear_directory(directory: Path) -> None:
    for child in directory.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
