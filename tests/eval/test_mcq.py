"""Clinical MCQ: three published layouts, letter log-likelihood, CMB's multi-answer rule, breakdowns."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from medgo.errors import ConfigError, InputError
from medgo.eval.tasks import TaskContext, get_task
from medgo.eval.tasks.mcq import extract_letters, mcq_prompt

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "eval"


def write_json(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def test_letter_loglikelihood_picks_the_planted_answer(eval_data_dir, scripted_backend):
    task = get_task("mcq")
    items = task.load(eval_data_dir)
    planted = {"1型糖尿病": "C", "β-内酰胺": "D", "抗血小板": "A"}
    backend = scripted_backend(letters=planted, replies={"解热镇痛": "答案：A、E"})
    result = task.evaluate(backend, items, max_new_tokens=8)
    assert [p["model_answer"] for p in result.predictions] == ["C", "D", "A", "AE"]
    assert [o.stats["correct"] for o in result.outcomes] == [True, False, True, True]
    assert [o.stats["scoring"] for o in result.outcomes] == ["loglik", "loglik", "loglik", "generate"]
    assert result.value == 0.75
    low, high = result.secondary["ci95_low"], result.secondary["ci95_high"]
    assert low < 0.75 < high
    assert result.secondary["n_multi_answer"] == 1


def test_breakdown_per_exam_subject_with_wilson_intervals(eval_data_dir, scripted_backend):
    task = get_task("mcq")
    backend = scripted_backend(
        letters={"1型糖尿病": "C", "β-内酰胺": "D", "抗血小板": "A"}, default_reply="A"
    )
    result = task.evaluate(backend, task.load(eval_data_dir), max_new_tokens=8)
    subjects = result.breakdown["exam_subject"]
    assert list(subjects) == ["药学", "临床医学"]  # largest group first
    assert subjects["药学"]["n"] == 3 and subjects["药学"]["successes"] == 1
    assert subjects["临床医学"]["rate"] == 1.0
    assert subjects["药学"]["ci_low"] < 1 / 3 < subjects["药学"]["ci_high"]
    assert result.breakdown["exam_type"]["医师考试"]["n"] == 4


def test_prompt_never_reveals_the_answer_count(eval_records):
    task = get_task("mcq")
    records = eval_records["mcq"]
    single, multi = records[0], records[3]
    path = Path("cmb_dev.json")  # only names the file in error messages
    single_prompt = mcq_prompt(task.check_record(single, path, "item 0"))
    assert single_prompt.endswith("答案：") and "单项选择题" in single_prompt
    # The multi-answer question's type comes from its published question_type; the prompt asks for
    # all correct letters without saying how many. Changing the gold answer changes nothing.
    prompts = {
        mcq_prompt(task.check_record({**multi, "answer": answer}, path, "item 3"))
        for answer in ("AE", "ABE", "B")
    }
    assert len(prompts) == 1
    (prompt,) = prompts
    assert "所有正确选项" in prompt and "两" not in prompt and "2" not in prompt
    # And a single-answer question keeps the single format even when its gold has several letters.
    odd = task.check_record({**single, "answer": "AC"}, path, "item 0")
    assert mcq_prompt(odd) == single_prompt
    assert not odd["multi_format"]


@pytest.mark.parametrize(
    ("reply", "letters"),
    [
        ("AE", {"A", "E"}),
        ("答案：A、E", {"A", "E"}),
        ("A和E", {"A", "E"}),
        ("E, A", {"A", "E"}),
        ("A", {"A"}),
        ("选DNA合成抑制剂B", {"B"}),
        ("根据题意，正确答案是C。A项错误。", {"C"}),
        ("A项错误，答案是C", {"C"}),
        ("B。青霉素属于β-内酰胺类，答案：A", {"B"}),
        ("（D）", {"D"}),
        ("答案为（B）", {"B"}),
        ("Ｄ", {"D"}),
        ("不知道", None),
        ("", None),
    ],
)
def test_extract_letters(reply, letters):
    assert extract_letters(reply, ["A", "B", "C", "D", "E"]) == letters


def test_multi_answer_needs_the_exact_set(eval_data_dir, scripted_backend):
    task = get_task("mcq")
    items = [i for i in task.load(eval_data_dir) if len(i.record["answer"]) > 1]
    for reply, correct, parsed in (
        ("A", False, True),
        ("ACE", False, True),
        ("AE", True, True),
        ("说不清", False, False),
    ):
        result = task.evaluate(scripted_backend(default_reply=reply), items, max_new_tokens=8)
        assert (result.outcomes[0].stats["correct"], result.outcomes[0].parsed) == (correct, parsed)


def test_generate_mode_asks_every_question_and_extracts(eval_data_dir, scripted_backend):
    task = get_task("mcq").configure(TaskContext(data_dir=eval_data_dir, mcq_mode="generate"))
    assert get_task("mcq").mode == "loglik", "configure must not change the registered task"
    backend = scripted_backend(
        replies={"1型糖尿病": "答案是C", "β-内酰胺": "B", "抗血小板": "我选A", "解热镇痛": "AE"}
    )
    result = task.evaluate(backend, task.load(eval_data_dir), max_new_tokens=8)
    assert result.value == 1.0
    assert result.secondary["n_generated"] == 4
    assert all(o.stats["scoring"] == "generate" for o in result.outcomes)


def test_few_shot_examples_come_from_the_val_file_as_chat_turns(scripted_backend):
    task = get_task("mcq").configure(TaskContext(data_dir=SAMPLES, few_shot=2))
    assert [s.id for s in task.shot_items] == ["val-1", "val-2"]
    backend = scripted_backend(letters={"": "A"})
    items = task.load(SAMPLES, max_items=1)
    task.evaluate(backend, items, max_new_tokens=4)
    asked = backend.asked[0]
    assert [m["role"] for m in asked] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert asked[2]["content"] == "A" and asked[4]["content"] == "C"
    assert "缺铁性贫血" in asked[1]["content"] and asked[-1]["content"].endswith("答案：")


def test_few_shot_errors(tmp_path, eval_data_writer):
    root = eval_data_writer(tmp_path)
    with pytest.raises(InputError, match="cmb_val.json: evaluation data file not found"):
        get_task("mcq").configure(TaskContext(data_dir=root, few_shot=1))
    write_json(root / "mcq/cmb_val.json", json.loads((SAMPLES / "mcq/cmb_val.json").read_text()))
    with pytest.raises(InputError, match="3 few-shot examples, 5 asked for"):
        get_task("mcq").configure(TaskContext(data_dir=root, few_shot=5))
    with pytest.raises(ConfigError, match="has no few-shot examples"):
        get_task("safety").load_shots(root, 1)


def test_blank_options_are_dropped(eval_data_dir):
    items = get_task("mcq").load(eval_data_dir)
    assert list(items[2].record["option"]) == ["A", "B", "C", "D"]
    assert items[0].id == "mcq-0"


def test_real_tiny_model_answers_with_valid_letters(eval_data_dir, tiny_backend):
    task = get_task("mcq")
    items = task.load(eval_data_dir)
    result = task.evaluate(tiny_backend, items, max_new_tokens=6)
    for item, pred in zip(items, result.predictions, strict=True):
        if not item.record["multi_format"]:
            assert pred["model_answer"] in item.record["option"]
    assert len(result.outcomes) == len(items)
    assert 0.0 <= result.value <= 1.0


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        ({"answer": "F"}, r"cmb_dev.json:2 field 'answer': item 0: answer names option\(s\) F"),
        ({"answer": ""}, r"field 'answer': item 0: no option letter"),
        ({"option": {"A": "甲"}}, r"field 'option': item 0: fewer than two"),
        ({"option": {"1": "甲", "2": "乙"}}, r"field 'option': item 0: options must map"),
        ({"question": 3}, r"field 'question': item 0: expected str"),
    ],
)
def test_malformed_cmb_items_name_file_line_and_field(tmp_path, eval_records, change, pattern):
    records = [{**eval_records["mcq"][0], **change}]
    write_json(tmp_path / "mcq/cmb_dev.json", json.dumps(records, ensure_ascii=False, indent=1))
    with pytest.raises(InputError, match=pattern):
        get_task("mcq").load(tmp_path)


def test_line_numbers_point_at_the_bad_record(tmp_path, eval_records):
    good = eval_records["mcq"][0]
    bad = {k: v for k, v in good.items() if k != "answer"}
    text = json.dumps([good, good, bad], ensure_ascii=False, indent=2)
    write_json(tmp_path / "mcq/cmb_dev.json", text)
    record_starts = [number for number, line in enumerate(text.splitlines(), 1) if line == "  {"]
    expected_line = record_starts[2]
    with pytest.raises(InputError, match=rf"cmb_dev.json:{expected_line} field 'answer': item 2: missing"):
        get_task("mcq").load(tmp_path)


class TestCMExam:
    def test_sample_file_loads_with_departments_and_mixed_answers(self):
        items = get_task("CMExam").load(SAMPLES)
        assert len(items) == 8
        first = items[0].record
        assert first["option"]["A"] == "肌红蛋白" and first["answer"] == "A"
        assert first["groups"]["Clinical Department"] == "心血管内科"
        # One question has several gold letters and CMExam publishes no question type, so every
        # question is asked in the "one or more correct options" format.
        assert sum(len(i.record["answer"]) > 1 for i in items) == 1
        assert all(i.record["multi_format"] for i in items)
        assert "一个或多个" in mcq_prompt(first)

    def test_scored_by_department(self, scripted_backend):
        task = get_task("CMExam")
        items = task.load(SAMPLES)
        backend = scripted_backend(default_reply="A")
        result = task.evaluate(backend, items, max_new_tokens=4)
        expected = sum(i.record["answer"] == "A" for i in items) / len(items)
        assert result.value == pytest.approx(expected)
        assert result.breakdown["Clinical Department"]["心血管内科"]["rate"] == 1.0
        assert "Medical Discipline" in result.breakdown

    def test_bad_rows_name_line_and_column(self, tmp_path):
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["Question", "Options", "Answer"])
        writer.writerow(["问题一", "A 甲\nB 乙", "A"])  # spans lines 2-3
        writer.writerow(["问题二", "A 甲\nB 乙", "C"])  # starts on line 4
        write_json(tmp_path / "mcq/cmexam_test.csv", buf.getvalue())
        with pytest.raises(
            InputError, match=r"cmexam_test.csv:4 field 'Answer': row 2: answer names option\(s\) C"
        ):
            get_task("CMExam").load(tmp_path)
        write_json(tmp_path / "mcq/cmexam_test.csv", "Question,Answer\nq,A\n")
        with pytest.raises(InputError, match=r"cmexam_test.csv:1 field 'Options': CSV header lacks column"):
            get_task("CMExam").load(tmp_path)


class TestMedQA:
    def test_sample_file_loads(self, scripted_backend):
        task = get_task("MedQA-MCMLE")
        items = task.load(SAMPLES)
        assert len(items) == 6 and items[0].id == "mcmle-1"
        assert items[0].record["answer"] == "A" and len(items[0].record["option"]) == 5
        assert not any(i.record["multi_format"] for i in items)
        result = task.evaluate(scripted_backend(letters={"": "B"}), items, max_new_tokens=4)
        assert result.value == pytest.approx(sum(i.record["answer"] == "B" for i in items) / 6)
        assert set(result.breakdown["meta_info"]) == {"内科学", "妇产科学", "外科学", "儿科学"}

    @pytest.mark.parametrize(
        ("line", "pattern"),
        [
            ("{not json", r"medqa_mcmle_test.jsonl:2: "),
            ('{"question": "q", "options": {"A": "x", "B": "y"}}', r":2 field 'answer_idx': item 1: missing"),
            (
                '{"question": "q", "options": {"A": "x", "B": "y"}, "answer_idx": "A", "answer": "y"}',
                r":2 field 'answer': item 1: answer text differs",
            ),
        ],
    )
    def test_bad_lines_name_line_and_field(self, tmp_path, line, pattern):
        good = '{"question": "q", "options": {"A": "x", "B": "y"}, "answer_idx": "B", "answer": "y"}'
        write_json(tmp_path / "mcq/medqa_mcmle_test.jsonl", good + "\n" + line + "\n")
        with pytest.raises(InputError, match=pattern):
            get_task("MedQA-MCMLE").load(tmp_path)


def test_an_empty_task_file_is_an_error(tmp_path):
    write_json(tmp_path / "mcq/cmb_dev.json", [])
    with pytest.raises(InputError, match="cmb_dev.json: task mcq has no items"):
        get_task("mcq").load(tmp_path)
    write_json(tmp_path / "mcq/medqa_mcmle_test.jsonl", "\n")
    with pytest.raises(InputError, match="no items|no \\*.jsonl"):
        get_task("MedQA-MCMLE").load(tmp_path)
