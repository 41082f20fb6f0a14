"""Masking of patient identifiers in Chinese clinical text with typed placeholders.

Each identifier becomes ``<TYPE>`` (:data:`PII_TYPES`); labels, titles and role words stay
(``住院号：<MRN>``, ``患者<NAME>``, ``<NAME>先生``) so the text still reads naturally.

**Numbers** are cut into digit runs (digits joined by single spaces or hyphens, as people type
them: ``138 1234 5678``, ``110105 19491231 002X``) and each run, or a sub-run of its groups, is
classified by its structure and by the label in front of it:

* ``ID``: an 18-character resident ID with a correct ISO 7064 MOD 11-2 check character
  (``X`` or ``x``) and a real birth date; a 15-digit legacy ID whose embedded YYMMDD is a real
  date and whose first two digits are a province code. After an ID label (``身份证号``,
  ``证件号码`` …) any 15- or 18-character number is an ID (a mistyped check digit is still one).
* ``PHONE``: mobiles (11 digits ``1[3-9]…``, with or without ``+86``/``0086``/``86``, spaced or
  hyphenated), landlines (``0`` + a 2- or 3-digit area code + a 7- or 8-digit local number
  starting 2-9, with or without a hyphen, space or parentheses, and an extension ``-8021``,
  ``转8021``, ``分机8021``), and after a phone label any 7-12 digit number. Published numbers are
  kept: 400/800 service numbers, short codes (120, 12320 …) and any number right after a hotline
  or institution word (``热线``, ``总机``, ``急救电话``, ``咨询电话``, ``科室电话``, ``护士站`` …),
  since they identify no patient.
* ``BANK_CARD``: 16-19 digits that pass Luhn and start with a card-scheme prefix (UnionPay
  ``62``/``60``/``9``, Visa ``4``, Mastercard ``51-55``, JCB ``35``), or any 12-19 digits after a
  card label (``银行卡号``, ``卡号``, ``账号`` …). A valid resident ID is never a card.
* A number right after a label that names something else (``标本条码``, ``样本号``, ``批号``,
  ``批准文号``, ``订单号``, ``发票号``, ``流水号``, ``注册证号`` …) is not masked at all: those
  identify a tube, a batch or a transaction, not a person.
* ``MRN``: the alphanumeric value after a record-number label
  (:data:`DEFAULT_RECORD_NUMBER_PREFIXES`: hospital, outpatient, pathology, imaging, lab and
  registration numbers, patient IDs, and insurance and social-security card numbers, which are
  masked as MRN too). Bed numbers and specimen numbers are not patient identifiers and are kept.

**E-mail**: ``local@domain.tld`` with a full-width ``＠`` or ``．``, spelled ``[at]``/``(at)``/
`` at `` … `` dot ``, or with ``#`` for ``@`` (a common anti-spam habit), next to CJK text.

**Names** are found by context, then scored. Cues on the left (form labels ``姓名：``,
``签名：``, ``主治医师``, ``记录者：``; role words ``患者``, ``家属``, ``其女儿``; introductions
``我是``, ``我叫``, ``尊敬的``) and on the right (honorifics ``先生``/``女士``/``阿姨``, titles
``主任``/``医生``/``护士``, ``，男，45岁``, ``的家属``, ``签字``, ``你好``, a speaker's ``：`` at the
start of a line) propose candidates: a surname (single, compound, or rare) plus a one- or
two-character given name, or a pseudonym (``王某``, ``李某某``, ``张XX``, ``赵**``). A candidate
is accepted when its surname's frequency, its given-name characters
(:mod:`medgo.data.pii_lexicon`), and the strength of its left and right context together clear
a threshold; it is rejected outright when it is, or begins, a clinical term (``高热``, ``黄疸``,
``石淋``, ``白斑``, ``龙胆泻肝汤``, ``贾第鞭毛虫`` …) or, outside form labels, an everyday word
(``马上``, ``明天``). A bare surname counts only before an honorific or a title.

**Addresses** and **birth dates** are masked after their labels (``住址：``, ``出生日期：``); the
hospital's own address (``医院地址：``) is kept.

Where detections overlap, the more specific one wins: a validated ID, then labelled numbers,
then e-mail, structural phones and cards, then addresses, birth dates and names. Every regular
expression here is linear (no nested quantifiers over the same characters), so scrubbing costs
time proportional to the text. Nothing here logs: callers get counts per type, never values.
"""

from __future__ import annotations

import datetime as _dt
import re
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from typing import Any

from medgo.data import pii_lexicon as lex

#: Placeholder types; each is masked as ``<TYPE>``.
PII_TYPES: tuple[str, ...] = ("ID", "PHONE", "EMAIL", "BANK_CARD", "MRN", "NAME", "ADDRESS", "DOB")

