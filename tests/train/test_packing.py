"""Documents in a packed batch never attend to each other: a token's logits do not change when the document
before it in its row is replaced, on SDPA and eager (block-diagonal 4D mask) at micro-batch > 1, and in the
flattened layout FlashAttention-2 gets (checked here through SDPA's packed-sequence path on CPU: same
position ids, same document boundaries)."""

from __future__ import annotations

import pytest
import torch

from medgo.train.packing import (
    PackedCollator,
    block_diagonal_causal_mask,
    layout_for_backend,
    padded_batch_efficiency,
)

SEQ = 24


def _row(docs: list[list[int]], pad_id: int = 0) -> dict:
    ids = [t for d in docs for t in d]
    positions = [p for d in docs for p in range(len(d))]
    pad = SEQ - len(ids)
    return {
        "input_ids": ids + [pad_id] * pad,
        "attention_mask": [1] * len(ids) + [0] * pad,
        "position_ids": positions + list(range(pad)),
    }


@pytest.fixture(scope="module")
def model(sample_model_dir):
    from medgo.modeling import load_model

    return load_model(str(sample_model_dir), attn_implementation="sdpa").eval()


def _logits(model, batch, attn):
    model.config._attn_implementation = attn
    with torch.no_grad():
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        return model(**inputs, use_cache=False).logits


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_a_tokens_logits_ignore_the_document_before_it(model, attn):
    target = [11, 12, 13, 14, 15, 16]
    rows_a = [_row([[101, 102, 103, 104, 105], target, [7, 8]]), _row([[300 + i for i in range(9)], target])]
    rows_b = [_row([[201, 202, 203, 204, 205], target, [9, 9]]), _row([[400 + i for i in range(9)], target])]
    collate = PackedCollator(layout_for_backend(attn))
    la, lb = _logits(model, collate(rows_a), attn), _logits(model, collate(rows_b), attn)
    torch.testing.assert_close(la[0, 5:11], lb[0, 5:11], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(la[1, 9:15], lb[1, 9:15], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(la[0, :5], lb[0, :5])  # the replaced document itself did change
    # Without the block mask (plain causal attention) the same comparison fails: the test can fail.
    plain = {k: v for k, v in collate(rows_a).items() if k not in ("attention_mask", "labels")}
    plain_b = {k: v for k, v in collate(rows_b).items() if k not in ("attention_mask", "labels")}
    plain["attention_mask"] = plain_b["attention_mask"] = torch.ones(2, SEQ, dtype=torch.long)
    with torch.no_grad():
        leak_a, leak_b = model(**plain).logits, model(**plain_b).logits
    assert not torch.allclose(leak_a[0, 5:11], leak_b[0, 5:11], atol=1e-3)


def test_flattened_batches_keep_documents_apart(model):
    target = [21, 22, 23, 24]
    a = [_row([[1, 2, 3], target]), _row([[5, 6, 7, 8, 9], target])]
    b = [_row([[31, 32, 33], target]), _row([[35, 36, 37, 38, 39], target])]
    collate = PackedCollator("flattened")
    fa, fb = collate(a), collate(b)
    assert fa["input_ids"].shape == (1, 16)  # padding dropped: 7 + 9 real tokens in one row
    assert fa["cu_seq_lens_q"].tolist() == [0, 3, 7, 12, 16] and fa["max_length_q"] == 5
    assert (fa["labels"][0, [0, 3, 7, 12]] == -100).all()  # no target at a document's first token
    la, lb = _logits(model, fa, "sdpa"), _logits(model, fb, "sdpa")
    torch.testing.assert_close(la[0, 3:7], lb[0, 3:7], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(la[0, 12:16], lb[0, 12:16], atol=1e-5, rtol=1e-5)


def test_mask_shape_and_padding():
    row = _row([[1, 2], [3, 4, 5]])
    mask = block_diagonal_causal_mask(
        torch.tensor([row["position_ids"]]), torch.tensor([row["attention_mask"]])
    )
    assert mask.shape == (1, 1, SEQ, SEQ)
    assert mask[0, 0, 1, 0] and not mask[0, 0, 2, 1] and mask[0, 0, 4, 2] and not mask[0, 0, 4, 1]
    assert mask[0, 0, 10, 10] and not mask[0, 0, 10, 4]  # padding sees only itself
    labels = PackedCollator("block_mask_bool")([row])["labels"][0]
    assert labels[:5].tolist() == [-100, 2, -100, 4, 5] and (labels[5:] == -100).all()


def test_padded_batch_efficiency_is_what_one_document_per_row_wastes():
    assert padded_batch_efficiency([10, 20, 64], 64) == pytest.approx(94 / 192)
    assert padded_batch_efficiency([100], 64) == pytest.approx(100 / 128)
