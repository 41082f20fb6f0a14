"""MCQ scoring: option-letter log-likelihood vs generate-then-parse, same model, same items, same run.

Both modes are the evaluation stage's own code (``medgo.eval.tasks.mcq`` on a
``LocalBackend``): log-likelihood scores a batch of questions with one padded forward pass and
reads the option letters' next-token log-probs; generate-then-parse decodes up to
``--max-new-tokens`` (default: the eval stage's own ``EvalConfig.max_new_tokens``) greedily (KV
cache, batched) and extracts the letter from the text, as OpenCompass's gen mode and endpoints
without log-probs do.

The model is a small Qwen2 built offline (no hub access), first taught the answer format for a
few steps: after "答案：" it writes an option letter (a random one, so it learns the format, not
the answers) and then keeps writing, as an instruction model that explains its answer does, so
generation uses its budget and the letter it writes first can be compared with the letter the
log-likelihood picks.

The last line printed is one JSON object with ``speedup_loglik_vs_generate`` (items/s ratio) and
``agreement`` (share of items where both modes chose the same letter set; an unparseable
generation counts as disagreement). Goal: speedup >= 10.

    python benchmarks/eval.py [--copies 8] [--max-new-tokens 48] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples" / "eval"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--copies", type=int, default=8, help="copies of the sample CMB questions (distinct ids)"
    )
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        default=None,
        help="generation budget per answer (default: EvalConfig's)",
    )
    parser.add_argument("--batch-size", type=int, default=16, help="questions per batch, both modes")
    parser.add_argument("--hidden-size", type=int, default=256, help="model width")
    parser.add_argument("--layers", type=int, default=4, help="decoder layers")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per mode (the best is kept)")
    parser.add_argument(
        "--teach-steps", type=int, default=120, help="optimizer steps teaching the answer format"
    )
    return parser.parse_args()


def teach_answer_format(backend, task, items, steps: int, seed: int = 0) -> float:
    """A few AdamW steps so the model answers "答案：" with an option letter; returns the last loss.

    Targets are random letters among each question's options: the model learns the format only.
    """
    import random

    import torch

    rng = random.Random(seed)
    tokenizer, model = backend.tokenizer, backend.model
    rows = []
    for item in items:
        prompt = tokenizer.apply_chat_template(
            task.chat_for(item), tokenize=False, add_generation_prompt=True
        )
        letter = rng.choice(list(item.record["option"]))
        ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        rows.append((ids, tokenizer(letter, add_special_tokens=False)["input_ids"][0]))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    loss = torch.tensor(0.0)
    for _ in range(steps):
        batch = rng.sample(rows, min(16, len(rows)))
        longest = max(len(ids) for ids, _ in batch)
        pad = tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (longest - len(ids)) + ids for ids, _ in batch])
        mask = torch.tensor([[0] * (longest - len(ids)) + [1] * len(ids) for ids, _ in batch])
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        logits = model(
            input_ids=input_ids, attention_mask=mask, position_ids=positions, logits_to_keep=1
        ).logits
        loss = torch.nn.functional.cross_entropy(logits[:, -1].float(), torch.tensor([t for _, t in batch]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    return float(loss)


def main() -> None:
    args = parse_args()
    import torch

    from medgo.config import EvalConfig
    from medgo.eval.backends import LocalBackend
    from medgo.eval.tasks import EvalItem, TaskContext, get_task
    from medgo.modeling.tiny import build_tiny_model, iter_sample_texts

    max_new_tokens = args.max_new_tokens or EvalConfig().max_new_tokens
    task = get_task("mcq")
    questions = [item for item in task.load(SAMPLES) if not item.record["multi_format"]]
    items = [EvalItem(f"{item.id}#{copy}", item.record) for copy in range(args.copies) for item in questions]
    with tempfile.TemporaryDirectory(prefix="medgo-bench-eval-") as tmp:
        model_dir = build_tiny_model(
            Path(tmp) / "model",
            list(iter_sample_texts(REPO / "samples")),
            hidden_size=args.hidden_size,
            num_layers=args.layers,
            num_heads=4,
            num_kv_heads=2,
            intermediate_size=args.hidden_size * 3,
            init_std=0.02 * 8,
        )
        backend = LocalBackend(str(model_dir), batch_size=args.batch_size)
        final_loss = teach_answer_format(backend, task, questions, args.teach_steps)
        loglik = task.configure(TaskContext(data_dir=SAMPLES, mcq_mode="loglik"))
        generate = task.configure(TaskContext(data_dir=SAMPLES, mcq_mode="generate"))
        warmup = items[: args.batch_size]
        loglik.evaluate(backend, warmup, max_new_tokens=max_new_tokens)
        generate.evaluate(backend, warmup, max_new_tokens=max_new_tokens)

        def timed(mode_task):
            best, result = float("inf"), None
            for _ in range(args.repeats):
                started = time.perf_counter()
                result = mode_task.evaluate(backend, items, max_new_tokens=max_new_tokens)
                best = min(best, time.perf_counter() - started)
            return best, result

        loglik_s, loglik_result = timed(loglik)
        generate_s, generate_result = timed(generate)

    by_loglik = {p["id"]: p["model_answer"] for p in loglik_result.predictions}
    by_generate = {p["id"]: p["model_answer"] for p in generate_result.predictions}
    agree = sum(1 for i in by_loglik if by_generate[i] is not None and by_generate[i] == by_loglik[i])
    parsed = [i for i in by_generate if by_generate[i] is not None]
    figures = {
        "items": len(items),
        "model": {"hidden_size": args.hidden_size, "layers": args.layers, "params": None},
        "batch_size": args.batch_size,
        "max_new_tokens": max_new_tokens,
        "format_training_loss": round(final_loss, 4),
        "torch_threads": torch.get_num_threads(),
        "loglik_seconds": round(loglik_s, 3),
        "generate_seconds": round(generate_s, 3),
        "loglik_items_per_s": round(len(items) / loglik_s, 2),
        "generate_items_per_s": round(len(items) / generate_s, 2),
        "speedup_loglik_vs_generate": round(generate_s / loglik_s, 2),
        "agreement": round(agree / len(items), 4),
        "agreement_where_generation_parsed": round(
            sum(1 for i in parsed if by_generate[i] == by_loglik[i]) / len(parsed), 4
        )
        if parsed
        else None,
        "generate_parse_rate": round(len(parsed) / len(items), 4),
        "accuracy_loglik": round(loglik_result.value, 4),
        "accuracy_generate": round(generate_result.value, 4),
        "goal_speedup": 10,
    }
    figures["model"]["params"] = sum(p.numel() for p in backend.model.parameters())
    print(
        f"log-likelihood: {figures['loglik_items_per_s']} items/s; generate-then-parse "
        f"({max_new_tokens} new tokens): {figures['generate_items_per_s']} items/s; "
        f"speedup {figures['speedup_loglik_vs_generate']}x; agreement {figures['agreement']}"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
