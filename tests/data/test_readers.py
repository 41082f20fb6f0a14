"""Readers: every format and encoding is read or refused whole with a reason, never guessed into mojibake."""

from __future__ import annotations

import codecs
import json

import pytest

from medgo.data.io import iter_records
from medgo.data.readers import (
    FilePart,
    Quarantined,
    Record,
    detect_encoding,
    file_encoding,
    is_stream_failure,
    iter_part,
    split_jsonl,
)
from medgo.data.sources import InputFile, check_output_outside_inputs, list_inputs
from medgo.errors import InputError

TRADITIONAL = (
    "糖尿病是一組以慢性血糖水平升高為特徵的代謝性疾病，患者應到醫院內分泌科就診，在醫師指導下合理使用藥物。"
)
SIMPLIFIED = "高血压患者应低盐饮食，规律服用降压药物，定期监测血压，如出现头痛头晕应及时就医。"


def _records(path, **kw) -> list[Record | Quarantined]:
    return list(iter_records(path, **kw))


def _lines(texts, encoding):
    return b"".join((json.dumps({"text": t}, ensure_ascii=False) + "\n").encode(encoding) for t in texts)


@pytest.mark.parametrize(
    ("encoding", "prefix", "codec"),
    [
        ("utf-8", b"", "utf-8"),
        ("utf-8", codecs.BOM_UTF8, "utf-8"),
        ("utf-16-le", codecs.BOM_UTF16_LE, "utf-16"),
        ("utf-16-be", codecs.BOM_UTF16_BE, "utf-16"),
        ("utf-16-le", b"", "utf-16-le"),
        ("gbk", b"", "gb18030"),
        ("gb18030", b"", "gb18030"),
    ],
)
def test_each_supported_encoding_is_detected_and_read_exactly(tmp_path, encoding, prefix, codec):
    texts = [SIMPLIFIED, "患者男，65岁，反复胸闷胸痛三年，加重一周入院。", "阿司匹林肠溶片100mg，每日1次。"]
    (tmp_path / "a.jsonl").write_bytes(prefix + _lines(texts, encoding))
    items = _records(tmp_path)
    assert [i.data["text"] for i in items] == texts
    assert {i.encoding for i in items} == {codec}


def test_big5_is_decoded_as_big5_not_as_gb18030_mojibake(tmp_path):
    texts = [TRADITIONAL, "醫院門診部提醒：流感季節請注意個人衛生，出現發熱症狀應及時就醫。"]
    (tmp_path / "big5.jsonl").write_bytes(_lines(texts, "big5"))
    items = _records(tmp_path)
    assert [i.data["text"] for i in items] == texts
    assert items[0].encoding in ("cp950", "big5hkscs")
    # the bytes do decode as GB18030, into nonsense: that is what must not happen
    assert _lines(texts, "big5").decode("gb18030") != _lines(texts, "utf-8").decode("utf-8")


def test_an_ambiguous_or_foreign_encoding_is_quarantined_whole_with_its_reason(tmp_path):
    japanese = "患者は頭痛を訴えています。血圧を測定してください。薬は一日三回服用します。" * 3
    (tmp_path / "sjis.jsonl").write_bytes(_lines([japanese] * 3, "shift_jis"))
    [entry] = _records(tmp_path)
    assert isinstance(entry, Quarantined) and entry.reason.startswith("undecodable_file:")
    assert entry.lines == 3 and is_stream_failure(entry.reason)


def test_detect_encoding_decides_from_boms_then_utf8_then_the_detector():
    assert detect_encoding(codecs.BOM_UTF8 + b"{}", complete=True).codec == "utf-8-sig"
    assert detect_encoding(codecs.BOM_UTF16_LE + "{}".encode("utf-16-le"), complete=True).codec == "utf-16"
    assert detect_encoding(b'{"a": 1}\n', complete=True).codec == "utf-8"
    assert detect_encoding(SIMPLIFIED.encode("gb18030"), complete=True).family == "gb"
    assert detect_encoding(TRADITIONAL.encode("big5"), complete=True).family == "big5"
    # a head cut in the middle of a UTF-8 character is still UTF-8
    assert detect_encoding(SIMPLIFIED.encode("utf-8")[:-1], complete=False).codec == "utf-8"


@pytest.mark.parametrize("suffix", [".jsonl.gz", ".jsonl.zst"])
def test_compressed_files_with_several_members_are_read_to_the_end(compressed, tmp_path, suffix):
    first = _lines([f"第{i}条记录" for i in range(3)], "utf-8")
    second = _lines([f"第{i}条记录" for i in range(3, 5)], "utf-8")
    (tmp_path / f"a{suffix}").write_bytes(compressed(first, suffix) + compressed(second, suffix))
    assert [i.data["text"] for i in _records(tmp_path)] == [f"第{i}条记录" for i in range(5)]


