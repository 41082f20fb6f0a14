"""Character n-gram hashing, exact Jaccard, and MinHash/LSH collision rates against theory."""

from __future__ import annotations

import random

import numpy as np
import pytest

from medgo.data.minhash import (
    band_keys,
    batch_ngram_hashes,
    comparison_text,
    jaccard,
    ngram_hashes,
    signatures,
)


def _python_ngrams(text: str, n: int) -> set[str]:
    return {text[i : i + n] for i in range(len(text) - n + 1)} if len(text) >= n else {text}


def _texts(count, seed=0):
    rng = random.Random(seed)
    pool = [chr(c) for c in range(0x4E00, 0x4E00 + 800)]
    return ["".join(rng.choices(pool, k=rng.randint(0, 60))) for _ in range(count)]


def test_batch_hashes_are_each_texts_own_ngrams_exactly():
    texts = _texts(300)
    hashes, offsets = batch_ngram_hashes(texts, 5)
    for i, text in enumerate(texts):
        mine = hashes[offsets[i] : offsets[i + 1]]
        assert np.array_equal(mine, ngram_hashes(text, 5))
        assert len(np.unique(mine)) == len(_python_ngrams(text, 5))


def test_jaccard_equals_the_set_jaccard_of_the_ngrams():
    rng = random.Random(3)
    for a, b in zip(_texts(200, 1), _texts(200, 2), strict=True):
        b = a[: rng.randint(0, len(a))] + b  # overlapping prefixes
        expected_a, expected_b = _python_ngrams(a, 5), _python_ngrams(b, 5)
        expected = len(expected_a & expected_b) / len(expected_a | expected_b)
        assert jaccard(ngram_hashes(a, 5), ngram_hashes(b, 5)) == pytest.approx(expected)


def test_comparison_text_ignores_whitespace_and_case():
    assert comparison_text("CT 检查\n结果 正常") == "ct检查结果正常"


def test_band_collision_rates_follow_j_to_the_rows(tmp_path):
    rng = np.random.default_rng(0)
    rows, bands = 5, 25
    collide = []
    for trial in range(300):
        chars = rng.integers(0x4E00, 0x4E00 + 3000, size=400)
        text = "".join(map(chr, chars))
        other = text[:300] + "".join(map(chr, rng.integers(0x4E00, 0x4E00 + 3000, size=60)))
        j = jaccard(ngram_hashes(text, 5), ngram_hashes(other, 5))
        sigs = signatures([text, other], n=5, num_perm=rows * bands, seed=trial)
        keys = band_keys(sigs, bands=bands, rows=rows)
        collide.append(((keys[:, 0] == keys[:, 1]).mean(), j))
    band_rate, js = np.mean([c for c, _ in collide]), np.mean([j for _, j in collide])
    assert band_rate == pytest.approx(js**rows, abs=0.02)


def test_identical_texts_collide_in_every_band_and_bands_never_share_keys():
    sigs = signatures(["高血压的诊断与治疗"] * 2 + ["糖尿病"], n=3, num_perm=20, seed=1)
    keys = band_keys(sigs, bands=4, rows=5)
    assert (keys[:, 0] == keys[:, 1]).all() and not (keys[:, 0] == keys[:, 2]).all()
    assert len(set(keys[:, 0].tolist())) == 4
