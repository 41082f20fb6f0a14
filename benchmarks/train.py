"""Training benchmark (CPU): throughput and memory per model and distributed config, packing efficiency,
and the memory planner against DeepSpeed's own estimator.

* tokens/s and peak memory (sum of the trainer processes' resident memory) for continued pretraining of
  the tiny demo model and a ~50 M-parameter Qwen2 with the real 151,936-token vocabulary, each under DDP,
  ZeRO-2 and ZeRO-3 with 2 processes over gloo, in this same run (the machine may be shared: compare the
  configs with each other, not with other runs);
* packing efficiency (real tokens / total tokens) of medgo's packing against padded batches (one
  document per row), on the bundled corpus tokenised with the real Qwen2 tokenizer;
* the planner's full-fine-tuning model-state figures against ``estimate_zero{2,3}_model_states_mem_needs``
  for Qwen2-7B (1 × 8 GPUs) and Qwen2-72B (8 × 8), under ZeRO-2, ZeRO-3 and ZeRO-3 offload.

Goals: packing efficiency ≥ 0.99; planner within 0.10 of DeepSpeed. The last line is one JSON object.
Run: ``PYTHONPATH=src:. python benchmarks/train.py [--steps 6] [--steps-50m 3]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SEQ_LEN = 256


def _peak_rss_while(fn) -> tuple[float, object]:
    """Run ``fn`` and sample the resident memory of all this process's descendants; return (peak MiB, result)."""
    import psutil

    peak, done = [0.0], threading.Event()

    def sample():
        me = psutil.Process()
        while not done.is_set():
            total = 0
            for child in me.children(recursive=True):
                try:
                    total += child.memory_info().rss
                except psutil.NoSuchProcess:
                    continue
            peak[0] = max(peak[0], total / 2**20)
            done.wait(0.2)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        result = fn()
    finally:
        done.set()
        thread.join()
    return peak[0], result


def _pack(tokenizer_dir: Path, clean: Path, out: Path) -> dict:
    from medgo.config import PackConfig
    from medgo.data.pack import pack_corpus

    return pack_corpus(clean, str(tokenizer_dir), out, PackConfig(seq_len=SEQ_LEN))


def packing_figures(qwen2_dir: Path, samples: Path, work: Path) -> dict:
    """medgo's packing vs one padded row per document, same tokenizer, same documents: every text of the
    bundled samples (corpus, SFT sources, preference labels, eval sets; 20 characters or more) as one
    document each, so the short clinical Q&A texts that make padding expensive are in the mix."""
    from medgo.data.pack import iter_document_texts
    from medgo.modeling import load_tokenizer
    from medgo.modeling.tiny import iter_sample_texts
    from medgo.storage import write_jsonl
    from medgo.train.packing import padded_batch_efficiency

    texts = [t for t in iter_sample_texts(samples) if len(t) >= 20]
    clean = work / "all-texts"
    write_jsonl(clean / "clean" / "texts.jsonl", ({"id": str(i), "text": t} for i, t in enumerate(texts)))
    counts = _pack(qwen2_dir, clean, work / "packed-all-texts")
    tokenizer = load_tokenizer(str(qwen2_dir))
    lengths = [
        len(tokenizer(text, add_special_tokens=False)["input_ids"]) + 1
        for text in iter_document_texts(clean / "clean")
    ]
    return {
        "packing_efficiency": counts["packing_efficiency"],
        "padded_efficiency": round(padded_batch_efficiency(lengths, SEQ_LEN), 4),
        "documents": counts["documents"],
        "tokens": counts["tokens"],
        "seq_len": SEQ_LEN,
    }


def throughput(model_dir: Path, data: Path, work: Path, deepspeed: str, steps: int) -> dict:
    """Pretraining tokens/s (training loop only, from the trainer's own runtime) and peak memory."""
    from medgo.config import TrainConfig
    from medgo.train.launch import launch_local

    out = work / f"out-{model_dir.name}-{deepspeed}"
    cfg = TrainConfig(
        stage="pt",
        model_uri=str(model_dir),
        data_uri=str(data),
        output_uri=str(out),
        use_lora=False,
        learning_rate=1e-4,
        max_steps=steps,
        per_device_batch_size=2,
        gradient_accumulation_steps=1,
        deepspeed=deepspeed,
        logging_steps=1,
    )
    peak, _ = _peak_rss_while(lambda: launch_local(cfg, nproc_per_node=2, work_dir=work / f"logs-{out.name}"))
    rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    runtime = next(r["train_runtime"] for r in rows if "train_runtime" in r)
    tokens = steps * 2 * 2 * SEQ_LEN  # steps × processes × micro-batch × sequence
    return {
        "tokens_per_s": round(tokens / runtime, 1),
        "peak_rss_mib": round(peak),
        "train_runtime_s": round(runtime, 2),
    }


