"""Serving throughput and latency: the medgo model server against a plain ``model.generate`` loop.

Same model, same prompts, same answers (greedy, every answer exactly ``--tokens`` tokens long via
``min_tokens``), same CPU thread count, in one run:

* **peer**: one ``model.generate`` call per request, one request after another (what a server
  without batching does), measured right before each server level (and, at concurrency 1,
  alternating with the server request by request), so both see the same machine load;
* **server**: ``python -m medgo.serve`` on 127.0.0.1, driven over HTTP (OpenAI chat route) by
  1, 4 and 16 concurrent closed-loop clients.

Figures: tokens/s and per-request latency (mean, p50, p95) per concurrency level. The last line
is one JSON object with ``overhead_c1`` (the median over request pairs of server latency at
concurrency 1 over the plain call's, minus 1: HTTP, tokenisation and scheduling cost) and ``throughput_gain_c16`` (server tokens/s at
concurrency 16 over the plain loop's). Goals: ``overhead_c1`` <= 0.10, ``throughput_gain_c16`` >= 2.
The machine's load average is part of the output: on a shared machine the figures move with it.

    python benchmarks/serve.py [--tokens 64] [--hidden 384] [--layers 6] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

QUESTIONS = [
    "高血压患者日常生活中需要注意什么？",
    "糖尿病患者如何控制血糖？",
    "发热伴咳嗽三天应该做哪些检查？",
    "头痛、恶心、呕吐时什么情况需要立即就医？",
    "老年人骨质疏松如何预防？",
    "儿童腹泻脱水的表现有哪些？",
    "服用华法林需要注意哪些饮食禁忌？",
    "胸痛伴出汗可能是什么原因？",
]
CONCURRENCY = (1, 4, 16)


def build_model(out: Path, hidden: int, layers: int) -> Path:
    """A random Qwen2-architecture model with the bundled sample text's tokenizer (a few seconds)."""
    from medgo.modeling.tiny import build_tiny_model, iter_sample_texts

    repo = Path(__file__).resolve().parents[1]
    texts = list(iter_sample_texts(repo / "samples")) or QUESTIONS * 50
    return build_tiny_model(
        out,
        texts,
        hidden_size=hidden,
        num_layers=layers,
        num_heads=max(1, hidden // 64),
        num_kv_heads=max(1, hidden // 128),
        intermediate_size=hidden * 4,
        vocab_size=8000,
    )


def plain_generator(model_dir: Path, tokens: int, threads: int):
    """The peer: a function running one ``model.generate`` call on prompt ``i`` (formatted as the server does)."""
    import torch

    from medgo.config import DEFAULT_SYSTEM_PROMPT
    from medgo.modeling import load_for_inference

    torch.set_num_threads(threads)
    model, tokenizer = load_for_inference(str(model_dir))
    prompts = []
    for question in QUESTIONS:
        turns = [{"role": "system", "content": DEFAULT_SYSTEM_PROMPT}, {"role": "user", "content": question}]
        text = tokenizer.apply_chat_template(turns, add_generation_prompt=True, tokenize=False)
        prompts.append(torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]]))

    def generate(i: int) -> tuple[float, int]:
        ids = prompts[i % len(prompts)]
        started = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=tokens,
                min_new_tokens=tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )
        return time.perf_counter() - started, out.shape[1] - ids.shape[1]

    generate(0)  # warm-up
    return generate


def plain_loop(generate, requests: int, offset: int = 0) -> dict:
    """``requests`` sequential generate calls: the plain loop's tokens/s and latency."""
    latencies, generated = [], 0
    started = time.perf_counter()
    for i in range(requests):
        seconds, tokens = generate(offset + i)
        latencies.append(seconds)
        generated += tokens
    return {
        "tokens_per_s": generated / (time.perf_counter() - started),
        **_latency(latencies),
        "requests": requests,
    }


def paired_concurrency_1(url: str, generate, requests: int, tokens: int) -> tuple[dict, dict, float]:
    """Alternate one plain call and one server request on the same prompt, so both see the same load.

    Returns the plain and server figures and the median of the per-pair latency ratios minus 1
    (the median: on a shared machine single pairs catch another process's burst).
    """
    import httpx

    plain, served = [], []
    with httpx.Client(base_url=url, timeout=600) as http:
        for i in range(requests):
            plain_s, _ = generate(i)
            started = time.perf_counter()
            response = http.post("/openai/v1/chat/completions", json=_chat_body(i, tokens))
            served.append(time.perf_counter() - started)
            if response.status_code != 200:
                raise SystemExit(f"server refused a request: HTTP {response.status_code}")
            plain.append(plain_s)
    ratios = [s / p for s, p in zip(served, plain, strict=True)]
    return (
        {"tokens_per_s": tokens * requests / sum(plain), **_latency(plain), "requests": requests},
        {"tokens_per_s": tokens * requests / sum(served), **_latency(served), "requests": requests},
        statistics.median(ratios) - 1,
    )


def _chat_body(i: int, tokens: int) -> dict:
    return {
        "model": "medgo",
        "messages": [{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}],
        "max_tokens": tokens,
        "min_tokens": tokens,
        "temperature": 0,
    }