@pytest.mark.parametrize(
    ("suffix", "reason"), [(".jsonl.gz", "truncated_gzip"), (".jsonl.zst", "truncated_zstd")]
)
def test_truncated_compression_ends_with_a_stream_failure_after_the_complete_lines(
    compressed, tmp_path, suffix, reason
):
    lines = [json.dumps({"id": f"r{i}", "text": f"记录{i}" * 20}, ensure_ascii=False) for i in range(3000)]
    blob = compressed(("\n".join(lines) + "\n").encode(), suffix)
    (tmp_path / f"a{suffix}").write_bytes(blob[: len(blob) // 2])
    *records, tail = _records(tmp_path)
    assert records and [json.dumps(r.data, ensure_ascii=False) for r in records] == lines[: len(records)]
    assert isinstance(tail, Quarantined) and tail.reason == reason and is_stream_failure(tail.reason)
    assert tail.line == len(records) + 1


def test_garbage_in_a_zstd_file_is_a_corrupt_stream(compressed, tmp_path):
    blob = compressed(_lines(["高血压"] * 200, "utf-8"), ".zst")
    (tmp_path / "a.jsonl.zst").write_bytes(blob[:20] + b"\x00" * 40 + blob[60:])
    tail = _records(tmp_path)[-1]
    assert isinstance(tail, Quarantined) and tail.reason == "corrupt_zstd"


def test_parquet_rows_are_records_numbered_by_row(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {"id": ["p1", "p2", "p3"], "text": [SIMPLIFIED, None, "第三条"], "category": ["tcm"] * 3}
    )
    pq.write_table(table, tmp_path / "a.parquet", row_group_size=2)
    items = _records(tmp_path)
    assert [(i.source, i.line, i.data["id"]) for i in items] == [("a.parquet", n, f"p{n}") for n in (1, 2, 3)]
    assert items[1].data["text"] is None  # a null is a record with a missing field, for validation to name


def test_a_corrupt_parquet_file_is_a_stream_failure(tmp_path):
    (tmp_path / "a.parquet").write_bytes(b"PAR1 not really parquet")
    [entry] = _records(tmp_path)
    assert entry.reason == "corrupt_parquet" and is_stream_failure(entry.reason)


def test_split_parts_of_a_big_file_read_exactly_the_whole_file(tmp_path, write_lines):
    path = write_lines(
        tmp_path / "big.jsonl", [{"n": i, "text": "文本" * (i % 7)} for i in range(500)] + ["{bad"]
    )
    file = list_inputs(path).files[0]
    parts = split_jsonl(file, 2000)
    assert len(parts) > 5 and parts[0].start == 0 and parts[-1].stop is None
    assert all(a.stop == b.start for a, b in zip(parts, parts[1:], strict=False))
    encoding = file_encoding(file)
    pieces = [(i.line, getattr(i, "data", None)) for p in parts for i in iter_part(p, encoding=encoding)]
    whole = [(i.line, getattr(i, "data", None)) for i in iter_part(FilePart(file))]
    assert pieces == whole and len(whole) == 501


def test_listing_reads_known_formats_and_names_every_skipped_file(tmp_path, write_lines):
    write_lines(tmp_path / "a.jsonl", [{"n": 1}])
    write_lines(tmp_path / "sub" / "b.jsonl.zst", [{"n": 2}])
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "c.json").write_text("[]")
    (tmp_path / "d.jsonl.bz2").write_bytes(b"BZ")
    write_lines(tmp_path / ".tmp" / "e.jsonl", [{"n": 3}])
    listing = list_inputs(tmp_path)
    assert [f.relpath for f in listing.files] == ["a.jsonl", "sub/b.jsonl.zst"]
    reasons = {s.relpath: s.reason for s in listing.skipped}
    assert set(reasons) == {"notes.txt", "c.json", "d.jsonl.bz2", ".tmp/e.jsonl"}
    assert reasons[".tmp/e.jsonl"] == "hidden file" and reasons["c.json"].startswith(
        "unsupported format (.json)"
    )


def test_an_output_inside_the_input_is_refused_before_anything_is_read(tmp_path):
    with pytest.raises(InputError, match="inside the input"):
        check_output_outside_inputs(tmp_path / "raw" / "out", [tmp_path / "raw"])
    with pytest.raises(InputError, match="would overwrite the input"):
        check_output_outside_inputs(tmp_path, [tmp_path / "raw"])
    with pytest.raises(InputError, match="inside the input"):
        check_output_outside_inputs("s3://b/corpus/clean", ["s3://b/corpus"])
    check_output_outside_inputs(tmp_path / "clean", [tmp_path / "raw"])
    check_output_outside_inputs("s3://b/corpus2", ["s3://b/corpus"])


def test_s3_objects_are_streamed_one_by_one_and_skips_are_listed(compressed, s3_server, tmp_path):
    from medgo.storage import s3_client, split_s3

    bucket, _ = split_s3(s3_server)
    client = s3_client()
    prefix = "readers/corpus"
    client.put_object(Bucket=bucket, Key=f"{prefix}/a.jsonl", Body=_lines([SIMPLIFIED], "utf-8"))
    client.put_object(
        Bucket=bucket, Key=f"{prefix}/b.jsonl.gz", Body=compressed(_lines(["第二"], "utf-8"), ".gz")
    )
    client.put_object(Bucket=bucket, Key=f"{prefix}/c.jsonl", Body=_lines([TRADITIONAL], "big5"))
    client.put_object(Bucket=bucket, Key=f"{prefix}/readme.md", Body=b"# corpus")
    client.put_object(Bucket=bucket, Key=f"{prefix}2/other.jsonl", Body=b'{"n": 1}\n')

    listing = list_inputs(f"{s3_server}/{prefix}")
    assert [f.relpath for f in listing.files] == ["a.jsonl", "b.jsonl.gz", "c.jsonl"]
    assert [s.relpath for s in listing.skipped] == ["readme.md"]
    items = list(iter_records(f"{s3_server}/{prefix}", listing=listing))
    assert [i.data["text"] for i in items] == [SIMPLIFIED, "第二", TRADITIONAL]
    assert not (tmp_path / "cache").exists()


def test_input_file_version_changes_with_the_file(tmp_path, write_lines):
    path = write_lines(tmp_path / "a.jsonl", [{"n": 1}])
    before = list_inputs(path).files[0]
    write_lines(path, [{"n": 1}, {"n": 2}])
    after = list_inputs(path).files[0]
    assert isinstance(before, InputFile) and before.version != after.version
