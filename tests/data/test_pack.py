"""Packing: exact-length sequences, per-document positions, and no token lost or duplicated."""

from __future__ import annotations

import json
import math

import pyarrow.parquet as pq
import pytest

from medgo.config import PackConfig, PrepareConfig
from medgo.data.pack import SequencePacker, pack_corpus, sequence_row
from medgo.data.prepare import prepare_corpus
from medgo.errors import InputError

DOCS = [
    "高血压患者应低盐饮食，规律服用降压药物。",
    "糖尿病的典型症状包括多饮、多尿、多食和体重下降，需要长期管理血糖并定期复查糖化血红蛋白和眼底。",
    "头痛。",
    "阿莫西林胶囊用于敏感菌所致的呼吸道感染，成人一次0.5g，一日3次。",
]


@pytest.fixture
def clean_corpus(tmp_path, write_lines):
    """A directory laid out like data.prepare's output (clean/ beside quarantine.jsonl)."""
    root = tmp_path / "prepared"
    write_lines(
        root / "clean" / "part-00000.jsonl",
        [
            {"id": f"d{i}", "text": t, "category": "textbook", "source": "s", "meta": {}}
            for i, t in enumerate(DOCS)
        ],
    )
    write_lines(
        root / "quarantine.jsonl", [{"source": "x", "line": 1, "reason": "malformed_json", "raw": ""}]
    )
    return root


def _expected_stream(tokenizer, add_eos=True):
    docs = [
        tokenizer(t, add_special_tokens=False)["input_ids"] + ([tokenizer.eos_token_id] if add_eos else [])
        for t in DOCS
    ]
    return docs, [t for d in docs for t in d]


def _rows(out):
    return pq.read_table(out / "tokens-00000.parquet").to_pylist()


def test_sequences_have_exact_length_and_carry_every_token_once_in_order(
    clean_corpus, tiny_tokenizer, tmp_path
):
    tokenizer, tok_dir = tiny_tokenizer
    docs, stream = _expected_stream(tokenizer)
    seq_len = 16
    counts = pack_corpus(clean_corpus, str(tok_dir), tmp_path / "packed", PackConfig(seq_len=seq_len))

    rows = _rows(tmp_path / "packed")
    assert all(
        len(r[col]) == seq_len for r in rows for col in ("input_ids", "attention_mask", "position_ids")
    )
    real = [t for r in rows for t, m in zip(r["input_ids"], r["attention_mask"], strict=True) if m]
    assert real == stream
    assert counts["documents"] == len(DOCS) and counts["tokens"] == len(stream) == counts["real_tokens"]
    assert counts["sequences"] == len(rows) == math.ceil(len(stream) / seq_len)
    assert counts["packing_efficiency"] == pytest.approx(len(stream) / (len(rows) * seq_len), abs=1e-6)
    assert counts["padding_tokens"] == len(rows) * seq_len - len(stream)
    padded_tail = rows[-1]["input_ids"][sum(rows[-1]["attention_mask"]) :]
    assert set(padded_tail) <= {tokenizer.pad_token_id}
    assert json.loads((tmp_path / "packed" / "manifest.json").read_text())["counts"] == counts


def test_positions_restart_at_every_document_boundary(clean_corpus, tiny_tokenizer, tmp_path):
    tokenizer, tok_dir = tiny_tokenizer
    docs, _ = _expected_stream(tokenizer)
    counts = pack_corpus(clean_corpus, str(tok_dir), tmp_path / "packed", PackConfig(seq_len=16))
    rows = _rows(tmp_path / "packed")
    assert counts["split_documents"] >= 1 and any(len(r["doc_lengths"]) > 1 for r in rows)

    pieces = []
    for row in rows:
        real = sum(row["attention_mask"])
        assert sum(row["doc_lengths"]) == real
        assert row["position_ids"][:real] == [p for n in row["doc_lengths"] for p in range(n)]
        start = 0
        for n in row["doc_lengths"]:
            pieces.append(row["input_ids"][start : start + n])
            start += n
    # Document pieces, rejoined across sequence boundaries, are exactly the documents.
    rejoined, current = [], []
    doc_lengths = iter(len(d) for d in docs)
    target = next(doc_lengths)
    for piece in pieces:
        current += piece
        if len(current) == target:
            rejoined.append(current)
            current = []
            target = next(doc_lengths, None)
    assert rejoined == docs


