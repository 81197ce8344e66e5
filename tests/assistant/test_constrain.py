"""Grammar-constrained tool calls: a random model's calls parse and name an offered tool; text
outside the call and a good model's greedy call are untouched."""

from __future__ import annotations

import json

import pytest
import torch

from assistant.runtime import GenerationConfig, load, stream_chat
from assistant.runtime.constrain import JsonArguments, ToolCallConstraint, VocabBytes
from sandbox.tools import tool_schemas
from tests.assistant.conftest import write_checkpoint
from trainer.data.chat_format import TOOL_CALL, ToolCall, ToolCallError, parse_reply, render
from trainer.decode import SamplingParams, decode_tokens

OFFERED = ("execute_bash", "read_file", "run_tests")
MESSAGES = [{"role": "user", "content": "Please run the tests."}]


def offered_tools():
    return [t for t in tool_schemas() if t["name"] in OFFERED]


@pytest.fixture(scope="module")
def random_model(tokenizer, tmp_path_factory):
    """A random dense model with room for the tool list: its raw output is garbage."""
    return load(write_checkpoint(tmp_path_factory.mktemp("c") / "random.pth", tokenizer, "dense", max_seq_len=1536), device="cpu")


def sample_calls(loaded, constrain: bool, seeds: range, max_new_tokens: int = 160):
    out = []
    for seed in seeds:
        config = GenerationConfig(max_new_tokens=max_new_tokens, temperature=1.0, top_k=0, top_p=1.0, seed=seed,
                                  constrain_tool_calls=constrain)
        *_, end = stream_chat(loaded, MESSAGES, config, tools=offered_tools())
        out.append(end)
    return out


def forced_calls(loaded, constrain: bool, seeds: range, max_new_tokens: int = 300) -> list[str]:
    """Replies that start with <|tool_call|> (a random model rarely writes it by itself), sampled at temperature 1."""
    tokenizer, tools = loaded.tokenizer, offered_tools()
    call_id = tokenizer.token_to_id(TOOL_CALL)
    prompt = render(MESSAGES, tokenizer, tools=tools, add_generation_prompt=True).ids + [call_id]
    replies = []
    for seed in seeds:
        constraint = None
        if constrain:
            constraint = ToolCallConstraint(tokenizer, tools, loaded.config.vocab_size)
            constraint.advance(call_id)  # as stream_chat's constraint does when the model writes it
        params = SamplingParams(temperature=1.0, seed=seed)
        tokens = list(decode_tokens(loaded.model, prompt, max_new_tokens, params, loaded.stop_ids, constraint=constraint))
        complete = tokens[-1] in loaded.stop_ids
        replies.append((TOOL_CALL + tokenizer.decode(tokens[:-1] if complete else tokens), complete))
        assert constraint is None or not constraint.notes
    return replies


def test_every_call_of_a_random_model_parses_and_names_an_offered_tool(random_model):
    tools = offered_tools()
    constrained = forced_calls(random_model, True, range(40))
    finished = [text for text, complete in constrained if complete]
    assert len(finished) >= 30, f"only {len(finished)} of 40 calls finished within the token limit"
    for text in finished:
        reply = parse_reply(text, tools, complete=True)
        # valid JSON, an offered name, known parameters of the right types; only value ranges
        # (minimum, minLength) are left to the tool's own validation
        assert isinstance(reply, ToolCall) or (isinstance(reply, ToolCallError) and reply.kind == "invalid_arguments"), text
        payload = json.loads(text.split(TOOL_CALL, 1)[1])
        assert payload["name"] in OFFERED and set(payload) == {"name", "arguments"}
        schema = next(t for t in tools if t["name"] == payload["name"])["parameters"]
        assert set(payload["arguments"]) <= set(schema["properties"]) and set(schema.get("required", [])) <= set(payload["arguments"])
    assert sum(isinstance(parse_reply(t, tools), ToolCall) for t in finished) >= 5
    # the same model unconstrained: its calls do not parse (so the test above can fail)
    free = forced_calls(random_model, False, range(40))
    assert not any(isinstance(parse_reply(text, tools, complete=c), ToolCall) for text, c in free)
    assert sum(parse_reply(text, tools, complete=c).kind in ("bad_json", "bad_shape", "unknown_tool") for text, c in free) >= 20


