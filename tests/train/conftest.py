"""Training fixtures: real data artifacts from the bundled samples, shared configs, process helpers."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psutil
import pytest

from medgo.config import TrainConfig


@pytest.fixture(scope="session")
def packed_dir(sample_model_dir, samples_dir, tmp_path_factory) -> Path:
    """Real token shards: the sample corpus through prepare + pack."""
    from medgo.config import PackConfig, PrepareConfig
    from medgo.data.pack import pack_corpus
    from medgo.data.prepare import prepare_corpus

    root = tmp_path_factory.mktemp("pt-data")
    prepare_corpus(str(samples_dir / "corpus"), root / "clean", PrepareConfig())
    pack_corpus(root / "clean", str(sample_model_dir), root / "packed", PackConfig(seq_len=64))
    return root / "packed"


@pytest.fixture(scope="session")
def sft_dir(samples_dir, tmp_path_factory) -> Path:
    from medgo.config import SftBuildConfig
    from medgo.data.sft import build_sft

    out = tmp_path_factory.mktemp("sft-data")
    build_sft(samples_dir / "sft", out, SftBuildConfig())
    return out


@pytest.fixture(scope="session")
def prefs_dir(samples_dir, tmp_path_factory) -> Path:
    from medgo.config import PrefsConfig
    from medgo.data.prefs import build_preferences

    out = tmp_path_factory.mktemp("prefs-data")
    build_preferences(str(samples_dir / "preference"), out, PrefsConfig())
    return out


def train_config(stage: str, model: Path | str, data: Path, out: Path, **kw) -> TrainConfig:
    values = dict(
        stage=stage,
        model_uri=str(model),
        data_uri=str(data),
        output_uri=str(out),
        max_steps=6,
        per_device_batch_size=2,
        gradient_accumulation_steps=1,
        learning_rate=5e-3,
        max_seq_len=128,
    )
    values.update(kw)
    return TrainConfig(**values)


@pytest.fixture(scope="session")
def sft_adapter(sample_model_dir, sft_dir, tmp_path_factory) -> Path:
    from medgo.train.launch import launch_local

    out = tmp_path_factory.mktemp("sft-out") / "adapter"
    launch_local(
        train_config("sft", sample_model_dir, sft_dir, out, export_merged=True),
        work_dir=out.parent / "sft-logs",
    )
    return out


#: The resume tests' run shape: 6 steps, a checkpoint every 2.
RESUME_STEPS, RESUME_SAVE_STEPS = 6, 2


def resume_config(
    stage, zero, out: Path, *, sample_model_dir, sft_adapter, sft_dir, prefs_dir, **kw
) -> TrainConfig:
    """SFT from the base or DPO from the SFT adapter, under ``zero``, checkpointing beside ``out``."""
    model, data = (sample_model_dir, sft_dir) if stage == "sft" else (sft_adapter, prefs_dir)
    return train_config(
        stage,
        model,
        data,
        out,
        max_steps=RESUME_STEPS,
        save_steps=RESUME_SAVE_STEPS,
        deepspeed=zero,
        checkpoint_uri=str(out.parent / f"{out.name}-checkpoints"),
        **kw,
    )


@pytest.fixture(scope="session")
def reference_run(sample_model_dir, sft_adapter, sft_dir, prefs_dir, tmp_path_factory):
    """``reference_run(stage, zero)``: the output of an uninterrupted 2-process run (computed once per session,
    shared by the resume tests and the ZeRO checks)."""
    from medgo.train.launch import launch_local

    done: dict[tuple[str, str], Path] = {}

    def get(stage: str, zero: str) -> Path:
        if (stage, zero) not in done:
            root = tmp_path_factory.mktemp(f"reference-{stage}-{zero}")
            cfg = resume_config(
                stage,
                zero,
                root / "out",
                sample_model_dir=sample_model_dir,
                sft_adapter=sft_adapter,
                sft_dir=sft_dir,
                prefs_dir=prefs_dir,
            )
            launch_local(cfg, nproc_per_node=2, work_dir=root / "logs")
            done[(stage, zero)] = root / "out"
        return done[(stage, zero)]

    return get


def training_processes(work_dir: Path) -> list[psutil.Process]:
    """This test's trainer processes: the nodes started for ``work_dir`` and everything below them."""
    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if any(str(work_dir) in part for part in proc.cmdline()):
                found.append(proc)
                found.extend(proc.children(recursive=True))
        except psutil.NoSuchProcess:
            continue
    return list({p.pid: p for p in found}.values())


def wait_for(condition, *, timeout_s: float, what: str, poll_s: float = 0.05) -> None:
    """Wait until ``condition()`` is true (it checks real state: a file, a process), failing after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(poll_s)


class Background(threading.Thread):
    """Run ``fn`` in a thread and keep its exception (a launcher the test kills from outside)."""

    def __init__(self, fn):
        super().__init__(daemon=True)
        self.fn, self.error = fn, None

    def run(self):
        try:
            self.fn()
        except BaseException as exc:  # noqa: BLE001 - inspected by the test
            self.error = exc
