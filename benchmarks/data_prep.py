"""Corpus preparation at scale vs datatrove: throughput, near-duplicate precision/recall, peak memory.

One run, one machine, the same data for both tools:

1. Generate a deterministic corpus of ``--docs`` Chinese medical-like documents (default 200,000, about
   100 MB of JSONL in 16 files) with planted ground truth: exact duplicates, near-duplicates at a
   measured character 5-gram Jaccard of 0.8–0.95 and of 0.7–0.8 (where LSH with few rows loses
   recall), hard negatives at 0.5–0.65 that must *not* merge, patient identifiers, and documents that
   copy text from a small evaluation set (decontamination).
2. medgo on 1 and 2 worker processes: the full ``medgo data prepare`` and the near-dedup path alone
   (cleaning, filters, scrubbing off), each in its own process, wall clock and peak RSS of the process
   tree sampled every 0.1 s.
3. datatrove 0.10.1's MinHash dedup (signature → buckets → cluster → filter, ``LocalPipelineExecutor``)
   on the same files with the same n-gram size, permutations and bands. Run fairly on Chinese as
   FACTS.md describes: a word tokenizer that yields characters (its ``language="zh"`` tokenizer
   splits on whitespace), its own text simplification (lower case, digits → 0, no punctuation) kept.
4. Precision and recall of both against exact-Jaccard ground truth: the true graph has an edge for
   every planted pair at Jaccard ≥ 0.7 plus every pair either tool merged whose exact Jaccard is
   ≥ 0.7 (so an unplanted real duplicate counts as true); clusters are its connected components;
   precision/recall are over document pairs sharing a cluster, which does not depend on which member
   a tool keeps. Whether the earliest document of each cluster is the one kept is reported apart.
5. MinHash signature speed of rensa 0.5.0 (what medgo uses), datasketch 2.0.0 and a numpy-vectorised
   min-over-permutations, on a sample of the documents.

``uptime`` is printed before and after: on a shared machine the 2-worker scaling is only as good as
the cores that were free. The last line is one JSON object of figures.

    python benchmarks/data_prep.py               # full size
    python benchmarks/data_prep.py --docs 5000   # CI-sized
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import psutil

REPO = Path(__file__).resolve().parents[1]
NGRAM, BANDS, ROWS = 5, 25, 5
THRESHOLD = 0.7
PREFIX = {"exact": "e", "near_easy": "n", "near_band": "m", "negative": "g"}

MEDICAL_WORDS = (
    "高血压 糖尿病 冠心病 心力衰竭 心房颤动 脑梗死 脑出血 慢性阻塞性肺疾病 支气管哮喘 肺炎 肺结核 胃溃疡 "
    "十二指肠溃疡 胃食管反流病 肝硬化 慢性乙型肝炎 胆囊炎 胆结石 急性胰腺炎 肾病综合征 慢性肾脏病 尿路感染 "
    "前列腺增生 甲状腺功能亢进症 甲状腺功能减退症 痛风 类风湿关节炎 系统性红斑狼疮 骨质疏松症 腰椎间盘突出症 "
    "贫血 白血病 淋巴瘤 乳腺癌 肺癌 胃癌 结直肠癌 宫颈癌 抑郁症 焦虑症 失眠 偏头痛 癫痫 帕金森病 阿尔茨海默病 "
    "湿疹 荨麻疹 银屑病 带状疱疹 白内障 青光眼 中耳炎 鼻窦炎 扁桃体炎 手足口病 流行性感冒 新生儿黄疸 "
    "头痛 头晕 发热 咳嗽 咳痰 胸闷 胸痛 心悸 气促 呼吸困难 腹痛 腹泻 便秘 恶心 呕吐 乏力 水肿 皮疹 瘙痒 "
    "关节肿痛 腰痛 尿频 尿急 尿痛 血尿 视物模糊 耳鸣 失眠多梦 食欲减退 体重下降 盗汗 "
    "阿莫西林 头孢呋辛 左氧氟沙星 阿奇霉素 布洛芬 对乙酰氨基酚 二甲双胍 格列美脲 胰岛素 阿卡波糖 "
    "硝苯地平 氨氯地平 缬沙坦 厄贝沙坦 美托洛尔 阿司匹林 氯吡格雷 阿托伐他汀 瑞舒伐他汀 华法林 "
    "奥美拉唑 雷贝拉唑 蒙脱石散 乳果糖 地塞米松 泼尼松 甲氨蝶呤 别嘌醇 非布司他 左甲状腺素 "
    "血常规 尿常规 肝功能 肾功能 血脂 血糖 糖化血红蛋白 心电图 胸部CT 腹部超声 胃镜 肠镜 磁共振 "
    "内科 外科 儿科 妇产科 心内科 呼吸科 消化科 内分泌科 神经内科 骨科 皮肤科 眼科 急诊科"
).split()
TEMPLATES = (
    "患者{w}，{age}岁，因{s}{dur}入院。",
    "{w}是{s}的常见原因，应及时就诊。",
    "建议口服{d}{mg}mg，每日{n}次，疗程{dur}。",
    "查体：{w}{w}，{s}，血压{bp}mmHg。",
    "{w}患者应注意{w}和{w}，定期复查{e}。",
    "辅助检查提示{w}{w}，结合{e}考虑{s}。",
    "{w}{w}{w}，{w}{w}。",
    "{w}{w}，{w}{w}{w}{w}。",
    "{w}{w}{w}{w}，{w}{w}，{w}{w}。",
)
CATEGORIES = (
    "textbook",
    "clinical_guideline",
    "journal_article",
    "encyclopedia",
    "drug_label",
    "doctor_patient_dialogue",
    "medical_record",
    "health_education",
    "nursing",
    "tcm",
)


# ------------------------------------------------------------------------------------- generation
def _char_pool() -> list[str]:
    """Common CJK characters (those of the bundled samples' texts) that normalisation leaves alone."""
    import unicodedata

    import opencc

    t2s = opencc.OpenCC("t2s")
    seen = set()
    for path in sorted(p for p in (REPO / "samples").rglob("*") if p.suffix in (".json", ".jsonl")):
        seen.update(c for c in path.read_text(encoding="utf-8", errors="ignore") if "\u4e00" <= c <= "\u9fa5")
    chars = sorted(seen)
    return [c for c in chars if t2s.convert(c) == c and unicodedata.normalize("NFKC", c) == c]


def shingles(text: str) -> set[str]:
    text = "".join(text.split()).lower()
    return {text[i : i + NGRAM] for i in range(len(text) - NGRAM + 1)} if len(text) >= NGRAM else {text}


def exact_jaccard(a: str, b: str) -> float:
    sa, sb = shingles(a), shingles(b)
    return len(sa & sb) / len(sa | sb)


def _resident_id(rng: random.Random) -> str:
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    first = f"{rng.choice(['110105', '310104', '440106', '320102'])}{rng.randint(1950, 2005)}"
    first += f"{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}{rng.randint(0, 999):03d}"
    check = "10X98765432"[sum(int(c) * w for c, w in zip(first, weights, strict=True)) % 11]
    return first + check


class Generator:
    """Deterministic documents: medical terms and sentence frames around random words (low background overlap)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        pool = _char_pool()
        self.pool = pool
        self.words = list(MEDICAL_WORDS) + [
            "".join(self.rng.choices(pool, k=self.rng.choice((2, 2, 3, 4)))) for _ in range(40_000)
        ]

    def word(self) -> str:
        return self.rng.choice(self.words)

    def _fill(self, template: str) -> str:
        rng = self.rng
        values = {
            "age": rng.randint(1, 90),
            "dur": f"{rng.randint(1, 30)}{rng.choice('天周月年')}",
            "mg": rng.choice((5, 10, 20, 50, 100, 250, 500)),
            "n": rng.randint(1, 4),
            "bp": f"{rng.randint(90, 180)}/{rng.randint(55, 110)}",
        }
        out, i = [], 0
        while i < len(template):
            if template[i] == "{":
                j = template.index("}", i)
                key = template[i + 1 : j]
                out.append(str(values[key]) if key in values else self.word())
                i = j + 1
            else:
                out.append(template[i])
                i += 1
        return "".join(out)

    def question(self) -> str:
        """An evaluation-style question: other frames than the corpus's, item-specific words."""
        frames = (
            "请问{w}{w}的患者能否使用{w}{w}治疗",
            "{w}{w}{w}出现{w}{w}，下列哪项检查最有意义",
            "关于{w}{w}{w}，以下说法正确的是",
            "{w}{w}引起{w}{w}{w}的机制是什么",
        )
        return "".join(self._fill(self.rng.choice(frames)) + "？" for _ in range(2))

    def document(self) -> str:
        target = self.rng.randint(70, 260)
        parts = []
        while sum(map(len, parts)) < target:
            parts.append(self._fill(self.rng.choice(TEMPLATES)))
        return "".join(parts)

    def variant(self, text: str, lo: float, hi: float) -> tuple[str, float] | None:
        """``text`` edited (random spans replaced) until its exact Jaccard to ``text`` is in [lo, hi)."""
        for _ in range(6):
            chars = list(text)
            j = 1.0
            while j >= hi:
                start = self.rng.randrange(len(chars))
                span = self.rng.randint(2, 6)
                chars[start : start + span] = self.rng.choices(self.pool, k=span)
                j = exact_jaccard(text, "".join(chars))
            if j >= lo:
                return "".join(chars), j
        return None


def generate(out: Path, docs: int, files: int, seed: int) -> dict:
    """Write the corpus and a small evaluation set; return the planted ground truth."""
    gen = Generator(seed)
    rng = gen.rng
    shares = {"exact": 0.02, "near_easy": 0.03, "near_band": 0.03, "negative": 0.02, "eval_copy": 0.002}
    planted_count = {k: int(docs * v) for k, v in shares.items()}
    n_base = docs - sum(planted_count.values())
    bases = [gen.document() for _ in range(n_base)]
    order: list[tuple[float, str, str]] = [(float(i), f"b{i:07d}", t) for i, t in enumerate(bases)]
    available = list(range(n_base))
    rng.shuffle(available)
    pairs = []  # (base id, derived id, exact jaccard, kind)
    for kind in ("exact", "near_easy", "near_band", "negative"):
        band = {"near_easy": (0.8, 0.95), "near_band": (0.7, 0.8), "negative": (0.5, 0.65)}.get(kind)
        made = 0
        while made < planted_count[kind]:
            b = available.pop()
            text = bases[b]
            if band is None:
                derived, j = (text + " " if rng.random() < 0.5 else " " + text), 1.0
            else:
                found = gen.variant(text, *band)
                if found is None:
                    continue
                derived, j = found
            did = f"{PREFIX[kind]}{made:07d}"
            order.append((rng.uniform(b + 1, n_base + 1), did, derived))
            pairs.append((f"b{b:07d}", did, j, kind))
            made += 1
    # documents that copy a piece of an evaluation item (decontamination); the items are questions in
    # their own phrasing, as an evaluation set's are
    eval_items = [gen.question() for _ in range(500)]
    contaminated = []
    for k in range(planted_count["eval_copy"]):
        item = eval_items[k % len(eval_items)]
        text = gen.document() + item[:30] + gen.document()[:40]
        did = f"x{k:07d}"
        order.append((rng.uniform(0, n_base), did, text))
        contaminated.append(did)
    order.sort()
    pii_planted = defaultdict(int)
    pii_docs: dict[str, str] = {}
    final_texts: dict[str, str] = {}
    corpus = out / "corpus"
    corpus.mkdir(parents=True)
    per_file = -(-len(order) // files)
    positions = {}
    for f in range(files):
        chunk = order[f * per_file : (f + 1) * per_file]
        with open(corpus / f"part-{f:04d}.jsonl", "w", encoding="utf-8") as fh:
            for _, did, text in chunk:
                positions[did] = len(positions)
                if rng.random() < 0.05 and did.startswith("b"):
                    kind = rng.choice(("PHONE", "ID", "NAME"))
                    pii_planted[kind] += 1
                    pii_docs[did] = kind
                    if kind == "PHONE":
                        text += f"联系电话：1{rng.choice('3578')}{rng.randint(100000000, 999999999)}。"
                    elif kind == "ID":
                        text += f"身份证号：{_resident_id(rng)}。"
                    else:
                        text += f"患者{rng.choice('王李张刘陈杨赵黄周吴')}{rng.choice(gen.pool)}{rng.choice(gen.pool)}，男，{rng.randint(20, 80)}岁。"
                final_texts[did] = text
                record = {
                    "id": did,
                    "text": text,
                    "category": CATEGORIES[int(hashlib.md5(did.encode()).hexdigest(), 16) % len(CATEGORIES)],
                    "source": "bench",
                }
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    eval_dir = out / "eval" / "BENCH-QA"
    eval_dir.mkdir(parents=True)
    (eval_dir / "dev.json").write_text(
        json.dumps([{"id": i, "question": q} for i, q in enumerate(eval_items)], ensure_ascii=False),
        encoding="utf-8",
    )
    size = sum(p.stat().st_size for p in corpus.iterdir())
    # ground truth on the texts as written (identifiers were appended to some originals after their
    # variants were made, which moves a few planted pairs across the threshold)
    pairs = [(a, b, exact_jaccard(final_texts[a], final_texts[b]), kind) for a, b, _, kind in pairs]
    return {
        "pairs": pairs,
        "positions": positions,
        "pii_planted": dict(pii_planted),
        "pii_docs": pii_docs,
        "contaminated": contaminated,
        "bytes": size,
        "docs": len(order),
        "texts": final_texts,
    }


# ------------------------------------------------------------------------------------ measuring
class TreeMonitor:
    """Peak resident memory and CPU time of a process tree, sampled every 0.1 s.

    CPU time is the sum over every process seen of its last sampled user + system time, so it includes
    workers a pool forks from a server process (which ``getrusage(RUSAGE_CHILDREN)`` misses); at most the
    last 0.1 s of a process that exits between samples is lost.
    """

    def __init__(self, pid: int) -> None:
        self.peak = 0
        self.cpu: dict[int, float] = {}
        self._proc = psutil.Process(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        try:
            procs = [self._proc, *self._proc.children(recursive=True)]
        except psutil.Error:
            return
        total = 0
        for proc in procs:
            try:
                with proc.oneshot():
                    total += proc.memory_info().rss
                    times = proc.cpu_times()
                    self.cpu[proc.pid] = times.user + times.system
            except psutil.Error:
                continue
        self.peak = max(self.peak, total)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self._sample()

    def stop(self) -> tuple[float, float]:
        """``(peak RSS MB, CPU seconds)``."""
        self._stop.set()
        self._thread.join()
        return self.peak / 2**20, sum(self.cpu.values())


def run_timed(args: list[str], env: dict | None = None) -> tuple[float, float, float, str]:
    """``(wall s, CPU s of the whole process tree, peak tree RSS MB, stdout)`` of one command.

    Docs per CPU-second compares tools fairly on a machine that other jobs are also using.
    """
    start = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    monitor = TreeMonitor(proc.pid)
    out, err = proc.communicate()
    wall = time.perf_counter() - start
    peak, cpu = monitor.stop()
    if proc.returncode != 0:
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(args)}\n{err[-3000:]}")
    return wall, cpu, peak, out


DEDUP_ONLY = [
    "traditional_to_simplified=false",
    "strip_html=false",
    "remove_boilerplate=false",
    "scrub_pii=false",
    "min_chars=0",
    "min_chinese_ratio=0",
    "max_symbol_ratio=1",
    "max_digit_ratio=1",
    "max_repeated_line_ratio=1",
    "max_repeated_ngram_ratio=1",
    "languages=[]",
]


def run_medgo(corpus: Path, out: Path, workers: int, *, dedup_only: bool, eval_dir: Path | None) -> dict:
    sets = [
        f"workers={workers}",
        "shard_size_mb=16",
        f"near_dedup.threshold={THRESHOLD}",
        f"near_dedup.ngram_chars={NGRAM}",
        f"near_dedup.bands={BANDS}",
        f"near_dedup.rows={ROWS}",
        f"near_dedup.num_perm={BANDS * ROWS}",
    ]
    if dedup_only:
        sets += DEDUP_ONLY
    args = [
        sys.executable,
        "-m",
        "medgo.cli",
        "--log-level",
        "WARNING",
        "data",
        "prepare",
        str(corpus),
        str(out),
    ]
    for s in sets:
        args += ["--set", s]
    if eval_dir is not None:
        args += ["--eval-data", str(eval_dir)]
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}", "TQDM_DISABLE": "1"}
    wall, cpu, peak, stdout = run_timed(args, env)
    return {"wall_s": wall, "cpu_s": cpu, "peak_rss_mb": peak, "summary": json.loads(stdout)}


def medgo_clusters(out: Path) -> dict[str, str]:
    """Removed document id → survivor id, from the dropped entries."""
    removed = {}
    for path in (out / "dropped").glob("*.jsonl"):
        for line in path.open(encoding="utf-8"):
            entry = json.loads(line)
            if entry["reason"] in ("duplicate", "near_duplicate"):
                removed[entry["id"]] = entry["survivor"]
    return removed


DATATROVE_SCRIPT = r'''
import sys, json
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.dedup import MinhashDedupSignature, MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupFilter
from datatrove.pipeline.dedup.minhash import MinhashConfig
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers.jsonl import JsonlWriter
from datatrove.utils.hashing import HashConfig
from datatrove.utils.word_tokenizers import WordTokenizer

class ChineseCharacters(WordTokenizer):
    """Characters as words: datatrove's zh tokenizer hands Chinese to a whitespace tokenizer (0.10.1)."""
    def word_tokenize(self, text):
        return [c for c in text if not c.isspace()]
    def sent_tokenize(self, text):
        return [text]
    def span_tokenize(self, text):
        return [(0, len(text))]

def main():
    corpus, work = sys.argv[1], sys.argv[2]
    workers, files, n, bands, rows = (int(a) for a in sys.argv[3:8])
    config = MinhashConfig(n_grams=n, num_buckets=bands, hashes_per_bucket=rows, hash_config=HashConfig(precision=64))
    reader = lambda: JsonlReader(corpus, glob_pattern="*.jsonl", text_key="text", id_key="id")
    steps = [
        ([reader(), MinhashDedupSignature(output_folder=f"{work}/sigs", config=config, language=ChineseCharacters())], files),
        ([MinhashDedupBuckets(input_folder=f"{work}/sigs", output_folder=f"{work}/buckets", config=config)], bands),
        ([MinhashDedupCluster(input_folder=f"{work}/buckets", output_folder=f"{work}/remove_ids", config=config,
                              save_cluster_id=True)], 1),
        ([reader(), MinhashDedupFilter(input_folder=f"{work}/remove_ids", load_cluster_ids=True,
                                       exclusion_writer=JsonlWriter(f"{work}/removed", compression=None)),
          JsonlWriter(f"{work}/kept", compression=None)], files),
    ]
    for i, (pipeline, tasks) in enumerate(steps):
        LocalPipelineExecutor(pipeline=pipeline, tasks=tasks, workers=min(workers, tasks),
                              logging_dir=f"{work}/logs/{i}").run()


if __name__ == "__main__":  # datatrove's pool starts workers with forkserver, which re-imports this file
    main()
'''


def run_datatrove(corpus: Path, work: Path, workers: int, files: int) -> dict:
    script = work.parent / "datatrove_dedup.py"
    script.write_text(DATATROVE_SCRIPT, encoding="utf-8")
    args = [
        sys.executable,
        str(script),
        str(corpus),
        str(work),
        str(workers),
        str(files),
        str(NGRAM),
        str(BANDS),
        str(ROWS),
    ]
    env = {**os.environ, "TQDM_DISABLE": "1", "LOGURU_LEVEL": "WARNING"}
    wall, cpu, peak, _ = run_timed(args, env)
    clusters: dict[int, list[str]] = defaultdict(list)
    kept: set[str] = set()
    for folder in ("kept", "removed"):
        for path in (work / folder).glob("*.jsonl"):
            for line in path.open(encoding="utf-8"):
                doc = json.loads(line)
                cid = doc["metadata"].get("minhash_cluster_id", -1)
                if folder == "kept":
                    kept.add(doc["id"])
                if cid is not None and cid >= 0:
                    clusters[cid].append(doc["id"])
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "peak_rss_mb": peak,
        "clusters": list(clusters.values()),
        "kept": kept,
    }


