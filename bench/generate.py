"""Generation benchmark: our runtime against transformers' generate() on the same weights.

For each architecture and each of fp32, bf16, int8, int4 on the current device:
  - decode tokens/s at batch 1: 256 new tokens after a 512-token prompt (greedy, end tokens
    suppressed so every run makes all 256);
  - time to first token for a 1024-token prompt;
  - peak memory (CPU: the peak RSS of a fresh process that loads the model and runs the decode
    above, minus that process's RSS after its imports; CUDA: torch's peak allocated bytes);
and transformers' generate() (fp32 and bf16) on the same weights, as ratios measured in the same
run. The models are random at the ``tiny`` shape (d_model 768, 12 layers, vocab 32000): Llama-style
dense (LlamaForCausalLM), Mamba (MambaForCausalLM) and Mixtral-style MoE (MixtralForCausalLM) are
built with transformers, saved, and imported with ``assistant model import``; the hybrid has no
transformers counterpart. Measurements are interleaved (every variant once per round, several
rounds, the median kept), because the machine is shared.

Also: Mamba's per-token decode time at 1k vs 8k tokens of context (it should be flat), with the
dense model's 1k vs 4k for contrast.

    .venv/bin/python bench/generate.py                 # everything (~40 min on 2 shared cores)
    .venv/bin/python bench/generate.py --archs dense --rounds 1 --new-tokens 32   # a quick look
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch

PEERS = {"dense": "LlamaForCausalLM", "mamba": "MambaForCausalLM", "moe": "MixtralForCausalLM", "hybrid": None}
OURS = ("fp32", "bf16", "int8", "int4")
THEIRS = ("hf-fp32", "hf-bf16")


# ---- models ---------------------------------------------------------------------------------------


def hf_config(arch: str, size: str):
    import transformers

    from trainer.models import SIZE_PRESETS

    d_model, n_layers, n_heads, d_ff, vocab, max_len = SIZE_PRESETS[size]
    swiglu_ff = -(-(2 * d_ff // 3) // 64) * 64  # the same parameter count as the GELU MLP (our preset rule)
    common = dict(vocab_size=vocab, hidden_size=d_model, num_hidden_layers=n_layers, tie_word_embeddings=False,
                  bos_token_id=None, eos_token_id=0, pad_token_id=0)
    if arch == "dense":
        return transformers.LlamaConfig(**common, intermediate_size=swiglu_ff, num_attention_heads=n_heads,
                                        num_key_value_heads=n_heads, max_position_embeddings=max_len)
    if arch == "moe":
        return transformers.MixtralConfig(**common, intermediate_size=swiglu_ff, num_attention_heads=n_heads,
                                          num_key_value_heads=n_heads, max_position_embeddings=max_len,
                                          num_local_experts=8, num_experts_per_tok=2)
    return transformers.MambaConfig(**common, state_size=16, expand=2, conv_kernel=4)


def prepare(workdir: Path, archs: list[str], size: str, group_size: int) -> dict[str, dict[str, Path]]:
    """Checkpoints per (arch, variant), made once and reused from ``workdir``."""
    import transformers

    from trainer.checkpoint import load_model, save_checkpoint
    from trainer.data.tokenizer import save_tokenizer, train_tokenizer
    from trainer.hf import import_hf
    from trainer.models import build_model, preset_config
    from trainer.quantize import quantize_model

    transformers.logging.set_verbosity_error()
    workdir.mkdir(parents=True, exist_ok=True)
    from trainer.models import SIZE_PRESETS

    vocab = SIZE_PRESETS[size][4]
    tokenizer_path = workdir / f"tokenizer-{vocab}.json"
    if not tokenizer_path.exists():
        import sysconfig

        stdlib = Path(sysconfig.get_paths()["stdlib"])
        docs = (p.read_text(encoding="utf-8", errors="replace") for p in sorted(stdlib.rglob("*.py")))
        print(f"training a {vocab}-token tokenizer on the standard library ...", flush=True)
        save_tokenizer(train_tokenizer(docs, vocab_size=vocab), tokenizer_path)
    paths: dict[str, dict[str, Path]] = {}
    for arch in archs:
        paths[arch] = {}
        fp32 = workdir / f"{arch}-{size}.pth"
        if PEERS[arch]:
            hf_dir = workdir / f"hf-{arch}-{size}"
            paths[arch]["hf"] = hf_dir
            if not (hf_dir / "model.safetensors").exists():
                torch.manual_seed(0)
                model = getattr(transformers, PEERS[arch])(hf_config(arch, size))
                model.save_pretrained(hf_dir)
                (hf_dir / "tokenizer.json").write_text(tokenizer_path.read_text())
                del model
            if not fp32.exists():
                import_hf(hf_dir, fp32)
        elif not fp32.exists():
            from trainer.data.tokenizer import load_tokenizer

            tokenizer = load_tokenizer(tokenizer_path)
            torch.manual_seed(0)
            config = preset_config(size, arch, vocab_size=tokenizer.vocab_size)
            model = build_model(config)
            save_checkpoint(fp32, model_state=model.state_dict(), model_config=config, tokenizer_json=tokenizer.to_str(),
                            tokenizer_hash=tokenizer.hash, kind="weights", stage="language", step=0)
        paths[arch]["fp32"] = paths[arch]["bf16"] = fp32
        for mode in ("int8", "int4"):
            target = workdir / f"{arch}-{size}-{mode}.pth"
            if not target.exists():
                print(f"quantizing {arch} to {mode} ...", flush=True)
                model, tokenizer, payload = load_model(fp32)
                model.float()
                layout = quantize_model(model, mode, group_size)
                layout["activation_dtype"] = {}  # measured by the runtime when it loads
                save_checkpoint(target, model_state=model.state_dict(), model_config=payload["config"],
                                tokenizer_json=payload["tokenizer_json"], tokenizer_hash=payload["tokenizer_hash"],
                                kind="quantized", quantization=layout, chat=payload.get("chat"))
                del model
                gc.collect()
            paths[arch][mode] = target
    return paths


# ---- one measurement -----------------------------------------------------------------------------


class _Timer:
    """A transformers streamer that notes when each token arrives (the first put() is the prompt)."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def put(self, value) -> None:
        self.times.append(time.perf_counter())

    def end(self) -> None:
        pass


