"""The evaluation n-gram index reads every string of every evaluation file, whatever its layout."""

from __future__ import annotations

import json

import pytest

from medgo.data.decontam import EvalIndex, build_eval_index, iter_eval_strings


def _eval_dir(tmp_path):
    root = tmp_path / "eval"
    (root / "CMeEE").mkdir(parents=True)
    (root / "CMeEE" / "CMeEE_dev.json").write_text(
        json.dumps(
            [
                {
                    "text": "患者三天前无明显诱因出现发热伴咳嗽咳痰",
                    "entities": [{"entity": "发热", "type": "sym"}],
                }
            ],
            ensure_ascii=False,
        )
    )
    (root / "KUAKE-QIC").mkdir()
    (root / "KUAKE-QIC" / "dev.jsonl").write_text(
        json.dumps(
            {"id": "s1", "query": "糖尿病人能不能吃西瓜呢请问医生", "label": "注意事项"}, ensure_ascii=False
        )
        + "\n"
    )
    (root / "IMCS").mkdir()
    (root / "IMCS" / "test.json").write_text(
        json.dumps({"d1": {"1": "孩子昨天晚上开始拉肚子一天好几次"}}, ensure_ascii=False)
    )
    (root / "top.json").write_text(json.dumps({"q": "高血压患者日常需要注意哪些问题"}, ensure_ascii=False))
    (root / "KUAKE-IR").mkdir()
    (root / "KUAKE-IR" / "corpus.tsv").write_text("1\t慢性胃炎患者的饮食应当清淡易消化\n", encoding="utf-8")
    (root / "CMExam").mkdir()
    (root / "CMExam" / "test.csv").write_text(
        'Question,Answer\n"男性，45岁，反复上腹痛三年，最可能的诊断是",A\n'
    )
    return root


def test_every_string_of_every_file_is_indexed_under_its_task(tmp_path):
    root = _eval_dir(tmp_path)
    tasks = {task for task, _ in iter_eval_strings(root)}
    assert tasks == {"CMeEE", "KUAKE-QIC", "IMCS", "top", "KUAKE-IR", "CMExam"}
    index = build_eval_index(root, 10)
    assert index.hits("病历：患者三天前无明显诱因出现发热，体温38度") == ["CMeEE"]
    assert index.hits("科普：糖尿病人能不能吃西瓜呢？") == ["KUAKE-QIC"]
    assert index.hits("孩 子 昨天晚上开始拉肚子") == ["IMCS"]  # whitespace does not hide an overlap
    assert index.hits("高血压患者日常需要注意哪些问题") == ["top"]
    assert index.hits("完全无关的训练文本，讲的是骨折的康复训练方法") == []
    assert index.hits("慢性胃炎患者的饮食应当清淡易消化为主") == ["KUAKE-IR"]
    assert index.hits("病例：男性，45岁，反复上腹痛三年") == ["CMExam"]
    assert (
        index.stats["CMeEE"]["strings"] == 3 and index.stats["CMeEE"]["indexed"] == 1
    )  # short labels skipped


def test_index_round_trips_through_a_file(tmp_path):
    index = build_eval_index(_eval_dir(tmp_path), 8)
    index.save(tmp_path / "index.npz")
    loaded = EvalIndex.load(tmp_path / "index.npz")
    text = "孩子昨天晚上开始拉肚子一天好几次"
    assert loaded.hits(text) == index.hits(text) == ["IMCS"] and loaded.tasks == index.tasks


def test_an_eval_dir_without_files_is_an_input_error(tmp_path):
    from medgo.errors import InputError

    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no evaluation files"):
        build_eval_index(tmp_path / "empty", 13)


def test_the_bundled_eval_sets_are_indexed(samples_dir):
    """Every evaluation task folder the eval stage reads (CBLUE layouts, MCQ, safety) is in the index,
    and an item's own text is found under its task."""
    eval_dir = samples_dir / "eval"
    index = build_eval_index(eval_dir, 13)
    folders = {p.name for p in eval_dir.iterdir() if p.is_dir()}
    assert {"CMeEE", "CMeIE", "CHIP-CDN", "IMCS-V2", "MedDG", "KUAKE-IR", "mcq", "safety"} <= folders
    assert set(index.tasks) == folders
    longest: dict[str, str] = {}
    for task, string in iter_eval_strings(eval_dir):
        if len(string) > len(longest.get(task, "")):
            longest[task] = string
    for task in folders:
        assert index.stats[task]["indexed"] > 0, task
        assert task in index.hits("无关的前言。" + longest[task]), task


def test_phrases_many_eval_items_share_are_not_matched(tmp_path):
    root = tmp_path / "eval" / "QA"
    root.mkdir(parents=True)
    items = [
        {"q": f"请根据以下病例回答问题：第{i}例患者{chr(0x4E00 + i * 7)}{chr(0x4E00 + i * 11)}发热三天"}
        for i in range(30)
    ]
    (root / "dev.json").write_text(json.dumps(items, ensure_ascii=False))
    index = build_eval_index(tmp_path / "eval", 10, max_strings_per_ngram=20)
    assert index.hits("教材：请根据以下病例回答问题，并说明理由") == []  # the shared instruction
    assert index.hits(items[3]["q"][6:]) == ["QA"]  # an item's own content still matches
    assert build_eval_index(tmp_path / "eval", 10, max_strings_per_ngram=100).hits(
        "请根据以下病例回答问题"
    ) == ["QA"]


def test_short_queries_are_matched_whole_and_labels_not_at_all(tmp_path):
    root = tmp_path / "eval" / "KUAKE-QQR"
    root.mkdir(parents=True)
    pairs = [{"id": "s1", "query1": "小孩发烧怎么退烧快", "query2": "胃疼吃什么药", "label": "2"}]
    (root / "KUAKE-QQR_dev.json").write_text(json.dumps(pairs, ensure_ascii=False))
    index = build_eval_index(tmp_path / "eval", 13, min_item_chars=8)
    assert index.whole_lengths == [9] and index.stats["KUAKE-QQR"] == {"strings": 4, "indexed": 1}
    assert index.hits("网友提问：小孩 发烧怎么退烧快？医生回答：多喝水。") == ["KUAKE-QQR"]
    assert index.hits("小孩发烧怎么退烧") == []  # part of the query is not the query
    assert index.hits("胃疼吃什么药比较好") == []  # 6 characters: below min_item_chars
    assert EvalIndex.load(_saved(index, tmp_path)).hits("小孩发烧怎么退烧快") == ["KUAKE-QQR"]
    assert build_eval_index(tmp_path / "eval", 13, min_item_chars=13).hits("小孩发烧怎么退烧快") == []


def _saved(index: EvalIndex, tmp_path) -> str:
    path = tmp_path / "index.npz"
    index.save(path)
    return str(path)
