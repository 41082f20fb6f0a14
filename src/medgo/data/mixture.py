"""Corpus mixture: which category a document belongs to, and how often it goes into the output.

Category, in order: the record's own ``category`` (or an alias of it), else its ``source`` (an
alias, or a category id inside the source name such as ``medgo-synthetic/tcm``), else the
category whose keywords occur most often in the text (:data:`DEFAULT_CATEGORY_KEYWORDS`). A record
that names a category that is neither known nor an alias is quarantined: the label is wrong, and
guessing would hide that.

Resampling to target shares of the corpus's tokens: each category gets a rate (target tokens /
tokens it has after deduplication); a document is written ``floor(rate)`` times plus once more with
probability ``frac(rate)``, decided by a hash of the seed and the document id. The decision depends
on nothing else, so it is the same in any shard, on any worker, in any run.

Tokens are estimated, not counted with a tokenizer (the prepare step has none): one per CJK
character and one per four other visible characters, close to Qwen2's rate on Chinese clinical
text. ``data.pack`` reports the exact token counts per category of what it packs.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from medgo.config import MixtureConfig

#: Keywords that place a record without a category; the category with most occurrences wins.
DEFAULT_CATEGORY_KEYWORDS: dict[str, tuple[str, ...]] = {
    "textbook": ("第一节", "第二节", "本章", "学习目标", "病理生理", "发病机制", "概述"),
    "clinical_guideline": ("指南", "专家共识", "推荐意见", "证据等级", "推荐强度", "诊疗规范"),
    "journal_article": ("摘要", "目的", "方法", "结果", "结论", "关键词", "P<0.05", "统计学意义"),
    "encyclopedia": ("是一种", "又称", "别名", "简介", "百科"),
    "drug_label": ("适应症", "禁忌", "用法用量", "不良反应", "说明书", "规格", "药理作用", "贮藏"),
    "doctor_patient_dialogue": ("医生：", "患者：", "病人：", "您好", "请问", "建议您"),
    "medical_record": ("主诉", "现病史", "既往史", "入院", "出院", "查体", "诊断：", "住院号"),
    "exam_question": ("A.", "B.", "C.", "D.", "答案", "解析", "下列", "选择题"),
    "nursing": ("护理", "护士", "护理措施", "健康宣教", "观察要点"),
    "tcm": ("中医", "辨证", "方剂", "经络", "穴位", "气血", "阴阳", "脉象", "舌苔"),
    "public_health": ("疾控", "流行病", "传染病", "疫苗", "公共卫生", "防控", "监测报告"),
    "health_education": ("科普", "日常生活中", "预防", "健康生活", "注意事项", "小贴士"),
    "lab_medicine": ("检验", "参考范围", "参考值", "标本", "血常规", "生化", "mmol/L", "g/L"),
    "medical_device": ("医疗器械", "注册证", "设备", "器械", "操作规程", "维护保养"),
    "medical_ethics_law": ("伦理", "知情同意", "法律", "法规", "条例", "隐私", "医疗纠纷"),
}


@dataclass(frozen=True)
class Categorizer:
    """Decides a record's category from its fields; :meth:`categorize` returns ``(category, how)``."""

    categories: frozenset[str]
    aliases: Mapping[str, str]
    keywords: Mapping[str, tuple[str, ...]]

    @classmethod
    def from_config(cls, config) -> Categorizer:
        """From a :class:`~medgo.config.PrepareConfig`."""
        keywords = (
            {k: tuple(v) for k, v in config.category_keywords.items()}
            if config.category_keywords is not None
            else {k: v for k, v in DEFAULT_CATEGORY_KEYWORDS.items() if k in config.categories}
        )
        return cls(frozenset(config.categories), dict(config.category_aliases), keywords)

    def categorize(self, category: str | None, source: str | None, text: str) -> tuple[str | None, str]:
        """``(category, how)`` with ``how`` one of record, source, keywords; ``(None, why)`` if none fits.

        ``why`` is ``unknown_category:<name>`` for a named category that is not known, or
        ``uncategorized`` when nothing places the record.
        """
        if category is not None:
            found = category if category in self.categories else self.aliases.get(category)
            if found is None:
                return None, f"unknown_category:{category[:40]}"
            return found, "record"
        if source:
            if source in self.aliases:
                return self.aliases[source], "source"
            for part in re.split(r"[/\\:|._\-\s]+", source):
                if part in self.categories:
                    return part, "source"
        best, best_hits = None, 0
        for name, words in self.keywords.items():
            hits = sum(text.count(word) for word in words)
            if hits > best_hits:
                best, best_hits = name, hits
        if best is not None:
            return best, "keywords"
        return None, "uncategorized"


def estimate_tokens(text: str, counts: Mapping[str, int] | None = None) -> int:
    """Estimated tokens: one per CJK character, one per four other non-whitespace characters.

    ``counts`` are the text's :func:`~medgo.data.quality.char_classes` when the caller has them.
    """
    from medgo.data.quality import char_classes

    counts = char_classes(text) if counts is None else counts
    cjk = counts["cjk"]
    return cjk + math.ceil((len(text) - cjk - counts["space"]) / 4)


def mixture_rates(tokens: Mapping[str, int], config: MixtureConfig) -> dict[str, float]:
    """Per-category sampling rate that turns the natural ``tokens`` into the target shares.

    Categories without a target share the rest of the budget in their natural proportions. A
    category with a target but no tokens cannot be sampled into existence (rate 0; the data card
    reports its target as unreachable).
    """
    natural = sum(tokens.values())
    if not config.target_shares or natural == 0:
        return dict.fromkeys(tokens, 1.0)
    budget = config.total_tokens or natural
    named = {c: s for c, s in config.target_shares.items() if c in tokens}
    rest_share = max(0.0, 1.0 - sum(named.values()))
    rest_natural = sum(t for c, t in tokens.items() if c not in named)
    rates: dict[str, float] = {}
    for category, have in tokens.items():
        if have == 0:
            rates[category] = 0.0
        elif category in named:
            rates[category] = named[category] * budget / have
        else:
            rates[category] = rest_share * budget / rest_natural if rest_natural else 0.0
    return rates


def copies(doc_id: str, rate: float, seed: int) -> int:
    """How many times a document goes into the output at ``rate``: deterministic in (seed, id)."""
    whole = math.floor(rate)
    frac = rate - whole
    if frac <= 0:
        return whole
    digest = hashlib.blake2b(f"{seed}\x00{doc_id}".encode(), digest_size=8).digest()
    return whole + (int.from_bytes(digest, "little") / 2**64 < frac)