# ----------------------------------------------------------------------------------------- scoring
def _components(edges: list[tuple[str, str]]) -> list[list[str]]:
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[rb] = ra
    groups: dict[str, list[str]] = defaultdict(list)
    for x in parent:
        groups[find(x)].append(x)
    return [g for g in groups.values() if len(g) > 1]


def _pairs(clusters: list[list[str]]) -> set[tuple[str, str]]:
    return {tuple(sorted(p)) for c in clusters for p in itertools.combinations(c, 2)}


def score(truth, predicted: list[list[str]], survivors_kept: set[str] | None, positions) -> dict:
    true_pairs = _pairs(truth)
    pred_pairs = _pairs(predicted)
    hit = len(true_pairs & pred_pairs)
    earliest = [min(c, key=positions.__getitem__) for c in truth]
    out = {
        "precision": round(hit / len(pred_pairs), 4) if pred_pairs else 1.0,
        "recall": round(hit / len(true_pairs), 4) if true_pairs else 1.0,
        "true_pairs": len(true_pairs),
        "predicted_pairs": len(pred_pairs),
    }
    if survivors_kept is not None:
        out["earliest_kept"] = round(sum(e in survivors_kept for e in earliest) / len(earliest), 4)
    return out


def build_truth(planted, predicted_sets: list[list[list[str]]]) -> tuple[list[list[str]], dict]:
    texts = planted["texts"]
    edges = [(a, b) for a, b, j, _ in planted["pairs"] if j >= THRESHOLD]
    planted_pairs = {tuple(sorted((a, b))) for a, b, _, _ in planted["pairs"]}
    discovered = 0
    checked = set()
    for clusters in predicted_sets:
        for pair in _pairs(clusters):
            if pair in planted_pairs or pair in checked:
                continue
            checked.add(pair)
            if exact_jaccard(texts[pair[0]], texts[pair[1]]) >= THRESHOLD:
                edges.append(pair)
                discovered += 1
    return _components(edges), {"discovered_true_pairs": discovered, "unplanted_pairs_checked": len(checked)}


