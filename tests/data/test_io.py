"""Reading JSONL shards: every line becomes a record or a located quarantine entry."""

from __future__ import annotations

import gzip
import json

import pytest

from medgo.data.io import JsonlWriter, Quarantined, Record, iter_records, output_directory
from medgo.errors import InputError


def test_records_and_quarantine_entries_name_file_and_line(tmp_path, write_lines):
    write_lines(tmp_path / "b.jsonl", [{"n": 3}])
    write_lines(tmp_path / "a.jsonl", [{"n": 1}, "{not json", "", "[1, 2]", '"just a string"', {"n": 2}])

    items = list(iter_records(tmp_path))

    assert [(type(i).__name__, i.source, i.line) for i in items] == [
        ("Record", "a.jsonl", 1),
        ("Quarantined", "a.jsonl", 2),
        ("Quarantined", "a.jsonl", 4),
        ("Quarantined", "a.jsonl", 5),
        ("Record", "a.jsonl", 6),
        ("Record", "b.jsonl", 1),
    ]
    assert [i.data["n"] for i in items if isinstance(i, Record)] == [1, 2, 3]
    reasons = [(i.reason, i.raw) for i in items if isinstance(i, Quarantined)]
    assert reasons == [
        ("malformed_json", "{not json"),
        ("not_an_object", "[1, 2]"),
        ("not_an_object", '"just a string"'),
    ]


def test_nested_shards_are_read_in_sorted_relative_order_and_hidden_files_ignored(tmp_path, write_lines):
    write_lines(tmp_path / "z" / "part-0.jsonl", [{"n": 3}])
    write_lines(tmp_path / "a" / "part-1.jsonl.gz", [{"n": 2}])
    write_lines(tmp_path / "a" / "part-0.jsonl", [{"n": 1}])
    write_lines(tmp_path / "a" / ".part-2.jsonl.tmp.jsonl", [{"n": 99}])
    (tmp_path / "notes.txt").write_text("ignored")

    items = list(iter_records(tmp_path))

    assert [(i.source, i.data["n"]) for i in items] == [
        ("a/part-0.jsonl", 1),
        ("a/part-1.jsonl.gz", 2),
        ("z/part-0.jsonl", 3),
    ]


def test_single_file_input_uses_its_name_as_source(tmp_path, write_lines):
    path = write_lines(tmp_path / "deep" / "shard.jsonl", [{"n": 1}])
    [item] = iter_records(path)
    assert (item.source, item.line, item.data) == ("shard.jsonl", 1, {"n": 1})


def test_long_raw_previews_are_cut_to_200_characters(tmp_path, write_lines):
    write_lines(tmp_path / "a.jsonl", ["{" + "x" * 500])
    [item] = iter_records(tmp_path)
    assert item.reason == "malformed_json" and len(item.raw) == 200


VALID_ID = "11010519491231002X"  # check digit and birth date valid


def test_quarantine_previews_are_scrubbed_of_patient_identifiers(tmp_path, write_lines):
    write_lines(
        tmp_path / "a.jsonl",
        [
            f'{{"text": "患者王小明，男，45岁，身份证{VALID_ID}，电话13812345678"',  # malformed
            f'["身份证{VALID_ID}"]',  # not an object
            b"\xff\xfe" + "电话13812345678".encode(),  # undecodable
        ],
    )
    items = list(iter_records(tmp_path))
    assert [i.reason for i in items] == ["malformed_json", "not_an_object", "undecodable_bytes"]
    assert items[0].raw == '{"text": "患者<NAME>，男，45岁，身份证<ID>，电话<PHONE>"'
    assert items[1].raw == '["身份证<ID>"]'
    assert items[2].raw.endswith("电话<PHONE>")
    for item in items:
        assert VALID_ID not in item.raw and "13812345678" not in item.raw


def test_quarantined_record_preview_is_scrubbed():
    record = Record({"text": "联系电话13812345678", "category": "astrology"}, "a.jsonl", 4)
    entry = Quarantined.of(record, "unknown_category:astrology")
    assert entry.raw == '{"text": "联系电话<PHONE>", "category": "astrology"}'


def test_truncated_gzip_tail_preview_is_scrubbed(tmp_path):
    payload = gzip.compress(f'{{"n": 1}}\n{{"phone": "13812345678", "id": "{VALID_ID}"}}'.encode())
    (tmp_path / "a.jsonl.gz").write_bytes(payload[:-8])  # the trailer is missing
    tail = list(iter_records(tmp_path))[-1]
    assert isinstance(tail, Quarantined) and tail.reason == "truncated_gzip"
    assert tail.raw == '{"phone": "<PHONE>", "id": "<ID>"}'


def test_gzip_shard_is_read_like_plain_text(tmp_path, write_lines):
    records = [{"id": f"r{i}", "text": f"第{i}条"} for i in range(5)]
    write_lines(tmp_path / "a.jsonl.gz", records)
    assert [i.data for i in iter_records(tmp_path)] == records