#: Labels after which an alphanumeric value is a patient's record number (masked as ``<MRN>``):
#: numbers that look a patient up in a hospital system (HIS, EMR, PACS, pathology, LIS) or
#: with an insurer. Bed, specimen, batch and order numbers are not on the list on purpose.
DEFAULT_RECORD_NUMBER_PREFIXES: tuple[str, ...] = lex.words(
    """
    住院号 住院号码 住院病历号 住院ID 病案号 病案号码 门诊号 门诊号码 急诊号 病历号 病历号码 病例号
    就诊号 就诊卡号 诊疗卡号 健康卡号 登记号 门诊登记号 病理号 冰冻号 影像号 放射号 检查号 检验号 CT号
    MR号 MRI号 X线号 超声号 心电图号 ID号 患者ID 病人ID 患者编号 病人编号 PID MRN 档案号 健康档案号
    医保卡号 医保号 医保编号 医保账号 医保个人编号 社保卡号 社保号 社保编号 社会保障卡号 社会保障号码
    医疗保险号 医疗保险卡号 医疗保险证号 参保号 参保编号 参保人医保编号 新农合号 农合证号 合作医疗证号
    医疗证号 保单号
    """
)

_PRIORITY = {
    "ID": 90,
    "MRN": 85,
    "LABELLED": 80,
    "EMAIL": 70,
    "PHONE": 60,
    "ID15": 55,
    "BANK_CARD": 50,
    "DOB": 45,
    "ADDRESS": 40,
    "NAME": 30,
}

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK_CHARS = "10X98765432"
#: First two digits of a resident ID: the province-level division it was issued in.
_PROVINCE_CODES = frozenset(
    "11 12 13 14 15 21 22 23 31 32 33 34 35 36 37 41 42 43 44 45 46 50 51 52 53 54 61 62 63 64 65 71 81 82 83 91".split()
)
_TO_ASCII = str.maketrans("０１２３４５６７８９ｘＸ", "0123456789xX")


@dataclass(frozen=True, slots=True)
class _Span:
    start: int
    end: int
    kind: str
    priority: int


def _pick_non_overlapping(spans_by_preference: Iterable[_Span]) -> list[_Span]:
    """Greedily keep spans in the order given, skipping any that overlaps one already kept."""
    starts: list[int] = []
    kept: list[_Span] = []
    for span in spans_by_preference:
        if span.end <= span.start:
            continue
        i = bisect_right(starts, span.start)
        if i and kept[i - 1].end > span.start:
            continue
        if i < len(kept) and kept[i].start < span.end:
            continue
        starts.insert(i, span.start)
        kept.insert(i, span)
    return kept


# --------------------------------------------------------------------------------------------
# Validators
# --------------------------------------------------------------------------------------------
def is_valid_resident_id(number: str) -> bool:
    """True for an 18-character resident ID with a correct check character and a real birth date."""
    number = number.translate(_TO_ASCII)
    if len(number) != 18 or not number[:17].isdigit() or not number.isascii():
        return False
    total = sum(int(digit) * weight for digit, weight in zip(number[:17], _ID_WEIGHTS, strict=True))
    if _ID_CHECK_CHARS[total % 11] != number[17].upper():
        return False
    return _is_birth_date(number[6:14])


def is_valid_legacy_id(number: str, *, check_province: bool = True) -> bool:
    """True for a 15-digit first-generation resident ID: province code and a real 19YYMMDD birth date."""
    number = number.translate(_TO_ASCII)
    if len(number) != 15 or not number.isdigit() or not number.isascii():
        return False
    if check_province and number[:2] not in _PROVINCE_CODES:
        return False
    return _is_birth_date("19" + number[6:12])


def _is_birth_date(yyyymmdd: str) -> bool:
    try:
        born = _dt.date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:8]))
    except ValueError:
        return False
    return 1900 <= born.year and born <= _dt.date.today()


def passes_luhn(digits: str) -> bool:
    """The Luhn (mod 10) check used by bank card numbers."""
    total = 0
    for i, char in enumerate(reversed(digits.translate(_TO_ASCII))):
        value = int(char)
        if i % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _is_mobile(digits: str) -> bool:
    return len(digits) == 11 and digits[0] == "1" and digits[1] in "3456789"


def _is_landline(digits: str) -> bool:
    """``0`` + area code (``10``, ``2x`` or three digits ``3xx``-``9xx``) + a 7-8 digit local number."""
    if len(digits) < 10 or digits[0] != "0":
        return False
    area = 3 if digits[1:3] == "10" or digits[1] == "2" else 4 if digits[1] in "3456789" else 0
    local = digits[area:]
    return bool(area) and 7 <= len(local) <= 8 and local[0] in "23456789"


_CARD_PREFIXES = ("62", "60", "4", "51", "52", "53", "54", "55", "35", "9")


def _is_card_like(digits: str) -> bool:
    return 16 <= len(digits) <= 19 and digits.startswith(_CARD_PREFIXES) and passes_luhn(digits)


def _is_service_number(digits: str) -> bool:
    return digits.startswith(("400", "800", "95", "96", "12", "11"))


