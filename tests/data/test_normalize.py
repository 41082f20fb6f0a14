"""Text normalisation: markup, character width, script and whitespace."""

from __future__ import annotations

import pytest

from medgo.data.normalize import normalize_text


def test_traditional_is_converted_to_simplified():
    assert normalize_text("醫院裡的醫生說：這個藥每日三次。") == "医院里的医生说：这个药每日三次。"


def test_traditional_is_kept_when_conversion_is_off():
    assert normalize_text("醫院", t2s=False) == "醫院"


def test_full_width_ascii_becomes_half_width_but_chinese_punctuation_stays():
    assert (
        normalize_text("ＣＴ检查：肺部结节１２ｍｍ，ＨｂＡ１ｃ ７．５％！")
        == "CT检查：肺部结节12mm，HbA1c 7.5%！"
    )


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("<p>高血压</p><p>糖尿病</p>", "高血压\n\n糖尿病"),
        ("第一行<br/>第二行<BR>第三行", "第一行\n第二行\n第三行"),
        ('<div class="x"><span style="color:red">头痛</span>&nbsp;三天&amp;恶心</div>', "头痛 三天&恶心"),
        ("<script>track()</script><style>p{}</style><!-- 注释 -->正文", "正文"),
        ("白细胞12.5×10<sup>9</sup>/L", "白细胞12.5×10^9/L"),
        ("<table><tr><td>血压</td><td>150/95</td></tr></table>", "血压 150/95"),
    ],
)
def test_html_tags_and_entities_are_removed(raw, clean):
    assert normalize_text(raw) == clean


@pytest.mark.parametrize("text", ["血压<140/90mmHg时达标", "P<0.05，差异有统计学意义", "a<b且b>c"])
def test_comparisons_in_clinical_text_are_not_mistaken_for_tags(text):
    assert normalize_text(text) == text


def test_whitespace_collapses_but_line_breaks_and_paragraphs_survive():
    raw = "  主诉：\t头痛   三天\u3000伴恶心  \r\n现病史：无\r\n\r\n\r\n\r\n既往史：高血压\u200b病史\n   "
    assert normalize_text(raw) == "主诉： 头痛 三天 伴恶心\n现病史：无\n\n既往史：高血压病史"
