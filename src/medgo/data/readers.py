"""Readers: each line (or Parquet row) of a file becomes a :class:`Record` or a :class:`Quarantined` entry.

Formats: JSONL, JSONL.gz, JSONL.zst (both may hold several concatenated members/frames) and Parquet.
A file is read as a whole or as a :class:`FilePart` (a byte range of a plain JSONL file starting on
a line, a range of Parquet row groups), which is how one big file becomes several shards.

Text encoding is decided once per file from its first bytes (:func:`detect_encoding`): UTF-8 (with or
without BOM), UTF-16 (LE/BE, with or without BOM), GB18030 (GBK, GB2312) and Big5 are read; a file
whose encoding is anything else, or cannot be told confidently (charset-normalizer), is quarantined
whole with the reason. It is never decoded with a guess, which is how Big5 text used to become GB18030
mojibake. After the decision, a line that does not decode is quarantined alone.

A compressed stream that ends early or is corrupt yields a last entry whose reason starts with
``truncated_`` or ``corrupt_``: those reasons (and ``undecodable_file``) are *stream failures*
(:func:`is_stream_failure`), which fail a stage unless partial input is allowed, because every record
after the break is missing without a trace.
"""

from __future__ import annotations

import codecs
import json
import logging
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from medgo.data.sources import InputFile, local_copy, open_input
from medgo.errors import InputError
from medgo.logs import fields

log = logging.getLogger(__name__)

RAW_PREVIEW_CHARS = 200
_READ_CHUNK = 1 << 20
_HEAD_BYTES = 1 << 16
_HEAD_MAX_BYTES = 1 << 22

#: Reason prefixes meaning "records were lost in the stream", not "this record is bad".
STREAM_FAILURE_PREFIXES = ("truncated_", "corrupt_", "undecodable_file", "unreadable_")

#: Encoding families a file may be in → the codec that decodes each (a superset where one exists).
_CODECS = {
    "utf_8": "utf-8",
    "ascii": "utf-8",
    "utf_8_sig": "utf-8-sig",
    "utf_16": "utf-16",
    "utf_16_le": "utf-16-le",
    "utf_16_be": "utf-16-be",
    "gb18030": "gb18030",
    "gbk": "gb18030",
    "gb2312": "gb18030",
    "cp936": "gb18030",
    "big5": "cp950",
    "cp950": "cp950",
    "big5hkscs": "big5hkscs",
}
_FAMILY = {
    "utf-8": "utf-8",
    "utf-8-sig": "utf-8",
    "utf-16": "utf-16",
    "utf-16-le": "utf-16",
    "utf-16-be": "utf-16",
    "gb18030": "gb",
    "cp950": "big5",
    "big5hkscs": "big5",
}
#: charset-normalizer "chaos" (mess) above which a decoding is not trusted.
MAX_ENCODING_CHAOS = 0.25


def is_stream_failure(reason: str) -> bool:
    return reason.startswith(STREAM_FAILURE_PREFIXES)


@dataclass(frozen=True, slots=True)
class Record:
    """One parsed JSON object (or Parquet row) and where it came from.

    ``source`` is the file's path relative to the input root (stable across machines and caches,
    so ids derived from it are stable too); ``line`` is 1-based (the row number for Parquet).
    ``encoding`` is the codec the file was decoded with.
    """

    data: dict[str, Any]
    source: str
    line: int
    encoding: str = "utf-8"


