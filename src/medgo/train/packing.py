"""Batches of packed pretraining sequences in which documents never attend to each other.

Each packed row (``medgo.data.pack``) holds several documents back to back, with ``position_ids`` that
restart at 0 for every document and a padded tail. Two batch layouts keep documents apart at any
micro-batch size:

* **flattened** (FlashAttention-2): the micro-batch becomes one row of only its real tokens, with the
  per-document ``position_ids`` and the varlen kernel's ``cu_seq_lens_q/k`` and ``max_length_q/k``,
  so each document is its own sequence to the kernel;
* **block-diagonal mask** (SDPA, eager): rows keep their shape and get a 4D mask
  ``[batch, 1, seq, seq]`` that lets a token see only earlier tokens of its own document (bool for
  SDPA, additive float for eager), plus the per-document ``position_ids`` so RoPE restarts too.

In both, a document's first token is not a target (nothing of its own precedes it) and padding is
never a target, so a token's logits and loss are the same whatever the other documents are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from medgo.errors import MedgoError
from medgo.train.sft_tokens import IGNORE_INDEX

PackedLayout = Literal["flattened", "block_mask_bool", "block_mask_float"]


def layout_for_backend(attn_implementation: str) -> PackedLayout:
    """The batch layout that separates documents on ``attn_implementation``."""
    layouts = {"flash_attention_2": "flattened", "sdpa": "block_mask_bool", "eager": "block_mask_float"}
    if attn_implementation not in layouts:
        raise MedgoError(
            f"packed pretraining cannot separate documents on attention backend {attn_implementation!r}"
        )
    return layouts[attn_implementation]


def segment_ids(position_ids):
    """Per token, the index of its document in the row (a new document starts where position is 0)."""
    return (position_ids == 0).long().cumsum(-1)


def block_diagonal_causal_mask(position_ids, real):
    """``[batch, 1, seq, seq]`` bool: query i may see key j iff j <= i, same document, and j is real
    (a padding query still sees itself, so no row of the softmax is empty)."""
    import torch

    seg = segment_ids(position_ids)
    seq = position_ids.shape[-1]
    causal = torch.ones(seq, seq, dtype=torch.bool, device=position_ids.device).tril()
    same_doc = seg[:, :, None] == seg[:, None, :]
    keys_real = real.bool()[:, None, :] | torch.eye(seq, dtype=torch.bool, device=position_ids.device)[None]
    return (causal[None] & same_doc & keys_real)[:, None]


@dataclass
class PackedCollator:
    """Collate packed rows (``input_ids``, ``attention_mask``, ``position_ids``) in ``layout``."""

    layout: PackedLayout

    def __call__(self, rows: list[dict]) -> dict:
        import torch

        ids = torch.tensor([r["input_ids"] for r in rows], dtype=torch.long)
        real = torch.tensor([r["attention_mask"] for r in rows], dtype=torch.long)
        positions = torch.tensor([r["position_ids"] for r in rows], dtype=torch.long)
        labels = ids.masked_fill((real == 0) | (positions == 0), IGNORE_INDEX)
        if self.layout == "flattened":
            keep = real.bool()
            flat_positions = positions[keep][None]
            starts = (flat_positions[0] == 0).nonzero().flatten()
            cu = torch.cat([starts, torch.tensor([flat_positions.shape[1]])]).to(torch.int32)
            max_len = int(cu.diff().max())
            return {
                "input_ids": ids[keep][None],
                "labels": labels[keep][None],
                "position_ids": flat_positions,
                "cu_seq_lens_q": cu,
                "cu_seq_lens_k": cu,
                "max_length_q": max_len,
                "max_length_k": max_len,
            }
        mask = block_diagonal_causal_mask(positions, real)
        if self.layout == "block_mask_float":
            mask = torch.zeros(mask.shape, dtype=torch.float32).masked_fill(
                ~mask, torch.finfo(torch.float32).min
            )
        return {"input_ids": ids, "labels": labels, "position_ids": positions, "attention_mask": mask}


def padded_batch_efficiency(document_lengths: list[int], seq_len: int) -> float:
    """Real tokens / total tokens when every document gets a row of its own, padded to ``seq_len``
    (documents longer than ``seq_len`` are split over rows): the peer packing is measured against."""
    rows = sum(-(-length // seq_len) for length in document_lengths)
    return sum(document_lengths) / (rows * seq_len) if rows else 0.0
