"""Reading generated answers back into structure, for the shapes models really produce.

Models answer in PromptCBLUE's shapes ("上述句子中的实体包含：\\n疾病实体：高血压"), with markdown
("**疾病**：高血压"), with the type code in brackets ("疾病（dis）：…"), inline ("疾病：A；症状：B"),
as JSON, or say there is nothing ("没有医学实体"). The helpers here normalise those shapes,
find labels (longest first, so "疾病分期" is not read as "疾病" and "不相关" not as "相关"),
skip negated mentions ("不是病因分析，而是治疗方案"), and read same/different answers with their
negations ("意思不太一样", "是否相同：否", "不是不同").
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

# --- normalisation ---------------------------------------------------------------------------

_THINK = re.compile(r"<think>.*?</think>", re.S)
_FENCE = re.compile(r"```[a-zA-Z]*\n?|```")
_EMPHASIS = re.compile(r"\*\*|__|(?<![A-Za-z0-9])\*(?![A-Za-z0-9])|`")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s*", re.M)
_BRACKET_LABEL = re.compile(r"【([^】\n]{1,20})】")
_ANSWER_PREFIX = re.compile(
    r"^\s*(?:最终答案|答案|回答|答|结论|结果|输出|判断结果|判断|分析结果)\s*(?:是|为)?\s*[:：]\s*"
)
_LIST_MARK = re.compile(r"^\s*(?:[-*•·>]+|\(?\d{1,2}[.)）、]|[①②③④⑤⑥⑦⑧⑨⑩])\s*")
_EDGE_PUNCT = "\"'“”‘’「」『』《》<>[]【】.,，。;；:：!！?？、 \t"
_PAIRS = {"(": ")", "（": "）"}

#: Replies that mean "there is none" (whole reply or one type's value).
NONE_MARKERS = frozenset(
    {
        "无",
        "没有",
        "不存在",
        "暂无",
        "未发现",
        "未提及",
        "空",
        "无实体",
        "没有实体",
        "none",
        "null",
        "n/a",
        "na",
        "-",
        "—",
    }
)
_NONE_REPLY = re.compile(
    r"(没有|未|不)(找到|发现|识别出?|识别到|提及|存在|包含|含有|涉及)?(任何)?(的)?(医学|医疗|相关|符合要求|指定)?(的)?"
    r"(实体|关系|三元组|事件|症状|临床发现|标准词|诊断)"
    r"|^(无|没有|不存在|暂无|none)$"
    r"|给定的文本没有"
)


def normalize_reply(reply: str) -> str:
    """Drop reasoning blocks, code fences, markdown emphasis and headings; unify line endings."""
    text = _THINK.sub("", reply or "").replace("\r\n", "\n").replace("\r", "\n")
    text = _FENCE.sub("", text)
    text = _EMPHASIS.sub("", text)
    text = _HEADING.sub("", text)
    return _BRACKET_LABEL.sub(r"\1", text).strip()


def strip_answer_prefix(text: str) -> str:
    """``"答案：治疗方案"`` → ``"治疗方案"`` (repeatedly, so "答：答案：" goes too)."""
    previous = None
    while previous != text:
        previous, text = text, _ANSWER_PREFIX.sub("", text).strip()
    return text


def clean_value(value: str) -> str:
    """One listed value without bullets, quotes, trailing punctuation and unbalanced brackets
    ("（高血压" → "高血压", but "症状(患者感受)" stays whole)."""
    value = _LIST_MARK.sub("", value).strip()
    previous = None
    while previous != value:
        previous = value
        value = value.strip(_EDGE_PUNCT)
        for opening, closing in _PAIRS.items():
            if value.endswith(closing) and opening not in value:
                value = value[: -len(closing)]
            if value.startswith(opening) and closing not in value:
                value = value[len(opening) :]
    return value.strip()


def strip_list_mark(line: str) -> str:
    return _LIST_MARK.sub("", line).strip()


def is_none(value: str) -> bool:
    return clean_value(value).lower() in NONE_MARKERS


def says_none(reply: str) -> bool:
    """True when the whole reply says there is nothing to extract ("没有医学实体", "无")."""
    text = strip_answer_prefix(normalize_reply(reply)).strip().strip(_EDGE_PUNCT)
    return bool(text) and (text.lower() in NONE_MARKERS or bool(_NONE_REPLY.search(text)))


_VALUE_SEPARATORS = re.compile(r"[，,、；;|｜\n\t]+|\s{2,}")


def split_values(text: str) -> list[str]:
    """``"高血压，糖尿病、冠心病"`` → three values; none markers and empty pieces dropped."""
    values = []
    for piece in _VALUE_SEPARATORS.split(text):
        value = clean_value(piece)
        if value and value.lower() not in NONE_MARKERS:
            values.append(value)
    return values


# --- labels ----------------------------------------------------------------------------------

_NEGATORS = ("不是", "并非", "并不是", "不属于", "不应是", "不能算", "而非", "非")


def find_labels(
    text: str, names: Mapping[str, str], *, skip_negated: bool = True
) -> list[tuple[int, int, str]]:
    """Occurrences of label names in ``text`` as ``(start, end, label)``, longest name first,
    never overlapping; an occurrence right after a negator ("不是X") is skipped."""
    taken: list[tuple[int, int, str]] = []
    lowered = text.lower()
    for name in sorted(names, key=len, reverse=True):
        start = lowered.find(name.lower())
        while start != -1:
            end = start + len(name)
            if not any(s < end and start < e for s, e, _ in taken):
                negated = skip_negated and any(text[:start].endswith(neg) for neg in _NEGATORS)
                taken.append((start, end, names[name] if not negated else ""))
            start = lowered.find(name.lower(), start + 1)
    return sorted(t for t in taken if t[2])


#: Words that introduce the answer label ("属于治疗方案", "类别为：疾病").
_CUE = re.compile(r"(属于|是|为|选|选择|归为|判断为|答案|类别|类型)\s*[“\"'「]?\s*[:：]?\s*$")


def parse_choice(reply: str, names: Mapping[str, str]) -> str | None:
    """The one label ``reply`` gives, by name (``names`` maps every accepted name to its label).

    The label the answer starts with wins; otherwise the only label mentioned (negated mentions
    skipped), or the only one introduced as the answer ("属于疾病类，因为涉及诊断"); anything else is
    unreadable.
    """
    text = strip_answer_prefix(normalize_reply(reply))
    first_line = next((line for line in text.splitlines() if line.strip()), "")
    for candidate in (first_line, text):
        body = strip_answer_prefix(clean_value(candidate) if candidate is first_line else candidate)
        found = find_labels(body, names)
        if not found:
            continue
        if found[0][0] == 0:
            return found[0][2]
        distinct = {label for _, _, label in found}
        if len(distinct) == 1:
            return distinct.pop()
        cued = {label for start, _, label in found if _CUE.search(body[max(0, start - 6) : start])}
        if len(cued) == 1:
            return cued.pop()
    return None


# --- same / different ------------------------------------------------------------------------

_SAME_TERMS = (
    "同一件事",
    "同一个问题",
    "同一问题",
    "一回事",
    "相同",
    "一样",
    "一致",
    "同义",
    "相似",
    "相近",
    "等价",
    "等同",
    "同一个意思",
    "一个意思",
    "同一意思",
    "same",
)
_DIFF_TERMS = (
    "不完全相同",
    "不完全一样",
    "不完全一致",
    "不相同",
    "不同",
    "不一样",
    "不太一样",
    "不大一样",
    "不一致",
    "不同义",
    "不相似",
    "不等价",
    "不等同",
    "不是同一个意思",
    "不是一个意思",
    "不是同一意思",
    "有区别",
    "有差异",
    "有差别",
    "区别",
    "差异",
    "different",
)
_FLIPPERS = (
    "不是",
    "并非",
    "并不是",
    "并不",
    "没有",
    "没",
    "无",
    "并无",
    "不能说",
    "谈不上",
    "不",
    "not ",
    "not",
)
_QUESTION_ECHO = re.compile(
    r"(语义|意思|含义|意义|问题)?是否(相同|一样|一致|相似|同义|等价)|"
    r"[“\"']?相同[”\"']?\s*(或|还是|或者|/)\s*[“\"']?不同[”\"']?|"
    r"选项[:：][^\n]*"
)
#: A question echoed back ("两句话意思相同吗？") is not an answer.
_QUESTION_CLAUSE = re.compile(r"[^，,。.!！;；\n？?]*(?:[？?]|[吗么](?=[，,。.!！;；\s]|$))")
_YES = re.compile(r"^(是的|是|对的|对|正确|yes|y)(?![^，,。.!！；;\s])", re.I)
_NO = re.compile(r"^(不是|否|不对|错误|no|n)(?![^，,。.!！；;\s])", re.I)


def _polarity_term(clause: str) -> str | None:
    """The earliest same/different term in ``clause`` ("1"/"0"), flipped by a negator before it."""
    best: tuple[int, int, str] | None = None
    for terms, label in ((_DIFF_TERMS, "0"), (_SAME_TERMS, "1")):
        for term in terms:
            pos = clause.lower().find(term)
            if pos != -1 and (best is None or (pos, -len(term)) < (best[0], -best[1])):
                best = (pos, len(term), label)
    if best is None:
        return None
    pos, _, label = best
    before = clause[max(0, pos - 4) : pos]
    if any(before.endswith(flip) for flip in _FLIPPERS):
        return "1" if label == "0" else "0"
    return label


def parse_same_meaning(reply: str) -> str | None:
    """Same meaning → ``"1"``, different → ``"0"``, no commitment → None.

    Reads "是"/"否" answers, "1"/"0", the question echoed back ("是否相同：否"), same/different
    terms with their negations ("不太一样", "不是同一个意思", double "不是不同"), clause by clause.
    """
    text = strip_answer_prefix(normalize_reply(reply))
    text = _QUESTION_ECHO.sub("，", text)
    text = _QUESTION_CLAUSE.sub("，", text)
    for clause in re.split(r"[，,。.!！;；\n？?]+", text):
        clause = strip_answer_prefix(clause.strip().strip(_EDGE_PUNCT))
        if not clause:
            continue
        digit = re.match(r"^(?:标签|label)?\s*[:：]?\s*([01])(?![\d\u4e00-\u9fff])", clause, re.I)
        if digit:
            return digit.group(1)
        term = _polarity_term(clause)
        if term is not None:
            return term
        if _NO.match(clause):
            return "0"
        if _YES.match(clause):
            return "1"
        if clause.startswith(("不", "否")) and "确定" not in clause and "知道" not in clause:
            return "0"
    return None


# --- typed mentions --------------------------------------------------------------------------

_JSON_BLOCK = re.compile(r"(\{.*\}|\[.*\])", re.S)


def _json_mentions(text: str, lookup: Mapping[str, str]) -> list[tuple[str, str]] | None:
    match = _JSON_BLOCK.search(text)
    if not match:
        return None
    try:
        data = json.loads(match.group(1))
    except json.JSONDecodeError:
        return None
    found: list[tuple[str, str]] = []
    recognised = False
    if isinstance(data, dict):
        for key, value in data.items():
            label = lookup.get(clean_value(str(key)).removesuffix("实体").lower())
            if label is None:
                continue
            recognised = True
            values = value if isinstance(value, list) else split_values(str(value))
            found += [
                (label, clean_value(str(v))) for v in values if clean_value(str(v)) and not is_none(str(v))
            ]
    elif isinstance(data, list):
        for entry in data:
            if isinstance(entry, dict):
                mention = (
                    entry.get("entity") or entry.get("mention") or entry.get("name") or entry.get("实体")
                )
                kind = entry.get("type") or entry.get("label") or entry.get("类型")
            elif isinstance(entry, list | tuple) and len(entry) == 2:
                mention, kind = entry
            else:
                continue
            label = lookup.get(clean_value(str(kind)).removesuffix("实体").lower()) if kind else None
            if label is not None and mention:
                recognised = True
                found.append((label, clean_value(str(mention))))
    return found if recognised else None


def _section_pattern(names: Iterable[str]) -> re.Pattern:
    alternation = "|".join(re.escape(n) for n in sorted(set(names), key=len, reverse=True))
    return re.compile(
        r"(?:^|(?<=[\n；;。，,:：\s|｜>•·、\-*]))"
        rf"(?P<label>{alternation})"
        r"(?:类?实体|类|实体类型)?"
        r"(?:\s*[（(]\s*[A-Za-z_\- ]{1,30}\s*[)）])?"
        r"\s*[:：]",
        re.M | re.I,
    )


def parse_typed_mentions(reply: str, type_names: Mapping[str, Sequence[str]]) -> list[tuple[str, str]] | None:
    """Typed mentions from a reply listing them per type; ``[]`` for a "none" answer, None if unreadable.

    ``type_names`` maps each type code to the names a reply may use for it (the code itself is
    always accepted). Accepted shapes: one type per line or several per line ("疾病：A，B；症状：C"),
    PromptCBLUE's "疾病实体：A", "**疾病**：A", "疾病（dis）：A", "【疾病】A", a bulleted list under a
    type line, JSON (``{"疾病": ["A"]}`` or ``[{"entity": "A", "type": "疾病"}]``) and
    "A（疾病）" items. Lines naming an unknown type end the current type's list.
    """
    lookup = {code.lower(): code for code in type_names}
    for code, names in type_names.items():
        lookup.update({name.lower(): code for name in names})
    text = normalize_reply(reply)
    from_json = _json_mentions(text, lookup)
    if from_json is not None:
        return from_json
    matches = list(_section_pattern(lookup).finditer(text))
    if matches:
        mentions: list[tuple[str, str]] = []
        for i, match in enumerate(matches):
            end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
            code = lookup[match.group("label").lower()]
            mentions += [(code, value) for value in split_values(_section_body(text[match.end() : end]))]
        return mentions
    alternation = "|".join(re.escape(n) for n in sorted(lookup, key=len, reverse=True))
    rows = _table_rows(text, lookup)
    if rows:
        return rows
    bracketed = re.findall(rf"([^\s，,、；;:：（(\n]+)\s*[（(]\s*({alternation})\s*[)）]", text, re.I)
    if bracketed:
        return [(lookup[kind.lower()], clean_value(mention)) for mention, kind in bracketed]
    prose = list(re.finditer(rf"(?P<label>{alternation})(?:类?实体)?(?:有|包括|包含|为|是)", text, re.I))
    if prose:
        mentions = []
        for i, match in enumerate(prose):
            end = prose[i + 1].start() if i + 1 < len(prose) else len(text)
            body = re.split(r"[。；;\n]", text[match.end() : end])[0]
            values = [v for piece in split_values(body) for v in re.split(r"以及|和|及|与", piece)]
            mentions += [
                (lookup[match.group("label").lower()], clean_value(v)) for v in values if clean_value(v)
            ]
        return mentions
    if says_none(text):
        return []
    return None


def _section_body(content: str) -> str:
    """The values after a type label: its line, then the lines under it; once there are values, a
    blank line, a line with a colon (another label) or a prose sentence that is no list item ends them."""
    lines = content.split("\n")
    body = [lines[0]]
    for line in lines[1:]:
        stripped = line.strip()
        if not stripped:
            if any(b.strip() for b in body):
                break
            continue
        if re.search(r"[:：]", stripped):
            break
        sentence = stripped.endswith(("。", "！", "？", ".")) or len(stripped) > 30
        if sentence and not _LIST_MARK.match(line) and any(b.strip() for b in body):
            break
        body.append(line)
    return "\n".join(body)


def _table_rows(text: str, lookup: Mapping[str, str]) -> list[tuple[str, str]]:
    """``| 高血压 | 疾病 |`` rows of a markdown table (either column order); the header row is skipped."""
    rows = []
    for line in text.splitlines():
        if "|" not in line:
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 2 or set("".join(cells)) <= set("-: "):
            continue
        first, second = (clean_value(c) for c in cells)
        if second.lower().removesuffix("实体") in lookup:
            rows.append((lookup[second.lower().removesuffix("实体")], first))
        elif first.lower().removesuffix("实体") in lookup:
            rows.append((lookup[first.lower().removesuffix("实体")], second))
    return rows


# --- placing mentions in the text ------------------------------------------------------------


def locate_mentions(
    text: str, mentions: Sequence[tuple[str, str]], *, allow_overlap: bool = True
) -> tuple[list[tuple[int, int, str]], list[tuple[str, str]]]:
    """Place listed ``(type, mention)`` pairs at occurrences in ``text``.

    Returns ``(spans, unlocated)``: spans are ``(start, end_exclusive, type)``. A mention listed
    k times is placed at k occurrences, not at every occurrence. Longer mentions are placed first
    and shorter ones prefer occurrences outside them, left to right, so "糖尿病" next to a listed
    "妊娠期糖尿病" goes to a separate occurrence when the text has one. Where none is left,
    ``allow_overlap`` lets it nest inside a longer one (CMeEE annotates nested entities, e.g. a
    body part inside a symptom); BIO-tagged tasks pass False. Mentions not in the text at all
    (case-insensitively for Latin letters) come back as ``unlocated``.
    """
    counts = Counter(mentions)
    first_seen = {pair: i for i, pair in reversed(list(enumerate(mentions)))}
    order = sorted(counts, key=lambda pair: (-len(pair[1]), first_seen[pair]))
    taken: list[tuple[int, int, str]] = []
    unlocated: list[tuple[str, str]] = []
    lowered = text.lower()
    for etype, mention in order:
        if not mention:
            continue
        haystack, needle = (text, mention) if mention in text else (lowered, mention.lower())
        starts = [m.start() for m in re.finditer(f"(?={re.escape(needle)})", haystack)]
        if not starts:
            unlocated += [(etype, mention)] * counts[(etype, mention)]
            continue
        spans = [(s, s + len(mention)) for s in starts]
        free = [sp for sp in spans if not any(sp[0] < e and s < sp[1] for s, e, _ in taken)]
        chosen = free[: counts[(etype, mention)]]
        if allow_overlap and len(chosen) < counts[(etype, mention)]:
            rest = [sp for sp in spans if sp not in chosen and (sp[0], sp[1], etype) not in taken]
            chosen += rest[: counts[(etype, mention)] - len(chosen)]
        taken += [(s, e, etype) for s, e in chosen]
    return sorted(set(taken)), unlocated
