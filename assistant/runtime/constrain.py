"""Grammar-constrained tool calls: once the model writes ``<|tool_call|>``, it can only write a call
that parses and names an offered tool (the idea of llama.cpp grammars, outlines and vLLM's guided
decoding, for our one call format).

The call must read ``{"name": "`` + an offered name + ``", "arguments": {`` (the canonical text the
model is trained on), then a JSON object whose top-level keys are the tool's parameters (each at
most once; ``}`` only once the required ones are there), then ``}`` and ``<|end|>``, forced.

Everything works on bytes: each vocabulary entry's bytes are computed once per tokenizer (a
byte-level BPE token may hold half a character; bytes never split wrongly), and a small pushdown
automaton reads the call byte by byte.

Cost: nothing before ``<|tool_call|>`` (one integer comparison per token). In the fixed header the
allowed tokens are found exactly from a sorted vocabulary (prefix lookups, no scan). In the
arguments the sampled token is checked alone (a few bytes) and only a rejected draw triggers a
scan of the vocabulary for the exact allowed set (llama.cpp samples first in the same way), so a
model that writes valid JSON pays almost nothing. If no token at all fits (a tokenizer without
single-byte tokens), the call goes on unconstrained and a note says so.

Copying from the conversation (``copy_bias``, off unless given): inside an argument's string value,
the tokens among the model's ``COPY_TOP_K`` likeliest that continue a span of the conversation's
source text (the user's request and the tool results of this turn: the file names, function
names, expressions and queries arguments are usually made of) get ``copy_bias`` added to their
logits. A token may also start a new span at a word boundary. It is a soft
preference, in the spirit of pointer/copy mechanisms: a model sure of another value keeps it, a
small model that half-remembers a path from training is pulled to the one the user wrote.

The same bias (``answer_copy_bias``) applies to the text of an answer written after tool results,
once the answer has begun (so it never sways the choice between answering and calling a tool), with
the results' values as plain text for the source: an answer that quotes a file's first line, a
test's name or a printed value is pulled toward the exact bytes the tool returned.
"""

from __future__ import annotations

import bisect
import json
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from trainer.data.chat_format import END, TOOL_CALL

