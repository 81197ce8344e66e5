"""The code-tuned embedder: the shipped LoRA adapter merges into the packaged model exactly and changes it."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from index import IndexingError
from index.adapter import (
    ADAPTER_PATH,
    adapter_info,
    add_lora,
    lora_state,
    merge,
    save_adapter,
    tuned_model_path,
)
from index.embedding import default_model_path, get_embedder


def test_merge_adds_the_scaled_low_rank_product():
    base = {"encoder.q.weight": torch.randn(6, 4), "encoder.q.bias": torch.randn(6), "other.weight": torch.randn(2, 2)}
    a, b = torch.randn(2, 4), torch.randn(6, 2)
    merged = merge(base, {"encoder.q.lora_A": a, "encoder.q.lora_B": b}, rank=2, alpha=4.0)
    assert torch.allclose(merged["encoder.q.weight"], base["encoder.q.weight"] + 2.0 * b @ a, atol=1e-6)
    assert merged["encoder.q.bias"] is base["encoder.q.bias"] and merged["other.weight"] is base["other.weight"]
    with pytest.raises(IndexingError, match="does not fit"):
        merge(base, {"encoder.k.lora_A": a, "encoder.k.lora_B": b}, rank=2, alpha=4.0)


def test_a_wrapped_model_computes_what_its_merged_weights_compute(tmp_path):
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(default_model_path()), local_files_only=True).eval()
    plain = load_file(str(default_model_path() / "model.safetensors"))
    add_lora(model, rank=4, alpha=8.0)
    assert sum(1 for m in model.modules() if hasattr(m, "lora_A")) == 6 * 6  # 6 layers x 6 Linear layers
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("lora_B"):
                p.normal_(0, 0.02)  # a trained adapter: B no longer zero
    adapter_file = tmp_path / "adapter.safetensors"
    save_adapter(adapter_file, lora_state(model), {"rank": 4, "alpha": 8.0})
    assert adapter_info(adapter_file) == {"rank": 4, "alpha": 8.0}
    folder = tuned_model_path(default_model_path(), tmp_path / "cache", adapter_file)
    merged_model = AutoModel.from_pretrained(str(folder), local_files_only=True).eval()
    ids = torch.tensor([[101, 7592, 2088, 102]])
    with torch.no_grad():
        wrapped_out = model(input_ids=ids).last_hidden_state
        merged_out = merged_model(input_ids=ids).last_hidden_state
    # fp16 factors in the file against fp32 in the wrapped model: equal to fp16 precision
    assert torch.allclose(wrapped_out, merged_out, atol=2e-2)
    changed = [k for k, v in load_file(str(folder / "model.safetensors")).items() if not torch.equal(v, plain[k])]
    assert changed and all(k.startswith("encoder.") and k.endswith(".weight") for k in changed)
    assert tuned_model_path(default_model_path(), tmp_path / "cache", adapter_file) == folder  # cached


def test_the_shipped_adapter_is_the_default_and_changes_the_vectors(settings):
    info = adapter_info(ADAPTER_PATH)
    assert info["rank"] > 0 and info["pairs"] > 1000 and info["after"]["loss"] < info["before"]["loss"]
    tuned = get_embedder(settings)
    plain = get_embedder(dataclasses.replace(settings, code_adapter=False))
    assert tuned.model_id != plain.model_id  # an index built with the plain model gets rebuilt
    assert "code-tuned" in str(tuned.model_path) and json.loads((tuned.model_path / "code_adapter.json").read_text())
    texts = ["# shop/cart.py::cart_total\ndef cart_total(items):\n    return sum(i.price for i in items)"]
    cosine = float(tuned.embed_documents(texts)[0] @ plain.embed_documents(texts)[0])
    assert 0.3 < cosine < 0.999


def test_a_damaged_adapter_is_one_clear_error(tmp_path):
    bad = tmp_path / "adapter.safetensors"
    save_file({"encoder.layer.0.attention.self.query.lora_A": torch.zeros(2, 384)}, str(bad),
              metadata={"info": json.dumps({"rank": 2, "alpha": 2})})
    with pytest.raises(IndexingError, match="does not fit"):
        tuned_model_path(default_model_path(), tmp_path / "cache", bad)
    with pytest.raises(IndexingError, match="is missing"):
        tuned_model_path(default_model_path(), tmp_path / "cache", tmp_path / "absent.safetensors")
    assert not list(tmp_path.rglob("*code-tuned-*"))  # nothing half-made is left to be taken for a model
