"""Incremental decoding: the cache gives exactly the tokens of full recomputation, for every architecture."""

from __future__ import annotations

import pytest
import torch

from trainer.decode import Decoder, SamplingParams, decode_tokens, process_logits
from trainer.models import ARCHITECTURES, build_model, preset_config
from trainer.models.layers import KVCache

VOCAB = 97


def model_for(arch: str, **overrides):
    """A small random model whose greedy output is varied (weights scaled up from the init)."""
    values = dict(vocab_size=VOCAB, d_model=48, n_layers=4, n_heads=4, n_kv_heads=2, d_ff=96, max_seq_len=128,
                  window_size=8, attention_every=2, num_experts=4, top_k=2, position="rope", norm="rmsnorm", mlp="swiglu")
    if arch == "mamba":
        values["tie_embeddings"] = False  # tied random embeddings make a degenerate greedy output
    values.update(overrides)
    torch.manual_seed(0)
    model = build_model(preset_config("nano", arch, **values)).eval()
    scale = 1.0 if arch == "mamba" else 4.0  # (Mamba's own init already gives varied output)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2 and "embed" not in name:
                p.mul_(scale)
    return model


def greedy_by_recomputation(model, prompt: list[int], steps: int) -> tuple[list[int], list[torch.Tensor]]:
    seq, last_logits = list(prompt), []
    with torch.no_grad():
        for _ in range(steps):
            logits, _ = model(torch.tensor([seq]))
            last_logits.append(logits[0, -1])
            seq.append(int(logits[0, -1].argmax()))
    return seq[len(prompt):], last_logits


VARIANTS = [(arch, {}) for arch in ARCHITECTURES] + [
    ("dense", {"position": "learned", "norm": "layernorm", "mlp": "gelu", "n_kv_heads": None, "tie_embeddings": True}),
    ("dense", {"sliding_window": 6}),  # Mistral-style window on every layer
    ("moe", {"sliding_window": 10}),
]


@pytest.mark.parametrize("arch,overrides", VARIANTS, ids=[f"{a}-{i}" for i, (a, _) in enumerate(VARIANTS)])
def test_greedy_with_the_cache_equals_full_recomputation(arch, overrides):
    model = model_for(arch, **overrides)
    prompt = torch.randint(0, VOCAB, (13,), generator=torch.Generator().manual_seed(1)).tolist()  # longer than the windows
    expected, expected_logits = greedy_by_recomputation(model, prompt, 40)
    assert len(set(expected)) > 5, "the reference output is degenerate; the test would prove little"
    decoder = Decoder(model, prefill_chunk=5)  # the prompt arrives in chunks too
    logits = decoder.feed(prompt)
    got = []
    for step in range(40):
        assert torch.allclose(logits, expected_logits[step], atol=1e-4), f"step {step}"
        got.append(int(logits.argmax()))
        logits = decoder.step(got[-1])
    assert got == expected
    assert list(decode_tokens(model, prompt, 40)) == expected


def test_caches_stay_bounded_for_windows_and_mamba():
    model = model_for("hybrid")
    decoder = Decoder(model)
    decoder.feed(list(range(1, 30)))
    for _ in range(100):
        decoder.step(5)
    for cache in decoder.cache:
        if isinstance(cache, KVCache):
            assert cache.window == 8 and cache.k.size(2) <= 2 * cache.window  # bounded by the window
        else:  # Mamba: a fixed-size state whatever the length
            assert cache.conv.shape == (1, model.config.d_inner, model.config.d_conv - 1)
            assert cache.ssm.shape == (1, model.config.d_inner, model.config.d_state)
    dense = Decoder(model_for("dense"))
    dense.feed(list(range(1, 30)))
    assert dense.cache[0].length == 29


def test_decoding_stops_at_the_context_limit_and_at_stop_ids():
    model = model_for("dense", max_seq_len=20)
    assert len(list(decode_tokens(model, list(range(1, 16)), 50))) == 6  # 15 + 5 fed = 20, then one more token
    first = next(iter(decode_tokens(model, [1, 2, 3], 10)))
    assert list(decode_tokens(model, [1, 2, 3], 10, stop_ids=[first])) == [first]


def test_sampling_is_seeded_and_its_filters_behave():
    model = model_for("dense")
    prompt = [3, 1, 4, 1, 5]
    sample = SamplingParams(temperature=1.0, top_k=20, top_p=0.9, seed=7)
    a, b = (list(decode_tokens(model, prompt, 30, sample)) for _ in range(2))
    assert a == b
    assert a != list(decode_tokens(model, prompt, 30, SamplingParams(temperature=1.0, top_k=20, top_p=0.9, seed=8)))
    greedy = list(decode_tokens(model, prompt, 30))
    assert list(decode_tokens(model, prompt, 30, SamplingParams(temperature=1.0, top_k=1, seed=3))) == greedy
    assert list(decode_tokens(model, prompt, 30, SamplingParams(temperature=1.0, top_p=1e-6, seed=3))) == greedy

    logits = torch.tensor([2.0, 1.0, -1.0, 0.5])
    seen = torch.tensor([True, False, True, False])
    penalised = process_logits(logits, SamplingParams(repetition_penalty=2.0), seen)
    assert penalised.tolist() == [1.0, 1.0, -2.0, 0.5]  # seen: positive halved, negative doubled
    top_p = process_logits(torch.tensor([3.0, 2.0, 1.0, 0.0]), SamplingParams(temperature=1.0, top_p=0.8))
    assert torch.isinf(top_p).tolist() == [False, False, True, True]  # 0.66 + 0.24 covers 0.8
    with pytest.raises(ValueError):
        SamplingParams(top_p=0)


def test_min_new_tokens_holds_back_the_stop_tokens():
    model = model_for("moe")
    first = next(iter(decode_tokens(model, [1, 2, 3], 10)))
    tokens = list(decode_tokens(model, [1, 2, 3], 10, stop_ids=[first], min_new_tokens=4))
    assert len(tokens) >= 4 and first not in tokens[:4]


@pytest.mark.parametrize("tie", [False, True])
def test_the_decoding_layout_changes_memory_order_not_results(tie):
    from trainer.layout import InputMajorLinear, prepare_for_decoding

    model = model_for("moe", tie_embeddings=tie)
    prompt = [5, 9, 2, 7, 1, 3]
    expected = list(decode_tokens(model, prompt, 20))
    with torch.no_grad():
        before = model(torch.tensor([prompt]))[0]
    changed = prepare_for_decoding(model, force=True)
    assert changed == sum(isinstance(m, InputMajorLinear) for m in model.modules()) > 0
    assert isinstance(model.lm_head, InputMajorLinear) is not tie  # a tied head keeps the embedding's weight
    with torch.no_grad():
        assert torch.allclose(model(torch.tensor([prompt]))[0], before, atol=1e-5)
    assert list(decode_tokens(model, prompt, 20)) == expected