def planner_figures() -> dict:
    from medgo.train.plan import KNOWN_MODELS, ZERO_CONFIGS, deepspeed_model_states, model_states_bytes

    rows, worst = [], 0.0
    for name, nodes, gpus in (("qwen2-7b", 1, 8), ("qwen2-72b", 8, 8)):
        shape = KNOWN_MODELS[name]
        for ds in ZERO_CONFIGS:
            ours = sum(model_states_bytes(shape, ds, nodes * gpus, shape.total_params()))
            theirs = deepspeed_model_states(shape, ds, nodes, gpus)
            error = abs(ours - theirs) / theirs
            worst = max(worst, error)
            rows.append(
                {"model": name, "deepspeed": ds, "planner_gib": round(ours / 2**30, 2),
                 "deepspeed_gib": round(theirs / 2**30, 2), "rel_error": round(error, 4)}
            )  # fmt: skip
    return {"rows": rows, "max_rel_error": round(worst, 4)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--steps", type=int, default=6, help="optimizer steps per throughput run of the tiny model"
    )
    parser.add_argument(
        "--steps-50m", type=int, default=3, help="optimizer steps per throughput run of the ~50 M model"
    )
    args = parser.parse_args(argv)
    sys.path[:0] = [str(REPO / "src"), str(REPO)]
    from medgo.config import PrepareConfig
    from medgo.data.prepare import prepare_corpus
    from medgo.logs import setup_logging
    from medgo.modeling.qwen2 import build_qwen2_tokenizer, build_tiny_qwen2_model
    from medgo.modeling.tiny import build_tiny_model, iter_sample_texts

    setup_logging("WARNING")
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="medgo-bench-train-"))
    samples = REPO / "samples"
    tiny = build_tiny_model(work / "tiny", iter_sample_texts(samples))
    qwen2_50m = build_tiny_qwen2_model(
        work / "qwen2-50m", hidden_size=320, num_layers=4, num_heads=5, num_kv_heads=1,
        intermediate_size=864, tokenizer=build_qwen2_tokenizer(),
    )  # fmt: skip
    prepare_corpus(str(samples / "corpus"), work / "clean", PrepareConfig())
    packing = packing_figures(qwen2_50m, samples, work)
    print(f"packing: {json.dumps(packing)}", flush=True)
    data = {tiny: work / "packed-tiny", qwen2_50m: work / "packed-qwen2"}
    for model, out in data.items():
        _pack(model, work / "clean", out)

    from transformers import AutoConfig

    tokens_per_s, memory = {}, {}
    for model in (tiny, qwen2_50m):
        config = AutoConfig.from_pretrained(model)
        n_params = _count_params(config)
        key = f"{model.name}-{n_params / 1e6:.1f}M"
        tokens_per_s[key], memory[key] = {}, {}
        for ds in ("none", "zero2", "zero3"):
            steps = args.steps if model == tiny else args.steps_50m
            result = throughput(model, data[model], work, ds, steps)
            label = "ddp" if ds == "none" else ds
            tokens_per_s[key][label] = result["tokens_per_s"]
            memory[key][label] = result["peak_rss_mib"]
            print(f"{key} {label}: {json.dumps(result)}", flush=True)
    planner = planner_figures()
    for row in planner["rows"]:
        print(f"planner: {json.dumps(row)}", flush=True)
    summary = {
        "packing_efficiency": packing["packing_efficiency"],
        "padded_efficiency": packing["padded_efficiency"],
        "tokens_per_s": tokens_per_s,
        "peak_rss_mib": memory,
        "planner_max_rel_error": planner["max_rel_error"],
        "goals": {"packing_efficiency": 0.99, "planner_max_rel_error": 0.10},
        "seconds": round(time.monotonic() - started, 1),
    }
    print(json.dumps(summary))
    return 0


def _count_params(config) -> int:
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())


if __name__ == "__main__":
    sys.exit(main())
