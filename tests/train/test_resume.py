"""Kill a 2-process DeepSpeed run (gloo, CPU) with SIGKILL mid-training, start it again with the same config,
and it ends where an uninterrupted run ends: same final loss (relative tolerance 1e-4, see LOSS_RTOL), same
per-step losses after the resume point. For SFT and DPO, under ZeRO-2 and ZeRO-3.

The kill lands between checkpoints (after checkpoint 2 is complete and step 3 is logged), so the restart
redoes step 3 from checkpoint 2; a half-written newer checkpoint left on disk is never picked.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import psutil
import pytest

from medgo.errors import MedgoError
from medgo.storage import read_manifest
from medgo.train.checkpoint import MARKER
from medgo.train.launch import launch_local
from tests.train.conftest import (
    RESUME_STEPS,
    Background,
    resume_config,
    train_config,
    training_processes,
    wait_for,
)

pytestmark = pytest.mark.slow

#: CPU DeepSpeed over gloo is deterministic up to reduction order; a resumed run matches to ~1e-6.
LOSS_RTOL = 1e-4


def _losses(out: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def _logged_steps(log: Path) -> int:
    return log.read_text(errors="replace").count("'loss':") if log.exists() else 0


@pytest.mark.parametrize("stage", ["sft", "dpo"])
@pytest.mark.parametrize("zero", ["zero2", "zero3"])
def test_sigkilled_run_resumes_to_the_same_loss(
    stage, zero, sample_model_dir, sft_adapter, sft_dir, prefs_dir, reference_run, tmp_path
):
    def config(name, **kw):
        return resume_config(
            stage,
            zero,
            tmp_path / name,
            sample_model_dir=sample_model_dir,
            sft_adapter=sft_adapter,
            sft_dir=sft_dir,
            prefs_dir=prefs_dir,
            **kw,
        )

    reference = reference_run(stage, zero)

    killed = config("killed")
    ckpt_root = Path(killed.checkpoint_uri)
    work = tmp_path / "logs-killed"
    run = Background(lambda: launch_local(killed, nproc_per_node=2, work_dir=work))
    run.start()
    wait_for(
        lambda: (ckpt_root / "checkpoint-2" / MARKER).exists() and _logged_steps(work / "node-0.log") >= 3,
        timeout_s=300,
        what="checkpoint 2 complete and step 3 logged",
    )
    procs = training_processes(work)
    assert len(procs) >= 3, procs  # the node (torchrun) and its 2 workers
    for proc in procs:  # freeze first, so nothing moves on while the others are being killed
        proc.send_signal(signal.SIGSTOP)
    assert not (tmp_path / "killed" / "manifest.json").exists(), "the run finished before the kill"
    for proc in procs:
        proc.send_signal(signal.SIGKILL)
    run.join(timeout=120)
    assert isinstance(run.error, MedgoError), run.error
    gone, alive = psutil.wait_procs(procs, timeout=30)
    assert not alive
    assert not (tmp_path / "killed" / "manifest.json").exists()  # a killed run publishes nothing

    # A save that was cut off half-way: newer than any complete checkpoint, no marker.
    half = ckpt_root / "checkpoint-5"
    if not half.exists():
        half.mkdir()
        (half / "trainer_state.json").write_text("{")
    if stage == "sft" and zero == "zero2":  # another config must not pick this run's checkpoints up
        with pytest.raises(MedgoError, match=r"another config \(learning_rate: 0.005 → 0.001\)"):
            launch_local(
                config("killed", learning_rate=1e-3), nproc_per_node=2, work_dir=tmp_path / "logs-mismatch"
            )

    launch_local(killed, nproc_per_node=2, work_dir=tmp_path / "logs-resumed")
    resumed, ref = read_manifest(tmp_path / "killed")["counts"], read_manifest(reference)["counts"]
    assert resumed["resumed_from_step"] in (2, 4) and resumed["steps"] == ref["steps"] == RESUME_STEPS
    assert resumed["final_loss"] == pytest.approx(ref["final_loss"], rel=LOSS_RTOL)
    after = {s: v for s, v in _losses(tmp_path / "killed").items() if s > resumed["resumed_from_step"]}
    assert after and all(v == pytest.approx(_losses(reference)[s], rel=LOSS_RTOL) for s, v in after.items())
    assert not half.exists() and not ckpt_root.exists()  # checkpoints go once the result is committed
    assert "resuming" in (tmp_path / "logs-resumed" / "node-0.log").read_text()


def test_killing_one_nodes_torchrun_leaves_nothing_behind_and_publishes_nothing(
    sample_model_dir, sft_dir, tmp_path
):
    """Two simulated nodes; node 1's torchrun is SIGKILLed mid-training. Its workers die with it
    (PR_SET_PDEATHSIG), node 0's workers fail their next collective, the launcher stops the rest, and
    no result appears, neither now nor later."""
    out = tmp_path / "out"
    cfg = train_config("sft", sample_model_dir, sft_dir, out, max_steps=40, save_steps=0)
    work = tmp_path / "logs"
    run = Background(lambda: launch_local(cfg, nnodes=2, work_dir=work))
    run.start()
    wait_for(lambda: _logged_steps(work / "node-0.log") >= 2, timeout_s=300, what="two logged steps")
    procs = training_processes(work)
    node1 = [p for p in procs if "--node_rank=1" in p.cmdline()]
    assert len(node1) == 1, [p.cmdline() for p in procs]
    node1_workers = node1[0].children(recursive=True)
    assert node1_workers
    node1[0].send_signal(signal.SIGKILL)
    run.join(timeout=180)
    assert isinstance(run.error, MedgoError) and "node 1" in str(run.error), run.error
    _, alive = psutil.wait_procs(procs, timeout=30)
    assert not alive, [p.pid for p in alive]
    assert not training_processes(work)
    assert not (out / "manifest.json").exists() and not (work / "result").exists()
    assert not {w.pid for w in node1_workers} & set(psutil.pids())
    assert not out.exists() or not os.listdir(out)