def band_recall(planted, predicted: list[list[str]], lo: float, hi: float) -> float:
    together = _pairs(predicted)
    band = [tuple(sorted((a, b))) for a, b, j, _ in planted["pairs"] if lo <= j < hi]
    return round(sum(p in together for p in band) / len(band), 4) if band else 1.0


# ------------------------------------------------------------------------------- MinHash libraries
def minhash_speeds(texts: list[str]) -> dict[str, float]:
    """Signatures per second of rensa (medgo), datasketch and a numpy min-over-permutations."""
    sys.path.insert(0, str(REPO / "src"))
    from medgo.data.minhash import batch_ngram_hashes, comparison_text, signatures

    prepared = [comparison_text(t) for t in texts]
    perms = BANDS * ROWS
    speeds = {}
    start = time.perf_counter()
    signatures(prepared, n=NGRAM, num_perm=perms, seed=1)
    speeds["rensa"] = len(texts) / (time.perf_counter() - start)

    rng = np.random.default_rng(1)
    a = rng.integers(1, 2**63, perms, dtype=np.uint64) | np.uint64(1)
    b = rng.integers(0, 2**63, perms, dtype=np.uint64)
    start = time.perf_counter()
    hashes, offsets = batch_ngram_hashes(prepared, NGRAM)
    for i in range(len(prepared)):
        seg = hashes[offsets[i] : offsets[i + 1]]
        ((seg[:, None] * a[None, :] + b[None, :]) >> np.uint64(32)).min(axis=0)
    speeds["numpy"] = len(texts) / (time.perf_counter() - start)

    import datasketch

    start = time.perf_counter()
    for text in prepared:
        mh = datasketch.MinHash(num_perm=perms, seed=1)
        mh.update_batch([text[i : i + NGRAM].encode() for i in range(max(1, len(text) - NGRAM + 1))])
    speeds["datasketch"] = len(texts) / (time.perf_counter() - start)
    return {k: round(v, 1) for k, v in speeds.items()}


