"""Document quality filters for the pretraining corpus, configurable per category.

:func:`quality_filter` returns the name of the first rule a cleaned document breaks (it becomes the
document's ``dropped`` reason and a data-card count), or None. The rules, in order:

=====================  ==============================================================
``too_short``          fewer characters than ``min_chars``
``too_long``           more than ``max_chars``
``low_chinese_ratio``  CJK ideographs below ``min_chinese_ratio`` of the visible characters
``language:<code>``    the script-based language (:func:`detect_language`) is not in ``languages``
``high_symbol_ratio``  Unicode symbols (categories S*, private use) above ``max_symbol_ratio``
``high_digit_ratio``   decimal digits above ``max_digit_ratio``
``repeated_lines``     characters in lines seen earlier in the document above ``max_repeated_line_ratio``
``repeated_ngrams``    character n-grams that occur more than once above ``max_repeated_ngram_ratio``
=====================  ==============================================================

Character classes are counted in one pass per document (:func:`char_classes`, a per-character cache).
Language identification is a character-script count, not a statistical model: for a corpus that is
Chinese by construction the question is whether a document is Chinese, Japanese (kana), Korean
(Hangul), or a Latin/Cyrillic/Arabic-script text, which scripts answer at counting speed. Measured
against lingua-language-detector 2.1.1 (a 96 MB wheel) on 116 labelled medical texts (the sample
corpus, Chinese with English terms, Japanese, Korean, English): both were right on all of them;
lingua with all its languages ran about 280× slower (56 vs 15,800 documents/s on one loaded core),
restricted to the same six languages about 1.6× slower. What lingua adds is telling apart languages
that share a script, which this corpus does not need, so it is not a dependency.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from functools import lru_cache

import numpy as np
import regex

from medgo.config import Language, QualityRules

_WORDS = {
    "en": regex.compile(r"\p{Latin}+"),
    "ru": regex.compile(r"\p{Cyrillic}+"),
    "ar": regex.compile(r"\p{Arabic}+"),
}
_ALPHABETS = {"en": "latin", "ru": "cyrillic", "ar": "arabic"}


#: One letter per character class, as :func:`char_classes` counts them.
CLASS_CODES = {
    "cjk": "c",
    "kana": "k",
    "hangul": "h",
    "latin": "l",
    "cyrillic": "y",
    "arabic": "a",
    "digit": "d",
    "symbol": "s",
    "space": " ",
    "other": "o",
}


def char_class(char: str) -> str:
    """One of cjk, kana, hangul, latin, cyrillic, arabic, digit, symbol, space, other."""
    code = ord(char)
    if (
        0x4E00 <= code <= 0x9FFF
        or 0x3400 <= code <= 0x4DBF
        or 0xF900 <= code <= 0xFAFF
        or 0x20000 <= code <= 0x3134F
    ):
        return "cjk"
    if 0x3040 <= code <= 0x30FF or 0x31F0 <= code <= 0x31FF or 0xFF66 <= code <= 0xFF9F:
        return "kana"
    if 0xAC00 <= code <= 0xD7AF or 0x1100 <= code <= 0x11FF or 0x3130 <= code <= 0x318F:
        return "hangul"
    if char.isspace():
        return "space"
    category = unicodedata.category(char)
    if category == "Nd":
        return "digit"
    if category[0] == "S" or category == "Co":
        return "symbol"
    if category[0] == "L":
        if code < 0x250 or 0x1E00 <= code <= 0x1EFF:
            return "latin"
        if 0x400 <= code <= 0x52F:
            return "cyrillic"
        if 0x600 <= code <= 0x6FF or 0x750 <= code <= 0x77F:
            return "arabic"
    return "other"


_CLASS_NAMES = tuple(CLASS_CODES)


@lru_cache(maxsize=1)
def _class_table() -> np.ndarray:
    """The class index (position in :data:`CLASS_CODES`) of every BMP character, built once (~0.2 s)."""
    index = {name: i for i, name in enumerate(_CLASS_NAMES)}
    return np.array([index[char_class(chr(code))] for code in range(0x10000)], dtype=np.uint8)


def char_classes(text: str) -> dict[str, int]:
    """How many characters of ``text`` fall in each :func:`char_class` (vectorised over code points)."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    astral = codes > 0xFFFF
    has_astral = bool(astral.any())
    bmp = codes[~astral] if has_astral else codes
    counts = np.bincount(_class_table()[bmp], minlength=len(_CLASS_NAMES))
    result = dict(zip(_CLASS_NAMES, counts.tolist(), strict=True))
    if has_astral:  # CJK extensions B-G, emoji: rare, classified one by one
        for code in codes[astral].tolist():
            result[char_class(chr(code))] += 1
    return result


def visible_chars(text: str) -> int:
    return len(text) - char_classes(text)["space"]


def chinese_ratio(text: str) -> float:
    """Share of CJK ideographs among the non-whitespace characters of ``text``."""
    counts = char_classes(text)
    visible = len(text) - counts["space"]
    return counts["cjk"] / visible if visible else 0.0


def detect_language(text: str, counts: dict[str, int] | None = None) -> Language:
    """The language of ``text`` by script: ``zh``, ``ja``, ``ko``, ``en``, ``ru``, ``ar`` or ``other``.

    Han, kana and Hangul count per character, alphabetic scripts per word (a word of Latin letters
    carries about as much as one or two Chinese characters), so Chinese with English terms
    (``CT检查``, ``HbA1c``) stays Chinese. Han text with kana in it is Japanese.
    """
    counts = char_classes(text) if counts is None else counts
    han, kana = counts["cjk"], counts["kana"]
    scores: dict[Language, float] = {
        "zh": han,
        "ja": han + kana if kana >= 3 and kana >= 0.1 * (han + kana) else 0,
        "ko": counts["hangul"],
    }
    for lang, pattern in _WORDS.items():
        scores[lang] = 1.5 * len(pattern.findall(text)) if counts[_ALPHABETS[lang]] else 0
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
    if len(text) - n + 1 < 2:
        return 0.0
    counts = Counter(text[i : i + n] for i in range(len(text) - n + 1))
    repeated = sum(c for c in counts.values() if c > 1)
    return repeated / (len(text) - n + 1)


def quality_filter(text: str, rules: QualityRules, counts: dict[str, int] | None = None) -> str | None:
    """The name of the first quality rule ``text`` breaks, or None if it passes all.

    ``counts`` are the text's :func:`char_classes` when the caller has them already.
    """
    length = len(text)
    if length < rules.min_chars:
        return "too_short"
    if length > rules.max_chars:
        return "too_long"
    counts = char_classes(text) if counts is None else counts
    visible = length - counts["space"]
    if not visible:
        return "too_short"
    if counts["cjk"] / visible < rules.min_chinese_ratio:
        return "low_chinese_ratio"
    if rules.languages:
        language = detect_language(text, counts)
        if language not in rules.languages:
            return f"language:{language}"
    if counts["symbol"] / visible > rules.max_symbol_ratio:
        return "high_symbol_ratio"
    if counts["digit"] / visible > rules.max_digit_ratio:
        return "high_digit_ratio"
    if rules.max_repeated_line_ratio < 1 and repeated_line_ratio(text) > rules.max_repeated_line_ratio:
        return "repeated_lines"
    if (
        rules.max_repeated_ngram_ratio < 1
        and repeated_ngram_ratio(text, rules.repeated_ngram_chars) > rules.max_repeated_ngram_ratio
    ):
        return "repeated_ngrams"
    return None
