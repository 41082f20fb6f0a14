"""Document quality filters for the pretraining corpus, configurable per category.

:func:`quality_filter` returns the name of the first rule a cleaned document breaks (it becomes the
document's ``dropped`` reason and a data-card count), or None. The rules, in order:

=====================  ==============================================================
``too_short``          fewer characters than ``min_chars``
``too_long``           more than ``max_chars``
``low_chinese_ratio``  CJK ideographs below ``min_chinese_ratio`` of the visible characters
``language:<code>``    the script-based language (:func:`detect_language`) is not in ``languages``
``high_symbol_ratio``  Unicode symbols (``\\p{S}``, private use) above ``max_symbol_ratio``
``high_digit_ratio``   decimal digits above ``max_digit_ratio``
``repeated_lines``     characters in lines seen earlier in the document above ``max_repeated_line_ratio``
``repeated_ngrams``    character n-grams that occur more than once above ``max_repeated_ngram_ratio``
=====================  ==============================================================

Language identification is a character-script count, not a statistical model: for a corpus that is
Chinese by construction the question is whether a document is Chinese, Japanese (kana), Korean
(Hangul), or a Latin/Cyrillic/Arabic-script text, which scripts answer exactly and at regex speed;
``benchmarks/data_prep.py`` compares it with lingua on mixed samples.
"""

from __future__ import annotations

import numpy as np
import regex

from medgo.config import Language, QualityRules
from medgo.data.minhash import ngram_hashes

_HAN = regex.compile(r"[\p{Han}]")
_KANA = regex.compile(r"[\p{Hiragana}\p{Katakana}ー]")
_HANGUL = regex.compile(r"[\p{Hangul}]")
_WORDS = {
    "en": regex.compile(r"\p{Latin}+"),
    "ru": regex.compile(r"\p{Cyrillic}+"),
    "ar": regex.compile(r"\p{Arabic}+"),
}
_WHITESPACE = regex.compile(r"\s")
_SYMBOL = regex.compile(r"[\p{S}\p{Co}]")
_DIGIT = regex.compile(r"\p{Nd}")
_CJK_IDEOGRAPH = regex.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def visible_chars(text: str) -> int:
    return len(text) - len(_WHITESPACE.findall(text))


def chinese_ratio(text: str) -> float:
    """Share of CJK ideographs among the non-whitespace characters of ``text``."""
    visible = visible_chars(text)
    return len(_CJK_IDEOGRAPH.findall(text)) / visible if visible else 0.0


def detect_language(text: str) -> Language:
    """The language of ``text`` by script: ``zh``, ``ja``, ``ko``, ``en``, ``ru``, ``ar`` or ``other``.

    Han, kana and Hangul count per character, alphabetic scripts per word (a word of Latin letters
    carries about as much as one or two Chinese characters), so Chinese with English terms
    (``CT检查``, ``HbA1c``) stays Chinese. Han text with kana in it is Japanese.
    """
    han = len(_HAN.findall(text))
    kana = len(_KANA.findall(text))
    scores: dict[Language, float] = {
        "zh": han,
        "ja": han + kana if kana >= 3 and kana >= 0.1 * (han + kana) else 0,
        "ko": len(_HANGUL.findall(text)),
    }
    for lang, pattern in _WORDS.items():
        scores[lang] = 1.5 * len(pattern.findall(text))
    if scores["ja"]:
        scores["zh"] = 0
    best = max(scores, key=lambda lang: scores[lang])
    return best if scores[best] > 0 else "other"


def repeated_line_ratio(text: str) -> float:
    """Share of the characters of non-blank lines that belong to a line seen earlier in the text."""
    seen: set[str] = set()
    total = repeated = 0
    for line in text.split("\n"):
        line = line.strip()
        if not line:
            continue
        total += len(line)
        if line in seen:
            repeated += len(line)
        else:
            seen.add(line)
    return repeated / total if total else 0.0


def repeated_ngram_ratio(text: str, n: int) -> float:
    """Share of character n-gram positions whose n-gram occurs more than once in ``text``."""
    hashes = ngram_hashes(text, n)
    if hashes.size < 2:
        return 0.0
    _, inverse, counts = np.unique(hashes, return_inverse=True, return_counts=True)
    return float((counts[inverse] > 1).mean())


def quality_filter(text: str, rules: QualityRules) -> str | None:
    """The name of the first quality rule ``text`` breaks, or None if it passes all."""
    length = len(text)
    if length < rules.min_chars:
        return "too_short"
    if length > rules.max_chars:
        return "too_long"
    visible = visible_chars(text)
    if not visible:
        return "too_short"
    if len(_CJK_IDEOGRAPH.findall(text)) / visible < rules.min_chinese_ratio:
        return "low_chinese_ratio"
    if rules.languages:
        language = detect_language(text)
        if language not in rules.languages:
            return f"language:{language}"
    if len(_SYMBOL.findall(text)) / visible > rules.max_symbol_ratio:
        return "high_symbol_ratio"
    if len(_DIGIT.findall(text)) / visible > rules.max_digit_ratio:
        return "high_digit_ratio"
    if rules.max_repeated_line_ratio < 1 and repeated_line_ratio(text) > rules.max_repeated_line_ratio:
        return "repeated_lines"
    if (
        rules.max_repeated_ngram_ratio < 1
        and repeated_ngram_ratio(text, rules.repeated_ngram_chars) > rules.max_repeated_ngram_ratio
    ):
        return "repeated_ngrams"
    return None
