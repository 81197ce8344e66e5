"""Incremental decoding for every architecture: prefill once, then one cached step per token.

The cache comes from ``CausalLM.new_cache``: keys/values for attention layers (bounded to the
window for sliding-window layers), the recurrent state for Mamba layers (constant size). This is
the token-level engine; ``assistant.runtime`` adds text streaming, stop strings, cancellation and
the chat context policy on top, and ``trainer.quantize`` times it.

Sampling follows the usual order (as in Hugging Face's logits processors): repetition penalty,
temperature, top-k, top-p, then a draw from a seeded generator. Temperature 0 is greedy.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch


@dataclass
class SamplingParams:
    temperature: float = 0.0  # 0: greedy
    top_k: int = 0  # 0: off
    top_p: float = 1.0  # 1: off
    repetition_penalty: float = 1.0  # 1: off; >1 discourages tokens already in the context (CTRL)
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature {self.temperature} must not be negative")
        if self.top_k < 0:
            raise ValueError(f"top_k {self.top_k} must not be negative")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p {self.top_p} must be in (0, 1]")
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty {self.repetition_penalty} must be positive")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def process_logits(logits: torch.Tensor, params: SamplingParams, seen: torch.Tensor | None = None) -> torch.Tensor:
    """Adjusted float32 logits (V,) of one position; masked tokens get -inf."""
    logits = logits.float()
    if seen is not None and params.repetition_penalty != 1.0:
        penalised = torch.where(logits > 0, logits / params.repetition_penalty, logits * params.repetition_penalty)
        logits = torch.where(seen, penalised, logits)
    if params.greedy:
        return logits
    logits = logits / params.temperature
    if params.top_k and params.top_k < logits.numel():
        kth = torch.topk(logits, params.top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if params.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        probs = sorted_logits.softmax(-1)
        before = probs.cumsum(-1) - probs  # probability mass strictly above each token
        drop = before >= params.top_p  # the first token is always kept
        logits = logits.index_put((order[drop],), torch.tensor(float("-inf"), device=logits.device))
    return logits


def pick(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None) -> int:
    """Choose the next token from processed logits (V,)."""
    if params.greedy:
        return int(torch.argmax(logits))
    probs = logits.softmax(-1)
    return int(torch.multinomial(probs, 1, generator=generator))


def context_limit(config) -> int | None:
    """Longest sequence the model can take: max_seq_len for attention over all positions; Mamba and
    the hybrid (recurrent state + a sliding window) have no hard limit."""
    if config.architecture in ("mamba", "hybrid"):
        return None
    return config.max_seq_len


@dataclass
class DecodeTimes:
    prefill_s: float = 0.0  # prompt processing up to the first token's logits
    first_token_s: float = 0.0  # from the call to the first chosen token
    decode_s: float = 0.0  # everything after the first token
    tokens: int = 0


class Decoder:
    """One sequence (batch 1) decoded with the model's cache.

    ``feed(ids)`` runs the prompt (in chunks of ``prefill_chunk`` tokens) and returns the last
    position's logits; ``step(token)`` appends one token. ``position`` is the sequence length so far.
    """

    def __init__(self, model, device: torch.device | None = None, prefill_chunk: int = 1024) -> None:
        self.model = model
        self.device = device or next(model.parameters()).device
        # CPU: one query attends ~3x faster in float32 than in bf16 (measured), so keep the cache wide
        kv_dtype = torch.float32 if self.device.type == "cpu" else None
        self.cache = model.new_cache(1, self.device, kv_dtype)
        self.position = 0
        self.prefill_chunk = prefill_chunk

    @torch.inference_mode()
    def feed(self, ids: Sequence[int]) -> torch.Tensor:
        if not len(ids):
            raise ValueError("nothing to decode from: the prompt is empty")
        tokens = torch.as_tensor(list(ids), dtype=torch.long, device=self.device).unsqueeze(0)
        logits = None
        for start in range(0, tokens.size(1), self.prefill_chunk):
            chunk = tokens[:, start : start + self.prefill_chunk]
            logits, _ = self.model(chunk, self.cache, self.position, last_only=True)
            self.position += chunk.size(1)
        return logits[0, -1]

    @torch.inference_mode()
    def step(self, token: int) -> torch.Tensor:
        tokens = torch.tensor([[token]], dtype=torch.long, device=self.device)
        logits, _ = self.model(tokens, self.cache, self.position, last_only=True)
        self.position += 1
        return logits[0, -1]


def decode_tokens(model, prompt_ids: Sequence[int], max_new_tokens: int, params: SamplingParams | None = None,
                  stop_ids: Sequence[int] = (), context: int | None = None,
                  times: DecodeTimes | None = None, min_new_tokens: int = 0, constraint=None) -> Iterator[int]:
    """Yield up to ``max_new_tokens`` new token ids (a stop id is yielded, then decoding ends).

    ``context`` caps prompt + generated length (default: the model's ``context_limit``); the
    caller cuts prompts that are too long (see ``assistant.runtime.context``). The stop ids cannot
    be chosen before ``min_new_tokens`` tokens (as ``min_new_tokens`` in Hugging Face's generate).

    ``constraint`` (e.g. ``assistant.runtime.constrain.ToolCallConstraint``) guides the choice:
    ``constraint.choose(logits, sample)`` returns the token, where ``sample`` draws from (masked)
    raw logits with these sampling settings; ``constraint.advance(token)`` is told each token.
    """
    params = params or SamplingParams()
    times = times if times is not None else DecodeTimes()
    limit = context if context is not None else context_limit(model.config)
    decoder = Decoder(model)
    generator = None
    if params.seed is not None and not params.greedy:
        generator = torch.Generator(device=decoder.device)
        generator.manual_seed(params.seed)
    seen = None
    if params.repetition_penalty != 1.0:
        seen = torch.zeros(model.config.vocab_size, dtype=torch.bool, device=decoder.device)
        seen[torch.as_tensor(list(prompt_ids), dtype=torch.long, device=decoder.device)] = True
    stops = set(stop_ids)
    started = time.perf_counter()
    logits = decoder.feed(prompt_ids)
    times.prefill_s = time.perf_counter() - started
    banned = torch.as_tensor(sorted(stops), dtype=torch.long, device=decoder.device) if stops and min_new_tokens else None
    for index in range(max_new_tokens):
        if banned is not None and index < min_new_tokens:
            logits = logits.index_fill(0, banned, float("-inf"))
        if constraint is None:
            token = pick(process_logits(logits, params, seen), params, generator)
        else:
            token = constraint.choose(logits, lambda raw: pick(process_logits(raw, params, seen), params, generator))
            constraint.advance(token)
        now = time.perf_counter()
        if index == 0:
            times.first_token_s = now - started
        times.decode_s = now - started - times.first_token_s
        times.tokens = index + 1
        yield token
        if token in stops or index + 1 == max_new_tokens:
            return
        if limit is not None and decoder.position >= limit:
            return
        if seen is not None:
            seen[token] = True
        logits = decoder.step(token)
