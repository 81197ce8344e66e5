"""Token ids to text, one token at a time: UTF-8 safe deltas and stop strings.

Byte-level tokens can split a multi-byte character (an emoji is 4 bytes, often 2-4 tokens);
decoding the ids so far then ends in U+FFFD. ``IncrementalDetokenizer`` holds such an incomplete
tail back until the character completes (the offsets technique of vLLM and Hugging Face's
TextStreamer), and decodes a short window of earlier tokens with each new one so that tokenizers
which treat a leading space specially (SentencePiece) still produce the right text.

``StopStringFilter`` withholds text that could be the start of a stop string, so a stop string is
never shown half-way, and cuts the text where one appears.
"""

from __future__ import annotations

from collections.abc import Sequence

REPLACEMENT = "\ufffd"


class IncrementalDetokenizer:
    def __init__(self, tokenizer, context_ids: Sequence[int] = ()) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = list(context_ids)[-4:]  # a little prompt context for leading spaces
        self.prefix = 0
        self.read = len(self.ids)

    def _decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(ids, skip_special=False)

    def push(self, token_id: int) -> str:
        """Add one token; return the text it completes (may be empty while a character is split)."""
        self.ids.append(token_id)
        before = self._decode(self.ids[self.prefix : self.read])
        text = self._decode(self.ids[self.prefix :])
        if len(text) > len(before) and not text.endswith(REPLACEMENT):
            delta = text[len(before) :]
            self.prefix, self.read = self.read, len(self.ids)
            return delta
        return ""

    def flush(self) -> str:
        """Whatever is still held back (an incomplete character at the very end stays U+FFFD)."""
        before = self._decode(self.ids[self.prefix : self.read])
        text = self._decode(self.ids[self.prefix :])
        self.prefix = self.read = len(self.ids)
        return text[len(before) :] if len(text) > len(before) else ""


class StopStringFilter:
    """Feed text deltas; get back the part that is safe to show, and whether a stop string hit."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]
        self.longest = max((len(s) for s in self.stops), default=0)
        self.text = ""  # everything generated so far
        self.shown = 0  # how much of it has been released
        self.stopped = False

    def push(self, delta: str) -> str:
        if self.stopped:
            return ""
        self.text += delta
        if not self.stops:
            return self._release(len(self.text))
        search_from = max(0, self.shown - self.longest)
        hits = [i for i in (self.text.find(s, search_from) for s in self.stops) if i != -1]
        if hits:
            self.stopped = True
            self.text = self.text[: min(hits)]
            return self._release(len(self.text))
        return self._release(len(self.text) - self._partial_suffix())

    def _partial_suffix(self) -> int:
        """Length of the longest tail of the text that begins some stop string."""
        for length in range(min(self.longest - 1, len(self.text)), 0, -1):
            tail = self.text[-length:]
            if any(s.startswith(tail) for s in self.stops):
                return length
        return 0

    def flush(self) -> str:
        """At the end (no stop string came): release the withheld tail."""
        return self._release(len(self.text))

    def _release(self, upto: int) -> str:
        if upto <= self.shown:
            return ""
        out = self.text[self.shown : upto]
        self.shown = upto
        return out
