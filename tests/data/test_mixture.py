"""Category assignment and deterministic resampling to target shares."""

from __future__ import annotations

import pytest

from medgo.config import MixtureConfig, PrepareConfig
from medgo.data.mixture import Categorizer, copies, estimate_tokens, mixture_rates


def test_category_from_record_alias_source_then_keywords():
    cat = Categorizer.from_config(PrepareConfig(category_aliases={"药品说明书": "drug_label"}))
    assert cat.categorize("tcm", None, "") == ("tcm", "record")
    assert cat.categorize("药品说明书", None, "") == ("drug_label", "record")
    assert cat.categorize("astrology", None, "") == (None, "unknown_category:astrology")
    assert cat.categorize(None, "medgo-synthetic/nursing", "") == ("nursing", "source")
    assert cat.categorize(None, "药品说明书", "") == ("drug_label", "source")
    assert cat.categorize(None, "web", "主诉：头痛。现病史：三天前……既往史：高血压。") == (
        "medical_record",
        "keywords",
    )
    assert cat.categorize(None, "web", "今天天气很好") == (None, "uncategorized")


def test_rates_hit_the_target_shares_and_unnamed_categories_share_the_rest():
    rates = mixture_rates({"a": 100, "b": 300, "c": 600}, MixtureConfig(target_shares={"a": 0.5}))
    assert rates["a"] == pytest.approx(5.0)
    assert rates["b"] == pytest.approx(rates["c"]) == pytest.approx(500 / 900)
    assert mixture_rates({"a": 10}, MixtureConfig()) == {"a": 1.0}
    assert mixture_rates({"a": 10, "b": 0}, MixtureConfig(target_shares={"b": 0.5}))["b"] == 0.0


def test_copies_are_deterministic_and_match_the_rate_on_average():
    ids = [f"doc-{i}" for i in range(20000)]
    assert [copies(i, 0.3, 1) for i in ids[:50]] == [copies(i, 0.3, 1) for i in ids[:50]]
    assert sum(copies(i, 0.3, 1) for i in ids) / len(ids) == pytest.approx(0.3, abs=0.02)
    assert sum(copies(i, 2.5, 1) for i in ids) / len(ids) == pytest.approx(2.5, abs=0.02)
    assert {copies(i, 2.0, 1) for i in ids[:100]} == {2}
    assert [copies(i, 0.5, 1) for i in ids[:200]] != [copies(i, 0.5, 2) for i in ids[:200]]


def test_token_estimate_counts_cjk_characters_and_other_text_by_four():
    assert estimate_tokens("高血压") == 3
    assert estimate_tokens("CT检查 HbA1c") == 2 + 2  # "CT" + "HbA1c" = 7 chars -> 2


def test_shares_over_one_are_config_errors():
    from medgo.config import load_config
    from medgo.errors import ConfigError

    with pytest.raises(ConfigError, match="shares add up to"):
        load_config(MixtureConfig, target_shares={"a": 0.7, "b": 0.6})