def test_text_before_the_call_and_final_answers_are_unaffected(random_model):
    on = sample_calls(random_model, True, range(25), max_new_tokens=60)
    off = sample_calls(random_model, False, range(25), max_new_tokens=60)
    with_call = 0
    for a, b in zip(on, off):
        if TOOL_CALL in b.text:
            with_call += 1
            head = b.text.split(TOOL_CALL, 1)[0] + TOOL_CALL
            assert a.text.startswith(head)
            call = a.text[len(head):]  # cut by the token limit, but on its way to an offered tool
            assert any(h.startswith(call) or call.startswith(h) for h in (f'{{"name": "{n}", "arguments": {{' for n in OFFERED))
        else:
            assert a.text == b.text and a.stop_reason == b.stop_reason
    assert 0 < with_call < 25
    # without tools nothing is constrained at all
    config = GenerationConfig(max_new_tokens=60, temperature=1.0, seed=3)
    plain = stream_chat(random_model, MESSAGES, config)
    *_, end = plain
    *_, again = stream_chat(random_model, MESSAGES, GenerationConfig(max_new_tokens=60, temperature=1.0, seed=3, constrain_tool_calls=False))
    assert end.text == again.text


def _constraint_after(loaded, text: str, tools) -> ToolCallConstraint:
    constraint = ToolCallConstraint(loaded.tokenizer, tools, loaded.config.vocab_size)
    constraint.advance(loaded.tokenizer.token_to_id(TOOL_CALL))
    for token in loaded.tokenizer.encode(text):
        assert constraint.allows(token), (text, loaded.tokenizer.decode([token]))
        constraint.advance(token)
    return constraint


def test_an_unoffered_tool_name_can_never_be_produced(random_model):
    tools = offered_tools()  # execute_bash is offered, execute_python is not
    tokenizer = random_model.tokenizer
    constraint = _constraint_after(random_model, '{"name": "execute_', tools)
    mask = constraint.allowed_mask("cpu")
    allowed = {tokenizer.decode([i]) for i in torch.nonzero(mask).flatten().tolist()}
    assert allowed and all("bash".startswith(a) or a.startswith("bash") for a in allowed), allowed
    # spelled token by token, the unoffered name is refused at the first byte that leaves the offered ones
    constraint = ToolCallConstraint(tokenizer, tools, random_model.config.vocab_size)
    constraint.advance(tokenizer.token_to_id(TOOL_CALL))
    refused = False
    for token in tokenizer.encode('{"name": "execute_python", "arguments": {}}'):
        if not constraint.allows(token):
            refused = True
            break
        constraint.advance(token)
    assert refused and constraint.written.startswith(b'{"name": "execute_') and b"python" not in constraint.written
    # the end of the turn is forced once the call's object closes, and not allowed before
    constraint = _constraint_after(random_model, '{"name": "run_tests", "arguments": {"path": "tests"}', tools)
    end_id = tokenizer.token_to_id("<|end|>")
    assert not constraint.allows(end_id)
    constraint = _constraint_after(random_model, '{"name": "run_tests", "arguments": {"path": "tests"}}', tools)
    assert torch.nonzero(constraint.allowed_mask("cpu")).flatten().tolist() == [end_id]


def test_the_arguments_automaton_accepts_json_and_refuses_garbage():
    def reads(text, keys=None, required=(), types=None, nonempty=()):
        state = JsonArguments(keys, required, types, nonempty)
        return state.feed_all(text.encode()) and state.done

    assert reads('"code": "print(\\"hi\\")\\n", "timeout": 1.5e3}}', ["code", "timeout"], ["code"])
    assert reads('"a": [1, {"b": null}, true, "\\u00e9"], "c": -0.5}}')
    assert reads('}}') and not reads('}}', ["code"], ["code"])  # a required key must come first
    assert not reads('"cmd": "ls"}}', ["command"])  # not a parameter
    assert not reads('"code": "a", "code": "b"}}', ["code"])  # twice
    assert not reads('"k": 01}}') and not reads('"k": 1.}}') and not reads('"k": tru}}')
    assert not reads('"k": "a\nb"}}')  # a raw newline inside a string
    assert not reads('"n": 1.5}}', ["n"], types={"n": "integer"}) and reads('"n": -15}}', ["n"], types={"n": "integer"})
    assert not reads('"s": 5}}', ["s"], types={"s": "string"})
    assert not reads('"s": ""}}', ["s"], types={"s": "string"}, nonempty=["s"]) and reads('"s": "x"}}', ["s"], nonempty=["s"])
    assert not reads('"k": 1} }x') and not reads('"k": 1},')


