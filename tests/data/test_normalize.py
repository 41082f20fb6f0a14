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


WEB_PAGE = """首页 | 健康 | 疾病 | 用药 | 关于我们
当前位置：首页 > 健康资讯 > 心血管
高血压患者的日常饮食
发布时间：2023-05-12  来源：健康网  阅读：1234
高血压患者应低盐饮食，每日食盐摄入量不超过5克。作者认为，规律服药很重要。
免责声明：本文仅供参考，不能替代医生诊断。
上一篇：糖尿病的预防
下一篇：冠心病的早期信号
扫码关注我们的公众号，获取更多健康知识
Copyright © 2023 健康网 版權所有
京ICP备12345678号-1  京公网安备11010502030000号
1.2万人阅读"""


def test_web_boilerplate_lines_are_removed_and_the_article_kept():
    from medgo.data.normalize import DEFAULT_BOILERPLATE_PATTERNS, TextNormalizer

    clean = TextNormalizer(boilerplate_patterns=DEFAULT_BOILERPLATE_PATTERNS)(WEB_PAGE)
    assert clean == (
        "高血压患者的日常饮食\n高血压患者应低盐饮食，每日食盐摄入量不超过5克。作者认为，规律服药很重要。"
    )


@pytest.mark.parametrize(
    "text",
    [
        "患者自述头痛三天，呈点击样疼痛。",
        "每日阅读2次说明书后再服药",
        "上一篇文献报道了该病的发病率为3%",
        "我院心内科首页推荐：高血压门诊",
        "患者注册登记后于门诊随访。",
        "他阅读了说明书后服药。",
    ],
)
def test_clinical_sentences_that_mention_boilerplate_words_are_kept(text):
    from medgo.data.normalize import DEFAULT_BOILERPLATE_PATTERNS, TextNormalizer

    assert TextNormalizer(boilerplate_patterns=DEFAULT_BOILERPLATE_PATTERNS)(text) == text


def test_boilerplate_patterns_are_configurable_and_invalid_ones_are_config_errors():
    from medgo.config import PrepareConfig
    from medgo.data.normalize import TextNormalizer
    from medgo.errors import ConfigError

    own = TextNormalizer.from_config(PrepareConfig(boilerplate_patterns=[r"^本站提示.*$"]))
    assert own("本站提示：请登录\n正文") == "正文"
    off = TextNormalizer.from_config(PrepareConfig(remove_boilerplate=False))
    assert off("上一篇：糖尿病的预防\n正文") == "上一篇：糖尿病的预防\n正文"
    with pytest.raises(ConfigError, match="boilerplate_patterns"):
        TextNormalizer.from_config(PrepareConfig(boilerplate_patterns=["("]))("x")