# --------------------------------------------------------------------------------------------
# Labels in front of numbers
# --------------------------------------------------------------------------------------------
_ID_LABELS = lex.words(
    """
    身份证号码 身份证号 身份证 证件号码 证件号 公民身份号码 身份号码 居民身份证 身份证件号
    """
)
_PHONE_LABELS = lex.words(
    """
    电话号码 联系电话 电话 手机号码 手机号 手机 座机 固话 联系方式 联系号码 来电 致电 拨打 打我 Tel TEL
    tel Phone phone Mobile mobile Mob 办公电话 单位电话 宅电
    """
)
_CARD_LABELS = lex.words(
    """
    银行卡号 银行卡 卡号 银行账号 银行帐号 账号 帐号 账户 帐户 信用卡 储蓄卡 借记卡 工资卡 收款账号
    退费账户 银联卡 尾号
    """
)
#: Numbers after these name a tube, a batch, a product or a transaction, never a person.
_NOT_PII_LABELS = lex.words(
    """
    条码 条形码 条码号 标本号 标本编号 样本号 样本编号 样本条码 标本条码 检验条码 批号 生产批号 批次
    批准文号 国药准字 注册证号 注册证编号 注册号 备案号 订单号 订单编号 发票号 发票号码 发票代码 流水号
    交易单号 交易号 单号 凭证号 票据号 编号 序列号 货号 型号 规格 版本号 编码 申请单号 医嘱号 处方号
    快递单号 运单号 统一社会信用代码 执业证号 资格证号 工号 追溯码 药品追溯码 UDI SN S/N Lot LOT lot REF
    Ref
    """
)
#: A number right after these is a published or institutional number (a hotline, the hospital's
#: switchboard, a ward's desk), not a patient's, and is kept unmasked.
_PUBLIC_LABELS = lex.words(
    """
    热线 热线电话 服务热线 咨询热线 总机 总台 服务电话 咨询电话 客服电话 客服 急救电话 投诉电话 预约电话
    预约挂号电话 挂号电话 服务台 值班电话 急救 医院电话 科室电话 护士站电话 护士站 门诊电话 办公室电话 值班室电话
    总值班 病房电话 医生办公室
    """
)


def _alternation(words: Iterable[str]) -> str:
    """A regex matching any of ``words``, longest first, factored as a trie (fast on long lists)."""
    trie: dict = {}
    for word in set(words):
        node = trie
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}

    def build(node: dict) -> str:
        branches = [re.escape(char) + build(child) for char, child in sorted(node.items()) if char]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        return f"(?:{body})?" if "" in node else body

    return build(trie)


@lru_cache(maxsize=16)
def _number_label_pattern(record_prefixes: tuple[str, ...]) -> tuple[re.Pattern[str], dict[str, str]]:
    kinds: dict[str, str] = {}
    for kind, words in (
        ("MRN", DEFAULT_RECORD_NUMBER_PREFIXES + record_prefixes),
        ("NOT_PII", _NOT_PII_LABELS),
        ("PUBLIC", _PUBLIC_LABELS),
        ("BANK_CARD", _CARD_LABELS),
        ("PHONE", _PHONE_LABELS),
        ("ID", _ID_LABELS),
    ):
        for word in words:
            kinds[word] = kind  # later kinds win: a caller's MRN label can't hide an ID label
    return re.compile(_alternation(kinds)), kinds


# Between a label and its number: separators, "是/为", a bracketed note ("（本人）"), no sentence end.
_LABEL_GAP = re.compile(r"[\s:：#＃=是为号码（）()本人手机家属座机单位/、\-]{0,10}")


def _labels_before(text: str, record_prefixes: tuple[str, ...]) -> tuple[list[int], list[str]]:
    pattern, kinds = _number_label_pattern(record_prefixes)
    ends, found = [], []
    for match in pattern.finditer(text):
        ends.append(match.end())
        found.append(kinds[match.group()])
    return ends, found


def _label_for(text: str, start: int, ends: list[int], kinds: list[str]) -> str | None:
    i = bisect_right(ends, start) - 1
    if i < 0:
        return None
    gap = _LABEL_GAP.fullmatch(text, ends[i], start)
    return kinds[i] if gap else None


# --------------------------------------------------------------------------------------------
# Numbers: digit runs with single space/hyphen separators, classified group range by group range
# --------------------------------------------------------------------------------------------
_DIGIT_RUN = re.compile(r"(?<![\d.])\d+(?:[ \-－‐](?=\d)\d+)*(?:[Xx](?![A-Za-z]))?")
_GROUP = re.compile(r"\d+[Xx]?")
_SEVEN_DIGITS = re.compile(r"\d(?:\D?\d){6}")
_PAREN_AREA = re.compile(r"[(（](0\d{2,3})[)）]\s?$")
_PAREN_86 = re.compile(r"[(（][+＋]?(?:00)?86[)）]\s?$")
_EXTENSION = re.compile(r"\s?(?:转|分机|ext\.?\s?|EXT\.?\s?|Ext\.?\s?)(\d{1,5})(?!\d)")
_TEL_LETTERS = re.compile(r"(?:Tel|TEL|tel|Phone|PHONE|phone|Mob|MOB|mob|Mobile|Fax|FAX|T|M)\.?$")
_MAX_RUN_DIGITS = 24


def _find_numbers(text: str, record_prefixes: tuple[str, ...]) -> list[_Span]:
    spans: list[_Span] = []
    if not _SEVEN_DIGITS.search(text):
        return spans
    runs = [r for r in _DIGIT_RUN.finditer(text) if len(r.group()) >= 7 and _SEVEN_DIGITS.search(r.group())]
    if not runs:
        return spans
    label_ends, label_kinds = _labels_before(text, record_prefixes)
    for run in runs:
        spans.extend(_classify_run(text, run, label_ends, label_kinds))
    return spans


