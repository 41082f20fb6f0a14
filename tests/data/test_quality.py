"""Quality rules and the script-based language check."""

from __future__ import annotations

import pytest

from medgo.config import PrepareConfig, QualityRules
from medgo.data.quality import (
    detect_language,
    quality_filter,
    repeated_line_ratio,
    repeated_ngram_ratio,
)

GOOD = "高血压患者应低盐饮食，规律服用降压药物，定期监测血压；如出现头痛、头晕、胸闷等症状，应及时就医。"


@pytest.mark.parametrize(
    ("text", "language"),
    [
        (GOOD, "zh"),
        ("患者行CT检查，HbA1c 7.5%，建议复查MRI。", "zh"),
        ("醫院門診部提醒：流感季節請注意個人衛生。", "zh"),
        ("高血圧の患者は塩分を控えてください。", "ja"),
        ("고혈압 환자는 소금 섭취를 줄여야 합니다.", "ko"),
        ("Hypertension is a chronic condition that requires lifelong care.", "en"),
        ("Гипертония требует постоянного лечения.", "ru"),
        ("12345 67890 !!!", "other"),
    ],
)
def test_language_is_told_by_script(text, language):
    assert detect_language(text) == language


def test_each_rule_names_itself_and_good_text_passes():
    rules = QualityRules(min_chars=10)
    assert quality_filter(GOOD, rules) is None
    assert quality_filter("太短", rules) == "too_short"
    assert quality_filter(GOOD * 3, QualityRules(max_chars=100, max_repeated_ngram_ratio=1)) == "too_long"
    assert quality_filter("Hypertension is chronic and needs care.", rules) == "low_chinese_ratio"
    assert quality_filter("高血圧の患者は塩分を控えてください。毎日測定。", rules) == "language:ja"
    assert quality_filter("★☆■□▲△●○◆◇★☆■□" + GOOD[:20], rules) == "high_symbol_ratio"
    assert quality_filter("指标" + "1234567890" * 3 + GOOD[:20], rules) == "high_digit_ratio"
    assert quality_filter("\n".join(["请遵医嘱按时服药。"] * 5 + [GOOD]), rules) == "repeated_lines"
    assert quality_filter("头痛发热" * 20, rules) == "repeated_ngrams"


def test_empty_language_list_keeps_every_language():
    assert (
        quality_filter(
            "高血圧の患者は塩分を控えてください。毎日測定。", QualityRules(min_chars=5, languages=[])
        )
        is None
    )


def test_repetition_ratios():
    assert repeated_line_ratio("甲\n乙\n甲\n甲") == pytest.approx(0.5)
    assert repeated_ngram_ratio(GOOD, 10) == 0.0
    assert repeated_ngram_ratio("头痛发热" * 10, 4) == 1.0


def test_per_category_rules_override_only_the_fields_they_set():
    config = PrepareConfig(min_chars=50, quality_by_category={"lab_medicine": {"max_digit_ratio": 0.8}})
    lab = config.rules_for("lab_medicine")
    assert (lab.min_chars, lab.max_digit_ratio) == (50, 0.8)
    assert config.rules_for("textbook").max_digit_ratio == QualityRules().max_digit_ratio


def test_rules_for_unknown_categories_are_config_errors():
    from medgo.config import load_config
    from medgo.errors import ConfigError

    with pytest.raises(ConfigError, match="quality_by_category names unknown categories"):
        load_config(PrepareConfig, quality_by_category={"astrology": {"min_chars": 1}})
