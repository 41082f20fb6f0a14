"""CBLUE tasks end to end: published layouts in, prompts out, answers parsed back and scored.

Most tests answer through a deterministic stand-in backend (``Canned`` below, or the shared
``ScriptedBackend``): it returns replies chosen by the test, so the right score is known in
advance. One test runs every task on the real tiny model.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

from medgo.errors import ConfigError, InputError
from medgo.eval.tasks import TASK_GROUPS, TASKS, get_task, resolve_task_names
from medgo.eval.tasks.base import EvalItem
from medgo.eval.tasks.cblue import CBLUE_TASK_TYPES, CblueResult, ChipSTS, CMeEE, KuakeQIC
from medgo.eval.tasks.cblue.dialogues import ImcsSR

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "eval"
CBLUE = TASK_GROUPS["cblue"]


class Canned:
    """Stands in for a model: ``answer(user_message)`` gives each reply (deterministic)."""

    name = "canned"

    def __init__(self, answer: Callable[[str], str]) -> None:
        self.answer = answer
        self.chats: list[list[dict[str, str]]] = []

    def generate(self, chats: Sequence[list[dict[str, str]]], max_new_tokens: int) -> list[str]:
        self.chats += list(chats)
        return [self.answer(chat[-1]["content"]) for chat in chats]


def oracle_for(task, items) -> Canned:
    """Answers every prompt of ``items`` with the gold answer in the task's own answer shape."""
    if isinstance(task, ImcsSR):
        table = {
            task.utterance_prompt(i.record["dialogue"], k): task.render_statuses(turn["symptoms"])
            for i in items
            for k, turn in enumerate(i.record["dialogue"])
        }
    else:
        table = {task.prompt(i): task.render_answer(i) for i in items}
    return Canned(lambda prompt: table[prompt])


def write(path: Path, content) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
    path.write_text(text, encoding="utf-8")
    return path


def test_registry_has_every_cblue_task_and_a_group():
    assert set(CBLUE) <= set(TASKS) and len(CBLUE) == 17
    assert "Text2DT" not in TASKS
    assert resolve_task_names(["cblue-core", "mcq", "CMeEE"]) == ["CMeEE", "KUAKE-QIC", "CHIP-STS", "mcq"]
    assert resolve_task_names(["cblue"]) == list(CBLUE)
    assert (CMeEE.name, KuakeQIC.name, ChipSTS.name) == ("CMeEE", "KUAKE-QIC", "CHIP-STS")


def test_get_task_with_shots():
    few = get_task("CMeIE", shots=3)
    assert few.shots == 3 and few is not get_task("CMeIE") and get_task("CMeIE").shots == 0
    with pytest.raises(ConfigError, match="task safety has no few-shot mode"):
        get_task("safety", shots=1)
    with pytest.raises(ConfigError, match="shots must be >= 0"):
        get_task("CMeIE", shots=-1)


