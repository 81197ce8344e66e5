"""LoRA adapters on all four architectures: identity at start, mergeable, saved apart, switchable."""

from __future__ import annotations

import pytest
import torch

from trainer import TrainerError
from trainer.lora import (
    LoRAConfig,
    apply_lora,
    has_lora,
    load_adapter,
    lora_parameters,
    merge_lora,
    save_adapter,
    target_modules,
)
from trainer.models import build_model, preset_config

ARCHS = ("dense", "mamba", "moe", "hybrid")


def _model(arch: str, seed: int = 0):
    torch.manual_seed(seed)
    config = preset_config("nano", arch, vocab_size=101, n_layers=2, d_model=64, n_heads=4, num_experts=4,
                           attention_every=2)
    return build_model(config).eval()


def _randomise_adapter(model, seed: int = 1) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in lora_parameters(model):
            p.copy_(torch.randn(p.shape, generator=gen) * 0.05)


@pytest.mark.parametrize("arch", ARCHS)
def test_adapter_starts_as_identity_then_merges_exactly(arch):
    model = _model(arch)
    x = torch.randint(16, 101, (2, 12))
    with torch.no_grad():
        base_out = model(x)[0]
    names = apply_lora(model, LoRAConfig(rank=4, alpha=8))
    assert names and all(not n.endswith(("lm_head", "router")) for n in names)
    assert not any(p.requires_grad for n, p in model.named_parameters() if not n.endswith(("lora_A", "lora_B")))
    with torch.no_grad():
        assert torch.allclose(model(x)[0], base_out, atol=1e-6)  # B = 0: the adapter changes nothing yet
    _randomise_adapter(model)
    with torch.no_grad():
        adapted = model(x)[0]
    assert (adapted - base_out).abs().max() > 1e-3
    keys_before = set(model.state_dict())
    merge_lora(model)
    assert not has_lora(model)
    assert set(model.state_dict()) == {k for k in keys_before if not k.endswith(("lora_A", "lora_B"))}
    with torch.no_grad():
        assert torch.allclose(model(x)[0], adapted, atol=1e-4)


@pytest.mark.parametrize("arch", ARCHS)
def test_adapter_trains_only_its_own_weights(arch):
    model = _model(arch).train()
    apply_lora(model, LoRAConfig(rank=2, alpha=4, targets="all-linear"))
    base = {k: v.clone() for k, v in model.state_dict().items() if not k.endswith(("lora_A", "lora_B"))}
    opt = torch.optim.AdamW(lora_parameters(model), lr=1e-2)
    x = torch.randint(16, 101, (2, 10))
    for _ in range(3):
        logits, aux = model(x[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), x[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = model.state_dict()
    assert all(torch.equal(base[k], after[k]) for k in base)
    assert any(p.abs().sum() > 0 for n, p in model.named_parameters() if n.endswith("lora_B"))


def test_targets_pick_layers_by_name_and_refuse_unknown_names():
    model = _model("dense")
    names = [n for n, _ in target_modules(model, LoRAConfig(targets="q_proj,v_proj"))]
    assert names and all(n.endswith(("q_proj", "v_proj")) for n in names)
    mamba = _model("mamba")
    assert [n for n, _ in target_modules(mamba, LoRAConfig(targets="in_proj"))]
    with pytest.raises(TrainerError, match="matches no Linear"):
        target_modules(model, LoRAConfig(targets="nonsense"))


def test_saved_adapter_switches_on_the_same_base_and_refuses_another(tmp_path):
    x = torch.randint(16, 101, (1, 9))
    model = _model("dense")
    base_state = {k: v.clone() for k, v in model.state_dict().items()}
    outputs = []
    for seed in (1, 2):
        m = _model("dense")
        apply_lora(m, LoRAConfig(rank=4, alpha=8))
        _randomise_adapter(m, seed)
        with torch.no_grad():
            outputs.append(m(x)[0])
        save_adapter(tmp_path / f"a{seed}.pt", m, "base-sha")
    for seed, expected in zip((1, 2), outputs):  # the same base, either adapter: switching is loading another file
        fresh = _model("dense")
        fresh.load_state_dict(base_state)
        load_adapter(fresh, tmp_path / f"a{seed}.pt", base_sha256="base-sha", merge=True)
        with torch.no_grad():
            assert torch.allclose(fresh(x)[0], expected, atol=1e-4)
    assert not torch.allclose(outputs[0], outputs[1])
    with pytest.raises(TrainerError, match="another base"):
        load_adapter(_model("dense"), tmp_path / "a1.pt", base_sha256="other-sha")
    with pytest.raises(TrainerError, match="does not fit"):
        load_adapter(_model("mamba"), tmp_path / "a1.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a zip")
    with pytest.raises(TrainerError, match="corrupt"):
        load_adapter(_model("dense"), tmp_path / "bad.pt")


def test_train_cli_with_lora_saves_the_adapter_apart_and_the_runtime_loads_it(prepared, trained_nano, tmp_path):
    from assistant.cli import main
    from assistant.runtime import load
    from tests.rlhf.conftest import train_args
    from trainer.checkpoint import load_checkpoint

    out = tmp_path / "lora"
    assert main(train_args(prepared, out, "--checkpoint", str(trained_nano), "--steps-per-epoch", "12",
                           "--eval-interval", "12", "--lora-rank", "4", "--learning-rate", "5e-3", "--json",
                           stage="code")) == 0
    adapter = out / "code_model_best_adapter.pt"
    assert adapter.exists() and (out / "code_model_last_adapter.pt").exists()
    base = load_checkpoint(trained_nano)
    saved = load_checkpoint(out / "code_model_best.pth")
    assert saved["weights_sha256"] == base["weights_sha256"]  # the base weights were frozen and saved unchanged
    assert adapter.stat().st_size < (out / "code_model_best.pth").stat().st_size / 5
    plain = load(trained_nano, device="cpu")
    adapted = load(trained_nano, device="cpu", adapter=adapter)
    ids = torch.tensor([[5, 300, 301, 302, 303, 17]])
    with torch.no_grad():
        assert not torch.allclose(plain.model(ids)[0], adapted.model(ids)[0], atol=1e-4)
    assert adapted.metadata["adapter"] == str(adapter)
    # resume picks the adapter state up again
    assert main(train_args(prepared, out, "--resume", "--steps-per-epoch", "14", "--eval-interval", "14",
                           "--lora-rank", "4", "--json", stage="code")) == 0