@dataclass(frozen=True, slots=True)
class Quarantined:
    """A line, record or whole file that cannot be used, with the reason and a short preview of it.

    ``raw`` is at most :data:`RAW_PREVIEW_CHARS` characters and must already be scrubbed of patient
    identifiers: build it with :func:`raw_preview` (or :meth:`of`), never from the text as read.
    ``lines`` is how many input units the entry stands for (more than one for a file quarantined
    whole, or a stream's unreadable rest).
    """

    source: str
    line: int
    reason: str
    raw: str = ""
    lines: int = 1

    @classmethod
    def of(cls, record: Record, reason: str) -> Quarantined:
        """Quarantine a parsed record that failed validation, with a scrubbed preview of it."""
        preview = raw_preview(json.dumps(record.data, ensure_ascii=False, default=str))
        return cls(record.source, record.line, reason, preview)

    def as_dict(self) -> dict[str, Any]:
        entry = {"source": self.source, "line": self.line, "reason": self.reason, "raw": self.raw}
        if self.lines != 1:
            entry["lines"] = self.lines
        return entry


RecordOrError = Record | Quarantined


def raw_preview(text: str) -> str:
    """The start of an unusable line for its quarantine entry, patient identifiers masked."""
    from medgo.data.pii import scrub_preview

    return scrub_preview(text, RAW_PREVIEW_CHARS)


@dataclass(frozen=True, slots=True)
class FilePart:
    """The piece of one file a shard reads.

    For JSONL formats ``start``/``stop`` are byte offsets (``stop`` None: to the end) and
    ``first_line`` the line number at ``start``; for Parquet they are row-group indices and
    ``first_line`` the row number of the first row read.
    """

    file: InputFile
    start: int = 0
    stop: int | None = None
    first_line: int = 1

    @property
    def whole(self) -> bool:
        return self.start == 0 and self.stop is None


# ----------------------------------------------------------------------------------------- encoding
@dataclass(frozen=True, slots=True)
class EncodingGuess:
    """The codec to decode a file with, or None and why the file cannot be decoded confidently."""

    codec: str | None
    reason: str = ""

    @property
    def family(self) -> str | None:
        return _FAMILY.get(self.codec) if self.codec else None