def _classify_run(
    text: str, run: re.Match[str], label_ends: list[int], label_kinds: list[str]
) -> list[_Span]:
    start = run.start()
    paren_area = _PAREN_AREA.search(text, max(0, start - 7), start)
    paren_86 = _PAREN_86.search(text, max(0, start - 8), start)
    plus = start > 0 and text[start - 1] in "+＋"
    prefix_at = paren_area.start() if paren_area else paren_86.start() if paren_86 else start - plus
    label = _label_for(text, prefix_at, label_ends, label_kinds)
    if label == "NOT_PII":
        return []
    if label == "MRN":  # the record-number detector owns it, unless it is a valid resident ID
        return [_Span(start, run.end(), "ID", _PRIORITY["ID"])] if is_valid_resident_id(run.group()) else []
    letter_before = start > 0 and text[start - 1].isascii() and text[start - 1].isalpha()
    if letter_before and _TEL_LETTERS.search(text, max(0, start - 6), start):
        letter_before, label = False, label or "PHONE"
    groups = [(m.start() + start, m.end() + start) for m in _GROUP.finditer(run.group())]
    last = len(groups) - 1
    candidates: list[_Span] = []
    for i in range(len(groups)):
        digits = ""
        for j in range(i, len(groups)):
            digits += text[groups[j][0] : groups[j][1]].translate(_TO_ASCII)
            if len(digits) > _MAX_RUN_DIGITS:
                break
            whole = i == 0 and j == last
            here = label if whole else None
            if i == 0 and paren_area:
                digits_seen = paren_area.group(1) + digits
            else:
                digits_seen = digits
            kind = _classify_digits(
                digits_seen, here, letter_before and i == 0, public=label == "PUBLIC" and i == 0
            )
            if kind is None:
                continue
            s, e = groups[i][0], groups[j][1]
            if kind[0] == "PHONE" and i == 0:
                if paren_area:
                    s = paren_area.start()
                elif paren_86:
                    s = paren_86.start()
                elif plus and digits.startswith(("86", "0086")):
                    s = start - 1
            if kind[0] == "PHONE" and kind[1] in ("landline", "labelled"):
                nxt = j + 1
                if nxt <= last and text[groups[j][1]] in "-－" and groups[nxt][1] - groups[nxt][0] <= 5:
                    e = groups[nxt][1]
                elif j == last:
                    ext = _EXTENSION.match(text, e)
                    if ext:
                        e = ext.end()
            candidates.append(_Span(s, e, kind[0], kind[2]))
    # Within one run the longest reading wins: a spaced card number is not a phone number
    # that happens to sit inside it.
    return _pick_non_overlapping(sorted(candidates, key=lambda c: (c.start - c.end, -c.priority)))


def _classify_digits(
    digits: str, label: str | None, letter_before: bool, *, public: bool
) -> tuple[str, str, int] | None:
    """(type, form, priority) for one group range, or None."""
    n = len(digits)
    if n == 18 and digits[:17].isdigit():
        if is_valid_resident_id(digits) or label == "ID":
            return "ID", "id18", _PRIORITY["ID"]
    if not digits.isdigit():
        return None
    if n == 15 and label == "ID" and is_valid_legacy_id(digits, check_province=False):
        return "ID", "id15", _PRIORITY["ID"]
    if letter_before:
        return None
    if public:
        return None
    if label == "BANK_CARD" and 12 <= n <= 19 and not is_valid_resident_id(digits):
        return "BANK_CARD", "labelled", _PRIORITY["LABELLED"]
    if label == "PHONE" and 7 <= n <= 12 and not _is_service_number(digits):
        return "PHONE", "labelled", _PRIORITY["LABELLED"]
    if (
        _is_mobile(digits)
        or (n == 13 and digits.startswith("86") and _is_mobile(digits[2:]))
        or (n == 15 and digits.startswith("0086") and _is_mobile(digits[4:]))
    ):
        return "PHONE", "mobile", _PRIORITY["PHONE"]
    if _is_landline(digits) or (digits.startswith("86") and _is_landline("0" + digits[2:])):
        return "PHONE", "landline", _PRIORITY["PHONE"]
    if n == 15 and label is None and is_valid_legacy_id(digits):
        return "ID", "id15", _PRIORITY["ID15"]
    if label is None and _is_card_like(digits) and not is_valid_resident_id(digits):
        return "BANK_CARD", "card", _PRIORITY["BANK_CARD"]
    return None


# --------------------------------------------------------------------------------------------
# E-mail, record numbers, addresses, birth dates
# --------------------------------------------------------------------------------------------
_AT = r"(?:\s?(?:@|＠|\[at\]|\(at\)|（at）|\[AT\]|\(AT\))\s?|\s(?:at|AT)\s|#)"
_DOT = r"(?:\.|．|\s?\[dot\]\s?|\s?\(dot\)\s?|\s(?:dot|DOT)\s)"
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9][A-Za-z0-9._%+\-]{0,63}"
    + _AT
    + r"[A-Za-z0-9][A-Za-z0-9\-]{0,62}(?:"
    + _DOT
    + r"[A-Za-z0-9\-]{1,63}){0,4}"
    + _DOT
    + r"[A-Za-z]{2,12}(?![A-Za-z0-9\-])"
)