def load_variant(arch: str, variant: str, paths: dict, device: str):
    if variant.startswith("hf-"):
        import transformers

        transformers.logging.set_verbosity_error()
        dtype = torch.bfloat16 if variant == "hf-bf16" else torch.float32
        model = transformers.AutoModelForCausalLM.from_pretrained(paths[arch]["hf"], dtype=dtype).eval().to(device)
        return ("hf", model)
    from assistant.runtime import load

    dtype = "bfloat16" if variant == "bf16" else "float32"
    return ("ours", load(paths[arch][variant], device=device, dtype=dtype))


def prompt_ids(length: int, vocab: int, seed: int = 0) -> list[int]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(100, min(vocab, 30000), (length,), generator=generator).tolist()


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def decode_rate(handle, prompt: list[int], new_tokens: int, device: str) -> float:
    """Tokens/s after the first generated token."""
    kind, model = handle
    if kind == "hf":
        timer = _Timer()
        with torch.inference_mode():
            model.generate(torch.tensor([prompt], device=device), max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                           do_sample=False, streamer=timer, pad_token_id=0)
        sync(device)
        first, last = timer.times[1], timer.times[-1]  # [0] is the prompt
        return (len(timer.times) - 2) / (last - first)
    from assistant.runtime import Finished, GenerationConfig, stream

    config = GenerationConfig(max_new_tokens=new_tokens, min_new_tokens=new_tokens, temperature=0.0,
                              context_window=len(prompt) + new_tokens + 1)
    end = next(e for e in stream(model, prompt, config) if isinstance(e, Finished))
    assert end.tokens == new_tokens, (end.tokens, end.stop_reason)
    return end.tokens_per_s


