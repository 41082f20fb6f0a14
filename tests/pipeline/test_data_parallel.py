"""The corpus steps' ParallelFor fan-out through kfp.local on the samples: same output as the local pool."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from medgo.config import PrepareConfig
from medgo.data.prepare import prepare_corpus
from pipelines.corpus_pipeline import corpus_preparation
from pipelines.medgo_pipeline import COMPILED_PATH

pytestmark = pytest.mark.slow


def _outputs(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*.jsonl")}


def test_parallel_for_over_shard_groups_gives_the_local_pools_output(tmp_path, samples_dir):
    from kfp import local

    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(tmp_path / "root"),
        workspace_root=str(tmp_path / "workspace"),
        raise_on_error=True,
    )
    task = corpus_preparation(
        corpus_uri=str(samples_dir / "corpus"),
        eval_data_uri=str(samples_dir / "eval"),
        work_root=str(tmp_path / "work"),
        shard_groups=2,
        shard_size_mb=0.03,
        max_quarantine_share=0.1,
    )
    clean = Path(task.output.path)
    run_dir = clean.parents[1]
    iterations = sorted(p.name for p in run_dir.iterdir() if p.name.startswith("for-loop"))
    assert len(iterations) == 6  # three fan-outs × two groups
    manifest = json.loads((clean / "manifest.json").read_text())
    assert manifest["counts"]["shards"] >= 2 and manifest["status"] == "complete"
    counts = manifest["counts"]
    assert counts["in"] == counts["kept"] + counts["filtered"] + counts["duplicates"] + counts["quarantined"]
    assert counts["near_duplicates"] == 2 and counts["eval_overlaps"] >= 1
    assert "<svg" in (run_dir / "finalize-corpus" / "card").read_text()
    assert not any((tmp_path / "work").iterdir())  # the run's work directory is gone after success

    config = PrepareConfig(
        workers=1,
        shard_size_mb=0.03,
        max_quarantine_share=0.1,
        decontamination={"eval_dir": str(samples_dir / "eval")},
    )
    prepare_corpus(str(samples_dir / "corpus"), tmp_path / "local", config)
    assert _outputs(clean) == _outputs(tmp_path / "local")
    fanned, pooled = (json.loads((d / "data_card.json").read_text()) for d in (clean, tmp_path / "local"))
    outcome = ("exact_duplicates", "near_duplicates", "duplicate_rate", "clusters", "largest_cluster")
    assert {k: fanned["dedup"][k] for k in outcome} == {k: pooled["dedup"][k] for k in outcome}
    fanned.pop("dedup"), pooled.pop("dedup")  # how much verification work was done depends on the groups
    assert fanned == pooled


def test_compiled_pipeline_fans_the_corpus_steps_out_in_order():
    docs = list(yaml.safe_load_all(COMPILED_PATH.read_text()))
    components = docs[0]["components"]
    [sub] = [c for name, c in components.items() if name.startswith("comp-corpus-preparation")]
    tasks = sub["dag"]["tasks"]
    loops = {name: t for name, t in tasks.items() if "parameterIterator" in t}
    assert len(loops) == 3
    assert all(t["iteratorPolicy"]["parallelismLimit"] == 16 for t in loops.values())
    order = {name: set(t.get("dependentTasks", [])) for name, t in tasks.items()}
    sign, bands, filters = sorted(loops)
    assert "plan-corpus" in order[sign] and sign in order[bands]
    assert bands in order["global-clusters"] and "global-clusters" in order[filters]
    assert filters in order["finalize-corpus"]
    platform = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert platform["exec-clean-and-sign"]["pvcMount"][0]["mountPath"] == "/mnt/medgo-data"