def _complete_utf8_prefix(data: bytes) -> bytes:
    """``data`` without a multi-byte UTF-8 sequence cut off at its end."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte < 0x80:
            return data
        if byte >= 0xC0:  # a lead byte: complete only if its sequence fits
            need = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return data if back >= need else data[:-back]
    return data


def _mostly_utf8(data: bytes) -> bool:
    """Whether ``data`` is UTF-8 text: it decodes, or most of its non-ASCII lines do.

    One corrupt line must not condemn a UTF-8 file (that line alone is quarantined), while text in
    another encoding almost never forms valid UTF-8 sequences.
    """
    try:
        data.decode("utf-8")
        return True
    except UnicodeDecodeError:
        pass
    non_ascii = valid = 0
    for line in data.split(b"\n"):
        if max(line, default=0) < 0x80:
            continue
        non_ascii += 1
        try:
            line.decode("utf-8")
            valid += 1
        except UnicodeDecodeError:
            pass
    return valid >= 1 and valid * 2 >= non_ascii


def detect_encoding(head: bytes, *, complete: bool) -> EncodingGuess:
    """Decide the codec of a file from its first bytes (``complete``: ``head`` is the whole file).

    BOMs decide first; then UTF-8 without NUL bytes (:func:`_mostly_utf8`) is UTF-8; anything else goes to
    charset-normalizer, whose answer is taken only if it is one of the supported families, decodes
    with little "chaos", and no candidate of another supported family is as plausible.
    """
    if head.startswith(codecs.BOM_UTF8):
        return EncodingGuess("utf-8-sig")
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) and not head.startswith(
        codecs.BOM_UTF32_LE
    ):
        return EncodingGuess("utf-16")
    if not head:
        return EncodingGuess("utf-8")
    if b"\x00" not in head and _mostly_utf8(head if complete else _complete_utf8_prefix(head)):
        return EncodingGuess("utf-8")
    from charset_normalizer import from_bytes

    sample = head
    if not complete:
        cut = head.rfind(b"\n")
        if cut > 0:
            sample = head[: cut + 1]
            if len(head) > cut + 1 and head[cut + 1] == 0:  # UTF-16-LE newline is 0A 00
                sample = head[: cut + 2]
    results = list(from_bytes(sample))
    if not results:
        return EncodingGuess(None, "undecodable_file:unknown_encoding")
    best = results[0]
    codec = _CODECS.get(best.encoding)
    if codec is None:
        return EncodingGuess(None, f"undecodable_file:unsupported_encoding:{best.encoding}")
    if best.chaos > MAX_ENCODING_CHAOS:
        return EncodingGuess(None, f"undecodable_file:uncertain_encoding:{best.encoding}")
    family = _FAMILY[codec]
    for other in results[1:]:
        other_codec = _CODECS.get(other.encoding)
        if other_codec and _FAMILY[other_codec] != family and other.chaos <= best.chaos + 0.05:
            return EncodingGuess(
                None, f"undecodable_file:ambiguous_encoding:{best.encoding}|{other.encoding}"
            )
    return EncodingGuess(codec)


# ------------------------------------------------------------------------------------ decompression
class _StreamBroken(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _decompressed_chunks(stream: BinaryIO, fmt: str) -> Iterator[bytes]:
    """The decompressed bytes of ``stream`` in chunks; raises :class:`_StreamBroken` on a bad stream.

    Decompressor objects report whether the member/frame they were fed ended (``eof``); input that
    runs out before that is a truncated file, which a plain ``read()`` would hide.
    """
    if fmt == "jsonl":
        while chunk := _read(stream):
            yield chunk
        return
    kind = "gzip" if fmt == "jsonl.gz" else "zstd"
    if kind == "gzip":
        new, errors = (lambda: zlib.decompressobj(16 + zlib.MAX_WBITS)), (zlib.error,)
    else:
        import zstandard

        new, errors = zstandard.ZstdDecompressor().decompressobj, (zstandard.ZstdError,)
    decompressor = new()
    fed = False
    while True:
        chunk = _read(stream)
        if not chunk:
            break
        while chunk:
            try:
                out = decompressor.decompress(chunk)
            except errors:
                raise _StreamBroken(f"corrupt_{kind}") from None
            fed = True
            if out:
                yield out
            if decompressor.eof:
                chunk = decompressor.unused_data
                decompressor, fed = new(), False
            else:
                chunk = b""
    if fed and not decompressor.eof:
        raise _StreamBroken(f"truncated_{kind}")


def _read(stream: BinaryIO) -> bytes:
    """The next chunk of ``stream``; a read that fails midway (disk, network, S3) breaks the stream."""
    from botocore.exceptions import BotoCoreError

    try:
        return stream.read(_READ_CHUNK)
    except (OSError, BotoCoreError) as exc:
        log.warning("read failed mid-stream", extra=fields(error=type(exc).__name__))
        raise _StreamBroken("unreadable_stream") from None


class _Bytes:
    """A decompressed byte stream with a look-ahead head (for encoding detection) and a failure slot."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer: list[bytes] = []
        self.failure: str | None = None
        self.exhausted = False

    def head(self) -> bytes:
        """At least 64 KiB (or all) of the stream, up to 4 MiB while it is pure ASCII."""
        size = 0
        while not self.exhausted and (
            size < _HEAD_BYTES or (size < _HEAD_MAX_BYTES and all(c.isascii() for c in self._buffer))
        ):
            chunk = self._next()
            if chunk is None:
                break
            self._buffer.append(chunk)
            size += len(chunk)
        return b"".join(self._buffer)

    def _next(self) -> bytes | None:
        try:
            return next(self._chunks)
        except StopIteration:
            self.exhausted = True
        except _StreamBroken as broken:
            self.failure = broken.reason
            self.exhausted = True
        return None

    def __iter__(self) -> Iterator[bytes]:
        yield from self._buffer
        self._buffer = []
        while (chunk := self._next()) is not None:
            yield chunk