# ------------------------------------------------------------------------------------- calibration
def _spin(n: int) -> int:
    total = 0
    for i in range(n):
        total += i
    return total


def machine_scaling(n: int = 20_000_000) -> float:
    """How much faster two processes finish twice a pure-Python loop than one process once: the most
    any 2-worker run can gain on this machine right now (2.0 on two idle cores)."""
    import multiprocessing

    start = time.perf_counter()
    _spin(n)
    one = time.perf_counter() - start
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        pool.map(_spin, [1000, 1000])  # workers started before the clock runs
        start = time.perf_counter()
        pool.map(_spin, [n, n])
        two = time.perf_counter() - start
    return round(2 * one / two, 2)


# ---------------------------------------------------------------------------------------------- main
def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def load() -> str:
    """The 1-, 5- and 15-minute load averages."""
    return uptime().split("load average:")[-1].strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--docs", type=int, default=200_000, help="documents to generate (≥ 200k for the real figures)"
    )
    parser.add_argument("--files", type=int, default=16, help="JSONL files the corpus is written in")
    parser.add_argument(
        "--seed", type=int, default=20261201, help="generator seed (the corpus is deterministic)"
    )
    parser.add_argument(
        "--datatrove-workers", type=int, default=2, help="worker processes datatrove runs with"
    )
    parser.add_argument(
        "--work", type=Path, default=None, help="keep everything in this directory (default: temporary)"
    )
    args = parser.parse_args(argv)

    work = args.work or Path(tempfile.mkdtemp(prefix="medgo-bench-"))
    if args.work and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    print(f"load before: {uptime()}  (cpus: {os.cpu_count()})", flush=True)
    start = time.perf_counter()
    planted = generate(work / "data", args.docs, args.files, args.seed)
    kinds = defaultdict(list)
    for _, _, j, kind in planted["pairs"]:
        kinds[kind].append(j)
    print(
        f"generated {planted['docs']} docs, {planted['bytes'] / 2**20:.1f} MB in {time.perf_counter() - start:.0f} s; "
        + ", ".join(f"{k}: {len(v)} (J {min(v):.2f}–{max(v):.2f})" for k, v in kinds.items())
        + f"; PII planted {planted['pii_planted']}; eval copies {len(planted['contaminated'])}",
        flush=True,
    )
    corpus, eval_dir = work / "data" / "corpus", work / "data" / "eval"
    docs = planted["docs"]

    runs = {}
    ceiling = []
    for workers in (1, 2):
        if workers == 2:
            ceiling.append(machine_scaling())
            print(f"machine: 2 processes run {ceiling[-1]:.2f}x one (2.0 on two idle cores) [load {load()}]")
        runs[f"dedup_{workers}"] = run_medgo(
            corpus, work / f"dedup-{workers}", workers, dedup_only=True, eval_dir=None
        )
        runs[f"prepare_{workers}"] = run_medgo(
            corpus, work / f"prepare-{workers}", workers, dedup_only=False, eval_dir=eval_dir
        )
        for kind in ("dedup", "prepare"):
            r = runs[f"{kind}_{workers}"]
            print(
                f"medgo {kind:7s} {workers} worker(s): {r['wall_s']:.1f} s, {docs / r['wall_s']:.0f} docs/s, "
                f"{r['cpu_s']:.0f} CPU s ({docs / r['cpu_s']:.0f} docs/CPU-s), peak RSS {r['peak_rss_mb']:.0f} MB "
                f"[load {load()}]; phases (s): {r['summary'].get('seconds')}",
                flush=True,
            )
    ceiling.append(machine_scaling())
    print(f"machine: 2 processes run {ceiling[-1]:.2f}x one [load {load()}]")
    dt = run_datatrove(corpus, work / "datatrove", args.datatrove_workers, args.files)
    print(
        f"datatrove dedup {args.datatrove_workers} worker(s): {dt['wall_s']:.1f} s, {docs / dt['wall_s']:.0f} docs/s, "
        f"{dt['cpu_s']:.0f} CPU s ({docs / dt['cpu_s']:.0f} docs/CPU-s), peak RSS {dt['peak_rss_mb']:.0f} MB "
        f"[load {load()}]",
        flush=True,
    )

    removed = medgo_clusters(work / f"dedup-{args.datatrove_workers}")
    by_survivor: dict[str, list[str]] = defaultdict(list)
    for doc, survivor in removed.items():
        by_survivor[survivor].append(doc)
    ours = [[s, *members] for s, members in by_survivor.items()]
    truth, truth_info = build_truth(planted, [ours, dt["clusters"]])
    all_ids = set(planted["positions"])
    ours_kept = all_ids - set(removed)
    s_ours = score(truth, ours, ours_kept, planted["positions"])
    s_dt = score(truth, dt["clusters"], dt["kept"], planted["positions"])
    full = runs[f"prepare_{args.datatrove_workers}"]["summary"]
    prepared_same = medgo_clusters(work / "prepare-1") == medgo_clusters(work / "prepare-2")
    print(
        f"ground truth: {len(truth)} clusters, {s_ours['true_pairs']} pairs at J ≥ {THRESHOLD} ({truth_info})"
    )
    print(
        f"medgo     precision {s_ours['precision']:.4f} recall {s_ours['recall']:.4f} "
        f"recall(0.7–0.8) {band_recall(planted, ours, 0.7, 0.8):.4f} earliest kept {s_ours['earliest_kept']:.4f}"
    )
    print(
        f"datatrove precision {s_dt['precision']:.4f} recall {s_dt['recall']:.4f} "
        f"recall(0.7–0.8) {band_recall(planted, dt['clusters'], 0.7, 0.8):.4f} earliest kept {s_dt['earliest_kept']:.4f}"
    )
    kept_ids = {
        json.loads(line)["id"] for p in (work / "prepare-1" / "clean").glob("*.jsonl") for line in p.open()
    }
    planted_kept = defaultdict(int)
    for did, kind in planted["pii_docs"].items():
        planted_kept[kind] += did in kept_ids
    masked = json.loads((work / "prepare-1" / "data_card.json").read_text())["pii"]
    removed_copies = sum(1 for d in planted["contaminated"] if d not in kept_ids)
    print(
        f"full prepare: PII masked {masked} (planted in kept documents {dict(planted_kept)}); "
        f"eval overlaps removed {full['eval_overlaps']}, of the {len(planted['contaminated'])} planted copies "
        f"{removed_copies}; 1 and 2 workers give the same duplicates: {prepared_same}"
    )
    sample = [planted["texts"][d] for d in list(planted["texts"])[:3000]]
    speeds = minhash_speeds(sample)
    print(f"MinHash signatures/s on {len(sample)} docs ({BANDS * ROWS} permutations): {speeds}")
    print(f"load after: {uptime()}", flush=True)

    dedup_rate = {w: docs / runs[f"dedup_{w}"]["wall_s"] for w in (1, 2)}
    prepare_rate = {w: docs / runs[f"prepare_{w}"]["wall_s"] for w in (1, 2)}
    figures = {
        "docs": docs,
        "corpus_mb": round(planted["bytes"] / 2**20, 1),
        "speedup_vs_datatrove": round(dedup_rate[args.datatrove_workers] / (docs / dt["wall_s"]), 2),
        "speedup_vs_datatrove_cpu": round(dt["cpu_s"] / runs[f"dedup_{args.datatrove_workers}"]["cpu_s"], 2),
        "dedup_precision": s_ours["precision"],
        "dedup_recall": s_ours["recall"],
        "dedup_recall_0.7_0.8": band_recall(planted, ours, 0.7, 0.8),
        "earliest_kept": s_ours["earliest_kept"],
        "datatrove_precision": s_dt["precision"],
        "datatrove_recall": s_dt["recall"],
        "datatrove_recall_0.7_0.8": band_recall(planted, dt["clusters"], 0.7, 0.8),
        "datatrove_earliest_kept": s_dt["earliest_kept"],
        "dedup_docs_per_s": round(dedup_rate[1], 1),
        "dedup_docs_per_s_2_workers": round(dedup_rate[2], 1),
        "datatrove_docs_per_s": round(docs / dt["wall_s"], 1),
        "datatrove_workers": args.datatrove_workers,
        "prepare_docs_per_s": round(prepare_rate[1], 1),
        "prepare_docs_per_s_2_workers": round(prepare_rate[2], 1),
        "scaling_2_workers": round(prepare_rate[2] / prepare_rate[1], 2),
        "prepare_cpu_s_1_and_2_workers": [
            round(runs["prepare_1"]["cpu_s"], 1),
            round(runs["prepare_2"]["cpu_s"], 1),
        ],
        # the same work's CPU seconds on 1 over 2 workers: 1.0 is no parallel overhead at all, whatever
        # the machine's own 2-process scaling (machine_scaling_2_processes) was at the time
        "prepare_cpu_efficiency_2_workers": round(runs["prepare_1"]["cpu_s"] / runs["prepare_2"]["cpu_s"], 3),
        "dedup_scaling_2_workers": round(dedup_rate[2] / dedup_rate[1], 2),
        "machine_scaling_2_processes": ceiling,
        "peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs.values()), 1),
        "datatrove_peak_rss_mb": round(dt["peak_rss_mb"], 1),
        "minhash_signatures_per_s": speeds,
        "load_after": load(),
    }
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
