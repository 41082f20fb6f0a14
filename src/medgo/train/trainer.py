"""The one trainer entry for the three stages, always run under torchrun.

``python -m torch.distributed.run … -m medgo.train --config train.yaml [--set key=value …]``

* ``pt``  – causal LM on packed token shards (full fine-tuning or LoRA) with ``transformers.Trainer``.
* ``sft`` – TRL ``SFTTrainer`` with LoRA, loss on assistant tokens only, located from the rendered
  chat template itself (:mod:`medgo.train.sft_tokens`), so Qwen2's stock template works.
* ``dpo`` – TRL ``DPOTrainer`` with LoRA; the reference is the adapter-disabled model (no copy).

Packed pretraining keeps documents apart on every attention backend (:mod:`medgo.train.packing`).
With ``save_steps`` the run checkpoints periodically to shared storage and a restart with the same
config resumes from the newest complete checkpoint (:mod:`medgo.train.checkpoint`).

Outputs (rank 0): a loadable model directory — a LoRA adapter whose ``base_model_name_or_path``
is the base model's URI, or a full model — with the tokenizer, ``train_log.jsonl``, a model card
``README.md``, optionally ``merged/`` and ``manifest.json``. It is written to a staging directory and
committed to ``output_uri`` (path or ``s3://``) only after every rank passed the final barrier; under
the local launcher (``MEDGO_TRAIN_STAGING`` set) the launcher commits it once every node exited 0.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from medgo.config import TrainConfig, load_config
from medgo.data.io import Quarantined, iter_records
from medgo.errors import InputError, MedgoError
from medgo.logs import fields, setup_logging
from medgo.modeling.loading import (
    ADAPTER_CONFIG,
    adapter_base_model,
    is_adapter_dir,
    load_model,
    load_tokenizer,
    resolve_attn_implementation,
)
from medgo.storage import is_s3, localize, localize_artifact, write_manifest
from medgo.train.checkpoint import (
    CheckpointStore,
    check_writable,
    checkpoint_root_uri,
    resume_step,
    run_fingerprint,
)
from medgo.train.distributed import STAGING_ENV, barrier, die_with_parent, is_main_process, local_rank
from medgo.train.export import MERGED_DIR, commit_artifact, export_merged, write_model_card
from medgo.train.packing import PackedCollator, layout_for_backend
from medgo.train.sft_tokens import tokenize_conversation

log = logging.getLogger(__name__)


def deepspeed_config_path(preset: str) -> str | None:
    """Path of a shipped DeepSpeed config (``zero2``, ``zero3``, ``zero3_offload``) or None."""
    if preset == "none":
        return None
    return str(resources.files("medgo.train") / "deepspeed" / f"{preset}.json")


def training_arguments(cfg: TrainConfig, output_dir: str) -> dict:
    """The ``TrainingArguments`` (and TRL config) fields every stage shares.

    Checkpoints go to ``output_dir`` every ``save_steps``; medgo rotates them itself (a checkpoint
    counts only once its marker is written, so HF's own rotation, which does not know markers, is off).
    """
    import torch

    use_cpu = cfg.use_cpu or not torch.cuda.is_available()
    if cfg.bf16 and use_cpu:
        raise MedgoError("bf16=true needs a GPU; set bf16=false for CPU runs")
    if cfg.load_dtype == "bfloat16" and use_cpu:
        raise MedgoError("load_dtype=bfloat16 is for GPUs; CPU runs load float32 weights")
    return dict(
        output_dir=output_dir,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_ratio,  # transformers 5: a float < 1 is a ratio of total steps
        num_train_epochs=cfg.num_epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.per_device_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        activation_checkpointing=cfg.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False} if cfg.gradient_checkpointing else None,
        bf16=cfg.bf16,
        use_cpu=use_cpu,
        seed=cfg.seed,
        data_seed=cfg.seed,
        logging_steps=cfg.logging_steps,
        save_strategy="steps" if cfg.save_steps else "no",
        save_steps=cfg.save_steps or 500,
        save_total_limit=None,
        report_to=[],
        deepspeed=deepspeed_config_path(cfg.deepspeed),
        disable_tqdm=not sys.stderr.isatty(),
        remove_unused_columns=False,
        ddp_find_unused_parameters=False if cfg.use_lora else None,
    )


def _load_dtype(cfg: TrainConfig):
    import torch

    return torch.bfloat16 if cfg.load_dtype == "bfloat16" else torch.float32


@dataclass
class RunState:
    """Where this run checkpoints, what it must match to resume, and where it resumes from."""

    store: CheckpointStore
    fingerprint: dict
    resume_dir: Path | None


def prepare_run(cfg: TrainConfig, args) -> RunState:
    """Checks that need the process group, before any weight is loaded: the output and checkpoint
    locations are writable, and a checkpoint to resume from was written by this same config."""
    store = CheckpointStore(checkpoint_root_uri(cfg))
    if is_s3(cfg.output_uri):
        check_writable(CheckpointStore(str(cfg.output_uri)))
    if cfg.save_steps:
        check_writable(store)
    fingerprint = run_fingerprint(cfg, args.world_size)
    step = resume_step(store, fingerprint)
    barrier()  # every rank has read the markers before rank 0 removes anything
    if is_main_process():
        store.remove_incomplete()
    barrier()
    resume_dir = store.local_checkpoint(step) if step is not None else None
    if resume_dir is not None:
        log.info("resuming", extra=fields(step=step, checkpoint=str(resume_dir)))
    return RunState(store, fingerprint, resume_dir)


def checkpoint_callback(run_state: RunState, keep: int):
    """A ``TrainerCallback`` that completes each checkpoint: barrier (every rank saved), upload (S3, one
    rank per node), barrier, marker and rotation by rank 0."""
    from transformers import TrainerCallback

    class CompleteCheckpoints(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            step = state.global_step
            barrier()
            if run_state.store.remote and local_rank() == 0:
                run_state.store.upload(step)
            barrier()
            if is_main_process():
                run_state.store.mark_complete(
                    step, run_state.fingerprint, {"world_size": args.world_size, "epoch": state.epoch}
                )
                run_state.store.rotate(keep)
            barrier()
            return control

    return CompleteCheckpoints()


def _init_zero3(cfg: TrainConfig, use_cpu: bool) -> None:
    """ZeRO-3 must initialise the process group before ``from_pretrained`` so weights load sharded."""
    if cfg.deepspeed.startswith("zero3"):
        import deepspeed

        deepspeed.init_distributed(dist_backend="gloo" if use_cpu else "nccl")


def _lora_config(cfg: TrainConfig, task_type: str = "CAUSAL_LM"):
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules=cfg.lora.target_modules,
        task_type=task_type,
    )


def _read_jsonl_dataset(data_uri: str, what: str):
    """The ``train*.jsonl`` records of a data-stage artifact; an unreadable line is an error, not a skip
    (the data stage already quarantined what it could not use)."""
    from datasets import Dataset

    root = localize_artifact(data_uri, what=what)
    files = sorted(root.glob("train*.jsonl")) if root.is_dir() else [root]
    if not files:
        raise InputError(f"{what} at {data_uri} has no train*.jsonl")
    rows = []
    for path in files:
        for item in iter_records(path, what=what):
            if isinstance(item, Quarantined):
                raise InputError(f"unusable line ({item.reason})", source=str(path), line=item.line)
            rows.append(item.data)
    if not rows:
        raise InputError(f"{what} at {data_uri} is empty")
    return Dataset.from_list(rows)


def _load_token_shards(data_uri: str):
    from datasets import load_dataset

    root = localize_artifact(data_uri, what="packed token shards")
    files = sorted(str(p) for p in root.glob("tokens-*.parquet"))
    if not files:
        raise InputError(f"packed token shards at {data_uri}: no tokens-*.parquet files")
    ds = load_dataset("parquet", data_files=files, split="train")
    if len(ds) == 0:
        raise InputError(f"packed token shards at {data_uri} hold no sequences")
    return ds


def build_pt_trainer(cfg: TrainConfig, out: str):
    """A ``transformers.Trainer`` for continued pretraining on packed token shards, documents kept apart."""
    from transformers import Trainer, TrainingArguments

    args = TrainingArguments(**training_arguments(cfg, out))
    _init_zero3(cfg, args.use_cpu)
    dataset = _load_token_shards(cfg.data_uri)
    attn = resolve_attn_implementation(cfg.attn_implementation)
    layout = layout_for_backend(attn)
    run_state = prepare_run(cfg, args)
    tokenizer = load_tokenizer(cfg.model_uri)
    model = load_model(cfg.model_uri, attn_implementation=attn, dtype=_load_dtype(cfg))
    if cfg.use_lora:
        from peft import get_peft_model

        model = get_peft_model(model, _lora_config(cfg))
    log.info("packed batches", extra=fields(backend=attn, layout=layout))
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=PackedCollator(layout),
        processing_class=tokenizer,
    )
    return trainer, run_state, {}


def sft_dataset(cfg: TrainConfig, tokenizer):
    """Tokenised SFT conversations with labels on assistant tokens only, and their token counts."""
    from datasets import Dataset

    records = _read_jsonl_dataset(cfg.data_uri, "SFT data")
    rows, input_tokens, loss_tokens, without_answer = [], 0, 0, 0
    for i, record in enumerate(records):
        messages = record.get("messages")
        if not isinstance(messages, list) or not messages:
            raise InputError("SFT record has no messages", source=cfg.data_uri, line=i + 1, field="messages")
        example = tokenize_conversation(tokenizer, messages, cfg.max_seq_len)
        if example.trained_tokens == 0:
            without_answer += 1  # the answer lies beyond max_seq_len: nothing to learn from it
            continue
        rows.append({"input_ids": example.input_ids, "labels": example.labels})
        input_tokens += len(example.input_ids)
        loss_tokens += example.trained_tokens
    if not rows:
        raise InputError(f"SFT data at {cfg.data_uri}: no conversation has an answer within max_seq_len")
    counts = {
        "sft_records": len(rows),
        "sft_records_answer_beyond_max_seq_len": without_answer,
        "input_tokens": input_tokens,
        "loss_tokens": loss_tokens,
    }
    log.info("SFT data tokenised", extra=fields(**counts))
    return Dataset.from_list(rows), counts


def build_sft_trainer(cfg: TrainConfig, out: str):
    """A TRL ``SFTTrainer`` for LoRA SFT with the loss on assistant tokens only, for any prefix-preserving
    chat template (Qwen2's stock one has no generation markers, so TRL's own masking cannot be used)."""
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(
        **training_arguments(cfg, out),
        max_length=cfg.max_seq_len,
        assistant_only_loss=False,
        completion_only_loss=False,
        packing=False,
        dataset_kwargs={"skip_prepare_dataset": True},
    )
    _init_zero3(cfg, args.use_cpu)
    tokenizer = load_tokenizer(cfg.model_uri, require_chat_template=True)
    dataset, counts = sft_dataset(cfg, tokenizer)
    resolve_attn_implementation(cfg.attn_implementation)
    run_state = prepare_run(cfg, args)
    model = load_model(cfg.model_uri, attn_implementation=cfg.attn_implementation, dtype=_load_dtype(cfg))
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=_lora_config(cfg),
    )
    return trainer, run_state, counts


def build_dpo_trainer(cfg: TrainConfig, out: str):
    """DPO with LoRA. Starting from the SFT adapter (``model_uri`` is its directory), TRL keeps training
    that adapter and makes a frozen copy of it the reference: the reference is the SFT policy, held as a
    second small adapter on the same base weights rather than a second model. Works under ZeRO-3
    because nothing is merged into sharded weights. From a plain model, a fresh adapter is trained and
    the adapter-disabled model is the reference. Prompts and answers go through the tokenizer's own
    chat template (Qwen2's stock one for a real base)."""
    from peft import PeftModel
    from trl import DPOConfig, DPOTrainer

    args = DPOConfig(
        **training_arguments(cfg, out),
        max_length=cfg.max_seq_len,
        beta=cfg.dpo_beta,
        loss_type=[cfg.dpo_loss_type],
    )
    _init_zero3(cfg, args.use_cpu)
    dataset = _read_jsonl_dataset(cfg.data_uri, "preference data").select_columns(
        ["prompt", "chosen", "rejected"]
    )
    tokenizer = load_tokenizer(cfg.model_uri, require_chat_template=True)
    resolve_attn_implementation(cfg.attn_implementation)
    run_state = prepare_run(cfg, args)
    model = load_model(
        cfg.model_uri,
        adapter_uri=cfg.adapter_uri,
        attn_implementation=cfg.attn_implementation,
        trainable_adapter=True,
        dtype=_load_dtype(cfg),
    )
    continues_adapter = isinstance(model, PeftModel)
    trainer = DPOTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=None if continues_adapter else _lora_config(cfg),
    )
    return trainer, run_state, {"preference_pairs": len(dataset)}


TRAINER_BUILDERS = {"pt": build_pt_trainer, "sft": build_sft_trainer, "dpo": build_dpo_trainer}


def base_model_uri(cfg: TrainConfig) -> str:
    """The URI of the full model the trained adapter applies to.

    ``model_uri`` itself, unless it is an adapter directory (DPO continuing the SFT adapter), whose
    recorded base is then the base of the new adapter too.
    """
    if cfg.adapter_uri is None:
        model_dir = localize(cfg.model_uri, what="model")
        if is_adapter_dir(model_dir):
            return adapter_base_model(model_dir)
    return cfg.model_uri


def _save(trainer, cfg: TrainConfig, out: Path, data_counts: dict) -> dict:
    """Save a loadable model directory, model card and manifest (call on every rank: ZeRO-3 gathers)."""
    trainer.save_model(str(out))
    history = [h for h in trainer.state.log_history if "loss" in h]
    if not is_main_process():
        return {}
    shutil.rmtree(out / "ref", ignore_errors=True)  # DPO's frozen reference copy is not part of the result
    trainer.processing_class.save_pretrained(out)
    adapter_cfg = out / ADAPTER_CONFIG
    base = base_model_uri(cfg)
    if adapter_cfg.exists():
        data = json.loads(adapter_cfg.read_text())
        data["base_model_name_or_path"] = base  # a URI, not this node's download cache
        adapter_cfg.write_text(json.dumps(data, indent=2))
    with open(out / "train_log.jsonl", "w", encoding="utf-8") as fh:
        for h in trainer.state.log_history:
            fh.write(json.dumps(h) + "\n")
    for junk in out.glob("training_args.bin"):
        junk.unlink()
    counts = {
        "steps": trainer.state.global_step,
        "final_loss": history[-1]["loss"] if history else None,
        "first_loss": history[0]["loss"] if history else None,
        "kind": "lora_adapter" if adapter_cfg.exists() else "full",
        **data_counts,
    }
    if cfg.export_merged and adapter_cfg.exists():
        export_merged(out, base, out / MERGED_DIR)
        counts["merged"] = MERGED_DIR
    inputs = {"data": cfg.data_uri, "model": cfg.model_uri}
    if cfg.adapter_uri:
        inputs["adapter"] = cfg.adapter_uri
    write_model_card(
        out,
        stage=cfg.stage,
        base_model=base,
        inputs=inputs,
        config=cfg.model_dump(mode="json"),
        metrics=counts,
    )
    write_manifest(out, stage=f"train.{cfg.stage}", counts=counts, config=cfg, inputs=inputs)
    return counts


def result_staging_dir(cfg: TrainConfig) -> Path:
    """Where rank 0 writes the result before it is committed: the launcher's staging directory, a
    hidden sibling of a local output (same filesystem, so the commit is a rename), or a local temp dir
    for ``s3://``. The same path on every rank."""
    if os.environ.get(STAGING_ENV):
        return Path(os.environ[STAGING_ENV])
    if is_s3(cfg.output_uri):
        key = hashlib.sha256(str(cfg.output_uri).encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"medgo-result-{key}"
    out = Path(cfg.output_uri)
    return out.parent / f".{out.name}.partial"


def run(cfg: TrainConfig) -> dict:
    """Train one stage (resuming from the newest complete checkpoint) and commit the result.

    Nothing reaches ``output_uri`` unless every rank got through training and saving: rank 0 commits
    only after a final barrier, and under the local launcher the launcher commits after checking every
    node's exit code. The checkpoints are removed once the result is committed.
    """
    import torch

    die_with_parent()  # a worker whose torchrun was killed must not train on and publish
    torch.manual_seed(cfg.seed)
    staging = result_staging_dir(cfg)
    launcher_commits = bool(os.environ.get(STAGING_ENV))
    log.info(
        "training",
        extra=fields(
            stage=cfg.stage,
            deepspeed=cfg.deepspeed,
            lora=cfg.use_lora,
            world_size=os.environ.get("WORLD_SIZE", "1"),
        ),
    )
    store = CheckpointStore(checkpoint_root_uri(cfg))
    trainer, run_state, data_counts = TRAINER_BUILDERS[cfg.stage](cfg, str(store.local_root))
    if cfg.save_steps:
        trainer.add_callback(checkpoint_callback(run_state, cfg.save_total_limit))
    resume = str(run_state.resume_dir) if run_state.resume_dir else None
    trainer.train(resume_from_checkpoint=resume)
    if is_main_process():
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True, exist_ok=True)
    barrier()
    resumed_from = int(Path(resume).name.rsplit("-", 1)[-1]) if resume else 0
    counts = _save(trainer, cfg, staging, {**data_counts, "resumed_from_step": resumed_from})
    barrier()  # every rank trained and saved: only now may the result count
    if is_main_process():
        if not launcher_commits:
            commit_artifact(staging, str(cfg.output_uri))
            store.delete_all()
        log.info("saved", extra=fields(stage=cfg.stage, output=cfg.output_uri, resumed=bool(resume)))
    return counts


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m medgo.train",
        description="medgo trainer (pt | sft | dpo). Start it under torchrun; see medgo.train.launch.",
    )
    parser.add_argument("--config", help="TrainConfig YAML file")
    parser.add_argument("--stage", choices=sorted(TRAINER_BUILDERS), help="overrides the config's stage")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field (dotted keys reach nested fields, e.g. lora.r=8); repeatable",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    args = parse_args(argv)
    try:
        cfg = load_config(TrainConfig, args.config, args.overrides, stage=args.stage)
        run(cfg)
    except MedgoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