# ----------------------------------------------------------------------------------------- reading
def iter_part(part: FilePart, *, encoding: EncodingGuess | None = None) -> Iterator[RecordOrError]:
    """Every non-blank line (Parquet row) of ``part`` as a record or quarantine entry, in file order.

    ``encoding`` is the file's decided encoding when ``part`` does not start at the file's beginning
    (see :func:`file_encoding`); for a whole file it is detected from the stream itself.
    """
    if part.file.format == "parquet":
        yield from _iter_parquet(part)
        return
    file = part.file
    with open_input(file, part.start) as raw:
        stream: BinaryIO = raw
        if part.stop is not None:
            stream = _Limited(raw, part.stop - part.start)
        data = _Bytes(_decompressed_chunks(stream, file.format))
        if encoding is None:
            encoding = detect_encoding(data.head(), complete=data.exhausted)
        if encoding.codec is None:
            lines, last = 0, b"\n"
            for chunk in data:
                lines += chunk.count(b"\n")
                last = chunk[-1:] or last
            lines += last != b"\n"
            log.warning(
                "file quarantined whole: its encoding cannot be decided",
                extra=fields(source=file.relpath, reason=encoding.reason, lines=lines),
            )
            yield Quarantined(file.relpath, part.first_line, encoding.reason, "", lines)
            return
        if encoding.family == "utf-16":
            yield from _iter_text_lines(data, file.relpath, part.first_line, encoding.codec)
        else:
            yield from _iter_byte_lines(data, file.relpath, part.first_line, encoding.codec)
        if data.failure:
            log.warning(
                "stream broken: records after this point are missing",
                extra=fields(source=file.relpath, reason=data.failure),
            )


def file_encoding(file: InputFile) -> EncodingGuess:
    """The encoding of a whole file, decided from its first bytes (for parts that start mid-file)."""
    if file.format == "parquet":
        return EncodingGuess("utf-8")
    with open_input(file) as raw:
        data = _Bytes(_decompressed_chunks(raw, file.format))
        return detect_encoding(data.head(), complete=data.exhausted)


