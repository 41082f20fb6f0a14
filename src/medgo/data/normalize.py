"""Text normalisation for Chinese medical text scraped from the web, PDFs and hospital systems.

:func:`normalize_text` is applied before filtering and deduplication so that copies differing only
in markup, character width, script, spacing or the site furniture around them hash the same: HTML
removal, NFKC width folding (prose punctuation kept full-width), OpenCC t2s, whitespace, and
removal of boilerplate *lines* (:data:`DEFAULT_BOILERPLATE_PATTERNS`: site navigation, 版权所有,
ICP备案, 扫码关注, 上一篇/下一篇, 免责声明, read counters). Boilerplate patterns match whole lines of
the already normalised text, so one pattern covers 版權所有 and 版权所有, ＩＣＰ and ICP.
:class:`TextNormalizer` carries a stage's choices.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
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


#: Regular expressions of boilerplate lines (searched in each whole, normalised line).
DEFAULT_BOILERPLATE_PATTERNS: tuple[str, ...] = (
    # copyright and reprint notices
    r"^.{0,30}(?:版权所有|版权归.{1,20}所有|copyright|©|\(c\)\s*\d{4}).{0,80}$",
    r"^.{0,40}(?:未经(?:许可|授权).{0,10}(?:转载|复制|使用)|转载请注明|禁止转载|如有侵权).{0,60}$",
    # ICP filing and public-security filing numbers
    r"^.{0,40}(?:ICP\s*(?:备|证|许可证)|公网安备|网安备).{0,60}$",
    # follow / scan / share prompts
    r"^.{0,30}(?:扫(?:码|描二维码|一扫)|长按(?:识别)?二维码|关注(?:我们|微信|官方)?公众号|点击(?:上方|下方)?.{0,6}关注"
    r"|分享到|一键分享).{0,40}$",
    # previous / next article, back to top, page navigation
    r"^\s*(?:上一篇|下一篇|上一页|下一页|上一条|下一条)(?:\s*[:：].{0,60}|\s*$|\s+[^。！？]{0,40}$)",
    r"^\s*(?:返回(?:顶部|首页|列表|上一页)|回到顶部|相关(?:阅读|文章|推荐)|热门(?:文章|推荐)|猜你喜欢)\s*[:：]?.{0,40}$",
    r"^\s*(?:当前位置|您的位置|你的位置|所在位置)\s*[:：].{0,80}$",
    r"^\s*首页\s*[>＞»›/].{0,80}$",
    # disclaimers
    r"^\s*[【\[(（]?\s*免责声明\s*[】\])）]?\s*[:：]?.{0,200}$",
    # article metadata and read counters
    r"^.{0,40}(?:阅读|浏览|点击|访问)(?:量|数|次数)?\s*(?:[:：]\s*[\d.]+\s*[万千]?|[(（]\s*[\d.]+\s*[万千]?\s*[)）]).{0,40}$",
    r"^\s*(?:阅读|浏览|点击)(?:量|数|次数)?\s*[\d.]+\s*[万千]?\s*次?\s*$",
    r"^\s*[\d.]+\s*[万千]?\s*(?:人|次)(?:阅读|浏览|已读|看过|点赞|收藏)\s*$",
    r"^\s*(?:(?:发布|更新|发表)(?:时间|日期)|来源|作者|编辑|责任编辑|责编|审核|文章来源)\s*[:：].{0,60}$",
    # site navigation: many short segments between separators, or the usual site links
    r"^(?:[^\s|｜>»·，。；！？]{1,8}\s*[|｜>»·/]\s*){3,}[^\s|｜>»·，。；！？]{1,8}$",
    r"^(?=.{0,60}$)(?:.*?(?:首页|关于我们|联系我们|网站地图|加入收藏|设为首页|帮助中心|登录|注册|意见反馈)){2,}.*$",
)


@lru_cache(maxsize=16)
def compile_boilerplate(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    """One case-insensitive pattern matching any of ``patterns`` (None for an empty list)."""
    if not patterns:
        return None
    try:
        return re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE)
    except re.error as exc:
        from medgo.errors import ConfigError

        raise ConfigError(f"boilerplate_patterns: invalid regular expression ({exc})") from None


def remove_boilerplate(text: str, pattern: re.Pattern[str] | None) -> str:
    """Drop the lines of ``text`` that ``pattern`` finds boilerplate in."""
    if pattern is None:
        return text
    lines = text.split("\n")
    kept = [line for line in lines if not (line and pattern.search(line))]
    return _BLANK_LINES.sub("\n\n", "\n".join(kept)).strip() if len(kept) != len(lines) else text


def normalize_text(
    text: str,
    *,
    t2s: bool = True,
    nfkc: bool = True,
    html_markup: bool = True,
    boilerplate: re.Pattern[str] | None = None,
) -> str:
    """Clean one document: strip HTML, NFKC width folding, traditional → simplified, whitespace, boilerplate.

    Line breaks are kept (paragraphs and list items carry meaning in clinical text); runs
    of other whitespace collapse to one space. Invisible characters (zero-width spaces,
    soft hyphens, stray control characters) are removed.
    """
    if html_markup:
        text = strip_html(text)
    if nfkc:
        text = to_half_width(text)
    text = _INVISIBLE.sub("", text)
    if t2s:
        text = to_simplified(text)
    return remove_boilerplate(collapse_whitespace(text), boilerplate)


@dataclass(frozen=True)
class TextNormalizer:
    """A stage's normalisation choices, applied by calling it on a text."""

    t2s: bool = True
    nfkc: bool = True
    html_markup: bool = True
    boilerplate_patterns: Sequence[str] = ()

    @classmethod
    def from_config(cls, config) -> TextNormalizer:
        """From a :class:`~medgo.config.PrepareConfig` (its normalisation fields)."""
        patterns = (
            ()
            if not config.remove_boilerplate
            else tuple(config.boilerplate_patterns)
            if config.boilerplate_patterns is not None
            else DEFAULT_BOILERPLATE_PATTERNS
        )
        return cls(config.traditional_to_simplified, config.nfkc, config.strip_html, patterns)

    def __call__(self, text: str) -> str:
        return normalize_text(
            text,
            t2s=self.t2s,
            nfkc=self.nfkc,
            html_markup=self.html_markup,
            boilerplate=compile_boilerplate(tuple(self.boilerplate_patterns)),
        )
