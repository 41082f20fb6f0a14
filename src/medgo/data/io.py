"""Reading a stage's input files without losing a line, and writing stage outputs atomically.

Every data builder reads its input through :func:`iter_records`, which lists every file under the
input (:func:`medgo.data.sources.list_inputs`: JSONL, JSONL.gz, JSONL.zst and Parquet are read, any
other file is reported as skipped) and turns each line into either a :class:`Record` or a
:class:`Quarantined` entry saying why it could not be used (malformed JSON, not an object,
undecodable bytes, a file whose encoding cannot be decided, a truncated or corrupt compressed
stream; see :mod:`medgo.data.readers`). Builders never see an exception for a bad line and never skip
one silently: what they cannot use they quarantine. A quarantine entry carries a short preview of
the line, scrubbed of patient identifiers (:func:`medgo.data.pii.scrub_preview`) because quarantine
files are published beside the scrubbed outputs.

Outputs are written with :class:`JsonlWriter` (streamed to a temporary file, renamed into place on
success) inside :func:`output_directory`, which also publishes to ``s3://``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from medgo.data.readers import (
    RAW_PREVIEW_CHARS,
    FilePart,
    Quarantined,
    Record,
    RecordOrError,
    iter_part,
    raw_preview,
)
from medgo.data.sources import InputListing, check_output_outside_inputs, list_inputs
from medgo.errors import InputError
from medgo.logs import fields
from medgo.storage import MANIFEST_NAME, atomic_path, is_s3, publish

log = logging.getLogger(__name__)

__all__ = [
    "RAW_PREVIEW_CHARS",
    "JsonlWriter",
    "Quarantined",
    "Record",
    "RecordOrError",
    "iter_records",
    "output_directory",
    "raw_preview",
]


def iter_records(
    input_uri: str | os.PathLike, *, what: str = "input", listing: InputListing | None = None
) -> Iterator[RecordOrError]:
    """Yield every non-blank line (Parquet row) of the files at ``input_uri`` as a record or quarantine entry.

    ``input_uri`` is a directory (searched recursively), a single file, or an ``s3://`` prefix whose
    objects are streamed one by one. Files are read in sorted relative-path order and lines in file
    order, so "first occurrence" is well defined for deduplication. Skipped files are logged; pass a
    ``listing`` from :func:`~medgo.data.sources.list_inputs` to record them in a manifest. Raises
    :class:`InputError` when there is nothing to read.
    """
    if listing is None:
        listing = list_inputs(input_uri, what=what)
    for skipped in listing.skipped:
        log.warning("file skipped", extra=fields(source=skipped.relpath, reason=skipped.reason))
    for file in listing.files:
        yield from iter_part(FilePart(file))


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
    directory that is, holds or lies inside one of the stage's ``inputs``. For ``s3://`` the
    outputs are staged in a temporary directory and uploaded (manifest last) when the
    block succeeds.
    """
    check_output_outside_inputs(output_uri, list(inputs))
    if is_s3(output_uri):
        with tempfile.TemporaryDirectory(prefix="medgo-out-") as staging:
            yield Path(staging)
            publish(staging, str(output_uri))
        return
    out = Path(output_uri)
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