def test_truncated_gzip_keeps_complete_lines_and_quarantines_the_broken_tail(tmp_path):
    lines = [json.dumps({"id": f"r{i}", "text": f"记录{i}" * 20}, ensure_ascii=False) for i in range(3000)]
    compressed = gzip.compress("\n".join(lines).encode() + b"\n")
    (tmp_path / "a.jsonl.gz").write_bytes(compressed[: len(compressed) // 2])

    items = list(iter_records(tmp_path))

    *records, tail = items
    assert records and all(isinstance(r, Record) for r in records)
    assert [json.dumps(r.data, ensure_ascii=False) for r in records] == lines[: len(records)]
    assert isinstance(tail, Quarantined)
    assert (tail.reason, tail.line) == ("truncated_gzip", len(records) + 1)
    assert lines[len(records)].startswith(tail.raw)


def test_file_that_is_not_gzip_despite_its_name_is_quarantined(tmp_path, write_lines):
    (tmp_path / "a.jsonl.gz").write_bytes(b'{"id": "plain text, not gzip"}\n')
    write_lines(tmp_path / "b.jsonl", [{"n": 1}])

    items = list(iter_records(tmp_path))

    assert isinstance(items[0], Quarantined) and (items[0].reason, items[0].line) == ("corrupt_gzip", 1)
    assert items[1].data == {"n": 1}


def test_gbk_file_is_detected_and_decoded_as_gb18030(tmp_path, write_lines):
    write_lines(
        tmp_path / "gbk.jsonl", [{"text": "患者主诉头痛三天，伴恶心呕吐，既往有高血压病史。"}], encoding="gbk"
    )
    write_lines(tmp_path / "utf8.jsonl", [{"text": "医院"}])

    gbk, utf8 = iter_records(tmp_path)

    assert (
        gbk.data == {"text": "患者主诉头痛三天，伴恶心呕吐，既往有高血压病史。"} and gbk.encoding == "gb18030"
    )
    assert utf8.data == {"text": "医院"} and utf8.encoding == "utf-8"


def test_a_corrupt_line_in_a_utf8_file_is_quarantined_alone(tmp_path, write_lines):
    write_lines(tmp_path / "a.jsonl", [{"text": "高血压"}, b'{"text": "\xff\xfe\x80"}', {"text": "糖尿病"}])
    first, bad, last = iter_records(tmp_path)
    assert isinstance(bad, Quarantined) and (bad.reason, bad.line) == ("undecodable_bytes", 2)
    assert (first.data, last.data) == ({"text": "高血压"}, {"text": "糖尿病"})


def test_a_file_no_supported_encoding_explains_is_quarantined_whole(tmp_path, write_lines):
    write_lines(tmp_path / "a.jsonl", [b'{"text": "\xff\xfe\x80"}', {"n": 2}])
    [whole] = iter_records(tmp_path)
    assert isinstance(whole, Quarantined) and whole.reason.startswith("undecodable_file:")
    assert (whole.line, whole.lines) == (1, 2)


def test_utf8_bom_and_crlf_line_endings_are_tolerated(tmp_path):
    (tmp_path / "a.jsonl").write_bytes(b'\xef\xbb\xbf{"n": 1}\r\n{"n": 2}\r\n')
    assert [i.data for i in iter_records(tmp_path)] == [{"n": 1}, {"n": 2}]


def test_missing_input_and_directory_without_shards_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        list(iter_records(tmp_path / "nope"))
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(InputError, match="no readable input files .* readme.txt: unsupported format"):
        list(iter_records(tmp_path))


def test_jsonl_writer_leaves_no_file_when_the_block_fails(tmp_path):
    target = tmp_path / "out.jsonl"
    with pytest.raises(ZeroDivisionError), JsonlWriter(target) as writer:
        writer.write({"a": 1})
        1 / 0  # noqa: B018
    assert not target.exists() and list(tmp_path.iterdir()) == []

    with JsonlWriter(target) as writer:
        writer.write({"a": 1})
        writer.write(Quarantined("a.jsonl", 3, "malformed_json", "{"))
    assert writer.count == 2
    assert [json.loads(x) for x in target.read_text().splitlines()] == [
        {"a": 1},
        {"source": "a.jsonl", "line": 3, "reason": "malformed_json", "raw": "{"},
    ]


def test_output_directory_refuses_foreign_content_and_replaces_its_own_artifacts(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    with pytest.raises(InputError, match="not a medgo artifact"), output_directory(foreign):
        pass
    assert (foreign / "precious.txt").read_text() == "keep me"

    artifact = tmp_path / "artifact"
    artifact.mkdir()
    (artifact / "manifest.json").write_text("{}")
    (artifact / "stale.jsonl").write_text("old")
    with output_directory(artifact) as out:
        (out / "new.jsonl").write_text("new")
    assert sorted(p.name for p in artifact.iterdir()) == ["new.jsonl"]


def test_output_directory_refuses_to_overwrite_an_input(tmp_path):
    inputs = tmp_path / "data"
    inputs.mkdir()
    with (
        pytest.raises(InputError, match="would overwrite the input"),
        output_directory(tmp_path, inputs=[inputs]),
    ):
        pass


def test_failed_stage_leaves_an_empty_reusable_output_directory(tmp_path):
    out_dir = tmp_path / "out"
    with pytest.raises(RuntimeError), output_directory(out_dir) as out:
        (out / "half.jsonl").write_text("partial")
        raise RuntimeError("stage failed")
    assert out_dir.is_dir() and list(out_dir.iterdir()) == []
    with output_directory(out_dir) as out:
        (out / "done.jsonl").write_text("ok")
    assert (out_dir / "done.jsonl").exists()