def _find_emails(text: str) -> list[_Span]:
    if not _EMAIL_HINT.search(text):
        return []
    spans = []
    for match in _EMAIL.finditer(text):
        value = match.group()
        if "#" in value and "@" not in value and not re.search(r"#[A-Za-z0-9\-]+\.", value):
            continue
        spans.append(_Span(match.start(), match.end(), "EMAIL", _PRIORITY["EMAIL"]))
    return spans


_EMAIL_HINT = re.compile(r"[@＠#]|\[at\]|\(at\)|（at）| at | AT |\[AT\]|\(AT\)")


_RECORD_VALUE = r"([A-Za-z0-9](?:[A-Za-z0-9]|[\-_/](?=[A-Za-z0-9])){0,31})"


@lru_cache(maxsize=16)
def _record_number_pattern(prefixes: tuple[str, ...]) -> re.Pattern[str] | None:
    if not prefixes:
        return None
    labels = _alternation(prefixes)
    return re.compile(
        rf"(?:{labels})(?:\s*[/、或]\s*(?:{labels}))*\s*(?:[:：#＃]|是|为|No\.?)?\s*(?:是|为)?\s*{_RECORD_VALUE}"
    )


def _find_record_numbers(text: str, prefixes: tuple[str, ...]) -> list[_Span]:
    pattern = _record_number_pattern(prefixes)
    if pattern is None:
        return []
    return [
        _Span(m.start(1), m.end(1), "MRN", _PRIORITY["MRN"])
        for m in pattern.finditer(text)
        if any(c.isdigit() for c in m.group(1))
    ]


_ADDRESS = re.compile(
    r"(?<!医院)(?<!本院)(?<!我院)(?<!院)(?:家庭住址|家庭地址|现住址|户籍地址|户口地址|居住地址|联系地址|通讯地址|住址|地址)\s*(?:[:：]|是|为|在)\s*"
    r"((?:(?!电话|手机|联系|邮编|邮箱|身份证)[^\s，,。；;！!？?\n\\]){2,80})"
)
_DOB = re.compile(
    r"(?:出生日期|出生年月日|出生年月|生日|出生于|生于|出生)\s*[:：]?\s*(?:是|为)?\s*"
    r"(\d{4}\s*[-/.年]\s*\d{1,2}(?:\s*[-/.月]\s*\d{1,2}(?:\s*日)?|\s*月)?|\d{8}(?!\d))"
)


def _group_spans(pattern: re.Pattern[str], text: str, kind: str) -> list[_Span]:
    return [_Span(m.start(1), m.end(1), kind, _PRIORITY[kind]) for m in pattern.finditer(text)]


# --------------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------------
_SINGLE_SURNAME_SCORE: dict[str, int] = {}
for _c in lex.SURNAMES_OTHER:
    _SINGLE_SURNAME_SCORE[_c] = 1
for _c in lex.SURNAMES_COMMON:
    _SINGLE_SURNAME_SCORE[_c] = 2
for _c in lex.SURNAMES_AMBIGUOUS:
    if _c in _SINGLE_SURNAME_SCORE:
        _SINGLE_SURNAME_SCORE[_c] -= 1
_COMPOUND = frozenset(lex.SURNAMES_COMPOUND)
_AMBIGUOUS = frozenset(lex.SURNAMES_AMBIGUOUS)
_COMMON_SURNAMES = frozenset(lex.SURNAMES_COMMON)
_GIVEN_COMMON = frozenset(lex.GIVEN_COMMON)
_GIVEN_OTHER = frozenset(lex.GIVEN_OTHER) - _GIVEN_COMMON
_NEVER_GIVEN = frozenset(lex.NEVER_GIVEN) - _GIVEN_COMMON - _GIVEN_OTHER
_CLINICAL = frozenset(lex.CLINICAL_TERMS)
_PSEUDONYM_MASKS = ("某某", "某", "XX", "xx", "××", "×", "**", "*", "ＸＸ", "X", "x")
# After "王某", these make it a phrase ("于某日", "和某些", "某医院"), not a pseudonym.
_NOT_AFTER_PSEUDONYM = re.compile(
    r"医院|院|科|地|处|日|天|年|月|时|种|些|个|次|项|类|段|部|件|事|物|方面|样|单位|机构|公司|药|品|厂|省|市|县|区|镇|村|"
    r"街|路|号|病|症|型|所|校|线|光|射|[A-Za-z0-9]"
)
_CJK = re.compile("[\u4e00-\u9fff]")

# Scores: a candidate needs a cue (a left one, a right one, or a pseudonym mask) and a total
# of at least _ACCEPT over surname + given name + left context + right context.
_LEFT = {"LABEL": 5, "ROLE": 3, "INTRO": 4, "SURNAME_INTRO": 4, "VERB": 3, "WEAK": 1, "EDGE": 1, "NONE": 0}
_RIGHT = {
    "HONORIFIC": 5,
    "TITLE": 4,
    "DEMOGRAPHIC": 5,
    "PERSON": 4,
    "IDENTITY": 3,
    "PATIENT": 2,
    "SPEAKER": 3,
    "BOUNDARY": 1,
    "NONE": -3,
}
_CUE_LEFT = frozenset({"LABEL", "ROLE", "INTRO", "SURNAME_INTRO", "VERB"})
_CUE_RIGHT = frozenset({"HONORIFIC", "TITLE", "DEMOGRAPHIC", "PERSON", "IDENTITY", "PATIENT"})
_ACCEPT = 7
_WORD_PENALTY = 4