def test_greedy_output_of_a_model_that_writes_a_valid_call_is_unchanged(tokenizer, tmp_path):
    """A small model trained on one conversation writes its call; the constraint changes nothing."""
    from trainer.checkpoint import save_checkpoint
    from trainer.models import build_model, preset_config

    tools = [
        {"name": "run_tests", "description": "Run the tests.", "parameters": {"type": "object", "properties": {
            "path": {"type": "string"}, "keyword": {"type": "string"}}, "additionalProperties": False}},
        {"name": "execute_bash", "description": "Run bash.", "parameters": {"type": "object", "properties": {
            "command": {"type": "string"}}, "required": ["command"], "additionalProperties": False}},
    ]
    call = {"name": "run_tests", "arguments": {"path": "tests/test_app.py", "keyword": "login"}}
    conversation = MESSAGES + [{"role": "assistant", "content": "Running them.", "tool_call": call}]
    rendered = render(conversation, tokenizer, tools=tools)
    config = preset_config("nano", "dense", vocab_size=tokenizer.vocab_size, d_model=64, n_layers=2, n_heads=4, d_ff=128,
                           max_seq_len=512)
    torch.manual_seed(0)
    model = build_model(config)
    ids = torch.tensor([rendered.ids])
    mask = torch.tensor(rendered.mask[1:], dtype=torch.bool)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(150):
        logits, _ = model(ids[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits[0][mask], ids[0, 1:][mask])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    path = save_checkpoint(tmp_path / "trained.pth", model_state=model.state_dict(), model_config=config,
                           tokenizer_json=tokenizer.to_str(), tokenizer_hash=tokenizer.hash, kind="weights", stage="language", step=0)
    loaded = load(path, device="cpu")
    texts = {}
    for constrain in (True, False):
        *_, end = stream_chat(loaded, MESSAGES, GenerationConfig(max_new_tokens=80, temperature=0.0, constrain_tool_calls=constrain),
                              tools=tools)
        texts[constrain] = end.text
    reply = parse_reply(texts[False], tools)
    assert isinstance(reply, ToolCall) and reply.name == "run_tests", texts[False]  # the model learned its call
    assert texts[True] == texts[False]
    # offered only other tools, the same model cannot call run_tests
    others = [t for t in tools if t["name"] != "run_tests"]
    *_, end = stream_chat(loaded, MESSAGES, GenerationConfig(max_new_tokens=80, temperature=0.0), tools=others)
    assert end.text.startswith('Running them.<|tool_call|>{"name": "execute_bash", "arguments": {"command": '), end.text
    reply = parse_reply(end.text, others)
    assert isinstance(reply, ToolCall) and reply.name == "execute_bash", end.text


def test_when_no_token_fits_the_call_goes_on_unconstrained_with_a_note(random_model):
    """Never zero allowed tokens: a vocabulary that cannot spell the call (here: one without '{')."""
    import copy

    constraint = ToolCallConstraint(random_model.tokenizer, offered_tools(), random_model.config.vocab_size)
    vocab = copy.copy(constraint.vocab)
    vocab.by_bytes = {piece: ids for piece, ids in vocab.by_bytes.items() if b"{" not in piece}
    vocab.sorted = sorted(vocab.by_bytes)
    constraint.vocab = vocab
    constraint.advance(random_model.tokenizer.token_to_id(TOOL_CALL))
    logits = torch.zeros(random_model.config.vocab_size)
    logits[7] = 5.0
    assert constraint.choose(logits, lambda raw: int(torch.argmax(raw))) == 7
    assert constraint.disabled and constraint.notes and "unconstrained" in constraint.notes[0]


def test_token_bytes_spell_the_text_for_byte_level_and_sentencepiece_tokenizers(tokenizer):
    """Each token's precomputed bytes, joined, give back the text: a character split across tokens
    (byte-level BPE) and SentencePiece's leading-space marker included."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from assistant.runtime.constrain import VocabBytes
    from tests.assistant.conftest import STDLIB, TEXT
    from trainer.data.tokenizer import SPECIAL_TOKENS, TextTokenizer

    vocab = VocabBytes(tokenizer, tokenizer.vocab_size)
    ids = tokenizer.encode(TEXT)
    assert any(tokenizer.decode([i]).endswith("\ufffd") for i in ids)  # some character is split
    assert b"".join(vocab.pieces[i] for i in ids) == TEXT.encode()

    text = 'def run(path): return {"name": "read_file", "arguments": {"path": path}}'
    sp = Tokenizer(models.BPE(unk_token="<unk>"))
    sp.pre_tokenizer = pre_tokenizers.Metaspace()
    sp.decoder = decoders.Metaspace()
    sp.train_from_iterator([p.read_text(encoding="utf-8") for p in sorted(STDLIB.glob("*.py"))[:5]] + [text],
                           trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", *SPECIAL_TOKENS], show_progress=False))
    wrapped = TextTokenizer(sp)
    vocab = VocabBytes(wrapped, wrapped.vocab_size)
    ids = wrapped.encode(text)
    assert any(wrapped.id_to_token(i).startswith("\u2581") for i in ids[1:])  # tokens that carry the space marker
    assert b"".join(vocab.pieces[i] for i in ids).lstrip(b" ") == text.encode()


def _constraint_inside_a_path(tokenizer, source: str, bias: float, path_so_far: str):
    """A constraint that has read ``<|tool_call|>`` and a read_file call up to ``"path": "<path_so_far>``."""
    tools = [t for t in tool_schemas() if t["name"] == "read_file"]
    constraint = ToolCallConstraint(tokenizer, tools, tokenizer.vocab_size, copy_source=[source], copy_bias=bias)
    constraint.advance(tokenizer.token_to_id(TOOL_CALL))
    for token in tokenizer.encode('{"name": "read_file", "arguments": {"path": "' + path_so_far):
        assert constraint.allows(token)
        constraint.advance(token)
    return constraint


def test_copy_bias_pulls_string_arguments_toward_the_request(tokenizer):
    """Inside an argument string, the likely tokens that continue a span of the request gain the bias:
    a model that half-remembers another path from training is pulled to the one the user wrote."""
    request = "Show me vendor/graphlib.py please"
    constraint = _constraint_inside_a_path(tokenizer, request, 4.0, "vendor/gr")
    assert constraint._string_value() == b"vendor/gr"
    copy = next(t for t in range(tokenizer.vocab_size) if constraint.vocab.pieces[t] and b'"' not in constraint.vocab.pieces[t]
                and b"vendor/gr" + constraint.vocab.pieces[t] in request.encode())
    other = next(t for t in range(tokenizer.vocab_size) if constraint.vocab.pieces[t] == b"e")
    logits = torch.full((tokenizer.vocab_size,), -10.0)
    logits[other], logits[copy] = 2.0, 0.0  # the model prefers "vendor/gre..." slightly
    boosted = constraint.copy_boost(logits)
    # the copy now wins with twice the bias (9 bytes copied: the span is long, the copy is sure);
    # nothing else moved
    assert boosted[copy] == 8.0 and boosted[other] == 2.0
    assert torch.equal(boosted[:copy], logits[:copy]) and torch.equal(boosted[copy + 1:], logits[copy + 1:])
    assert constraint.choose(logits, lambda lg: int(lg.argmax())) == copy
    # the bias grows with the bytes copied so far: 4 * (1 + 2/8) after "ve"
    early = _constraint_inside_a_path(tokenizer, request, 4.0, "ve")
    goes_on = next(t for t, p in enumerate(early.vocab.pieces) if p and len(p) >= 2 and b'"' not in p
                   and b"ve" + p in request.encode())
    likely = torch.zeros(tokenizer.vocab_size)
    likely[goes_on] = 1.0  # among the likeliest tokens
    assert early._string_value() == b"ve" and early.copy_boost(likely)[goes_on] == 6.0
    # but never past a word's end: after "vendor/" (a long span, ending in "/") the bias stays 4
    past = _constraint_inside_a_path(tokenizer, request, 4.0, "vendor/")
    after_slash = next(t for t, p in enumerate(past.vocab.pieces) if p and p.isalpha()
                       and b"vendor/" + p in request.encode())
    likely = torch.zeros(tokenizer.vocab_size)
    likely[after_slash] = 1.0
    assert past.copy_boost(likely)[after_slash] == 5.0

    # off (bias 0), or a value that is not in the request: the logits are left alone
    assert torch.equal(_constraint_inside_a_path(tokenizer, request, 0.0, "vendor/gr").copy_boost(logits), logits)
    elsewhere = _constraint_inside_a_path(tokenizer, "Show me kit/misc.py", 4.0, "vendor/gr")
    assert torch.equal(elsewhere.copy_boost(logits), logits)


def test_a_copy_may_start_at_a_word_boundary_but_not_inside_a_word(tokenizer):
    """After text the request does not hold (``import``), a token that starts a word of the request
    (a space, then letters) is pulled up; one that would start a copy inside a word is not."""
    pieces = VocabBytes(tokenizer, tokenizer.vocab_size).pieces
    word = next(t for t, p in enumerate(pieces) if p and p[:1] == b" " and p[1:].isalpha() and len(p) >= 5)
    inside = next(t for t, p in enumerate(pieces) if p and p.isalpha() and p.islower() and len(p) >= 3
                  and p not in pieces[word] and p not in b"callnow")
    request = "call" + pieces[word].decode() + "_thing now, zz" + pieces[inside].decode()
    constraint = _constraint_inside_a_path(tokenizer, request, 4.0, "from import")
    logits = torch.full((tokenizer.vocab_size,), -10.0)
    logits[word], logits[inside] = 0.0, 0.5
    boosted = constraint.copy_boost(logits)
    assert boosted[word] == 4.0 and boosted[inside] == 0.5
    # a word may start again as often as the request holds it, plus once (code names a function it
    # imported), never more (no loops such as 'helpers.helpers.helpers')
    name = pieces[word].decode()
    module = f"see{name}.py now"  # the request holds the word once, whole
    again = _constraint_inside_a_path(tokenizer, module, 4.0, f"from{name} import")
    assert again.copy_boost(logits)[word] == 4.0
    held_twice = _constraint_inside_a_path(tokenizer, module, 4.0, f"from{name} import{name} as")
    assert held_twice.copy_boost(logits)[word] == 0.0


def test_an_argument_copy_may_start_with_the_short_first_piece_of_a_request_word(tokenizer):
    """``cart_total`` may begin with a two-byte piece (``ca``): it starts a word of the request, so
    it gains the bias where the model would rather write another name it remembers (``cross_total``);
    a short piece that begins no request word does not."""
    pieces = VocabBytes(tokenizer, tokenizer.vocab_size).pieces
    short = next(t for t, p in enumerate(pieces) if p and len(p) == 2 and p.isalpha() and p.islower())
    stranger = next(t for t, p in enumerate(pieces) if p and len(p) == 2 and p.isalpha() and p.islower()
                    and p[:1] != pieces[short][:1])
    request = f"What does {pieces[short].decode()}rt_total([1, 2]) return?"
    constraint = _constraint_inside_a_path(tokenizer, request, 3.0, "print(")
    logits = torch.zeros(tokenizer.vocab_size)
    logits[short], logits[stranger] = 1.0, 1.5
    boosted = constraint.copy_boost(logits)
    assert boosted[short] == 4.0 and boosted[stranger] == 1.5


def test_module_names_of_the_summary_continue_a_copy_but_never_start_one(tokenizer):
    """``shop.`` may go on to ``shop.cart`` (the code map's module, as an import names it), but the
    module never starts a copy by itself (``import shop.cart`` where a function name goes)."""
    tools = [t for t in tool_schemas() if t["name"] == "execute_python"]
    pieces = VocabBytes(tokenizer, tokenizer.vocab_size).pieces
    package, module = [t for t, p in enumerate(pieces) if p and len(p) >= 4 and p.isalpha() and p.islower()][:2]
    name = f"{pieces[package].decode()}.{pieces[module].decode()}"  # e.g. "shop.cart"

    def writing(code: str) -> ToolCallConstraint:
        constraint = ToolCallConstraint(tokenizer, tools, tokenizer.vocab_size, copy_source=["What does total(2) return?"],
                                        copy_bias=3.0, copy_names=[name])
        constraint.advance(tokenizer.token_to_id(TOOL_CALL))
        for token in tokenizer.encode('{"name": "execute_python", "arguments": {"code": "' + code):
            constraint.advance(token)
        return constraint

    likely = torch.zeros(tokenizer.vocab_size)
    likely[package] = likely[module] = 1.0
    assert writing(f"from {pieces[package].decode()}.").copy_boost(likely)[module] > 1.0  # the module goes on
    assert writing(f"from {name} import ").copy_boost(likely)[package] == 1.0  # no new copy of it


def test_a_copy_never_boosts_a_repeat_of_the_text_just_before_it(tokenizer):
    """``NOTES.md`` then ``.md`` again, or ``'ze', 'ze', ``: the piece would double the bytes before
    it, so the copy bias leaves it alone (in an answer and in an argument)."""
    from assistant.runtime.constrain import _doubles

    assert _doubles(b"I wrote NOTES.md.md", 3) and _doubles(b"['ze', 'ze', ", 6)
    assert not _doubles(b"banana", 2) and not _doubles(b"cart_total", 5) and not _doubles(b"1, 1", 1)
    pieces = VocabBytes(tokenizer, tokenizer.vocab_size).pieces
    piece = next(t for t, p in enumerate(pieces) if p and len(p) >= 3 and p.isalpha())
    text = pieces[piece].decode()
    likely = torch.zeros(tokenizer.vocab_size)
    likely[piece] = 1.0
    for written, gain in ((f"I wrote x{text}", 0.0), ("I wrote x", 4.0)):  # doubling it, or its first copy
        answer = _answering(tokenizer, [f"x{text}{text}"], 4.0)
        for token in tokenizer.encode(written):
            answer.advance(token)
        assert answer.answer_boost(likely)[piece] == 1.0 + gain


def _answering(tokenizer, sources: list[str], bias: float) -> ToolCallConstraint:
    return ToolCallConstraint(tokenizer, offered_tools(), tokenizer.vocab_size, answer_source=sources, answer_copy_bias=bias)


def test_an_answer_leans_to_quoting_the_tool_result_once_it_has_begun(tokenizer):
    """Before the first token of the answer nothing moves (answering or calling a tool is the model's
    choice); once it has begun, tokens that continue a span of the result gain the bias."""
    result = '"""Leap years and month lengths."""'
    constraint = _answering(tokenizer, [result], 4.0)
    pieces = constraint.vocab.pieces
    logits = torch.zeros(tokenizer.vocab_size)
    logits[3] = 1.0
    assert torch.equal(constraint.answer_boost(logits), logits)
    for token in tokenizer.encode('The first line: """Leap years and'):
        constraint.advance(token)
    quote = next(t for t in range(tokenizer.vocab_size) if pieces[t] and len(pieces[t]) >= 2
                 and b"and" + pieces[t] in result.encode())  # e.g. " month"
    other = next(t for t in range(tokenizer.vocab_size) if pieces[t] and len(pieces[t]) >= 3 and pieces[t] not in result.encode())
    logits = torch.full((tokenizer.vocab_size,), -10.0)
    logits[other], logits[quote] = 2.0, 0.0
    boosted = constraint.answer_boost(logits)
    assert boosted[quote] == 4.0 and boosted[other] == 2.0
    assert constraint.choose(logits, lambda lg: int(lg.argmax())) == quote
    assert torch.equal(_answering(tokenizer, [result], 0.0).answer_boost(logits), logits)  # off


def test_copy_sources_are_the_request_and_this_turns_tool_results():
    from assistant.runtime.generate import answer_sources, copy_sources, summary_modules

    messages = [{"role": "system", "content": "sys"}, {"role": "user", "content": "old request"},
                {"role": "assistant", "content": "old answer"}, {"role": "user", "content": "read a.py"},
                {"role": "assistant", "content": "", "tool_call": {"name": "read_file", "arguments": {"path": "a.py"}}},
                {"role": "tool", "content": '{"content": "import b", "total_lines": 1, "ok": true}'}]
    assert copy_sources(messages) == ["read a.py", '{"content": "import b", "total_lines": 1, "ok": true}']
    assert copy_sources([{"role": "system", "content": "sys"}]) == []
    # the code map's modules, as an import names them (not the summary's paths)
    summary = ("sys\n\nRepository summary:\n3 files.\nCode: shop/cart.py (cart_total, item_count); pkg/__init__.py (A); "
               "tests/test_cart.py (test_total); my-dir/x.py (y)")
    assert summary_modules([{"role": "system", "content": summary}, *messages[1:]]) == ["shop.cart", "pkg", "tests.test_cart"]
    assert summary_modules(messages) == []
    # an answer quotes the result's values as plain text (and the request); nothing before a result
    assert answer_sources(messages) == ["read a.py", "import b", "1"]
    assert answer_sources(messages[:4]) == []
    assert answer_sources([*messages[:5], {"role": "tool", "content": "not json"}]) == ["read a.py", "not json"]
