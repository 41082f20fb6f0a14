"""Clean corpus records → fixed-length token sequences for continued pretraining.

Documents are tokenised in batches, each followed by EOS, and concatenated greedily into
sequences of exactly ``seq_len`` tokens; a document that does not fit continues in the next
sequence. Tokens are counted per corpus category too (the exact counts behind ``data.prepare``'s estimates).
Each sequence records where its documents start (``doc_lengths``) and carries
``position_ids`` that restart at 0 for every document, so a padding-free trainer
(FlashAttention varlen, which derives sequence boundaries from the position resets) keeps
documents from attending to each other. The last sequence is padded (``attention_mask`` 0,
its own position run) or dropped, per ``PackConfig.drop_remainder``::

    out/
      tokens-00000.parquet   input_ids, attention_mask, position_ids, doc_lengths (one row per sequence)
      manifest.json          counts (documents, tokens, sequences, real_tokens, packing_efficiency, …)
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

from tqdm.auto import tqdm

from medgo.config import PackConfig
from medgo.data.io import Quarantined, iter_records, output_directory
from medgo.data.prepare import CLEAN_DIR
from medgo.errors import InputError
from medgo.logs import fields
from medgo.storage import atomic_path, is_s3, localize, read_manifest, verify_artifact, write_manifest

log = logging.getLogger(__name__)

STAGE = "data.pack"
TOKENS_SHARD = "tokens-00000.parquet"
TOKENIZE_BATCH = 512
ROWS_PER_GROUP = 1024


@dataclass(frozen=True, slots=True)
class PackedSequence:
    """One training row before padding: its tokens and the lengths of the document pieces in it."""

    input_ids: list[int]
    doc_lengths: list[int]


@dataclass
class SequencePacker:
    """Greedy concatenate-and-split packing into sequences of exactly ``seq_len`` tokens."""

    seq_len: int
    split_documents: int = 0
    _ids: list[int] = field(default_factory=list)
    _lengths: list[int] = field(default_factory=list)

    def add(self, ids: list[int]) -> list[PackedSequence]:
        """Append one document; return the sequences it completes (often none)."""
        completed: list[PackedSequence] = []
        start = pieces = 0
        while start < len(ids):
            take = min(self.seq_len - len(self._ids), len(ids) - start)
            self._ids.extend(ids[start : start + take])
            self._lengths.append(take)
            start += take
            pieces += 1
            if len(self._ids) == self.seq_len:
                completed.append(self._flush())
        self.split_documents += pieces > 1
        return completed

    def finish(self) -> PackedSequence | None:
        """The partly filled last sequence, if any."""
        return self._flush() if self._ids else None

    def _flush(self) -> PackedSequence:
        sequence = PackedSequence(self._ids, self._lengths)
        self._ids, self._lengths = [], []
        return sequence


def sequence_row(sequence: PackedSequence, seq_len: int, pad_id: int) -> dict[str, list[int]]:
    """Pad a packed sequence to ``seq_len`` and derive its attention mask and per-document positions."""
    real = len(sequence.input_ids)
    pad = seq_len - real
    position_ids = [p for length in sequence.doc_lengths for p in range(length)] + list(range(pad))
    return {
        "input_ids": sequence.input_ids + [pad_id] * pad,
        "attention_mask": [1] * real + [0] * pad,
        "position_ids": position_ids,
        "doc_lengths": list(sequence.doc_lengths),
    }


class _ParquetRowWriter:
    """Stream rows into one Parquet file in row groups; the file appears only on a clean exit."""

    def __init__(self, path: Path) -> None:
        import pyarrow as pa

        self.path = path
        self.schema = pa.schema(
            [
                ("input_ids", pa.list_(pa.int32())),
                ("attention_mask", pa.list_(pa.int8())),
                ("position_ids", pa.list_(pa.int32())),
                ("doc_lengths", pa.list_(pa.int32())),
            ]
        )
        self.rows = 0
        self._pending: list[dict[str, list[int]]] = []

    def __enter__(self) -> _ParquetRowWriter:
        import pyarrow.parquet as pq

        self._stack = ExitStack()
        tmp = self._stack.enter_context(atomic_path(self.path))
        self._writer = self._stack.enter_context(pq.ParquetWriter(tmp, self.schema))
        return self

    def write(self, row: dict[str, list[int]]) -> None:
        self._pending.append(row)
        self.rows += 1
        if len(self._pending) >= ROWS_PER_GROUP:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        columns = {name: [row[name] for row in self._pending] for name in self.schema.names}
        self._writer.write_table(pa.table(columns, schema=self.schema))
        self._pending = []

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None and self._pending:
            self._flush()
        return self._stack.__exit__(exc_type, exc, tb)


def _clean_records_root(clean_dir: str | os.PathLike) -> tuple[Path, Path]:
    """``(records directory, artifact directory)`` for the output of ``data.prepare`` or its ``clean/``.

    The artifact directory is the one holding ``manifest.json``, recorded as this stage's lineage.
    """
    root = localize(clean_dir, what="clean corpus")
    if (root / CLEAN_DIR).is_dir():
        records, artifact = root / CLEAN_DIR, root
    else:
        records, artifact = root, root.parent if root.name == CLEAN_DIR else root
    verify_artifact(artifact)
    manifest = read_manifest(artifact)
    if manifest and manifest.get("status") == "failed":
        raise InputError(
            f"{artifact} is the output of a failed data.prepare run ({'; '.join(manifest.get('problems', []))}); "
            "fix the input or re-run it with allow_partial to accept it"
        )
    return records, artifact


def iter_document_texts(clean_root: str | os.PathLike) -> Iterator[str]:
    """The ``text`` of each clean corpus record (see :func:`iter_documents`)."""
    for text, _ in iter_documents(clean_root):
        yield text


def iter_documents(clean_root: str | os.PathLike) -> Iterator[tuple[str, str]]:
    """``(text, category)`` of each clean corpus record; anything unusable is an input error, not a skip.

    The input is the output of ``data.prepare``, so a bad line means the wrong directory or
    a damaged artifact, and packing around it would silently lose data.
    """
    for item in iter_records(clean_root, what="clean corpus"):
        if isinstance(item, Quarantined):
            raise InputError(f"not a clean corpus record ({item.reason})", source=item.source, line=item.line)
        text = item.data.get("text")
        if not isinstance(text, str):
            raise InputError(
                "clean corpus record has no string text", source=item.source, line=item.line, field="text"
            )
        category = item.data.get("category")
        yield text, category if isinstance(category, str) else "unknown"


def _batched(items: Iterable, size: int) -> Iterator[list]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def pack_corpus(
    clean_dir: str | os.PathLike, tokenizer_uri: str, output_dir: str | os.PathLike, config: PackConfig
) -> dict:
    """Tokenise and pack the clean corpus at ``clean_dir`` into ``output_dir``; returns the counts.

    Counts: ``documents``, ``tokens`` (produced by tokenisation, EOS included), ``sequences``,
    ``real_tokens`` (non-padding tokens written), ``padding_tokens``, ``dropped_tokens`` (the
    remainder when ``drop_remainder``), ``split_documents`` (documents spanning sequences)
    and ``packing_efficiency`` = real_tokens / (sequences × seq_len).
    """
    from medgo.modeling import load_tokenizer

    tokenizer = load_tokenizer(tokenizer_uri)
    eos_id, pad_id = tokenizer.eos_token_id, tokenizer.pad_token_id
    if config.add_eos and eos_id is None:
        raise InputError(
            f"tokenizer at {tokenizer_uri} has no EOS token; set add_eos=false or fix the tokenizer"
        )
    if pad_id is None:
        raise InputError(
            f"tokenizer at {tokenizer_uri} has no pad or EOS token to pad the last sequence with"
        )
    clean_root, artifact_root = _clean_records_root(clean_dir)
    packer = SequencePacker(config.seq_len)
    documents = tokens = dropped_tokens = real_tokens = 0
    tokens_per_category: Counter = Counter()

    with output_directory(output_dir, inputs=[clean_root]) as out:
        with _ParquetRowWriter(out / TOKENS_SHARD) as writer:
            progress = tqdm(desc=STAGE, unit="doc", disable=None)
            for batch in _batched(iter_documents(clean_root), TOKENIZE_BATCH):
                texts = [text for text, _ in batch]
                encoded = tokenizer(
                    texts, add_special_tokens=False, return_attention_mask=False, verbose=False
                )["input_ids"]
                for ids, (_, category) in zip(encoded, batch, strict=True):
                    if config.add_eos:
                        ids = [*ids, eos_id]
                    if not ids:
                        continue
                    documents += 1
                    tokens += len(ids)
                    tokens_per_category[category] += len(ids)
                    for sequence in packer.add(ids):
                        real_tokens += len(sequence.input_ids)
                        writer.write(sequence_row(sequence, config.seq_len, pad_id))
                progress.update(len(texts))
            progress.close()
            if documents == 0:
                raise InputError(f"no documents to pack under {clean_dir}")
            tail = packer.finish()
            if tail is not None:
                if config.drop_remainder:
                    dropped_tokens = len(tail.input_ids)
                else:
                    real_tokens += len(tail.input_ids)
                    writer.write(sequence_row(tail, config.seq_len, pad_id))
        if tokens != real_tokens + dropped_tokens:
            raise RuntimeError(
                f"{STAGE}: tokens do not reconcile: {tokens} != {real_tokens} written + "
                f"{dropped_tokens} dropped"
            )
        sequences = writer.rows
        counts = {
            "documents": documents,
            "tokens": tokens,
            "sequences": sequences,
            "real_tokens": real_tokens,
            "padding_tokens": sequences * config.seq_len - real_tokens,
            "dropped_tokens": dropped_tokens,
            "split_documents": packer.split_documents,
            "packing_efficiency": round(real_tokens / (sequences * config.seq_len), 6) if sequences else 0.0,
            "tokens_per_category": dict(sorted(tokens_per_category.items())),
        }
        tokenizer_info = {
            "uri": str(tokenizer_uri),
            "eos_token_id": eos_id,
            "pad_token_id": pad_id,
            "vocab_size": len(tokenizer),
        }
        lineage = {"clean": str(clean_dir) if is_s3(clean_dir) else str(artifact_root)}
        write_manifest(
            out,
            stage=STAGE,
            counts=counts,
            config=config,
            inputs=lineage,
            extra={"tokenizer": tokenizer_info},
        )
    if sequences == 0:
        log.warning(
            "corpus shorter than one sequence and drop_remainder is set: no sequences written",
            extra=fields(tokens=tokens, seq_len=config.seq_len),
        )
    log.info("corpus packed", extra=fields(**counts, output=str(output_dir)))
    return counts