_SPACE = "[ \t\u3000]*"
_LEFT_CUE_KIND: dict[str, str] = {}
for _kind, _words in (
    ("ROLE", lex.ROLE_CUES),
    ("INTRO", lex.INTRO_CUES),
    ("SURNAME_INTRO", lex.SURNAME_INTRO_CUES),
    ("VERB", lex.VERB_CUES),
    ("LABEL", lex.LABEL_CUES),
):
    for _w in _words:
        _LEFT_CUE_KIND[_w] = _kind
_LEFT_CUES = re.compile(
    f"({_alternation(_LEFT_CUE_KIND)})(?:{_SPACE}[)）]?{_SPACE}[:：])?{_SPACE}(?:是|为|叫|[（(])?{_SPACE}"
)
_WEAK_LEFT = frozenset(lex.WEAK_LEFT_CUES)
_WEAK_LEFT_LENGTHS = sorted({len(w) for w in _WEAK_LEFT}, reverse=True)
_HONORIFIC = re.compile(_alternation(lex.HONORIFICS))
_TITLE = re.compile(_alternation(lex.TITLES))
_BRACKETED_ROLE = _alternation(lex.RELATIONS + lex.TITLES)
_PERSON_RIGHT = re.compile(
    _alternation(lex.RIGHT_PERSON_CUES)
    + f"|{_SPACE}[（(](?:{_BRACKETED_ROLE})[）)]"
    + f"|{_SPACE}[，,、]{_SPACE}(?:{_alternation(lex.RELATIONS)}){_SPACE}[）)]"
)
_PATIENT_RIGHT = re.compile("患者|病人|患儿")
_DEMOGRAPHIC_TEXT = (
    f"{_SPACE}[，,、（(]{_SPACE}(?:[男女]性?(?![科方子士生童婴孩人])|\\d{{1,3}}(?:岁|个?月龄?|天))"
    f"|[ \t\u3000]+(?:[男女]性?[ \t\u3000，,、]|\\d{{1,3}}岁)"
    f"|[男女][ \t\u3000，,、]+\\d{{1,3}}岁"
)
_DEMOGRAPHIC = re.compile(_DEMOGRAPHIC_TEXT)
_IDENTITY_TEXT = (
    f"{_SPACE}[，,、（(]?{_SPACE}"
    "(?:身份证|证件号|公民身份|联系电话|电话|手机|性别|年龄|出生|住院号|病案号|门诊号|就诊卡)"
)
_IDENTITY = re.compile(_IDENTITY_TEXT)
_SPEAKER_COLON = re.compile(f"{_SPACE}[:：]")
_RIGHT_BOUNDARY_WORDS = frozenset(lex.RIGHT_BOUNDARY_WORDS)
_RIGHT_BOUNDARY_LENGTHS = sorted({len(w) for w in _RIGHT_BOUNDARY_WORDS}, reverse=True)
# Anchors from the right: a name may end just before one of these words, or just before a
# punctuation mark or space whose right context is a cue (", 男，45岁", "（女儿）", "：").
_RIGHT_WORD_ANCHORS = re.compile(
    _alternation(
        lex.HONORIFICS
        + lex.TITLES
        + lex.RIGHT_PERSON_CUES
        + ("身份证", "证件号", "联系电话", "电话", "手机", "患者", "病人", "患儿")
    )
)
_MARKS = "，,、（(:： \t\u3000"
_RIGHT_MARK_ANCHORS = re.compile(f"[{_MARKS}]+")
# At a mark: does a demographic, a bracketed relation, an identifier label or a colon follow?
_MARK_CUE = re.compile("|".join((_DEMOGRAPHIC_TEXT, _PERSON_RIGHT.pattern, _IDENTITY_TEXT, f"{_SPACE}[:：]")))
_PSEUDONYM = re.compile(r"某某|某|XX|xx|××|×|\*\*|\*|ＸＸ")
_LINE_START = re.compile(r"(?:[\n\r]|[【\[][^】\]\n]{0,6}[】\]])[ \t\u3000]*")
_LINE_INDENT = re.compile(r"[ \t\u3000]*")


@lru_cache(maxsize=1)
def _word_lexicon() -> tuple[frozenset[str], frozenset[str]]:
    """Everyday words from jieba's dictionary that a name candidate might collide with.

    Returns (words of 2-4 characters starting with a surname character, two-character words
    ending with one), plus the curated :data:`medgo.data.pii_lexicon.COMMON_WORDS`. Words
    tagged as person names (``nr``…) are left out. jieba is used only for its word list
    (read once per process, about 0.4 s), never for segmentation.
    """
    heads, tails = set(lex.COMMON_WORDS), {w for w in lex.COMMON_WORDS if len(w) == 2}
    try:
        lines = (files("jieba") / "dict.txt").read_text(encoding="utf-8").splitlines()
    except (ImportError, OSError) as exc:
        raise ImportError(
            f"the PII name detector needs jieba's word list (pip install jieba==0.42.1): {exc}"
        ) from exc
    surnames = set(_SINGLE_SURNAME_SCORE)
    for line in lines:
        parts = line.split(" ")
        if len(parts) != 3 or parts[2].startswith("nr") or int(parts[1]) < _LEXICON_MIN_FREQ:
            continue
        word = parts[0]
        if 2 <= len(word) <= 4 and word[0] in surnames:
            heads.add(word)
        if len(word) == 2 and word[1] in surnames:
            tails.add(word)
    return frozenset(heads), frozenset(tails)