def drive_server(url: str, concurrency: int, requests: int, tokens: int, offset: int = 0) -> dict:
    """``concurrency`` closed-loop clients share ``requests`` chat requests; tokens/s over the wall time."""
    import httpx

    counter = iter(range(offset, offset + requests))
    lock = threading.Lock()
    latencies, generated, errors = [], [0], []

    def client() -> None:
        with httpx.Client(base_url=url, timeout=600) as http:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                body = _chat_body(i, tokens)
                t = time.perf_counter()
                response = http.post("/openai/v1/chat/completions", json=body)
                elapsed = time.perf_counter() - t
                with lock:
                    if response.status_code != 200:
                        errors.append(response.status_code)
                        continue
                    latencies.append(elapsed)
                    generated[0] += response.json()["usage"]["completion_tokens"]

    workers = [threading.Thread(target=client) for _ in range(concurrency)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    wall = time.perf_counter() - started
    if errors:
        raise SystemExit(f"server refused {len(errors)} requests at concurrency {concurrency}: {errors[:5]}")
    return {"tokens_per_s": generated[0] / wall, **_latency(latencies), "requests": requests}


def _latency(seconds: list[float]) -> dict:
    ordered = sorted(seconds)
    return {
        "latency_mean_s": statistics.fmean(ordered),
        "latency_p50_s": ordered[len(ordered) // 2],
        "latency_p95_s": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--tokens", type=int, default=64, help="tokens per answer (every answer is this long)"
    )
    parser.add_argument("--hidden", type=int, default=384, help="hidden size of the benchmark model")
    parser.add_argument("--layers", type=int, default=6, help="decoder layers of the benchmark model")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads of the peer and the server (1 suits a shared machine)",
    )
    parser.add_argument("--requests_per_client", type=int, default=3, help="requests per client per level")
    parser.add_argument(
        "--model_dir", type=Path, default=None, help="serve this model instead of building one"
    )
    args = parser.parse_args()

    from medgo.serve.local import serve_locally

    with tempfile.TemporaryDirectory(prefix="medgo-bench-serve-") as tmp:
        model_dir = args.model_dir or build_model(Path(tmp) / "model", args.hidden, args.layers)
        generate = plain_generator(model_dir, args.tokens, args.threads)
        peer: dict[int, dict] = {}
        server: dict[int, dict] = {}
        with serve_locally(
            model_dir,
            max_new_tokens=args.tokens,
            log_path=Path(tmp) / "server.log",
            extra_args=[
                "--torch_threads",
                str(args.threads),
                "--max_batch_size",
                str(max(CONCURRENCY)),
                "--max_queue",
                "64",
            ],
        ) as url:
            drive_server(url, 1, 2, args.tokens)  # warm-up
            pairs = max(10, args.requests_per_client * 4)
            peer[1], server[1], overhead_c1 = paired_concurrency_1(url, generate, pairs, args.tokens)
            _report(1, peer[1], server[1])
            for concurrency in CONCURRENCY[1:]:
                # The plain loop right before the level, so both run under the machine's load of the moment.
                peer[concurrency] = plain_loop(generate, max(4, args.requests_per_client * 2))
                server[concurrency] = drive_server(
                    url, concurrency, args.requests_per_client * concurrency, args.tokens
                )
                _report(concurrency, peer[concurrency], server[concurrency])
    load = os.getloadavg()
    figures = {
        "overhead_c1": overhead_c1,
        "throughput_gain_c16": server[16]["tokens_per_s"] / peer[16]["tokens_per_s"],
        "throughput_gain_c4": server[4]["tokens_per_s"] / peer[4]["tokens_per_s"],
        **{f"plain_c{c}_tokens_per_s": peer[c]["tokens_per_s"] for c in CONCURRENCY},
        **{f"server_c{c}_tokens_per_s": server[c]["tokens_per_s"] for c in CONCURRENCY},
        "plain_latency_mean_s": peer[1]["latency_mean_s"],
        **{f"server_c{c}_latency_p50_s": server[c]["latency_p50_s"] for c in CONCURRENCY},
        **{f"server_c{c}_latency_p95_s": server[c]["latency_p95_s"] for c in CONCURRENCY},
        "tokens_per_answer": args.tokens,
        "model": f"qwen2 hidden={args.hidden} layers={args.layers}"
        if args.model_dir is None
        else str(model_dir),
        "torch_threads": args.threads,
        "cpus": os.cpu_count(),
        "load_average_1m": load[0],
        "load_average_5m": load[1],
    }
    figures["goals_met"] = figures["overhead_c1"] <= 0.10 and figures["throughput_gain_c16"] >= 2.0
    print(json.dumps(_rounded(figures)))


def _report(concurrency: int, peer: dict, server: dict) -> None:
    print(f"concurrency {concurrency}: plain loop {json.dumps(_rounded(peer))}", flush=True)
    print(f"concurrency {concurrency}: server     {json.dumps(_rounded(server))}", flush=True)


def _rounded(figures: dict) -> dict:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in figures.items()}


if __name__ == "__main__":
    main()