_WS = frozenset(b" \t\n\r")
_NUMBER = frozenset(b"0123456789+-.eE")
_HEX = frozenset(b"0123456789abcdefABCDEF")
_ESCAPES = frozenset(b'"\\/bfnrtu')
_LITERALS = {ord("t"): b"rue", ord("f"): b"alse", ord("n"): b"ull"}
_NUMBER_RE = re.compile(rb"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_NUMBER_PREFIX_RE = re.compile(rb"-|-?(0|[1-9][0-9]*)(\.|\.[0-9]+[eE][+-]?|[eE][+-]?|\.[0-9]+[eE])?")
# the first byte a top-level argument's value may start with, by its schema type
COPY_TOP_K = 40  # the likeliest tokens considered for the copy bias
COPY_MAX_SPAN = 64  # how far back the value is matched against the source
COPY_MIN_BYTES = 3  # a copied span is at least this long (single letters do not start a copy)
COPY_SURE_SPAN = 8  # an argument's copy bias grows with the span copied so far, doubled from this many bytes
_WORD_BYTES = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_TYPE_STARTS = {"string": b'"', "integer": b"-0123456789", "number": b"-0123456789", "boolean": b"tf",
                "array": b"[", "object": b"{", "null": b"n"}


# ---- the vocabulary as bytes ------------------------------------------------------------------


def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet, reversed: the character a BPE token uses for each byte."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    codes, extra = printable[:], 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, codes)}


def _is_byte_level(tokenizer) -> bool:
    backend = getattr(tokenizer, "backend", None)
    if backend is None:
        return False
    decoder = json.loads(backend.to_str()).get("decoder") or {}
    kinds = [decoder.get("type")] + [d.get("type") for d in decoder.get("decoders") or []]
    return "ByteLevel" in kinds


class VocabBytes:
    """Each token id's bytes (None for special tokens and ids past the tokenizer), sorted for lookups."""

    def __init__(self, tokenizer, vocab_size: int) -> None:
        backend = getattr(tokenizer, "backend", None)
        specials = set()
        if backend is not None and hasattr(backend, "get_added_tokens_decoder"):
            specials = {i for i, t in backend.get_added_tokens_decoder().items() if t.special}
        byte_level = _is_byte_level(tokenizer)
        table = _byte_decoder()
        anchor = tokenizer.encode("a")[:1]
        anchor_text = tokenizer.decode(anchor) if anchor else ""
        self.pieces: list[bytes | None] = []
        for i in range(vocab_size):
            piece = tokenizer.id_to_token(i)
            if piece is None or i in specials:
                self.pieces.append(None)
            elif byte_level and all(c in table for c in piece):
                self.pieces.append(bytes(table[c] for c in piece))
            elif re.fullmatch(r"<0x[0-9A-Fa-f]{2}>", piece):  # SentencePiece byte fallback
                self.pieces.append(bytes([int(piece[3:5], 16)]))
            else:  # decode after an anchor so a leading space marker (SentencePiece) survives
                text = tokenizer.decode(anchor + [i])[len(anchor_text):]
                self.pieces.append(text.encode("utf-8") if text and "\ufffd" not in text else None)
        self.by_bytes: dict[bytes, list[int]] = {}
        for i, piece in enumerate(self.pieces):
            if piece:
                self.by_bytes.setdefault(piece, []).append(i)
        self.sorted = sorted(self.by_bytes)
        self.size = vocab_size
        # for scans: pieces grouped by their first byte (one failing byte rules out a whole group),
        # apart from the plain string content (no quote, backslash or control byte)
        plain = torch.zeros(vocab_size, dtype=torch.bool)
        self.by_first: dict[int, list[tuple[bytes, list[int]]]] = {}
        self.plain_by_first: dict[int, list[tuple[bytes, list[int]]]] = {}
        for piece, ids in self.by_bytes.items():
            if all(b >= 0x20 and b not in (0x22, 0x5C) for b in piece):
                plain[ids] = True
                self.plain_by_first.setdefault(piece[0], []).append((piece, ids))
            else:
                self.by_first.setdefault(piece[0], []).append((piece, ids))
        self.plain = plain

    def starting_with(self, prefix: bytes) -> list[bytes]:
        """Every distinct token text that begins with ``prefix`` (``prefix`` itself included)."""
        start = bisect.bisect_left(self.sorted, prefix)
        out = []
        for piece in self.sorted[start:]:
            if not piece.startswith(prefix):
                break
            out.append(piece)
        return out


def vocab_bytes(tokenizer, vocab_size: int) -> VocabBytes:
    """Computed once per tokenizer object (and model vocabulary size), kept on the tokenizer."""
    cache = tokenizer.__dict__.setdefault("_constraint_vocab", {})
    if vocab_size not in cache:
        cache[vocab_size] = VocabBytes(tokenizer, vocab_size)
    return cache[vocab_size]


# ---- the arguments object: a byte-level JSON pushdown automaton --------------------------------


class JsonArguments:
    """Reads the bytes after ``"arguments": {`` up to the call's closing ``}``.

    ``keys``: the allowed top-level keys (None: any); ``required``: keys needed before ``}``.
    ``feed`` returns False for a byte that cannot continue valid JSON; ``done`` once the outer
    object has closed.
    """

    __slots__ = (
        "integer",
        "key",
        "keys",
        "mode",
        "nonempty",
        "nonempty_keys",
        "number",
        "pending",
        "required",
        "spaces",
        "stack",
        "starts",
        "types",
        "used",
    )

    def __init__(self, keys: Sequence[str] | None, required: Sequence[str] = (),
                 types: Mapping[str, str] | None = None, nonempty: Sequence[str] = ()) -> None:
        self.keys = [json.dumps(k)[1:-1].encode() for k in keys] if keys is not None else None
        self.types = {json.dumps(k)[1:-1].encode(): v for k, v in (types or {}).items() if v in _TYPE_STARTS}
        self.nonempty_keys = frozenset(json.dumps(k)[1:-1].encode() for k in nonempty)  # strings with minLength >= 1
        self.nonempty = False  # the string being read may not close yet
        self.required = frozenset(json.dumps(k)[1:-1].encode() for k in required if keys is None or k in keys)
        self.stack = ["call", "args"]  # containers: call (the outer object), args, obj, arr
        self.mode = "key_or_close"
        self.used: frozenset[bytes] = frozenset()
        self.key = b""
        self.pending = b""  # the rest of a literal, or the hex digits of a \u escape (as a count)
        self.number = b""
        self.spaces = 0  # whitespace bytes in a row outside strings (at most one: no endless padding)
        self.integer = False  # the number being read must be an integer
        self.starts: bytes | None = None  # what the next value may start with (its schema type), None: any

    def copy(self) -> JsonArguments:
        other = JsonArguments.__new__(JsonArguments)
        other.keys, other.required, other.stack, other.mode = self.keys, self.required, self.stack[:], self.mode
        other.used, other.key, other.pending, other.number = self.used, self.key, self.pending, self.number
        other.spaces, other.integer, other.starts, other.types = self.spaces, self.integer, self.starts, self.types
        other.nonempty_keys, other.nonempty = self.nonempty_keys, self.nonempty
        return other

    @property
    def done(self) -> bool:
        return self.mode == "done"

    def feed_all(self, data: bytes) -> bool:
        return all(self.feed(b) for b in data)

    def _restricted(self) -> bool:
        return self.keys is not None and self.stack[-1] == "args"

    def _close_allowed(self) -> bool:
        return self.stack[-1] != "args" or self.required <= self.used

    def _end_value(self) -> None:
        self.mode = "after_value"

    def _start_value(self, b: int) -> bool:
        if self.starts is not None:
            if b not in self.starts:
                return False
            self.starts = None
        if b == ord('"'):
            self.mode = "string"
        elif b == ord("{"):
            self.stack.append("obj")
            self.mode = "key_or_close"
        elif b == ord("["):
            self.stack.append("arr")
            self.mode = "value_or_close"
        elif b in _LITERALS:
            self.pending, self.mode = _LITERALS[b], "literal"
        elif b == ord("-") or 48 <= b <= 57:
            self.number, self.mode = b"", "number"
            return self._number(b)
        else:
            return False
        return True

    def _number(self, b: int) -> bool:
        """A number grows only while it can still become a JSON number (of at most 24 bytes)."""
        grown = self.number + bytes([b])
        if len(grown) > 24 or not (_NUMBER_RE.fullmatch(grown) or _NUMBER_PREFIX_RE.fullmatch(grown)):
            return False
        if self.integer and b in b".eE":
            return False
        self.number = grown
        return True

    def _close(self, b: int) -> bool:
        top = self.stack[-1]
        if (b == ord("}") and top in ("obj", "args", "call")) or (b == ord("]") and top == "arr"):
            if top == "args" and not self._close_allowed():
                return False
            self.stack.pop()
            self.mode = "done" if not self.stack else "after_value"
            return True
        return False

    def feed(self, b: int) -> bool:
        mode = self.mode
        if mode == "string":
            if b == ord('"'):
                if self.nonempty:
                    return False
                self._end_value()
            elif b == ord("\\"):
                self.mode = "escape"
            elif b < 0x20:
                return False
            self.nonempty = False
            return True
        if mode == "escape":
            if b not in _ESCAPES:
                return False
            if b == ord("u"):
                self.pending, self.mode = b"xxxx", "unicode"
            else:
                self.mode = "string"
            return True
        if mode == "unicode":
            if b not in _HEX:
                return False
            self.pending = self.pending[1:]
            if not self.pending:
                self.mode = "string"
            return True
        if mode == "number":
            if b in _NUMBER:
                return self._number(b)
            if not _NUMBER_RE.fullmatch(self.number):
                return False
            self.mode, self.integer = "after_value", False
            return self.feed(b)
        if mode == "literal":
            if b != self.pending[0]:
                return False
            self.pending = self.pending[1:]
            if not self.pending:
                self._end_value()
            return True
        if mode == "key_string":
            if b == ord('"'):
                if self._restricted():
                    if self.key not in self.keys or self.key in self.used:
                        return False
                    self.used = self.used | {self.key}
                if self.stack[-1] == "args":
                    kind = self.types.get(self.key)
                    self.starts = _TYPE_STARTS.get(kind)
                    self.integer = kind == "integer"
                    self.nonempty = kind == "string" and self.key in self.nonempty_keys
                self.mode = "colon"
                return True
            if self._restricted():
                key = self.key + bytes([b])
                if not any(k.startswith(key) for k in self.keys if k not in self.used):
                    return False
                self.key = key
                return True
            return b != ord("\\") and b >= 0x20  # keep free keys simple: no escapes
        if b in _WS:
            self.spaces += 1
            return mode != "done" and self.spaces == 1
        self.spaces = 0
        if mode == "key_or_close" or mode == "key":
            if b == ord('"'):
                if self._restricted() and not any(k not in self.used for k in self.keys):
                    return False
                self.key, self.mode = b"", "key_string"
                return True
            return mode == "key_or_close" and self._close(b)
        if mode == "colon":
            if b == ord(":"):
                self.mode = "value"
                return True
            return False
        if mode == "value":
            return self._start_value(b)
        if mode == "value_or_close":
            return self._close(b) or self._start_value(b)
        if mode == "after_value":
            top = self.stack[-1]
            if b == ord(","):
                if top == "call" or (self._restricted() and all(k in self.used for k in self.keys)):
                    return False
                self.mode = "value" if top == "arr" else "key"
                return True
            return self._close(b)
        return False  # done: nothing more


_WORD_RE = re.compile(rb"[A-Za-z0-9_]+")


class SourceWords:
    """The words of a copy source (runs of letters, digits and ``_`` of at least ``COPY_MIN_BYTES``),
    sorted for prefix lookups, with how often each occurs."""

    def __init__(self, source: bytes) -> None:
        self.counts = Counter(w for w in _WORD_RE.findall(source) if len(w) >= COPY_MIN_BYTES)
        self.sorted = sorted(self.counts)

    def starting_with(self, prefix: bytes) -> list[bytes]:
        lo = bisect.bisect_left(self.sorted, prefix)
        hi = bisect.bisect_left(self.sorted, prefix + b"\xff")
        return self.sorted[lo:hi]

    def may_start(self, core: bytes, written: Counter) -> bool:
        """May ``core`` start copying a source word into an argument that holds ``written``? Only if
        it begins a word that the argument holds no more often than the source does: code names a
        function twice (``from m import f`` then ``print(f(...))``), a loop names it again and again."""
        lead = _WORD_RE.match(core).group()
        candidates = [lead] if len(lead) < len(core) else self.starting_with(lead)  # past the word: that whole word
        return any(written[w] <= self.counts.get(w, -1) for w in candidates)


def _doubles(text: bytes, last: int) -> bool:
    """Does ``text`` end by repeating, straight after itself, a chunk of 3 to ``COPY_MAX_SPAN`` bytes
    that covers its ``last`` bytes (``NOTES.md.md``, ``'ze', 'ze', ``)? A copy never boosts that."""
    for size in range(max(3, last), min(len(text) // 2, COPY_MAX_SPAN) + 1):
        if text[-size:] == text[-2 * size:-size]:
            return True
    return False


def _as_in_json_string(text: str) -> bytes:
    """``text`` as it reads inside a JSON string (escapes and all), the form arguments are written in."""
    return json.dumps(text, ensure_ascii=False)[1:-1].encode()


def _at_word_start(source: bytes, text: bytes) -> bool:
    """Does ``text`` occur in ``source`` where a word starts (not inside one, as 'ute' in 'execute')?"""
    i = source.find(text)
    while i >= 0:
        if i == 0 or source[i - 1] not in _WORD_BYTES or text[0] not in _WORD_BYTES:
            return True
        i = source.find(text, i + 1)
    return False


# ---- the constraint ---------------------------------------------------------------------------


class ToolCallConstraint:
    """Token-level guide for ``trainer.decode.decode_tokens``: inactive until ``<|tool_call|>``.

    ``choose(logits, sample)`` returns the next token (``sample`` maps raw logits to a token with
    the sampling settings); ``advance(token)`` records it. ``notes`` collects fallbacks.
    """

    def __init__(self, tokenizer, tools: Sequence[Mapping[str, Any]], vocab_size: int,
                 copy_source: Sequence[str] = (), copy_bias: float = 0.0, copy_names: Sequence[str] = (),
                 answer_source: Sequence[str] = (), answer_copy_bias: float = 0.0) -> None:
        self.vocab = vocab_bytes(tokenizer, vocab_size)
        # texts arguments may copy from, as they read inside a JSON string; NUL keeps spans apart
        escaped = [_as_in_json_string(t) for t in copy_source if t]
        names = [_as_in_json_string(t) for t in copy_names if t]
        # a copy may start in the request and results, and continue there or in names (module names:
        # never a new start, or they are copied where a function name goes, ``import corelib.long``)
        self.copy_starts = b"\0".join(escaped)
        self.copy_source = b"\0".join(escaped + names)
        self.copy_bias = copy_bias if self.copy_source else 0.0
        self.copy_words = SourceWords(self.copy_starts)
        # texts an answer may quote, as plain text (tool results' values, the request)
        self.answer_source = b"\0".join(t.encode() for t in answer_source if t)
        self.answer_copy_bias = answer_copy_bias if self.answer_source else 0.0
        self.answer_text = b""  # the reply's plain text so far (outside a call)
        self.args_text = b""  # the call's bytes after the header
        self.call_id = tokenizer.token_to_id(TOOL_CALL)
        self.end_id = tokenizer.token_to_id(END)
        self.headers: dict[bytes, Mapping[str, Any]] = {}
        for tool in tools:
            name = json.dumps(str(tool["name"]), ensure_ascii=False)
            header = ('{"name": ' + name + ', "arguments": {').encode()
            self.headers[header] = tool
        self.notes: list[str] = []
        self.active = False
        self.disabled = not self.headers or self.call_id is None or self.end_id is None
        self.written = b""  # the call so far, while in the header
        self.arguments: JsonArguments | None = None
        self.scans = 0  # full vocabulary scans (for measurement)

    # -- state

    def _arguments_for(self, header: bytes) -> JsonArguments:
        parameters = self.headers[header].get("parameters") or {}
        properties = {k: v for k, v in (parameters.get("properties") or {}).items() if isinstance(v, Mapping)}
        keys = list(properties) if properties or parameters.get("additionalProperties") is False else None
        types = {k: v.get("type") for k, v in properties.items()}
        nonempty = [k for k, v in properties.items() if v.get("type") == "string" and (v.get("minLength") or 0) >= 1]
        return JsonArguments(keys, parameters.get("required") or (), types, nonempty)

    def _after(self, written: bytes, piece: bytes) -> JsonArguments | bytes | None:
        """The state after ``piece``: bytes while still in the header, the automaton after it, None if invalid."""
        if self.arguments is not None:
            state = self.arguments.copy()
            return state if state.feed_all(piece) else None
        text = written + piece
        for header in self.headers:
            if header.startswith(text):
                return text
            if text.startswith(header):
                state = self._arguments_for(header)
                if state.feed_all(text[len(header):]):
                    return state
        return None

    def allows(self, token: int) -> bool:
        if self.arguments is not None and self.arguments.done:
            return token == self.end_id
        piece = self.vocab.pieces[token] if token < len(self.vocab.pieces) else None
        return piece is not None and self._after(self.written, piece) is not None

    def allowed_mask(self, device) -> torch.Tensor:
        """The exact set of allowed tokens now."""
        mask = torch.zeros(self.vocab.size, dtype=torch.bool)
        if self.arguments is not None and self.arguments.done:
            mask[self.end_id] = True
        elif self.arguments is None:  # the header: prefix lookups in the sorted vocabulary
            for header in self.headers:
                if not header.startswith(self.written):
                    continue
                rest = header[len(self.written):]
                for k in range(1, len(rest) + 1):
                    for i in self.vocab.by_bytes.get(rest[:k], ()):
                        mask[i] = True
                for piece in self.vocab.starting_with(rest):
                    if len(piece) > len(rest) and self._after(self.written, piece) is not None:
                        mask[self.vocab.by_bytes[piece]] = True
        else:  # the arguments: scan the vocabulary
            self.scans += 1
            groups = [self.vocab.by_first]
            if self.arguments.mode == "string":
                mask |= self.vocab.plain  # plain text always continues a string
            else:
                groups.append(self.vocab.plain_by_first)
            for group in groups:
                for first, pieces in group.items():
                    after_first = self.arguments.copy()
                    if not after_first.feed(first):
                        continue
                    for piece, ids in pieces:
                        state = after_first.copy()
                        if state.feed_all(piece[1:]):
                            mask[ids] = True
        return mask.to(device)

    # -- the decoding hooks

    def _string_value(self) -> bytes | None:
        """The bytes of the argument string being written (after its opening quote), else None."""
        if self.arguments is None or self.arguments.mode != "string":
            return None
        i = len(self.args_text)
        while True:
            i = self.args_text.rfind(b'"', 0, i)
            if i < 0:
                return None
            slashes = len(self.args_text[:i]) - len(self.args_text[:i].rstrip(b"\\"))
            if slashes % 2 == 0:  # an unescaped quote: the string's opening one
                return self.args_text[i + 1:]

    def copy_boost(self, logits: torch.Tensor) -> torch.Tensor:
        """``logits`` with ``copy_bias`` added to the likely tokens that continue a span of the source."""
        value = self._string_value()
        if value is None or not self.copy_bias:
            return logits
        return self._boost(logits, value, self.copy_source, self.copy_bias, lambda piece: piece.split(b'"', 1)[0],
                           self.copy_words, self.copy_starts)

    def answer_boost(self, logits: torch.Tensor) -> torch.Tensor:
        """``logits`` with ``answer_copy_bias`` added to the likely tokens that quote a tool result."""
        if not self.answer_copy_bias or not self.answer_text:
            return logits
        return self._boost(logits, self.answer_text, self.answer_source, self.answer_copy_bias, lambda piece: piece)

    def _boost(self, logits: torch.Tensor, written: bytes, source: bytes, bias: float,
               inside: Callable[[bytes], bytes], words: SourceWords | None = None,
               starts_in: bytes | None = None) -> torch.Tensor:
        """Add ``bias`` to those of the ``COPY_TOP_K`` likeliest tokens whose text (``inside(piece)``)
        continues the longest span of ``source`` that ``written`` ends with, or starts a new span at
        a word boundary (after a space or punctuation); either way the copied span is at least
        ``COPY_MIN_BYTES`` long, and never one that repeats the text just before it (``_doubles``).
        A new span starts only in ``starts_in`` (default: all of ``source``). Without ``words`` (an
        answer), a new span must be a word ``written`` does not hold yet (no loops re-copying it). With
        ``words`` (an argument), a new span may be the first piece of a source word, which may recur
        as often as in the source plus once (``SourceWords.may_start``), and the bias on a span
        continued inside a word grows with the span's length (never past a word's end: a value that
        should end there is not pulled on)."""
        tail = written[-COPY_MAX_SPAN:]
        recent = written[-2 * COPY_MAX_SPAN:]  # all that _doubles can look at
        matched = next((len(tail) - k for k in range(len(tail) + 1) if tail[k:] in source), 0)
        span = tail[len(tail) - matched:]
        at_boundary = not tail or tail[-1] not in _WORD_BYTES
        written_words = Counter(_WORD_RE.findall(written)) if words is not None else Counter()
        starts_in = source if starts_in is None else starts_in
        in_word = bool(span) and span[-1] in _WORD_BYTES
        grown = bias * (1 + min(matched, COPY_SURE_SPAN) / COPY_SURE_SPAN) if words is not None and in_word else bias
        gains: dict[int, float] = {}
        for token in torch.topk(logits, min(COPY_TOP_K, logits.numel())).indices.tolist():
            piece = self.vocab.pieces[token] if token < len(self.vocab.pieces) else None
            text = inside(piece) if piece else b""
            if not text or _doubles(recent + text, len(text)):
                continue
            if matched and matched + len(text) >= COPY_MIN_BYTES and span + text in source:
                gains[token] = grown if text[0] in _WORD_BYTES else bias  # grows only inside a word
                continue
            core = text.lstrip(b" ")  # a space before a new span separates it from the text before
            if words is not None and core and core[0] in _WORD_BYTES:
                fresh = words.may_start(core, written_words)
            else:
                fresh = len(core) >= COPY_MIN_BYTES and core not in written
            if (at_boundary or text[:1] == b" ") and fresh and _at_word_start(starts_in, core):
                gains[token] = bias
        if not gains:
            return logits
        logits = logits.clone()
        logits[list(gains)] += torch.tensor(list(gains.values()), dtype=logits.dtype, device=logits.device)
        return logits

    def choose(self, logits: torch.Tensor, sample: Callable[[torch.Tensor], int]) -> int:
        if not self.active and self.answer_copy_bias:
            return sample(self.answer_boost(logits))
        if not self.active or self.disabled:
            return sample(logits)
        if self.copy_bias and self.arguments is not None and not self.arguments.done:
            logits = self.copy_boost(logits)
        if self.arguments is not None and not self.arguments.done:
            token = sample(logits)  # sample first: a valid draw costs one check of a few bytes
            if self.allows(token):
                return token
        mask = self.allowed_mask(logits.device)
        masked = logits.masked_fill(~mask, float("-inf"))
        if not bool(torch.isfinite(masked).any()):  # nothing fits (or all that fits is banned, e.g. by min_new_tokens)
            self.notes.append("tool-call constraint: no token fits the call here; went on unconstrained")
            self.disabled = True
            return sample(logits)
        return sample(masked)

    def advance(self, token: int) -> None:
        if self.disabled:
            return
        if not self.active:
            if token == self.call_id:
                self.active = True
            elif token < len(self.vocab.pieces) and self.vocab.pieces[token] is not None:
                self.answer_text += self.vocab.pieces[token]
            return
        if token == self.end_id or self.vocab.pieces[token] is None:
            self.disabled = True  # the call ended (or the constraint was bypassed)
            return
        piece = self.vocab.pieces[token]
        state = self._after(self.written, piece)
        if state is None:  # cannot happen when choose() picked it; stay safe
            self.notes.append("tool-call constraint: an unexpected token was accepted; went on unconstrained")
            self.disabled = True
        elif isinstance(state, bytes):
            self.written = state
        else:
            if self.arguments is None:  # the header ended inside this piece
                text = self.written + piece
                header = next(h for h in self.headers if text.startswith(h))
                self.args_text = text[len(header):]
            else:
                self.args_text += piece
            self.arguments = state