_LEXICON_MIN_FREQ = 20


def _is_cjk(char: str) -> bool:
    return "\u4e00" <= char <= "\u9fff"


def _surname_at(text: str, start: int) -> list[tuple[int, int]]:
    """(surname end, surname score) for each surname that can start at ``start``."""
    found = []
    if text[start : start + 2] in _COMPOUND:
        found.append((start + 2, 2))
    score = _SINGLE_SURNAME_SCORE.get(text[start : start + 1])
    if score is not None:
        found.append((start + 1, score))
    return found


def _given_score(given: str) -> int | None:
    """Plausibility of a given name; None if it cannot be one."""
    total = 0
    for char in given:
        if char in _GIVEN_COMMON:
            total += 2
        elif char in _GIVEN_OTHER:
            total += 1
        elif char in _NEVER_GIVEN or not _is_cjk(char):
            return None
        else:
            total -= 3
    return total + (1 if len(given) == 2 else 0)


def _left_context(text: str, start: int, cue_ends: dict[int, str]) -> str:
    cue = cue_ends.get(start)
    if cue:
        return cue
    if start == 0 or not _is_cjk(text[start - 1]):
        return "EDGE"
    for n in _WEAK_LEFT_LENGTHS:
        if start >= n and text[start - n : start] in _WEAK_LEFT:
            return "WEAK"
    return "NONE"


def _right_context(text: str, end: int) -> str:
    if end >= len(text):
        return "BOUNDARY"
    if _HONORIFIC.match(text, end):
        return "HONORIFIC"
    if _TITLE.match(text, end):
        return "TITLE"
    if _DEMOGRAPHIC.match(text, end):
        return "DEMOGRAPHIC"
    if _PERSON_RIGHT.match(text, end):
        return "PERSON"
    if _PATIENT_RIGHT.match(text, end):
        return "PATIENT"
    if _IDENTITY.match(text, end):
        return "IDENTITY"
    if _SPEAKER_COLON.match(text, end):
        return "SPEAKER"
    if not _is_cjk(text[end]):
        return "BOUNDARY"
    for n in _RIGHT_BOUNDARY_LENGTHS:
        if text[end : end + n] in _RIGHT_BOUNDARY_WORDS:
            return "BOUNDARY"
    return "NONE"


def _score_name(
    text: str, start: int, end: int, cue_ends: dict[int, str], line_starts: set[int], rights: dict[int, str]
) -> int | None:
    surnames = _surname_at(text, start)
    if not surnames:
        return None
    best: int | None = None
    left = _left_context(text, start, cue_ends)
    right = rights.get(end)
    if right is None:
        right = rights[end] = _right_context(text, end)
    heads, tails = _word_lexicon()
    glued = start > 0 and text[start - 1 : start + 1] in tails and left not in _CUE_LEFT
    for surname_end, surname_score in surnames:
        given = text[surname_end:end]
        if len(given) > 2 or (
            given and (_HONORIFIC.match(text, surname_end) or _TITLE.match(text, surname_end))
        ):
            continue
        if given in _PSEUDONYM_MASKS:
            if (given in ("X", "x", "*", "×") and right == "NONE") or (
                given != "某某" and _NOT_AFTER_PSEUDONYM.match(text, end)
            ):
                continue
            body_score = surname_score + 5 + (3 if right == "NONE" else 0)
        elif not given:
            bare_ok = right in ("HONORIFIC", "TITLE") or left == "SURNAME_INTRO"
            if not bare_ok or left == "NONE" or glued:
                continue
            if any(text[start : surname_end + n] in heads for n in (1, 2)):
                continue
            body_score = surname_score + 2
        else:
            given_score = _given_score(given)
            body = text[start:end]
            if given_score is None or any(text[start : start + n] in _CLINICAL for n in range(len(body), 6)):
                continue
            body_score = surname_score + given_score
            if len(given) == 2 and text[start] in _AMBIGUOUS and text[surname_end] in _COMMON_SURNAMES:
                body_score -= 3  # "向杨玉家属": a preposition before a name, not a three-character name
            if body in heads:
                body_score -= _WORD_PENALTY if left != "LABEL" else _WORD_PENALTY // 2
            if glued:
                body_score -= _WORD_PENALTY
        if not (
            given in _PSEUDONYM_MASKS
            or left in _CUE_LEFT
            or right in _CUE_RIGHT
            or (right == "SPEAKER" and start in line_starts)
        ):
            continue
        score = body_score + _LEFT[left] + _RIGHT[right]
        if best is None or score > best:
            best = score
    return best


