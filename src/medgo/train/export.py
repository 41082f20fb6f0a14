"""What a finished run hands on: the merged model (optional), the model card, and the atomic commit.

* :func:`export_merged` folds the LoRA adapter into its base and saves a plain HF model in bf16 with the
  tokenizer and its chat template under ``merged/`` (what vLLM or a hospital's own stack loads without PEFT).
* :func:`write_model_card` writes ``README.md``: the base model, the data the run saw (each input's
  manifest summary and, where the data stage wrote one, its data card), the config and the metrics.
* :func:`commit_artifact` moves a finished result into its output location with the manifest last, so
  a reader that sees ``manifest.json`` sees a complete artifact, and a failed run publishes nothing.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from medgo.logs import fields
from medgo.storage import MANIFEST_NAME, is_s3, publish, read_manifest

log = logging.getLogger(__name__)

MERGED_DIR = "merged"
MODEL_CARD = "README.md"


def export_merged(adapter_dir: Path, base_model_uri: str, out_dir: Path) -> Path:
    """Merge the adapter in ``adapter_dir`` into ``base_model_uri`` and save it (bf16) with the tokenizer."""
    import torch

    from medgo.modeling.loading import load_model, load_tokenizer

    model = load_model(base_model_uri, adapter_uri=str(adapter_dir), dtype=torch.bfloat16)
    merged = model.merge_and_unload()
    out_dir.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out_dir, safe_serialization=True)
    load_tokenizer(str(adapter_dir), require_chat_template=True).save_pretrained(out_dir)
    log.info("exported merged model", extra=fields(dir=str(out_dir)))
    return out_dir


def _data_summary(uri: str) -> dict[str, Any]:
    if is_s3(uri) or not Path(uri).exists():
        return {"uri": uri}
    manifest = read_manifest(uri) or {}
    summary: dict[str, Any] = {
        "uri": uri,
        "stage": manifest.get("stage"),
        "created": manifest.get("created"),
        "counts": manifest.get("counts"),
    }
    for upstream in (manifest.get("inputs") or {}).values():
        card_path = Path(upstream.get("uri", "")) / "data_card.json"
        if not is_s3(upstream.get("uri", "")) and card_path.is_file():
            summary["data_card"] = json.loads(card_path.read_text(encoding="utf-8"))
    card_path = Path(uri) / "data_card.json"
    if card_path.is_file():
        summary["data_card"] = json.loads(card_path.read_text(encoding="utf-8"))
    return summary


def write_model_card(
    out_dir: Path, *, stage: str, base_model: str, inputs: dict[str, str], config: dict, metrics: dict
) -> Path:
    """``README.md`` of the trained model: base, data (manifests and data card), config, metrics."""
    data = {name: _data_summary(uri) for name, uri in inputs.items()}

    def block(obj: Any) -> str:
        return "```json\n" + json.dumps(obj, ensure_ascii=False, indent=2, default=str) + "\n```\n"

    text = (
        f"# medgo {stage} model\n\n"
        "Trained by medgo (MedGo recipe). Intended for research and clinical-decision support under a "
        "physician's supervision; not a medical device.\n\n"
        f"## Base model\n\n`{base_model}`\n\n"
        "## Data\n\nEvery input's manifest summary (and the data card of the data stage where one exists).\n\n"
        + block(data)
        + "\n## Training configuration\n\n"
        + block(config)
        + "\n## Metrics\n\n"
        + block(metrics)
    )
    path = out_dir / MODEL_CARD
    path.write_text(text, encoding="utf-8")
    return path


def commit_artifact(staged: Path, output_uri: str) -> str:
    """Move (local) or upload (``s3://``) the finished result in ``staged`` to ``output_uri``, manifest last."""
    staged = Path(staged)
    if not (staged / MANIFEST_NAME).is_file():
        raise RuntimeError(f"{staged} holds no finished result (no {MANIFEST_NAME})")
    if is_s3(output_uri):
        publish(staged, output_uri)  # uploads the manifest last
        shutil.rmtree(staged, ignore_errors=True)
        return output_uri
    dest = Path(output_uri)
    dest.mkdir(parents=True, exist_ok=True)
    (dest / MANIFEST_NAME).unlink(missing_ok=True)
    entries = sorted(staged.iterdir(), key=lambda p: p.name == MANIFEST_NAME)
    for entry in entries:
        target = dest / entry.name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        if os.stat(staged).st_dev == os.stat(dest).st_dev:
            os.replace(entry, target)
        else:
            shutil.move(str(entry), str(target))
    shutil.rmtree(staged, ignore_errors=True)
    log.info("result committed", extra=fields(output=output_uri))
    return output_uri
