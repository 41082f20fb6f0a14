"""Resume: a worker killed mid-run fails the run; the re-run redoes only what was unfinished and
produces exactly what an uninterrupted run produces."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from medgo.data.prepare import default_work_dir

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def _prepare(raw: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}"}
    args = ["--set", "workers=2", "--set", "shard_size_mb=0.02", "--set", "max_quarantine_share=0.05"]
    return subprocess.Popen(
        [sys.executable, "-m", "medgo.cli", "data", "prepare", str(raw), str(out), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _workers(proc: subprocess.Popen) -> list[psutil.Process]:
    found = []
    for child in psutil.Process(proc.pid).children(recursive=True):
        try:
            if "spawn_main" in " ".join(child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


def _artifact(out: Path) -> dict[str, bytes]:
    files = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*.jsonl")}
    files["data_card.json"] = (out / "data_card.json").read_bytes()
    return files


def test_killing_a_worker_mid_run_then_rerunning_gives_the_uninterrupted_output(
    tmp_path, write_lines, corpus_record
):
    raw = tmp_path / "raw"
    n = 0
    for f in range(24):
        records = [corpus_record(n + i, category=("textbook", "tcm")[i % 2]) for i in range(150)]
        records.append(corpus_record(90_000 + f, text=corpus_record(3)["text"]))  # a cross-shard duplicate
        records.append("{not json")
        write_lines(raw / f"part-{f:02d}.jsonl", records)
        n += 150

    reference = tmp_path / "reference"
    done = _prepare(raw, reference)
    assert done.wait(timeout=600) == 0, done.stderr.read()

    out = tmp_path / "out"
    run = _prepare(raw, out)
    signed = default_work_dir(out) / "signed"
    deadline = time.monotonic() + 300
    while not list(signed.glob("shard-*/summary.json")):
        assert run.poll() is None, run.stderr.read()
        assert time.monotonic() < deadline, "no shard finished in time"
        time.sleep(0.02)
    victims = _workers(run)
    assert victims, "no worker process found"
    os.kill(victims[0].pid, signal.SIGKILL)
    assert run.wait(timeout=300) == 2
    stderr = run.stderr.read()
    assert "worker process died" in stderr and "Traceback" not in stderr
    finished = len(list(signed.glob("shard-*/summary.json")))
    assert 0 < finished < 24, finished
    assert not (out / "manifest.json").exists()

    rerun = _prepare(raw, out)
    assert rerun.wait(timeout=600) == 0, rerun.stderr.read()
    summary = json.loads(rerun.stdout.read())
    assert summary["resumed_shards"] >= finished
    assert _artifact(out) == _artifact(reference)
    assert not default_work_dir(out).exists()