def _score_unlisted_surname(text: str, start: int, end: int, cue_ends: dict[int, str]) -> int | None:
    """A 2-3 character name right after a name field whose surname is not in the table (``姓名：仝卓``)."""
    if cue_ends.get(start) != "NAME_FIELD" or not 2 <= end - start <= 3:
        return None
    body = text[start:end]
    if not all(_is_cjk(c) and c not in _NEVER_GIVEN for c in body) or any(
        text[start : start + n] in _CLINICAL for n in range(len(body), 6)
    ):
        return None
    if body in _word_lexicon()[0] or _right_context(text, end) not in ("BOUNDARY", *_CUE_RIGHT):
        return None
    if (
        end < len(text)
        and _is_cjk(text[end])
        and _right_context(text, end) == "BOUNDARY"
        and text[end] not in "男女"
    ):
        return None
    return _ACCEPT


_NAME_FIELD_END = re.compile(f"[:：]{_SPACE}$|[ \t\u3000]$")

# Transliterated names of Uyghur, Kazakh and other minorities ("买买提·艾力") after a cue.
_DOTTED_NAME = re.compile("[\u4e00-\u9fff]{2,6}[·•・][\u4e00-\u9fff]{2,8}")


def _find_names(text: str) -> list[_Span]:
    if not _CJK.search(text):
        return []
    field_ends: dict[int, str] = {}
    cue_ends: dict[int, str] = {}
    for match in _LEFT_CUES.finditer(text):
        cue_ends[match.end()] = _LEFT_CUE_KIND[match.group(1)]
        if "姓名" in match.group(1) and _NAME_FIELD_END.search(match.group()):
            field_ends[match.end()] = "NAME_FIELD"
    line_starts = {m.end() for m in _LINE_START.finditer(text)}
    line_starts.add(_LINE_INDENT.match(text).end())
    candidates: dict[tuple[int, int], int] = {}
    rights: dict[int, str] = {}

    def consider(start: int, end: int) -> None:
        if start < 0 or end > len(text) or end <= start or (start, end) in candidates:
            return
        score = _score_name(text, start, end, cue_ends, line_starts, rights)
        if score is not None and score >= _ACCEPT:
            candidates[(start, end)] = score

    for start, kind in cue_ends.items():
        if kind != "WEAK":
            dotted = _DOTTED_NAME.match(text, start)
            if dotted:
                candidates[(start, dotted.end())] = 100
    for start in field_ends:
        if not _surname_at(text, start):
            for length in (2, 3):
                if (start, start + length) not in candidates and _score_unlisted_surname(
                    text, start, start + length, field_ends
                ):
                    candidates[(start, start + length)] = _ACCEPT
    for start in (*cue_ends, *line_starts):
        for surname_end, _ in _surname_at(text, start):
            for given_len in (0, 1, 2):
                consider(start, surname_end + given_len)
            for mask in _PSEUDONYM_MASKS:
                if text.startswith(mask, surname_end):
                    consider(start, surname_end + len(mask))
    ends = [m.start() for m in _RIGHT_WORD_ANCHORS.finditer(text)]
    ends += [m.start() for m in _RIGHT_MARK_ANCHORS.finditer(text)]
    for end in ends:
        if end and (_is_cjk(text[end - 1]) or text[end - 1] in "*×X"):
            if text[end] in _MARKS and not _MARK_CUE.match(text, end):
                continue
            for length in (1, 2, 3, 4):
                consider(end - length, end)
    for match in _PSEUDONYM.finditer(text):
        for length in (1, 2):
            consider(match.start() - length, match.end())

    ranked = sorted(candidates.items(), key=lambda kv: (-kv[1], kv[0][0] - kv[0][1], kv[0][0]))
    return _pick_non_overlapping(_Span(start, end, "NAME", _PRIORITY["NAME"]) for (start, end), _ in ranked)


_NAME_LABELLED_LATIN = re.compile(r"(?:姓名|Name|NAME)\s*[:：]\s*([A-Z][a-z]+(?: [A-Z][a-z]+){1,2})\b")


# --------------------------------------------------------------------------------------------
# API
# --------------------------------------------------------------------------------------------
def find_pii(
    text: str, *, record_number_prefixes: Sequence[str] = DEFAULT_RECORD_NUMBER_PREFIXES
) -> list[tuple[int, int, str]]:
    """Non-overlapping ``(start, end, type)`` spans of identifiers in ``text``, in text order.

    Where detections overlap, the one of higher priority wins (validated ID, labelled record
    number, labelled phone/card, e-mail, structural phone, legacy ID, card, birth date,
    address, name), then the longer one.
    """
    prefixes = tuple(record_number_prefixes)
    candidates: list[_Span] = [
        *_find_numbers(text, prefixes),
        *_find_emails(text),
        *_find_record_numbers(text, prefixes),
        *_group_spans(_ADDRESS, text, "ADDRESS"),
        *_group_spans(_DOB, text, "DOB"),
        *_find_names(text),
        *_group_spans(_NAME_LABELLED_LATIN, text, "NAME"),
    ]
    if not candidates:
        return []
    chosen = _pick_non_overlapping(sorted(candidates, key=lambda s: (-s.priority, s.start - s.end, s.start)))
    return [(s.start, s.end, s.kind) for s in chosen]


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