def test_drop_remainder_drops_only_the_partial_last_sequence(clean_corpus, tiny_tokenizer, tmp_path):
    tokenizer, tok_dir = tiny_tokenizer
    _, stream = _expected_stream(tokenizer)
    seq_len = 16
    counts = pack_corpus(
        clean_corpus, str(tok_dir), tmp_path / "packed", PackConfig(seq_len=seq_len, drop_remainder=True)
    )
    rows = _rows(tmp_path / "packed")
    assert len(rows) == counts["sequences"] == len(stream) // seq_len
    assert [t for r in rows for t in r["input_ids"]] == stream[: len(rows) * seq_len]
    assert all(all(r["attention_mask"]) for r in rows)
    assert counts["dropped_tokens"] == len(stream) % seq_len
    assert counts["packing_efficiency"] == 1.0


def test_without_eos_documents_are_concatenated_as_is(clean_corpus, tiny_tokenizer, tmp_path):
    tokenizer, tok_dir = tiny_tokenizer
    _, stream = _expected_stream(tokenizer, add_eos=False)
    counts = pack_corpus(
        clean_corpus / "clean", str(tok_dir), tmp_path / "packed", PackConfig(seq_len=4096, add_eos=False)
    )
    [row] = _rows(tmp_path / "packed")
    assert row["input_ids"][: len(stream)] == stream and counts["tokens"] == len(stream)
    assert tokenizer.eos_token_id not in row["input_ids"]


def test_packer_splits_long_documents_and_records_piece_lengths():
    packer = SequencePacker(seq_len=4)
    assert packer.add([1, 2]) == []
    [first, second] = packer.add([3, 4, 5, 6, 7, 8, 9])
    assert (first.input_ids, first.doc_lengths) == ([1, 2, 3, 4], [2, 2])
    assert (second.input_ids, second.doc_lengths) == ([5, 6, 7, 8], [4])
    tail = packer.finish()
    assert (tail.input_ids, tail.doc_lengths) == ([9], [1])
    assert packer.split_documents == 1 and packer.finish() is None
    assert sequence_row(tail, 4, pad_id=0) == {
        "input_ids": [9, 0, 0, 0],
        "attention_mask": [1, 0, 0, 0],
        "position_ids": [0, 0, 1, 2],
        "doc_lengths": [1],
    }


def test_damaged_clean_corpus_is_an_input_error_not_a_silent_skip(tmp_path, tiny_tokenizer, write_lines):
    _, tok_dir = tiny_tokenizer
    write_lines(tmp_path / "clean" / "part-00000.jsonl", [{"id": "a", "text": "正常"}, "{oops"])
    with pytest.raises(InputError, match=r"part-00000.jsonl:2"):
        pack_corpus(tmp_path, str(tok_dir), tmp_path / "packed", PackConfig(seq_len=8))
    write_lines(tmp_path / "clean" / "part-00000.jsonl", [{"id": "a", "body": "正常"}])
    with pytest.raises(InputError, match="field 'text'"):
        pack_corpus(tmp_path, str(tok_dir), tmp_path / "packed", PackConfig(seq_len=8))


def test_packs_the_output_of_prepare_and_records_its_lineage(tmp_path, tiny_tokenizer, write_lines):
    tokenizer, tok_dir = tiny_tokenizer
    write_lines(
        tmp_path / "raw" / "a.jsonl",
        [{"id": f"d{i}", "text": t, "category": "textbook"} for i, t in enumerate(DOCS)],
    )
    prepared = prepare_corpus(str(tmp_path / "raw"), tmp_path / "prepared", PrepareConfig(min_chars=2))
    counts = pack_corpus(tmp_path / "prepared", str(tok_dir), tmp_path / "packed", PackConfig(seq_len=32))

    assert counts["documents"] == prepared["kept"] == len(DOCS)
    manifest = json.loads((tmp_path / "packed" / "manifest.json").read_text())
    assert manifest["inputs"]["clean"]["manifest"]["stage"] == "data.prepare"
    assert manifest["tokenizer"]["eos_token_id"] == tokenizer.eos_token_id
    assert counts["tokens_per_category"] == {"textbook": counts["tokens"]}


def test_a_failed_preparation_is_not_packed(tmp_path, tiny_tokenizer, write_lines):
    from medgo.data.accounting import StepFailed
    from medgo.errors import InputError

    _, tok_dir = tiny_tokenizer
    write_lines(tmp_path / "raw" / "a.jsonl", [{"text": t, "category": "textbook"} for t in DOCS] + ["{bad"])
    with pytest.raises(StepFailed):
        prepare_corpus(str(tmp_path / "raw"), tmp_path / "prepared", PrepareConfig(min_chars=2))
    with pytest.raises(InputError, match="failed data.prepare run"):
        pack_corpus(tmp_path / "prepared", str(tok_dir), tmp_path / "packed", PackConfig(seq_len=32))
