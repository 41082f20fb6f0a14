"""Masking of patient identifiers in Chinese clinical text with typed placeholders.

Identifiers with structure are validated, not just pattern-matched: a resident ID must
pass its ISO 7064 MOD 11-2 check digit and carry a real birth date, a bank card must pass
Luhn. Free-form identifiers (names, addresses, birth dates, record numbers) are masked only
in the contexts that mark them as such (``姓名：``, ``患者王某某``, ``住址：``, ``住院号``), which
keeps dosages, lab values, ICD codes, approval numbers, years and times intact. A name
candidate is further rejected when the text at its start is a clinical term or a function
word (:data:`NOT_NAMES`): many such words begin with a character that is also a surname
(``患者高血压，男，65岁``, ``患者黄疸，女``, ``患者于今日``), and masking them would erase the
diagnosis. Labels and role words stay (``住院号：<MRN>``, ``患者<NAME>``) so the text still
reads naturally.

Nothing here logs: callers get only counts per type, never the original values.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

#: Placeholder types, in the order detectors run; each is masked as ``<TYPE>``.
PII_TYPES: tuple[str, ...] = ("ID", "PHONE", "EMAIL", "BANK_CARD", "MRN", "NAME", "ADDRESS", "DOB")

DEFAULT_RECORD_NUMBER_PREFIXES: tuple[str, ...] = (
    "住院号",
    "病案号",
    "门诊号",
    "病历号",
    "就诊号",
    "床号",
    "检查号",
)

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK_CHARS = "10X98765432"

# Common single and compound surnames: a name is only recognised after a role word or a
# label, and its first character must be one of these.
_SURNAMES = (
    "欧阳|司马|诸葛|上官|东方|皇甫|慕容|令狐|夏侯|尉迟|公孙|长孙|宇文|司徒|"
    "[王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢"
    "姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤常温康施"
    "文牛樊葛邢安齐易乔伍庞颜倪庄聂章鲁岳翟殷詹申欧耿关兰焦俞左柳甘祝包宁尚符舒阮柯纪梅童凌毕单季裴霍涂成苗谷"
    "盛曲翁冉骆蓝路游辛靳管柴蒙鲍华喻祁蒲房滕屈饶解牟艾尤阳时穆农司卓古吉缪简车项连芦麦褚娄窦戚岑景党宫费卜冷"
    "晏席卫米柏宗瞿桂全佟应臧闵苟邬边卞姬师和仇栾隋商刁沙荣巫寇桑郎甄丛仲虞敖巩明佘池查麻苑迟邝]"
)
_ROLE = r"(?:患者|病人|患儿|病患|伤者|产妇|孕妇)"
_PSEUDONYM = r"(?:某某|某|XX|xx|××|×|X|x|\*\*|\*)"
_CJK = r"[\u4e00-\u9fff]"
_SEP = r"\s*[:：]?\s*(?:是|为)?\s*"

#: Words that are never the start of a name, though most begin with a surname character:
#: symptoms, diagnoses and findings, and the function words that follow a role word in
#: clinical prose. A name candidate (after ``患者``, ``姓名：``, ``家属：`` …) is dropped when the
#: text at its start begins with one of these. Entries are regular expressions; each is at
#: least two characters long so that real names with the same surname stay masked
#: (``患者高某``, ``患者于小明，男，45岁``).
NOT_NAMES: tuple[str, ...] = (
    # Clinical terms.
    "高血压",
    "高血糖",
    "高血脂",
    "高脂",
    "高尿酸",
    "高热",
    "高烧",
    "高钾",
    "高钠",
    "高钙",
    "高渗",
    "高颅压",
    "高龄",
    "高危",
    "高度",
    "黄疸",
    "黄染",
    "白内障",
    "白血病",
    "白癜风",
    "白带",
    "房颤",
    "房扑",
    "房早",
    "房室",
    "梅毒",
    "麻疹",
    "麻木",
    "麻醉",
    "包块",
    "焦虑",
    "冷汗",
    "艾滋",
    "宫颈",
    "宫缩",
    "窦性",
    "关节",
    "阳性",
    "唐氏",
    "陈旧",
    "舒张",
    "屈曲",
    "霍乱",
    "叶酸",
    "金黄",
    "牛皮癣",
    "柴胡",
    "查体",
    "解[大小黑稀]?便",
    "周身",
    "全身",
    "左[侧下上眼耳肺肾膝髋手足]",
    "单侧",
    "颜面",
    "游走",
    "迟发",
    "发热",
    "发烧",
    "头痛",
    "头晕",
    "腹痛",
    "腹泻",
    "咳嗽",
    "胸痛",
    "胸闷",
    "呕吐",
    "乏力",
    "水肿",
    # Function words and phrases after a role word.
    "于[今昨前近入本外当我半次晨夜上下午凌早晚去此是门急家院术产孕体查同一二三四五六七八九十两数]",
    "于明[日天晨]",
    "于某[日天年月时院地处]",
    "曾[于在因行有患服经多就被]",
    "时[有感常伴]",
    "常[规有感伴]",
    "余[无未]",
    "尚[未可好稳能]",
    "方才",
    "何时",
    "明[显确]",
    "尤其",
    "易[感怒]",
    "严重",
    "应用",
    "符合",
    "连续",
    "因",
    "今日",
    "自诉",
    "主诉",
    "诉",
    "既往",
    "否认",
)
_NOT_A_NAME = re.compile("|".join(NOT_NAMES))


@dataclass(frozen=True, slots=True)
class _Span:
    start: int
    end: int
    kind: str


def is_valid_resident_id(number: str) -> bool:
    """True for an 18-character resident ID with a correct check digit and a real birth date."""
    if len(number) != 18 or not number[:17].isdigit():
        return False
    total = sum(int(digit) * weight for digit, weight in zip(number[:17], _ID_WEIGHTS, strict=True))
    if _ID_CHECK_CHARS[total % 11] != number[17].upper():
        return False
    return _is_birth_date(number[6:14])


def _is_birth_date(yyyymmdd: str) -> bool:
    try:
        born = _dt.date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:8]))
    except ValueError:
        return False
    return 1900 <= born.year and born <= _dt.date.today()


def passes_luhn(digits: str) -> bool:
    """The Luhn (mod 10) check used by bank card numbers."""
    total = 0
    for i, char in enumerate(reversed(digits)):
        value = int(char)
        if i % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


_RESIDENT_ID = re.compile(r"(?<!\d)\d{17}[\dXx](?![\dA-Za-z])")
_LABELLED_ID = re.compile(r"(?:身份证|证件)(?:号码|号)?" + _SEP + r"(\d{17}[\dXx]|\d{15})(?![\dA-Za-z])")
_MOBILE = re.compile(r"(?<![\d.])(?:(?:\+|00)?86[- ]?)?1[3-9]\d(?:[- ]?\d{4}){2}(?!\d)")
_LANDLINE = re.compile(r"(?<![\d.])(?:\(0\d{2,3}\)\s?|0\d{2,3}-)\d{7,8}(?!\d)")
# Hotlines and service desks are published numbers that refusals and health advice should keep
# ("心理危机干预热线010-82951332"); a number right after these words is not a patient's.
_PUBLIC_SERVICE_CONTEXT = re.compile(r"热线|服务电话|咨询电话|急救电话|客服电话|服务中心电话")
_PUBLIC_SERVICE_WINDOW = 8
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_CARD = re.compile(r"(?<![\d.])(?:\d{16,19}|\d{4}(?:[ -]\d{4}){3}(?:[ -]\d{1,3})?)(?![\d.])")
_NAME_END = r"(?=[\s，,。；;、:：()（）]|性别|年龄|[男女]|出生|电话|手机|住址|身份|$)"
_NAME_LABELLED = re.compile(
    r"姓名\s*[:：]\s*(" + _CJK + r"{2,4}?" + _NAME_END + r"|[A-Z][a-z]+(?: [A-Z][a-z]+){0,2})"
)
# Relatives and contacts ("紧急联系人：妻子刘芳", "家属：李华（女儿）"); the name must start with a
# surname because the same labels also tag speakers in dialogues ("患者家属：医生您好").
_NAME_RELATIVE = re.compile(
    r"(?:联系人|家属|监护人)\s*[:：]\s*(?:妻子|丈夫|配偶|儿子|女儿|父亲|母亲|之子|之女)?"
    r"((?:" + _SURNAMES + ")" + _CJK + r"{1,2}?" + _NAME_END + ")"
)
_NAME_PSEUDONYM = re.compile(_ROLE + r"\s*((?:" + _SURNAMES + ")" + _PSEUDONYM + r")(?![线光A-Za-z0-9])")
# A full name after a role word only when a sex or an age follows ("患者王小明，男，45岁"), the
# standard opening of a case report; elsewhere "患者高热" or "患者于今日" would be false hits
# (and with a sex or age, NOT_NAMES keeps "患者高血压，男，65岁" intact).
_NAME_WITH_DEMOGRAPHICS = re.compile(
    _ROLE + r"\s*((?:" + _SURNAMES + ")" + _CJK + r"{1,2}?)(?=[，,、\s]*[男女]|[，,、\s]*\d{1,3}岁)"
)
_NAME_SALUTATION = re.compile(r"(?<!" + _CJK + r")((?:" + _SURNAMES + r"))(?=先生|女士|小姐|阿姨|大爷|大妈)")
_ADDRESS = re.compile(
    r"(?:家庭住址|家庭地址|现住址|户籍地址|居住地址|住址|地址)\s*(?:[:：]|是|为|在)\s*"
    + r"((?:(?!电话|手机|联系|邮编|邮箱)[^\s，,。；;！!？?\n]){2,80})"
)
_DOB = re.compile(
    r"(?:出生日期|出生年月日|出生年月|生日|出生于)"
    + _SEP
    + r"(\d{4}\s*[-/.年]\s*\d{1,2}(?:\s*[-/.月]\s*\d{1,2}\s*日?)?|\d{8}(?!\d))"
)


@lru_cache(maxsize=16)
def _record_number_pattern(prefixes: tuple[str, ...]) -> re.Pattern[str] | None:
    if not prefixes:
        return None
    labels = "|".join(re.escape(p) for p in sorted(prefixes, key=len, reverse=True))
    return re.compile(rf"(?:{labels}){_SEP}([A-Za-z0-9][A-Za-z0-9-]*)")


def _group_spans(pattern: re.Pattern[str], text: str, kind: str) -> Iterator[_Span]:
    for match in pattern.finditer(text):
        yield _Span(match.start(1), match.end(1), kind)


def _find_ids(text: str) -> Iterator[_Span]:
    for match in _RESIDENT_ID.finditer(text):
        if is_valid_resident_id(match.group()):
            yield _Span(match.start(), match.end(), "ID")
    # After an explicit ID label, 15-digit legacy numbers and mistyped check digits are IDs too.
    yield from _group_spans(_LABELLED_ID, text, "ID")


def _find_phones(text: str) -> Iterator[_Span]:
    for pattern in (_MOBILE, _LANDLINE):
        for match in pattern.finditer(text):
            if not _PUBLIC_SERVICE_CONTEXT.search(
                text, max(0, match.start() - _PUBLIC_SERVICE_WINDOW), match.start()
            ):
                yield _Span(match.start(), match.end(), "PHONE")


def _find_emails(text: str) -> Iterator[_Span]:
    for match in _EMAIL.finditer(text):
        yield _Span(match.start(), match.end(), "EMAIL")


def _find_bank_cards(text: str) -> Iterator[_Span]:
    for match in _CARD.finditer(text):
        digits = re.sub(r"[ -]", "", match.group())
        if 16 <= len(digits) <= 19 and passes_luhn(digits) and not is_valid_resident_id(digits):
            yield _Span(match.start(), match.end(), "BANK_CARD")


def _find_record_numbers(text: str, prefixes: tuple[str, ...]) -> Iterator[_Span]:
    pattern = _record_number_pattern(prefixes)
    if pattern is None:
        return
    for match in pattern.finditer(text):
        if any(c.isdigit() for c in match.group(1)):
            yield _Span(match.start(1), match.end(1), "MRN")


def _find_names(text: str) -> Iterator[_Span]:
    for pattern in (
        _NAME_LABELLED,
        _NAME_RELATIVE,
        _NAME_PSEUDONYM,
        _NAME_WITH_DEMOGRAPHICS,
        _NAME_SALUTATION,
    ):
        for span in _group_spans(pattern, text, "NAME"):
            if not _NOT_A_NAME.match(text, span.start):
                yield span


def find_pii(
    text: str, *, record_number_prefixes: Sequence[str] = DEFAULT_RECORD_NUMBER_PREFIXES
) -> list[tuple[int, int, str]]:
    """Non-overlapping ``(start, end, type)`` spans of identifiers in ``text``, in text order.

    Where detections overlap, the one that starts first wins, then the longer one, then the
    type listed first in :data:`PII_TYPES`.
    """
    candidates: Iterable[_Span] = (
        *_find_ids(text),
        *_find_phones(text),
        *_find_emails(text),
        *_find_bank_cards(text),
        *_find_record_numbers(text, tuple(record_number_prefixes)),
        *_find_names(text),
        *_group_spans(_ADDRESS, text, "ADDRESS"),
        *_group_spans(_DOB, text, "DOB"),
    )
    rank = {kind: i for i, kind in enumerate(PII_TYPES)}
    chosen: list[tuple[int, int, str]] = []
    last_end = -1
    for span in sorted(candidates, key=lambda s: (s.start, s.start - s.end, rank[s.kind])):
        if span.start >= last_end and span.end > span.start:
            chosen.append((span.start, span.end, span.kind))
            last_end = span.end
    return chosen


def scrub_pii(
    text: str, *, record_number_prefixes: Sequence[str] = DEFAULT_RECORD_NUMBER_PREFIXES
) -> tuple[str, Counter]:
    """Replace identifiers with ``<TYPE>`` placeholders; returns the text and a count per type."""
    spans = find_pii(text, record_number_prefixes=record_number_prefixes)
    if not spans:
        return text, Counter()
    pieces: list[str] = []
    cursor = 0
    for start, end, kind in spans:
        pieces.append(text[cursor:start])
        pieces.append(f"<{kind}>")
        cursor = end
    pieces.append(text[cursor:])
    return "".join(pieces), Counter(kind for _, _, kind in spans)


def scrub_pii_values(
    value: Any, *, record_number_prefixes: Sequence[str] = DEFAULT_RECORD_NUMBER_PREFIXES
) -> tuple[Any, Counter]:
    """Scrub every string inside ``value`` (nested dicts, lists and tuples); returns a copy and the counts.

    Mapping keys and non-string leaves are kept as they are. Use it for free-form metadata
    passed through to an output beside scrubbed text.
    """
    found: Counter = Counter()

    def scrub(item: Any) -> Any:
        if isinstance(item, str):
            text, counts = scrub_pii(item, record_number_prefixes=record_number_prefixes)
            found.update(counts)
            return text
        if isinstance(item, Mapping):
            return {key: scrub(inner) for key, inner in item.items()}
        if isinstance(item, list | tuple):
            return [scrub(inner) for inner in item]
        return item

    return scrub(value), found


# How far past the preview a scan reaches, and the longest identifier it must see whole.
_PREVIEW_SCAN_EXTRA = 2048
_LONGEST_IDENTIFIER = 256


def scrub_preview(
    text: str,
    max_chars: int,
    *,
    record_number_prefixes: Sequence[str] = DEFAULT_RECORD_NUMBER_PREFIXES,
) -> str:
    """The first ``max_chars`` characters of ``text`` with identifiers masked, for logs and quarantine.

    Identifiers are found before the text is cut, so one straddling the cut is masked, not
    left half visible. Only the beginning of a long text is scanned (bounded cost for a
    line of any length), and nothing within reach of the end of that scan is shown, since
    an identifier there may not have been seen whole.
    """
    if len(text) <= max_chars + _PREVIEW_SCAN_EXTRA:
        window, shown_end = text, len(text)
    else:
        window = text[: max_chars + _PREVIEW_SCAN_EXTRA]
        shown_end = len(window) - _LONGEST_IDENTIFIER
    pieces: list[str] = []
    cursor = 0
    for start, end, kind in find_pii(window, record_number_prefixes=record_number_prefixes):
        if start >= shown_end:
            break
        pieces.append(window[cursor:start])
        pieces.append(f"<{kind}>")
        cursor = end
    pieces.append(window[cursor:shown_end])
    return "".join(pieces)[:max_chars]