@pytest.mark.parametrize("name", CBLUE)
def test_gold_answers_score_perfectly_on_the_samples(name):
    """Rendered gold answers parse back to the gold layout: the round trip every parser must survive."""
    task = get_task(name)
    items = task.load(SAMPLES)
    assert 4 <= len(items) <= 30
    result = task.evaluate(oracle_for(task, items), items, max_new_tokens=8)
    assert isinstance(result, CblueResult)
    assert result.value == pytest.approx(1.0, abs=1e-6)
    assert result.parse_failures == 0
    assert result.metric_definition and result.metric == task.metric
    stats = [o.stats for o in result.outcomes]
    assert task.aggregate(stats) == pytest.approx(result.value)
    assert math.isfinite(task.aggregate(stats[: max(1, len(stats) // 2)]))  # a bootstrap resample's subset
    data = json.loads(json.dumps(result.to_dict(), ensure_ascii=False))
    assert data["metric_definition"] == task.definition and data["shots"] == 0
    assert len(data["items"]) == len(items) == len(result.predictions)


@pytest.mark.parametrize("name", [n for n in CBLUE if n != "IMCS-V2-SR"])
def test_few_shot_prompts_carry_other_items_gold_answers(name):
    task = type(get_task(name))(shots=2)
    items = task.load(SAMPLES)
    backend = oracle_for(task, items)
    result = task.evaluate(backend, items, max_new_tokens=8)
    assert result.value == pytest.approx(1.0, abs=1e-6) and result.shots == 2
    for item, chat in zip(items, backend.chats, strict=True):
        assert [m["role"] for m in chat] == ["system", "user", "assistant", "user", "assistant", "user"]
        assert chat[-1]["content"] == task.prompt(item)
        demo_prompts = [chat[1]["content"], chat[3]["content"]]
        assert task.prompt(item) not in demo_prompts
        by_prompt = {task.prompt(i): i for i in items}
        assert [chat[2]["content"], chat[4]["content"]] == [
            task.render_answer(by_prompt[p]) for p in demo_prompts
        ]


@pytest.mark.parametrize("name", CBLUE)
def test_gate_statistics_reproduce_the_official_value(name):
    """The gate's vectorised bootstrap sums per-item statistics; their function must be the task's metric,
    on perfect answers and on a mix with wrong and unreadable ones (macro-F1 has none: resampled as is)."""
    task = get_task(name)
    items = task.load(SAMPLES)
    gold = oracle_for(task, items)
    mixed = Canned(lambda prompt, k=iter(range(10_000)): gold.answer(prompt) if next(k) % 3 else "不知道")
    for backend in (gold, mixed):
        stats = [o.stats for o in task.evaluate(backend, items, max_new_tokens=8).outcomes]
        decomposed = task.sufficient_statistics(stats)
        if task.metric == "macro_f1":
            assert decomposed is None
            continue
        matrix, from_sums = decomposed
        assert matrix.shape[0] == len(items)
        assert float(from_sums(matrix.sum(axis=0)[None, :])[0]) == pytest.approx(task.aggregate(stats))
        resample = np.random.default_rng(0).integers(0, len(items), size=len(items))  # one bootstrap draw
        assert float(from_sums(matrix[resample].sum(axis=0)[None, :])[0]) == pytest.approx(
            task.aggregate([stats[i] for i in resample])
        )


def test_configure_gives_the_run_its_few_shot_count(tmp_path):
    from medgo.eval.tasks import TaskContext

    task = get_task("CMeIE")
    assert task.configure(TaskContext(data_dir=tmp_path)) is task
    few = task.configure(TaskContext(data_dir=tmp_path, few_shot=2))
    assert type(few) is type(task) and few.shots == few.shot_count == 2 and task.shots == 0


def test_few_shot_never_shows_a_turn_of_the_same_dialogue():
    """A later turn of the same MedDG dialogue would show this turn's reference in its history."""
    task = get_task("MedDG", shots=3)
    items = task.load(SAMPLES)
    for index, item in enumerate(items):
        demos = task.demonstrations(items, index)
        assert len(demos) == 3
        assert all(d.record["dialogue"] != item.record["dialogue"] for d in demos)
        assert all(item.record["response"] not in task.prompt(d) for d in demos)


def test_few_shot_symptom_recognition_uses_other_dialogues():
    task = ImcsSR(shots=1)
    items = task.load(SAMPLES, max_items=2)
    backend = oracle_for(task, items)
    task.evaluate(backend, items, max_new_tokens=8)
    own = {
        task.utterance_prompt(items[0].record["dialogue"], k) for k in range(len(items[0].record["dialogue"]))
    }
    first = backend.chats[0]
    assert len(first) == 4 and first[1]["content"] not in own


def test_unparseable_answers_count_as_wrong_and_are_logged_by_id(caplog):
    task = get_task("CHIP-CTC")
    items = task.load(SAMPLES)
    gold = {task.prompt(i): task.render_answer(i) for i in items}
    unreadable = {items[0].id, items[3].id}
    backend = Canned(
        lambda p: (
            "这条标准不好说" if any(task.prompt(i) == p for i in items if i.id in unreadable) else gold[p]
        )
    )
    with caplog.at_level(logging.WARNING, logger="medgo.eval"):
        result = task.evaluate(backend, items, max_new_tokens=8)
    assert result.parse_failures == 2
    assert [o.score for o in result.outcomes if o.id in unreadable] == [0.0, 0.0]
    # 16 classes with one item each: two of them get no correct prediction -> macro-F1 14/16.
    assert result.value == pytest.approx(14 / 16)
    # PromptCBLUE: the two become "非上述类型", a 17th class with F=0.
    assert result.secondary["promptcblue_macro_f1"] == pytest.approx(14 / 17)
    warning = next(r for r in caplog.records if "unparseable" in r.getMessage())
    assert set(warning.fields["item_ids"].split(",")) == unreadable
    assert items[0].record["text"] not in caplog.text


def test_zero_items_is_an_error():
    with pytest.raises(InputError, match="has no items"):
        get_task("CHIP-CDN").evaluate(Canned(str), [], max_new_tokens=4)


class TestDefinitions:
    """Values under both definitions on small hand-computed cases."""

    def test_cmeee_spans_versus_promptcblue_pairs(self):
        item = EvalItem(
            "a",
            {
                "text": "左肺结节，右肺结节。",
                "entities": [
                    {"start_idx": 2, "end_idx": 3, "type": "dis", "entity": "结节"},
                    {"start_idx": 7, "end_idx": 8, "type": "dis", "entity": "结节"},
                ],
            },
        )
        result = CMeEE().evaluate(Canned(lambda p: "疾病：结节，肺炎"), [item], max_new_tokens=4)
        # spans: one "结节" placed, "肺炎" not in the text -> tp 1, pred 1, gold 2 -> F1 2/3.
        assert result.value == pytest.approx(2 / 3)
        # pairs: {(结节, dis)} gold, {(结节, dis), (肺炎, dis)} predicted -> P 1/2, R 1 -> F1 2/3.
        assert result.secondary["promptcblue_f1"] == pytest.approx(2 / 3)
        assert result.predictions[0]["unlocated"] == [{"type": "dis", "entity": "肺炎"}]

    def test_sts_macro_and_promptcblue_weighted(self):
        task = get_task("CHIP-STS")
        items = task.load(SAMPLES)[:4]  # gold 1, 1, 0, 0
        replies = iter(["是", "意思不太一样", "是否相同：否", "说不清"])
        result = task.evaluate(Canned(lambda p: next(replies)), items, max_new_tokens=4)
        assert [o.stats["pred"] for o in result.outcomes] == ["1", "0", "0", None]
        # "1": P 1 R 1/2 F 2/3; "0": P 1/2 R 1/2 F 1/2 -> macro 7/12.
        assert result.value == pytest.approx(7 / 12)
        # PromptCBLUE: None -> "1": "1" P 1/2 R 1/2, "0" P 1/2 R 1/2 -> weighted 1/2.
        assert result.secondary["promptcblue_weighted_f1"] == pytest.approx(0.5)

    def test_imcs_sr_utterance_and_dialogue_levels(self):
        task = get_task("IMCS-V2-SR")
        item = task.load(SAMPLES, max_items=1)[0]
        turns = item.record["dialogue"]
        prompts = {task.utterance_prompt(turns, k): k for k in range(len(turns))}
        # Answer only utterance 2 ("不发烧，就是咳嗽有痰。") right; say "none" elsewhere.
        right = task.render_statuses(turns[1]["symptoms"])
        result = task.evaluate(
            Canned(lambda p: right if prompts[p] == 1 else "没有症状"), [item], max_new_tokens=8
        )
        stats = result.outcomes[0].stats
        gold_pairs = sum(len(t["symptoms"]) for t in turns)
        assert (stats["tp"], stats["pred"], stats["gold"]) == (3, 3, gold_pairs)
        # dialogue level: predicted {发热:0, 咳嗽:1, 咳痰:1} against implicit_info (喘息:0 too).
        assert (stats["d_tp"], stats["d_pred"], stats["d_gold"]) == (3, 3, 4)
        assert result.secondary["dialogue_f1"] == pytest.approx(2 * 3 / (3 + 4))
        assert set(result.predictions[0]) >= {"1", "2", "global"}

    def test_imcs_mrg_per_section_rouge(self):
        task = get_task("IMCS-V2-MRG")
        item = task.load(SAMPLES, max_items=1)[0]
        reference = item.record["report"][0]
        reply = f"主诉：{reference['主诉']}\n诊断：{reference['诊断']}"
        result = task.evaluate(Canned(lambda p: reply), [item], max_new_tokens=8)
        sections = {k: v for k, v in result.secondary.items() if k.startswith("rouge_l_")}
        assert len(sections) == 6
        assert sections["rouge_l_chief_complaint"] == pytest.approx(1.0, abs=1e-6)
        assert sections["rouge_l_diagnosis"] == pytest.approx(1.0, abs=1e-6)
        # Missing sections are scored as "无 。" against the reference text.
        assert sections["rouge_l_present_illness"] < 0.2
        assert result.value == pytest.approx(sum(sections.values()) / 6)
        unreadable = task.evaluate(Canned(lambda p: "好的"), [item], max_new_tokens=8)
        assert (unreadable.value, unreadable.parse_failures) == (0.0, 1)

    def test_meddg_rouge_bleu_and_entities(self):
        task = get_task("MedDG")
        items = task.load(SAMPLES)
        first = items[0]  # reference: "你好，这种情况持续多久了？有没有反酸烧心？" (反酸, 烧心, 时长)
        result = task.evaluate(
            Canned(lambda p: "医生：有没有反酸？" if p == task.prompt(first) else ""),
            [first],
            max_new_tokens=8,
        )
        assert result.predictions[0]["output"] == "有没有反酸？"
        stats = result.outcomes[0].stats
        assert (stats["e_tp"], stats["e_pred"]) == (1, 1) and stats["e_gold"] == len(first.record["entities"])
        assert 0.0 < result.value < 1.0
        empty = task.evaluate(Canned(lambda p: ""), [first], max_new_tokens=8)
        assert empty.parse_failures == 0 and empty.secondary["bleu_1"] == 0.0

    def test_kuake_ir_with_a_candidate_file(self, tmp_path):
        root = tmp_path / "data"
        shutil.copytree(SAMPLES / "KUAKE-IR", root / "KUAKE-IR")
        write(root / "KUAKE-IR/KUAKE-IR_dev_candidates.tsv", "q01\tp02,p22,p01\nq02\tp04,p05\n")
        task = get_task("KUAKE-IR")
        items = task.load(root, max_items=3)
        assert [c["pid"] for c in items[0].record["candidates"]] == ["p02", "p22", "p01"]
        # q03 has no candidates line: the lexical first stage ranks the passages sharing its bigrams.
        assert [c["pid"] for c in items[2].record["candidates"]][0] == "p04"
        replies = {task.prompt(items[0]): "2", task.prompt(items[1]): "1,2", task.prompt(items[2]): "不知道"}
        result = task.evaluate(Canned(replies.__getitem__), items, max_new_tokens=8)
        # q01: ranking p22, p02, p01 -> relevant p01 at 3 -> 1/3; q02: p03 not a candidate -> 0; q03: unreadable -> 0.
        assert [o.score for o in result.outcomes] == pytest.approx([1 / 3, 0.0, 0.0])
        assert result.value == pytest.approx(1 / 9)
        assert result.secondary["first_stage_recall_at_10"] == pytest.approx(2 / 3)

    def test_kuake_ir_corpus_too_large_for_the_builtin_first_stage(self, tmp_path, monkeypatch):
        from medgo.eval.tasks.cblue import retrieval

        monkeypatch.setattr(retrieval, "LEXICAL_LIMIT", 5)
        root = tmp_path / "data"
        shutil.copytree(SAMPLES / "KUAKE-IR", root / "KUAKE-IR")
        with pytest.raises(InputError, match=r"KUAKE-IR_dev_candidates.tsv: query 'q01' has no first-stage"):
            get_task("KUAKE-IR").load(root)

    def test_mdcfnpc_span_keys_versus_mention_pairs(self):
        task = get_task("CHIP-MDCFNPC")
        item = task.load(SAMPLES, max_items=1)[0]  # d001: 咳嗽 阳性 … 发烧 twice (其他, 阴性)
        answer = "\n".join(f"{i}. {f['mention']}：阳性" for i, f in enumerate(item.record["findings"], 1))
        result = task.evaluate(Canned(lambda p: answer), [item], max_new_tokens=8)
        gold = [f["attr"] for f in item.record["findings"]]
        assert result.value == pytest.approx(gold.count("阳性") / len(gold))


# --- loaders ---------------------------------------------------------------------------------

GOOD_IMCS = {
    "d1": {
        "self_report": "咳嗽两天",
        "dialogue": [
            {
                "sentence_id": "1",
                "speaker": "医生",
                "sentence": "咳嗽吗",
                "dialogue_act": "Request-Symptom",
                "BIO_label": "B-Symptom I-Symptom O",
                "symptom_norm": ["咳嗽"],
                "symptom_type": ["2"],
                "local_implicit_info": {"咳嗽": "2"},
            },
        ],
        "report": [{"主诉": "咳嗽", "现病史": "", "辅助检查": "", "既往史": "", "诊断": "", "建议": ""}],
        "implicit_info": {"Symptom": {"咳嗽": "1"}},
    }
}


def _imcs(**changes) -> dict:
    data = json.loads(json.dumps(GOOD_IMCS))
    turn = data["d1"]["dialogue"][0]
    for key, value in changes.items():
        target = turn if key in turn or key.startswith("turn_") else data["d1"]
        target[key.removeprefix("turn_")] = value
    return data


MALFORMED = [
    (
        "CMeIE",
        "CMeIE/CMeIE_dev.json",
        '{"text": "a", "spo_list": []}\n{"text": ',
        r"CMeIE_dev.json:2: malformed JSON line",
    ),
    (
        "CMeIE",
        "CMeIE/CMeIE_dev.json",
        '{"text": "a", "spo_list": [{"subject": "a", "predicate": "治愈", "object": {"@value": "b"}}]}',
        r"field 'predicate': line 1 spo_list\[0\]: unknown predicate '治愈'",
    ),
    (
        "CMeIE",
        "CMeIE/CMeIE_dev.json",
        '[{"text": "a", "spo_list": [{"subject": "a", "predicate": "病因", "object": {}}]}]',
        r"field '@value': item 0 spo_list\[0\] object: missing",
    ),
    (
        "CHIP-CDEE",
        "CHIP-CDEE/CHIP-CDEE_dev.json",
        [
            {
                "id": 1,
                "text": "无发热",
                "event": [{"core_name": "发热", "tendency": "阴性", "character": [], "anatomy_list": []}],
            }
        ],
        r"field 'tendency': item 0 event\[0\]: tendency must be",
    ),
    (
        "CHIP-CDEE",
        "CHIP-CDEE/CHIP-CDEE_dev.json",
        [
            {
                "id": 1,
                "text": "x",
                "event": [{"core_name": "x", "tendency": "", "character": [1], "anatomy_list": []}],
            }
        ],
        r"field 'character': item 0 event\[0\] character\[0\]: expected str, got int",
    ),
    (
        "CHIP-CDN",
        "CHIP-CDN/CHIP-CDN_dev.json",
        [{"text": "高血压"}],
        r"field 'normalized_result': item 0: missing",
    ),
    (
        "CHIP-CTC",
        "CHIP-CTC/CHIP-CTC_dev.json",
        [{"id": "s1", "text": "x", "label": "Other"}],
        r"field 'label': item 0: unknown label 'Other'",
    ),
    (
        "KUAKE-QTR",
        "KUAKE-QTR/KUAKE-QTR_dev.json",
        [{"id": "s1", "query": "a", "title": "b", "label": "4"}],
        r"field 'label': item 0: unknown label '4'",
    ),
    (
        "KUAKE-QQR",
        "KUAKE-QQR/KUAKE-QQR_dev.json",
        [{"id": "s1", "query1": "a", "label": "1"}],
        r"field 'query2': item 0: missing",
    ),
    (
        "KUAKE-IR",
        "KUAKE-IR/KUAKE-IR_dev.tsv",
        "q01\tp01\nq02 p03\n",
        r"KUAKE-IR_dev.tsv:2: expected 2 non-empty tab-separated",
    ),
    (
        "KUAKE-IR",
        "KUAKE-IR/KUAKE-IR_dev.tsv",
        "q01\tp99\n",
        r"KUAKE-IR_dev.tsv:1: passage id 'p99' is not in corpus.tsv",
    ),
    (
        "CHIP-MDCFNPC",
        "CHIP-MDCFNPC/CHIP-MDCFNPC_dev.jsonl",
        '{"dialog_id": "d", "dialog_info": [{"sentence_id": "1", "speaker": "患者", "sentence": "咳嗽", "ner": [{"mention": "咳嗽", "range": [0, 2], "attr": "有"}]}]}',
        r"field 'attr': line 1 dialog_info\[0\] ner\[0\]: unknown attr '有'",
    ),
    (
        "CHIP-MDCFNPC",
        "CHIP-MDCFNPC/CHIP-MDCFNPC_dev.jsonl",
        '{"dialog_id": "d", "dialog_info": [{"sentence_id": "1", "speaker": "患者", "sentence": "咳嗽", "ner": [{"mention": "发热", "range": [0, 2], "attr": "阳性"}]}]}',
        r"field 'range': line 1 dialog_info\[0\] ner\[0\]: mention '发热' is not the sentence text",
    ),
    (
        "IMCS-V2-NER",
        "IMCS-V2/IMCS-V2_dev.json",
        _imcs(BIO_label="B-Symptom O"),
        r"field 'BIO_label': dialogue 'd1' turn 0: 2 BIO tags for 3 characters",
    ),
    (
        "IMCS-V2-NER",
        "IMCS-V2/IMCS-V2_dev.json",
        _imcs(BIO_label="B-Disease I-Disease O"),
        r"field 'BIO_label': dialogue 'd1' turn 0: unknown BIO tag 'B-Disease'",
    ),
    (
        "IMCS-V2-DAC",
        "IMCS-V2/IMCS-V2_dev.json",
        _imcs(dialogue_act="Ask"),
        r"field 'dialogue_act': dialogue 'd1' turn 0: unknown dialogue act 'Ask'",
    ),
    (
        "IMCS-V2-SR",
        "IMCS-V2/IMCS-V2_dev.json",
        _imcs(implicit_info={"Symptom": {"咳嗽": "3"}}),
        r"dialogue 'd1': symptom '咳嗽' has label '3'",
    ),
    (
        "IMCS-V2-MRG",
        "IMCS-V2/IMCS-V2_dev.json",
        _imcs(report=[{"主诉": "咳嗽"}]),
        r"field '现病史': dialogue 'd1' report\[0\]: missing",
    ),
    ("IMCS-V2-MRG", "IMCS-V2/IMCS-V2_dev.json", [1], r"expected a JSON object mapping dialog ids"),
    (
        "MedDG",
        "MedDG/MedDG_dev.json",
        [[{"id": "Nurse", "Sentence": "你好"}]],
        r"field 'id': dialogue 0 turn 0: unknown speaker 'Nurse'",
    ),
    (
        "MedDG",
        "MedDG/MedDG_dev.json",
        [[{"id": "Doctor", "Sentence": "你好", "Symptom": []}]],
        r"field 'Medicine': dialogue 0 turn 0: missing",
    ),
    (
        "CMedCausal",
        "CMedCausal/CMedCausal_dev.json",
        [
            {
                "text": "吸烟导致肺癌",
                "relation_of_mention": [
                    {
                        "head": {"mention": "吸烟", "start_idx": 0, "end_idx": 1},
                        "relation": 1,
                        "tail": {"type": "mention", "mention": "肺癌", "start_idx": 4, "end_idx": 6},
                    }
                ],
            }
        ],
        r"field 'end_idx': item 0 relation_of_mention\[0\] head: the text at \[0, 1\] is '吸'.*exclusive",
    ),
    (
        "CMedCausal",
        "CMedCausal/CMedCausal_dev.json",
        [{"text": "x", "relation_of_mention": [{"relation": 4}]}],
        r"field 'relation': item 0 relation_of_mention\[0\]: relation must be 1, 2 or 3",
    ),
]


@pytest.mark.parametrize(("name", "rel", "content", "pattern"), MALFORMED)
def test_malformed_files_name_file_place_and_field(tmp_path, name, rel, content, pattern):
    root = tmp_path / "data"
    if name == "KUAKE-IR":
        shutil.copytree(SAMPLES / "KUAKE-IR", root / "KUAKE-IR")
    write(root / rel, content)
    with pytest.raises(InputError, match=pattern):
        get_task(name).load(root)


@pytest.mark.parametrize(
    ("name", "rel", "content"),
    [
        ("CMeIE", "CMeIE/CMeIE_dev.json", ""),
        ("CHIP-CTC", "CHIP-CTC/CHIP-CTC_dev.json", []),
        ("CHIP-MDCFNPC", "CHIP-MDCFNPC/CHIP-MDCFNPC_dev.jsonl", "\n"),
        ("IMCS-V2-DAC", "IMCS-V2/IMCS-V2_dev.json", {}),
        (
            "MedDG",
            "MedDG/MedDG_dev.json",
            [
                [
                    {
                        "id": "Patients",
                        "Sentence": "你好",
                        "Symptom": [],
                        "Medicine": [],
                        "Test": [],
                        "Attribute": [],
                        "Disease": [],
                    }
                ]
            ],
        ),
        ("KUAKE-IR", "KUAKE-IR/KUAKE-IR_dev.tsv", ""),
    ],
)
def test_a_file_with_zero_items_is_an_error(tmp_path, name, rel, content):
    root = tmp_path / "data"
    if name == "KUAKE-IR":
        shutil.copytree(SAMPLES / "KUAKE-IR", root / "KUAKE-IR")
    write(root / rel, content)
    with pytest.raises(InputError, match=f"task {name} has no items"):
        get_task(name).load(root)


@pytest.mark.parametrize("name", CBLUE)
def test_a_missing_file_is_named(tmp_path, name):
    with pytest.raises(InputError, match="evaluation data file not found"):
        get_task(name).load(tmp_path)


def test_imcs_symptoms_fall_back_to_norm_and_type_lists(tmp_path):
    data = _imcs()
    turn = data["d1"]["dialogue"][0]
    del turn["local_implicit_info"]
    turn["symptom_norm"], turn["symptom_type"] = ["咳嗽", "咳嗽", "发热"], ["2", "0", "2"]
    write(tmp_path / "IMCS-V2/IMCS-V2_dev.json", data)
    item = get_task("IMCS-V2-SR").load(tmp_path)[0]
    assert item.record["dialogue"][0]["symptoms"] == {"咳嗽": "0", "发热": "2"}


def test_meddg_entity_list_file_is_the_vocabulary(tmp_path):
    root = tmp_path / "data"
    shutil.copytree(SAMPLES / "MedDG", root / "MedDG")
    write(root / "MedDG/entity_list.txt", "胃镜\n奥美拉唑\n")
    item = get_task("MedDG").load(root)[0]
    assert item.record["entity_vocabulary"] == ("奥美拉唑", "胃镜")


def test_every_task_runs_on_the_real_tiny_model(sample_model_dir):
    """Each task's prompts go through a real (tiny, random) model and its nonsense is scored."""
    from medgo.eval.backends import LocalBackend

    backend = LocalBackend(str(sample_model_dir), batch_size=8)
    for kind in CBLUE_TASK_TYPES:
        task = kind()
        items = task.load(SAMPLES, max_items=1)
        result = task.evaluate(backend, items, max_new_tokens=6)
        assert math.isfinite(result.value) and 0.0 <= result.value <= 1.0, task.name
        assert len(result.outcomes) == len(items) == len(result.predictions)
        json.dumps(result.to_dict())
