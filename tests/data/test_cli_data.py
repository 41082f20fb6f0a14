"""`medgo data …`: a step that must fail exits 2 with one error line, after printing and writing its counts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def medgo(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}"}
    return subprocess.run(
        [sys.executable, "-m", "medgo.cli", *args], capture_output=True, text=True, timeout=300, env=env
    )


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


def test_too_much_quarantine_exits_2_with_the_reason_and_allow_partial_accepts_it(samples_dir, tmp_path):
    out = tmp_path / "clean"
    failed = medgo("data", "prepare", str(samples_dir / "corpus"), str(out), "--workers", "1")
    assert failed.returncode == 2 and "Traceback" not in failed.stderr
    [error] = _error_lines(failed.stderr)
    assert "7 of 110 input units quarantined" in error and "--allow-partial" in error
    assert json.loads(failed.stdout)["status"] == "failed"
    assert json.loads((out / "manifest.json").read_text())["status"] == "failed"

    accepted = medgo(
        "data", "prepare", str(samples_dir / "corpus"), str(out), "--workers", "1", "--allow-partial"
    )
    assert accepted.returncode == 0, accepted.stderr
    summary = json.loads(accepted.stdout)
    assert summary["status"] == "accepted_partial" and summary["resumed_shards"] == 1


def test_a_truncated_file_exits_2_naming_it(tmp_path, write_lines, corpus_record, compressed):
    raw = tmp_path / "raw"
    payload = "".join(json.dumps(corpus_record(i), ensure_ascii=False) + "\n" for i in range(300)).encode()
    blob = compressed(payload, ".gz")
    raw.mkdir()
    (raw / "a.jsonl.gz").write_bytes(blob[: len(blob) // 2])
    (raw / "README.md").write_text("not data")
    result = medgo("data", "prepare", str(raw), str(tmp_path / "out"), "--workers", "1")
    assert result.returncode == 2
    [error] = _error_lines(result.stderr)
    assert "a.jsonl.gz (truncated_gzip)" in error
    summary = json.loads(result.stdout)
    assert summary["skipped_files"] == [
        {"relpath": "README.md", "reason": summary["skipped_files"][0]["reason"]}
    ]


def test_an_output_inside_the_input_exits_2(samples_dir, tmp_path, write_lines, corpus_record):
    raw = tmp_path / "raw"
    write_lines(raw / "a.jsonl", [corpus_record(1)])
    result = medgo("data", "prepare", str(raw), str(raw / "clean"))
    assert result.returncode == 2 and "inside the input" in _error_lines(result.stderr)[0]


def test_sft_and_prefs_accept_the_same_switches(samples_dir, tmp_path):
    sft = medgo(
        "data",
        "sft",
        str(samples_dir / "sft"),
        str(tmp_path / "sft"),
        "--allow-partial",
        "--eval-data",
        str(samples_dir / "eval"),
    )
    assert sft.returncode == 0, sft.stderr
    assert json.loads(sft.stdout)["status"] == "accepted_partial"
    prefs = medgo("data", "prefs", str(samples_dir / "preference"), str(tmp_path / "prefs"))
    assert prefs.returncode == 2 and "data.prefs failed" in _error_lines(prefs.stderr)[0]
