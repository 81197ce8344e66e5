"""The runtime: streaming text (UTF-8 safe, stop strings, cancellation), context policy, quantized loading."""

from __future__ import annotations

import threading

import pytest
import torch

from assistant.runtime import Finished, GenerationConfig, TextDelta, generate, load, stream, stream_chat
from assistant.runtime.context import fit_conversation, reply_budget
from assistant.runtime.text import IncrementalDetokenizer, StopStringFilter
from tests.assistant.conftest import TEXT
from trainer.data.chat_format import parse_reply, render
from trainer.decode import decode_tokens

GREEDY = dict(temperature=0.0)


def deltas_and_end(events):
    events = list(events)
    assert all(isinstance(e, TextDelta) for e in events[:-1]) and isinstance(events[-1], Finished)
    return [e.text for e in events[:-1]], events[-1]


def test_multibyte_characters_split_across_tokens_arrive_whole(tokenizer):
    ids = tokenizer.encode(TEXT)
    detok = IncrementalDetokenizer(tokenizer)
    pieces = [detok.push(i) for i in ids] + [detok.flush()]
    assert "".join(pieces) == TEXT
    assert all("\ufffd" not in p for p in pieces)
    assert pieces.count("") > 0, "no character was split across tokens: the test proves nothing"


def test_stop_strings_are_never_shown_in_part():
    stops = StopStringFilter(["\n\nUser:", "###"])
    shown = [stops.push(d) for d in ["Hello", " world\n", "\nUs", "er: more"]]
    assert "".join(shown) == "Hello world" and stops.stopped
    assert shown[1] == " world"  # the newline is held back while it may start a stop string
    plain = StopStringFilter(["###"])
    assert plain.push("a #") == "a " and plain.push("x") == "#x" and plain.flush() == ""


@pytest.mark.parametrize("arch", ["dense", "mamba", "moe", "hybrid"])
def test_streamed_text_is_the_greedy_decoding(checkpoints, arch):
    loaded = load(checkpoints[arch], device="cpu")
    pieces, end = deltas_and_end(stream(loaded, "def parse(text):", GenerationConfig(max_new_tokens=24, **GREEDY)))
    prompt = loaded.tokenizer.encode("def parse(text):")
    tokens = list(decode_tokens(loaded.model, prompt, 24))
    assert "".join(pieces) == end.text
    stopped = next((i for i, t in enumerate(tokens) if t in loaded.stop_ids), None)
    expected = tokens if stopped is None else tokens[:stopped]
    assert end.text == loaded.tokenizer.decode(expected)
    assert end.stop_reason == ("length" if stopped is None else "end") and end.tokens == len(tokens)
    assert end.prompt_tokens == len(prompt) and end.first_token_s > 0 and end.tokens_per_s > 0


def test_stop_string_ends_generation_and_is_not_included(checkpoints):
    loaded = load(checkpoints["dense"], device="cpu")
    full = generate(loaded, "import os\n", GenerationConfig(max_new_tokens=40, **GREEDY)).text
    stop = full[len(full) // 2 : len(full) // 2 + 3]
    assert len(stop) == 3
    pieces, end = deltas_and_end(stream(loaded, "import os\n", GenerationConfig(max_new_tokens=40, stop=[stop], **GREEDY)))
    assert end.stop_reason == "stop" and end.text == full[: full.index(stop)] and stop not in "".join(pieces)


def test_sampling_settings_reach_the_model_and_the_seed_fixes_them(checkpoints):
    loaded = load(checkpoints["hybrid"], device="cpu")
    config = dict(max_new_tokens=30, temperature=1.2, top_k=40, top_p=0.95, repetition_penalty=1.3)
    a = generate(loaded, "class ", GenerationConfig(seed=1, **config)).text
    assert a == generate(loaded, "class ", GenerationConfig(seed=1, **config)).text
    assert a != generate(loaded, "class ", GenerationConfig(seed=2, **config)).text
    from common.errors import UsageError

    with pytest.raises(UsageError):
        generate(loaded, "x", GenerationConfig(top_p=1.5))


def test_cancellation_from_another_thread_stops_within_one_token(checkpoints):
    loaded = load(checkpoints["mamba"], device="cpu")
    cancel = threading.Event()
    third_token = threading.Event()
    seen: list = []

    def worker():
        for event in stream(loaded, "while True:", GenerationConfig(max_new_tokens=500, **GREEDY), cancel=cancel):
            seen.append(event)
            if len(seen) == 3:
                third_token.set()
                cancel.wait(10)  # hold here until the other thread cancels

    thread = threading.Thread(target=worker)
    thread.start()
    assert third_token.wait(30)
    cancel.set()
    thread.join(30)
    end = seen[-1]
    assert isinstance(end, Finished) and end.stop_reason == "cancelled"
    assert end.tokens <= 3 + 1  # the tokens before the cancel, plus at most the one in flight
    assert not end.complete


def test_a_prompt_longer_than_the_context_is_cut_from_the_left_never_a_crash(checkpoints):
    loaded = load(checkpoints["small-context"], device="cpu")  # learned positions: 48 at most
    window = loaded.context_window
    assert window == 48
    long_text = "print('hello world')\n" * 40
    end = generate(loaded, long_text, GenerationConfig(max_new_tokens=8, **GREEDY))
    assert end.prompt.cut_tokens > 0 and end.prompt_tokens == reply_budget(window, 8) and end.tokens == 8
    assert end.prompt.ids == (loaded.tokenizer.encode(long_text))[-end.prompt_tokens:]
    filled = generate(loaded, "x = 1\n", GenerationConfig(max_new_tokens=200, **GREEDY))
    assert filled.stop_reason in ("context", "end") and filled.prompt_tokens + filled.tokens <= window + 1

    system = {"role": "system", "content": "You are terse."}
    history = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"message number {i} " * 3} for i in range(30)]
    _, chat_end = deltas_and_end(stream_chat(loaded, [system, *history], GenerationConfig(max_new_tokens=8, **GREEDY)))
    fitted = chat_end.prompt
    assert fitted.dropped_messages > 0 and chat_end.prompt_tokens <= reply_budget(window, 8)
    text = loaded.tokenizer.decode(fitted.ids)
    assert text.startswith("<|system|>You are terse.<|end|>") and text.endswith("message number 29 <|end|><|assistant|>")