class _Limited:
    """The first ``limit`` bytes of a stream."""

    def __init__(self, stream: BinaryIO, limit: int) -> None:
        self._stream, self._left = stream, limit

    def read(self, size: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        size = self._left if size < 0 else min(size, self._left)
        data = self._stream.read(size)
        self._left -= len(data)
        return data


def _iter_byte_lines(data: _Bytes, source: str, first_line: int, codec: str) -> Iterator[RecordOrError]:
    """ASCII-compatible encodings: split the bytes on newlines (never inside a character), decode each."""
    line_no = first_line - 1
    pending = b""
    for chunk in data:
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            line_no += 1
            if line.strip():
                yield _parse_bytes(line.rstrip(b"\r"), source, line_no, codec)
    if data.failure:
        yield Quarantined(source, line_no + 1, data.failure, _preview_bytes(pending, codec))
    elif pending.strip():
        line_no += 1
        yield _parse_bytes(pending.rstrip(b"\r"), source, line_no, codec)


def _iter_text_lines(data: _Bytes, source: str, first_line: int, codec: str) -> Iterator[RecordOrError]:
    """UTF-16: decode the stream incrementally, then split the text on newlines."""
    decoder = codecs.getincrementaldecoder(codec)(errors="strict")
    line_no = first_line - 1
    pending = ""
    try:
        for chunk in data:
            *lines, pending = (pending + decoder.decode(chunk)).split("\n")
            for line in lines:
                line_no += 1
                if line.strip():
                    yield _parse_text(line.rstrip("\r"), source, line_no, codec)
        pending += decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        # The rest of the stream cannot be split into lines without decoding it: one entry for it all.
        yield Quarantined(source, line_no + 1, "undecodable_file:utf16_error")
        return
    if data.failure:
        yield Quarantined(source, line_no + 1, data.failure, raw_preview(pending))
    elif pending.strip():
        yield _parse_text(pending.rstrip("\r"), source, line_no + 1, codec)


def _preview_bytes(raw: bytes, codec: str) -> str:
    return raw_preview(raw.decode(codec if codec != "utf-8-sig" else "utf-8", errors="replace"))


def _parse_bytes(raw: bytes, source: str, line_no: int, codec: str) -> RecordOrError:
    if _FAMILY[codec] != "utf-8" and max(raw) >= 0x80:
        # A line of another file concatenated into a GBK/Big5 one: valid UTF-8 with non-ASCII bytes is
        # almost never GBK or Big5 text, and decoding it as either would make mojibake.
        try:
            return _parse_text(raw.decode("utf-8"), source, line_no, "utf-8")
        except UnicodeDecodeError:
            pass
    try:
        text = raw.decode(codec)
    except UnicodeDecodeError:
        return Quarantined(source, line_no, "undecodable_bytes", _preview_bytes(raw, codec))
    return _parse_text(text, source, line_no, codec)


def _parse_text(text: str, source: str, line_no: int, codec: str) -> RecordOrError:
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return Quarantined(source, line_no, "malformed_json", raw_preview(text))
    if not isinstance(data, dict):
        return Quarantined(source, line_no, "not_an_object", raw_preview(text))
    return Record(data, source, line_no, "utf-8" if codec == "utf-8-sig" else codec)


def _iter_parquet(part: FilePart) -> Iterator[RecordOrError]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    file = part.file
    with local_copy(file) as path:
        try:
            parquet = pq.ParquetFile(path)
        except (pa.ArrowException, OSError) as exc:
            log.warning("unreadable Parquet file", extra=fields(source=file.relpath, error=str(exc)[:200]))
            yield Quarantined(file.relpath, part.first_line, "corrupt_parquet")
            return
        stop = parquet.num_row_groups if part.stop is None else part.stop
        row = part.first_line
        for group in range(part.start, stop):
            try:
                rows = parquet.read_row_group(group).to_pylist()
            except (pa.ArrowException, OSError):
                left = sum(parquet.metadata.row_group(g).num_rows for g in range(group, stop))
                yield Quarantined(file.relpath, row, "corrupt_parquet", "", max(left, 1))
                return
            for values in rows:
                yield Record(values, file.relpath, row)
                row += 1


def parquet_row_groups(file: InputFile) -> list[tuple[int, int]]:
    """``(rows, compressed bytes)`` per row group of a local Parquet file (for splitting it into parts)."""
    import pyarrow.parquet as pq

    try:
        meta = pq.ParquetFile(file.uri).metadata
    except Exception:  # noqa: BLE001 - an unreadable file is read whole and quarantined by the reader
        return []
    return [
        (meta.row_group(i).num_rows, meta.row_group(i).total_byte_size) for i in range(meta.num_row_groups)
    ]


def split_jsonl(file: InputFile, target_bytes: int) -> list[FilePart]:
    """Parts of a local plain JSONL file of about ``target_bytes`` each, cut at line starts."""
    if file.is_s3 or file.format != "jsonl" or file.size <= target_bytes * 3 // 2:
        return [FilePart(file)]
    parts: list[FilePart] = []
    start, line = 0, 1
    offset, lines_before = 0, 0
    try:
        with open(file.uri, "rb") as fh:
            while chunk := fh.read(_READ_CHUNK * 8):
                base = offset
                offset += len(chunk)
                search = 0
                while offset - start >= target_bytes:
                    cut_from = max(start + target_bytes - base, search)
                    nl = chunk.find(b"\n", cut_from)
                    if nl < 0:
                        break
                    lines_before_cut = lines_before + chunk.count(b"\n", 0, nl + 1)
                    parts.append(FilePart(file, start, base + nl + 1, line))
                    start, line = base + nl + 1, lines_before_cut + 1
                    search = nl + 1
                lines_before += chunk.count(b"\n")
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", source=file.relpath) from None
    if start < file.size:
        parts.append(FilePart(file, start, None, line))
    elif parts:
        parts[-1] = FilePart(file, parts[-1].start, None, parts[-1].first_line)
    return parts