def first_token_seconds(handle, prompt: list[int], device: str) -> float:
    kind, model = handle
    if kind == "hf":
        with torch.inference_mode():
            sync(device)
            started = time.perf_counter()
            model.generate(torch.tensor([prompt], device=device), max_new_tokens=1, do_sample=False, pad_token_id=0)
            sync(device)
        return time.perf_counter() - started
    from assistant.runtime import GenerationConfig, generate

    end = generate(model, prompt, GenerationConfig(max_new_tokens=1, temperature=0.0, context_window=len(prompt) + 2))
    return end.first_token_s


def per_token_ms(handle, context: int, steps: int, device: str) -> float:
    """Our decode time per token after ``context`` tokens of prompt."""
    from trainer.decode import Decoder

    _, loaded = handle
    decoder = Decoder(loaded.model)
    decoder.feed(prompt_ids(context, loaded.config.vocab_size, seed=3))
    token = 123
    decoder.step(token)
    sync(device)
    started = time.perf_counter()
    for _ in range(steps):
        decoder.step(token)
    sync(device)
    return 1000 * (time.perf_counter() - started) / steps


def weight_bytes(handle) -> int:
    kind, model = handle
    module = model if kind == "hf" else model.model
    seen, total = set(), 0
    for tensor in list(module.parameters()) + list(module.buffers()):
        if tensor.data_ptr() in seen:
            continue
        seen.add(tensor.data_ptr())
        total += tensor.numel() * tensor.element_size()
    return total


def decode_floor_ms(handle, device: str, context: int, repeats: int = 7) -> tuple[float, int]:
    """(ms, weight bytes) of only the memory-bound work one decoded token cannot avoid: every Linear
    layer (the output head included; only top_k experts of a mixture) applied to one row, in the layout
    the runtime picked, plus each attention layer's read of a ``context``-long key/value cache.
    Nothing on these kernels decodes faster: transformers' time per token over this floor bounds the
    speed-up any runtime can show against transformers."""
    import re

    _, model = handle
    module, config = model.model, model.config
    top_k = getattr(config, "top_k", None) if getattr(config, "num_experts", None) else None
    layers = []  # the loaded Linear layers, in the layout the runtime picked for them (trainer/layout.py)
    for name, layer in module.named_modules():
        if not (hasattr(layer, "in_features") and hasattr(layer, "out_features")):
            continue
        expert = re.search(r"\.experts\.(\d+)\.", name + ".")
        if expert and top_k is not None and int(expert.group(1)) >= top_k:
            continue
        layers.append(layer)
    dtype = next(module.parameters()).dtype
    caches = [(torch.randn(1, a.n_heads, 1, a.head_dim, device=device, dtype=dtype),
               torch.randn(1, a.n_kv_heads, context, a.head_dim, device=device, dtype=dtype),
               torch.randn(1, a.n_kv_heads, context, a.head_dim, device=device, dtype=dtype), a.n_kv_heads != a.n_heads)
              for a in module.modules() if hasattr(a, "n_kv_heads") and hasattr(a, "head_dim")]
    inputs = [torch.randn(1, layer.in_features, device=device, dtype=dtype) for layer in layers]
    times = []
    with torch.inference_mode():
        for _ in range(repeats):
            sync(device)
            started = time.perf_counter()
            for layer, x in zip(layers, inputs):
                layer(x)
            for q, k, v, gqa in caches:
                torch.nn.functional.scaled_dot_product_attention(q, k, v, enable_gqa=gqa)
            sync(device)
            times.append(time.perf_counter() - started)
    weight_bytes = sum(p.numel() * p.element_size() for layer in layers for p in layer.parameters(recurse=False))
    return 1000 * statistics.median(times[1:]), weight_bytes


def _status_mib(field: str) -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def measure_memory(arch: str, variant: str, paths: dict, device: str, prompt_len: int, new_tokens: int) -> float:
    """Peak memory (MiB) of loading and decoding, in this fresh process, above its RSS after imports."""
    if variant.startswith("hf-"):
        import transformers  # noqa: F401 - counted in the baseline, as our imports are
    import assistant.runtime  # noqa: F401
    gc.collect()
    with open("/proc/self/clear_refs", "w") as handle:  # reset the peak (VmHWM) to the current RSS
        handle.write("5")
    baseline = _status_mib("VmRSS")
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    handle = load_variant(arch, variant, paths, device)
    vocab = handle[1].config.vocab_size
    decode_rate(handle, prompt_ids(prompt_len, vocab), new_tokens, device)
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return _status_mib("VmHWM") - baseline