def test_context_policy_keeps_system_newest_and_tool_pairs(tokenizer):
    system = {"role": "system", "content": "Rules: be safe. " * 3}
    call = {"role": "assistant", "content": "", "tool_call": {"name": "list_files", "arguments": {}}}
    result = {"role": "tool", "content": '{"ok": true, "files": ["a.py", "b.py"]}'}
    messages = [system, {"role": "user", "content": "old question " * 20}, call, result,
                {"role": "assistant", "content": "Two files."}, {"role": "user", "content": "and now?"}]
    full = len(render(messages, tokenizer, add_generation_prompt=True))
    for budget in range(full - 1, 10, -7):
        fitted = fit_conversation(messages, tokenizer, budget)
        assert len(fitted.ids) <= budget and fitted.truncated
        text = tokenizer.decode(fitted.ids)
        assert text.endswith("<|assistant|>")
        if "<|tool_result|>" in text:
            assert "<|tool_call|>" in text  # a result never outlives its call
        if budget >= len(render([system, messages[-1]], tokenizer, add_generation_prompt=True)):
            assert text.startswith("<|system|>Rules: be safe.") and "and now?" in text
    huge = [system, {"role": "user", "content": "word " * 500 + "THE QUESTION?"}]
    fitted = fit_conversation(huge, tokenizer, 60)
    text = tokenizer.decode(fitted.ids)
    assert len(fitted.ids) <= 60 and fitted.cut_tokens > 0
    assert text.startswith("<|system|>Rules") and text.endswith("THE QUESTION?<|end|><|assistant|>")
    enormous_system = [{"role": "system", "content": "rule " * 400}, {"role": "user", "content": "hi"}]
    fitted = fit_conversation(enormous_system, tokenizer, 50)
    assert len(fitted.ids) <= 50 and tokenizer.decode(fitted.ids).endswith("hi<|end|><|assistant|>")


@pytest.mark.parametrize("arch", ["dense", "mamba", "moe", "hybrid"])
def test_quantized_checkpoints_load_and_generate_in_the_runtime(checkpoints, arch, tmp_path):
    from trainer.quantize import Int4Linear, Int8Linear, run_quantization

    float_model = load(checkpoints[arch], device="cpu")
    ids = torch.tensor([float_model.tokenizer.encode("def main():\n    return 0\n")])
    with torch.no_grad():
        reference = float_model.model(ids)[0]
    for mode in ("int8", "int4"):
        output = tmp_path / f"{arch}_{mode}.pth"
        run_quantization(checkpoints[arch], mode, output=output, data_dir=None, decode_tokens=4, group_size=32)
        loaded = load(output, device="cpu")
        assert loaded.quantization["mode"] == mode and loaded.activation_dtype in (torch.float32, torch.bfloat16)
        kinds = {type(m) for m in loaded.model.modules()}
        assert (Int4Linear if mode == "int4" else Int8Linear) in kinds
        with torch.no_grad():
            logits = loaded.model(ids)[0]
        assert (logits - reference).norm() / reference.norm() < (0.05 if mode == "int8" else 0.25)
        end = generate(loaded, "def main():", GenerationConfig(max_new_tokens=12, **GREEDY))
        assert end.tokens >= 1 and end.stop_reason in ("length", "end")


def test_chat_reply_parses_into_the_agent_shapes(checkpoints):
    loaded = load(checkpoints["dense"], device="cpu")
    _, end = deltas_and_end(stream_chat(loaded, [{"role": "user", "content": "list the files"}],
                                        GenerationConfig(max_new_tokens=16, **GREEDY)))
    reply = parse_reply(end.text, complete=end.complete)  # a random model: any shape, never an exception
    assert type(reply).__name__ in ("FinalAnswer", "ToolCall", "ToolCallError")


@pytest.mark.parametrize("arch", ["dense", "mamba", "moe", "hybrid"])
def test_bf16_weights_generate_close_to_fp32(checkpoints, arch):
    fp32, bf16 = load(checkpoints[arch], device="cpu"), load(checkpoints[arch], device="cpu", dtype="bfloat16")
    assert next(bf16.model.parameters()).dtype == torch.bfloat16
    ids = torch.tensor([fp32.tokenizer.encode("for line in open(path):")])
    with torch.no_grad():
        reference, got = fp32.model(ids)[0], bf16.model(ids)[0].float()
    assert (got - reference).norm() / reference.norm() < 0.05
    end = generate(bf16, "for line in open(path):", GenerationConfig(max_new_tokens=16, min_new_tokens=16, **GREEDY))
    assert end.tokens == 16 and end.stop_reason == "length"
