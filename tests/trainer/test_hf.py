"""Hugging Face import/export against transformers itself: small random models built offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from assistant.cli import main
from trainer.checkpoint import load_checkpoint, load_model
from trainer.data.chat_format import render
from trainer.decode import decode_tokens
from trainer.hf import export_hf, import_hf

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

TOKENIZER_VOCAB = 400
SHAPE = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
             max_position_embeddings=256, bos_token_id=1, eos_token_id=2, initializer_range=0.3)

# family -> (config class, model class, config overrides, HF-style BOS post-processor)
FAMILIES = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", dict(rope_parameters={"rope_theta": 5000.0, "rope_type": "default"},
                                                      rms_norm_eps=1e-6), True),
    "llama3-tied-bias": ("LlamaConfig", "LlamaForCausalLM", dict(
        rope_parameters={"rope_theta": 500000.0, "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 32},
        tie_word_embeddings=True, attention_bias=True), True),
    "mistral": ("MistralConfig", "MistralForCausalLM", dict(sliding_window=12, head_dim=16), True),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", dict(tie_word_embeddings=True, rope_parameters={"rope_theta": 1e6, "rope_type": "default"}), False),
    "mixtral": ("MixtralConfig", "MixtralForCausalLM", dict(num_local_experts=4, num_experts_per_tok=2), True),
    "mamba": ("MambaConfig", "MambaForCausalLM", dict(state_size=8, hidden_size=64, num_hidden_layers=2, initializer_range=0.3), True),
    "gpt2": ("GPT2Config", "GPT2LMHeadModel", dict(n_embd=64, n_layer=2, n_head=4, n_positions=128, bos_token_id=1, eos_token_id=2, initializer_range=0.3), True),
}


def write_hf_tokenizer(directory: Path, bos: bool) -> int:
    """A small byte-level BPE with Llama-style special tokens, trained here with `tokenizers`."""
    import sysconfig

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    docs = [p.read_text(encoding="utf-8") for p in sorted(stdlib.glob("*.py"))[:12]]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(docs, trainers.BpeTrainer(vocab_size=TOKENIZER_VOCAB, special_tokens=["<unk>", "<s>", "</s>"],
                                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    if bos:
        tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tok.save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(json.dumps({"eos_token": "</s>", "bos_token": "<s>"}))
    return tok.get_vocab_size()


def make_hf_model(family: str, directory: Path, spare_rows: int = 0):
    config_cls, model_cls, overrides, bos = FAMILIES[family]
    directory.mkdir(parents=True, exist_ok=True)
    vocab = write_hf_tokenizer(directory, bos)
    values = {} if family in ("mamba", "gpt2") else dict(SHAPE)
    values.update(overrides, vocab_size=vocab + spare_rows)
    torch.manual_seed(0)
    model = getattr(transformers, model_cls)(getattr(transformers, config_cls)(**values)).eval()
    model.save_pretrained(directory)
    return model, vocab


@pytest.mark.parametrize("family", list(FAMILIES))
def test_import_matches_transformers_logits_and_cached_greedy_tokens(family, tmp_path):
    spare = 24 if family == "qwen2" else 0  # Qwen pads its vocabulary: the chat tokens fit without resizing
    hf_model, vocab = make_hf_model(family, tmp_path / "hf", spare)
    summary = import_hf(tmp_path / "hf", tmp_path / "ours.pth")
    model, tokenizer, payload = load_model(tmp_path / "ours.pth")
    assert payload["source"]["architecture"] == hf_model.config.architectures[0]

    x = torch.randint(0, vocab, (2, 48), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        theirs = hf_model(x).logits
        ours, _ = model(x)
    assert ours.shape[-1] == summary["vocab_size"]
    assert torch.allclose(ours[..., : theirs.size(-1)], theirs, atol=1e-4), (ours[..., : theirs.size(-1)] - theirs).abs().max()

    prompt = x[:1, :12]
    with torch.no_grad():
        expected = hf_model.generate(prompt, max_new_tokens=32, min_new_tokens=32, do_sample=False, use_cache=True,
                                     pad_token_id=0)[0, 12:].tolist()
    got = list(decode_tokens(model, prompt[0].tolist(), 32))
    assert got == expected
    assert len(set(expected)) > 3, "degenerate reference output"

    # the chat format's tokens: reused when present, else added; the model's own EOS still stops
    assert tokenizer.token_to_id("<|assistant|>") is not None and "</s>" in payload["chat"]["stop_tokens"]
    assert tokenizer.token_to_id("</s>") in tokenizer.extra_stop_ids
    if spare:
        assert summary["resized_embeddings_from"] is None and payload["config"].vocab_size == vocab + spare
    else:
        assert summary["resized_embeddings_from"] == vocab and summary["vocab_size"] == vocab + 16
    rendered = render([{"role": "user", "content": "hi"}], tokenizer)
    assert rendered.ids[0] == (1 if FAMILIES[family][3] else tokenizer.token_to_id("<|user|>"))  # the model's BOS first


@pytest.mark.parametrize("family", ["llama", "qwen2", "mistral", "gpt2", "mamba", "mixtral"])
def test_export_round_trips_through_from_pretrained(family, tmp_path):
    make_hf_model(family, tmp_path / "hf")
    import_hf(tmp_path / "hf", tmp_path / "ours.pth")
    model, _, _ = load_model(tmp_path / "ours.pth")
    export_hf(tmp_path / "ours.pth", tmp_path / "exported")
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "exported").eval()
    x = torch.randint(0, 300, (1, 40), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.allclose(reloaded(x).logits, model(x)[0], atol=1e-4)


@pytest.mark.parametrize("overrides", [
    dict(norm="rmsnorm", position="rope", mlp="swiglu", n_kv_heads=2),  # -> Llama
    dict(),  # the default dense preset (LayerNorm, learned positions, GELU) -> GPT-2
    dict(architecture="mamba"),
])
def test_a_model_trained_here_exports_and_its_chat_template_matches(overrides, tmp_path, prepared):
    from trainer.checkpoint import save_checkpoint
    from trainer.data.tokenizer import load_tokenizer
    from trainer.models import build_model, preset_config

    tokenizer = load_tokenizer(prepared["tokenizer"])
    arch = overrides.pop("architecture", "dense")
    config = preset_config("nano", arch, vocab_size=tokenizer.vocab_size, d_model=64, n_layers=2, **overrides)
    torch.manual_seed(0)
    model = build_model(config).eval()
    save_checkpoint(tmp_path / "m.pth", model_state=model.state_dict(), model_config=config,
                    tokenizer_json=tokenizer.to_str(), tokenizer_hash=tokenizer.hash)
    assert main(["model", "export", str(tmp_path / "m.pth"), "--output", str(tmp_path / "hf")]) == 0
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    x = torch.randint(0, tokenizer.vocab_size, (1, 30))
    with torch.no_grad():
        assert torch.allclose(reloaded(x).logits, model(x)[0], atol=1e-4)
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Sort a list in Python?"},
                {"role": "assistant", "content": "Use sorted(xs)."}]
    ids = hf_tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
    assert list(ids) == render(messages, tokenizer, add_generation_prompt=True).ids


def test_import_command_and_bad_directories_are_one_line(tmp_path, capsys):
    make_hf_model("llama", tmp_path / "hf")
    out = tmp_path / "models" / "llama.pth"
    assert main(["model", "import", str(tmp_path / "hf"), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "imported LlamaForCausalLM as dense" in printed and "chat tokens added: 16" in printed
    assert (tmp_path / "models" / "llama.tokenizer.json").exists()
    assert main(["model", "info", str(out)]) == 0
    assert "imported from LlamaForCausalLM" in capsys.readouterr().out

    def one_line_error(argv, fragment, code=1):
        assert main(argv) == code
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("assistant: error:") and fragment in err[0], err

    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    unsupported = tmp_path / "gemma"
    unsupported.mkdir()
    (unsupported / "config.json").write_text(json.dumps({**config, "architectures": ["Gemma2ForCausalLM"]}))
    one_line_error(["model", "import", str(unsupported)], "unsupported architecture Gemma2ForCausalLM (supported: LlamaForCausalLM, ")
    one_line_error(["model", "import", str(tmp_path / "nowhere")], "not a directory")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((tmp_path / "hf" / "config.json").read_text())
    (broken / "tokenizer.json").write_text((tmp_path / "hf" / "tokenizer.json").read_text())
    (broken / "model.safetensors").write_bytes((tmp_path / "hf" / "model.safetensors").read_bytes()[:5000])
    one_line_error(["model", "import", str(broken), "--output", str(tmp_path / "b.pth")], "corrupt or truncated")
    (broken / "tokenizer.json").unlink()
    one_line_error(["model", "import", str(broken)], "no tokenizer.json")
    scaled = tmp_path / "yarn"
    scaled.mkdir()
    for name in ("tokenizer.json", "model.safetensors"):
        (scaled / name).write_bytes((tmp_path / "hf" / name).read_bytes())
    (scaled / "config.json").write_text(json.dumps({**config, "rope_parameters": {"rope_type": "yarn", "factor": 4.0, "rope_theta": 1e4}}))
    one_line_error(["model", "import", str(scaled)], "RoPE scaling 'yarn' is not supported")
    assert not (tmp_path / "b.pth").exists()


def test_export_refuses_what_has_no_hf_twin(tmp_path, prepared, capsys):
    from trainer.checkpoint import save_checkpoint
    from trainer.data.tokenizer import load_tokenizer
    from trainer.models import build_model, preset_config

    tokenizer = load_tokenizer(prepared["tokenizer"])
    for name, config in {"hybrid": preset_config("nano", "hybrid", vocab_size=tokenizer.vocab_size, d_model=64, n_layers=4),
                         "mixed": preset_config("nano", "dense", vocab_size=tokenizer.vocab_size, d_model=64, n_layers=2,
                                                norm="rmsnorm")}.items():
        model = build_model(config)
        save_checkpoint(tmp_path / f"{name}.pth", model_state=model.state_dict(), model_config=config,
                        tokenizer_json=tokenizer.to_str(), tokenizer_hash=tokenizer.hash)
        assert main(["model", "export", str(tmp_path / f"{name}.pth"), "--output", str(tmp_path / name)]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "no Hugging Face counterpart" in err[0]
    payload = load_checkpoint(tmp_path / "hybrid.pth")
    assert payload["config"].architecture == "hybrid"