# ---- the run --------------------------------------------------------------------------------------


def run(args) -> dict:
    device = args.device
    paths = prepare(Path(args.workdir), args.archs, args.size, args.group_size)
    results: dict = {"device": device, "threads": torch.get_num_threads(), "archs": {}}
    for arch in args.archs:
        variants = [v for v in OURS if v in args.precisions]
        if PEERS[arch]:
            variants += [v for v in THEIRS if v.removeprefix("hf-") in args.precisions]
        print(f"\n== {arch}: loading {', '.join(variants)}", flush=True)
        handles = {v: load_variant(arch, v, paths, device) for v in variants}
        vocab = handles[variants[0]][1].config.vocab_size
        decode_prompt, ttft_prompt = prompt_ids(args.prompt_tokens, vocab), prompt_ids(args.ttft_tokens, vocab, seed=1)
        for variant in variants:  # warm-up: first calls pay for allocation and kernel selection
            decode_rate(handles[variant], decode_prompt[:64], 4, device)
            first_token_seconds(handles[variant], ttft_prompt[:64], device)
        rates = {v: [] for v in variants}
        ttfts = {v: [] for v in variants}
        floors = []  # the decode floor, measured in the same rounds as the rates it bounds
        for round_index in range(args.rounds):
            for variant in variants:
                rates[variant].append(decode_rate(handles[variant], decode_prompt, args.new_tokens, device))
                ttfts[variant].append(first_token_seconds(handles[variant], ttft_prompt, device))
                print(f"  round {round_index + 1} {variant:8s} {rates[variant][-1]:7.1f} tok/s  "
                      f"first token {1000 * ttfts[variant][-1]:7.0f} ms", flush=True)
            if "fp32" in handles:
                floors.append(decode_floor_ms(handles["fp32"], device, args.prompt_tokens + args.new_tokens // 2))
                print(f"  round {round_index + 1} floor    {1000 / floors[-1][0]:7.1f} tok/s", flush=True)
        entry = {v: {"decode_tok_s": statistics.median(rates[v]), "decode_all": rates[v], "ttft_s": statistics.median(ttfts[v]),
                     "weights_mib": weight_bytes(handles[v]) / 2**20} for v in variants}
        if floors:
            entry["floor"] = {"ms": statistics.median(f[0] for f in floors), "bytes": floors[0][1]}
        if args.context_scan and arch in ("mamba", "dense") and "fp32" in handles:
            long_context = args.long_context if arch == "mamba" else min(4096, args.long_context)
            short, long = [], []
            for _ in range(args.rounds):
                short.append(per_token_ms(handles["fp32"], 1024, 64, device))
                long.append(per_token_ms(handles["fp32"], long_context, 64, device))
            entry["context_scan"] = {"short": 1024, "long": long_context, "short_ms": statistics.median(short),
                                     "long_ms": statistics.median(long)}
            print(f"  per-token decode at 1024 vs {long_context} tokens: {entry['context_scan']['short_ms']:.1f} vs "
                  f"{entry['context_scan']['long_ms']:.1f} ms", flush=True)
        del handles
        gc.collect()
        if not args.skip_memory:
            for variant in variants:
                command = [sys.executable, __file__, "--memory-of", arch, variant, "--workdir", args.workdir, "--size", args.size,
                           "--device", device, "--threads", str(args.threads), "--prompt-tokens", str(args.prompt_tokens),
                           "--new-tokens", str(args.new_tokens), "--group-size", str(args.group_size)]
                out = subprocess.run(command, capture_output=True, text=True, check=False)
                try:
                    entry[variant]["peak_mib"] = float(out.stdout.strip().splitlines()[-1])
                except (ValueError, IndexError):
                    print(out.stderr[-2000:], file=sys.stderr)
                    entry[variant]["peak_mib"] = None
                print(f"  peak memory {variant:8s} {entry[variant]['peak_mib']} MiB", flush=True)
        results["archs"][arch] = entry
    return results


def table(results: dict) -> str:
    lines = ["| arch | precision | decode tok/s | vs transformers | vs our fp32 | first token (1024) ms | weights MiB | peak MiB |",
             "|------|-----------|--------------|-----------------|-------------|-----------------------|-------------|----------|"]
    for arch, entry in results["archs"].items():
        ours_fp32 = entry.get("fp32", {}).get("decode_tok_s")
        for variant in (*OURS, *THEIRS):
            if variant not in entry:
                continue
            row = entry[variant]
            peer = entry.get("hf-bf16" if variant == "bf16" else "hf-fp32") if variant in ("fp32", "bf16") else None
            vs_peer = f"{row['decode_tok_s'] / peer['decode_tok_s']:.2f}x" if peer else ""
            vs_fp32 = f"{row['decode_tok_s'] / ours_fp32:.2f}x" if ours_fp32 and not variant.startswith("hf") else ""
            peak = f"{row['peak_mib']:.0f}" if row.get("peak_mib") else "-"
            name = f"transformers {variant[3:]}" if variant.startswith("hf-") else variant
            lines.append(f"| {arch} | {name} | {row['decode_tok_s']:.1f} | {vs_peer} | {vs_fp32} | "
                         f"{1000 * row['ttft_s']:.0f} | {row['weights_mib']:.0f} | {peak} |")
    floors = [(a, e) for a, e in results["archs"].items() if "floor" in e]
    if floors:
        header = ("| arch (fp32) | Linear weights per token MiB | floor: matrix-vector products + KV-cache reads, ms | "
                  "= tok/s | ours, share of that speed | transformers, share | our best possible vs transformers |")
        lines += ["", header, "|---|---|---|---|---|---|---|"]
        for arch, e in floors:
            floor = 1000 / e["floor"]["ms"]
            theirs = e.get("hf-fp32", {}).get("decode_tok_s")
            lines.append(f"| {arch} | {e['floor']['bytes'] / 2**20:.0f} | {e['floor']['ms']:.1f} | {floor:.1f} | "
                         f"{100 * e['fp32']['decode_tok_s'] / floor:.0f}% | "
                         + (f"{100 * theirs / floor:.0f}% | {floor / theirs:.2f}x |" if theirs else " | |"))
    scans = [(a, e["context_scan"]) for a, e in results["archs"].items() if "context_scan" in e]
    if scans:
        lines += ["", "| arch (fp32) | ms/token at 1024 | ms/token at long | long context | long / 1024 |",
                  "|-------------|------------------|------------------|--------------|-------------|"]
        for arch, scan in scans:
            lines.append(f"| {arch} | {scan['short_ms']:.1f} | {scan['long_ms']:.1f} | {scan['long']} | "
                         f"{scan['long_ms'] / scan['short_ms']:.2f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archs", default="dense,mamba,moe,hybrid")
    parser.add_argument("--precisions", default="fp32,bf16,int8,int4")
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the cores are shared)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--prompt-tokens", type=int, default=512)
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--ttft-tokens", type=int, default=1024)
    parser.add_argument("--long-context", type=int, default=8192)
    parser.add_argument("--group-size", type=int, default=64)
    parser.add_argument("--no-context-scan", dest="context_scan", action="store_false")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "assistant-bench-generate"))
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--memory-of", nargs=2, metavar=("ARCH", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.archs = [a.strip() for a in args.archs.split(",") if a.strip()]
    args.precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    if args.memory_of:
        arch, variant = args.memory_of
        paths = prepare(Path(args.workdir), [arch], args.size, args.group_size)
        print(f"{measure_memory(arch, variant, paths, args.device, args.prompt_tokens, args.new_tokens):.1f}")
        return 0
    started = time.time()
    results = run(args)
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    results.update(date=str(date.today()), machine=f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, "
                   f"capability {torch.backends.cpu.get_cpu_capability()}", seconds=time.time() - started,
                   command="bench/generate.py " + " ".join(sys.argv[1:]))
    print()
    print(f"device {results['device']}, {results['threads']} thread(s); {results['machine']}; {results['date']}")
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
