"""Text normalisation for Chinese medical text scraped from the web, PDFs and hospital systems.

One function, :func:`normalize_text`, applied before filtering and deduplication so that
copies differing only in markup, character width, script or spacing hash the same.
"""

from __future__ import annotations

import html
import re
import unicodedata
from functools import lru_cache

# Only names of real HTML elements count as tags, so clinical text such as "血压<140/90" or
# "P<0.05" is never mistaken for markup.
_BLOCK_TAGS = (
    "address|article|aside|blockquote|br|caption|dd|div|dl|dt|figcaption|figure|footer|h[1-6]|"
    "header|hr|li|main|nav|ol|p|pre|section|table|tbody|tfoot|thead|title|tr|ul"
)
_INLINE_TAGS = (
    "a|abbr|b|big|body|cite|code|col|colgroup|del|em|font|form|head|html|i|img|input|ins|"
    "label|link|mark|meta|nobr|q|s|small|span|strike|strong|sub|tt|u|wbr"
)
_TAG_TAIL = r"\b(?:\s[^<>]*)?/?>"
_DROPPED_BLOCKS = re.compile(r"<(script|style)\b[^>]*>.*?</\1\s*>|<!--.*?-->", re.IGNORECASE | re.DOTALL)
_BLOCK_TAG = re.compile(rf"</?(?:{_BLOCK_TAGS}){_TAG_TAIL}", re.IGNORECASE)
_CELL_TAG = re.compile(rf"</?(?:td|th){_TAG_TAIL}", re.IGNORECASE)
# Superscripts carry meaning in lab units (10<sup>9</sup>/L is 10^9/L, not 109/L).
_SUP_OPEN = re.compile(rf"<sup{_TAG_TAIL}", re.IGNORECASE)
_INLINE_TAG = re.compile(rf"</?(?:{_INLINE_TAGS}|sup){_TAG_TAIL}", re.IGNORECASE)

# Full-width punctuation of Chinese prose stays full-width: NFKC would turn "，" into ",",
# which is not how Chinese medical text (or users' questions) are written. Everything else
# in the full-width block (letters, digits, ％, ．, －, ／) becomes ASCII.
_PROSE_PUNCTUATION = re.compile("([，：；！？（）])")
_INVISIBLE = re.compile("[\u00ad\u200b-\u200f\u2060\ufeff\x00-\x08\x0e-\x1f\x7f]")
_HORIZONTAL_SPACE = re.compile(r"[^\S\n]+")
_BLANK_LINES = re.compile(r"\n{3,}")


@lru_cache(maxsize=1)
def _t2s_converter():
    import opencc

    return opencc.OpenCC("t2s")


def strip_html(text: str) -> str:
    """Remove HTML markup and decode entities; block elements become line breaks."""
    if "<" in text:
        text = _DROPPED_BLOCKS.sub("", text)
        text = _BLOCK_TAG.sub("\n", text)
        text = _CELL_TAG.sub(" ", text)
        text = _SUP_OPEN.sub("^", text)
        text = _INLINE_TAG.sub("", text)
    return html.unescape(text) if "&" in text else text


def to_half_width(text: str) -> str:
    """Unicode NFKC (full-width ASCII → half-width, ligatures and compatibility forms unfolded)
    except for Chinese prose punctuation."""
    parts = _PROSE_PUNCTUATION.split(text)
    parts[::2] = [unicodedata.normalize("NFKC", part) for part in parts[::2]]
    return "".join(parts)


def to_simplified(text: str) -> str:
    """Traditional → simplified Chinese with OpenCC's ``t2s`` configuration."""
    return _t2s_converter().convert(text)


def collapse_whitespace(text: str) -> str:
    """One space for any run of spaces/tabs, no trailing spaces, at most one blank line between paragraphs."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = (_HORIZONTAL_SPACE.sub(" ", line).strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def normalize_text(text: str, *, t2s: bool = True) -> str:
    """Clean one document: strip HTML, NFKC width folding, traditional → simplified, whitespace.

    Line breaks are kept (paragraphs and list items carry meaning in clinical text); runs
    of other whitespace collapse to one space. Invisible characters (zero-width spaces,
    soft hyphens, stray control characters) are removed.
    """
    text = strip_html(text)
    text = _INVISIBLE.sub("", to_half_width(text))
    if t2s:
        text = to_simplified(text)
    return collapse_whitespace(text)
