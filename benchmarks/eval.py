"""MCQ scoring: option-letter log-likelihood vs generate-then-parse, same model, same items, same run.

Both modes are the evaluation stage's own code (``medgo.eval.tasks.mcq`` on a ``LocalBackend``):
log-likelihood scores a batch of questions with one padded forward pass and reads the option
letters' next-token log-probs; generate-then-parse decodes greedily (KV cache, batched) and
extracts the letter from the text, as OpenCompass's gen mode and endpoints without log-probs do.

The model is a small Qwen2 built offline (no hub access), first taught the answer format for a
few steps: after "答案：" it writes an option letter and "。" (a random letter per question, so it
learns the format, not the answers). It never learned to stop, so it goes on writing, as an
instruction model that explains its answer does: generation uses its whole budget,
``--max-new-tokens`` (default 256, lm-eval-harness's default generation budget). The same run
also times generation at the eval stage's own budget (``EvalConfig.max_new_tokens``), reported
under ``at_eval_default_budget``. Timings alternate between the modes batch by batch, so a
machine shared with other work slows both alike.

The last line printed is one JSON object with ``speedup_loglik_vs_generate`` (items/s ratio) and
``agreement`` (share of items where both modes chose the same letter set; an unparseable
generation counts as disagreement). Goal: speedup >= 10.

    python benchmarks/eval.py [--copies 4] [--max-new-tokens 256] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import json
import random
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
        default=256,
        help="generation budget per answer (default 256, lm-eval-harness's max_gen_toks)",
    )
    parser.add_argument("--batch-size", type=int, default=16, help="questions per batch, both modes")
    parser.add_argument("--hidden-size", type=int, default=128, help="model width")
    parser.add_argument("--layers", type=int, default=4, help="decoder layers")
    parser.add_argument(
        "--teach-steps", type=int, default=60, help="optimizer steps teaching the answer format"
    )
    return parser.parse_args()


def teach_answer_format(backend, task, items, steps: int, seed: int = 0) -> float:
    """A few AdamW steps so the model answers "答案：" with "<letter>。"; returns the last loss."""
    import torch

    rng = random.Random(seed)
    tokenizer, model = backend.tokenizer, backend.model
    stop = tokenizer("。", add_special_tokens=False)["input_ids"]
    rows = []
    for item in items:
        prompt = tokenizer.apply_chat_template(
            task.chat_for(item), tokenize=False, add_generation_prompt=True
        )
        letter = tokenizer(rng.choice(list(item.record["option"])), add_special_tokens=False)["input_ids"]
        rows.append((tokenizer(prompt, add_special_tokens=False)["input_ids"], letter + stop))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    loss_value = 0.0
    for _ in range(steps):
        batch = rng.sample(rows, min(8, len(rows)))
        sequences = [prompt + answer for prompt, answer in batch]
        longest = max(len(s) for s in sequences)
        pad = tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (longest - len(s)) + s for s in sequences])
        mask = torch.tensor([[0] * (longest - len(s)) + [1] * len(s) for s in sequences])
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        width = max(len(answer) for _, answer in batch)
        logits = model(
            input_ids=input_ids, attention_mask=mask, position_ids=positions, logits_to_keep=width + 1
        ).logits[:, :-1]
        targets = torch.tensor([answer[-width:] for _, answer in batch])
        loss = torch.nn.functional.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1)
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loss_value = float(loss.detach())
    model.eval()
    return loss_value


def agreement(loglik_predictions, generate_predictions) -> tuple[float, float | None, float]:
    """Share of items with the same letter set (unparseable = disagree), the same among parsed, parse rate."""
    by_loglik = {p["id"]: p["model_answer"] for p in loglik_predictions}
    by_generate = {p["id"]: p["model_answer"] for p in generate_predictions}
    parsed = [i for i in by_generate if by_generate[i] is not None]
    same = sum(1 for i in parsed if by_generate[i] == by_loglik[i])
    return same / len(by_loglik), (same / len(parsed) if parsed else None), len(parsed) / len(by_loglik)


def main() -> None:
    args = parse_args()
    import torch

    from medgo.config import EvalConfig
    from medgo.eval.backends import LocalBackend
    from medgo.eval.tasks import EvalItem, TaskContext, get_task
    from medgo.modeling.tiny import build_tiny_model, iter_sample_texts

    eval_default = EvalConfig().max_new_tokens
    budgets = {"headline": args.max_new_tokens, "eval_default": eval_default}
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
            init_std=0.16,
        )
        backend = LocalBackend(str(model_dir), batch_size=args.batch_size)
        final_loss = teach_answer_format(backend, task, questions, args.teach_steps)
        params = sum(p.numel() for p in backend.model.parameters())
        loglik = task.configure(TaskContext(data_dir=SAMPLES, mcq_mode="loglik"))
        generate = task.configure(TaskContext(data_dir=SAMPLES, mcq_mode="generate"))
        warmup = items[: args.batch_size]
        loglik.evaluate(backend, warmup, max_new_tokens=1)
        generate.evaluate(backend, warmup, max_new_tokens=4)

        seconds = {"loglik": 0.0, **{name: 0.0 for name in budgets}}
        predictions: dict[str, list] = {"loglik": [], **{name: [] for name in budgets}}
        correct = {"loglik": 0.0, "headline": 0.0}
        for start in range(0, len(items), args.batch_size):
            chunk = items[start : start + args.batch_size]
            runs = [("loglik", loglik, 1)] + [(name, generate, budget) for name, budget in budgets.items()]
            for name, mode_task, budget in runs:
                started = time.perf_counter()
                result = mode_task.evaluate(backend, chunk, max_new_tokens=budget)
                seconds[name] += time.perf_counter() - started
                predictions[name] += result.predictions
                if name in correct:
                    correct[name] += result.value * len(chunk)

    agree, agree_parsed, parse_rate = agreement(predictions["loglik"], predictions["headline"])
    short_agree, _, short_parse_rate = agreement(predictions["loglik"], predictions["eval_default"])
    n = len(items)
    figures = {
        "items": n,
        "model": {"hidden_size": args.hidden_size, "layers": args.layers, "params": params},
        "batch_size": args.batch_size,
        "max_new_tokens": args.max_new_tokens,
        "format_training_loss": round(final_loss, 4),
        "torch_threads": torch.get_num_threads(),
        "loglik_seconds": round(seconds["loglik"], 3),
        "generate_seconds": round(seconds["headline"], 3),
        "loglik_items_per_s": round(n / seconds["loglik"], 2),
        "generate_items_per_s": round(n / seconds["headline"], 2),
        "speedup_loglik_vs_generate": round(seconds["headline"] / seconds["loglik"], 2),
        "agreement": round(agree, 4),
        "agreement_where_generation_parsed": round(agree_parsed, 4) if agree_parsed is not None else None,
        "generate_parse_rate": round(parse_rate, 4),
        "at_eval_default_budget": {
            "max_new_tokens": eval_default,
            "generate_items_per_s": round(n / seconds["eval_default"], 2),
            "speedup_loglik_vs_generate": round(seconds["eval_default"] / seconds["loglik"], 2),
            "agreement": round(short_agree, 4),
            "generate_parse_rate": round(short_parse_rate, 4),
        },
        "accuracy_loglik": round(correct["loglik"] / n, 4),
        "accuracy_generate": round(correct["headline"] / n, 4),
        "goal_speedup": 10,
    }
    print(
        f"log-likelihood: {figures['loglik_items_per_s']} items/s; generate-then-parse "
        f"({args.max_new_tokens} new tokens): {figures['generate_items_per_s']} items/s, "
        f"speedup {figures['speedup_loglik_vs_generate']}x, agreement {figures['agreement']}; "
        f"at {eval_default} new tokens: {figures['at_eval_default_budget']['speedup_loglik_vs_generate']}x"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
