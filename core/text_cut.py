"""Tokenize only the head of a long text, with exactly the tokens the whole text starts with: bounded work per text.

A 20 MB document keeps at most 8k tokens, yet encoding it whole costs seconds. The Qwen2 tokenizer
(NFC, then the split regex below, then byte-level BPE within each piece) gives a text cut at a
*clean boundary* the same tokens as the whole text up to that boundary, because no piece crosses it:

- the character before it is a letter: the regex's letter runs (`[^\\r\\n\\p{L}\\p{N}]?\\p{L}+`) end there,
  and no alternative of the regex holds a letter followed by a non-letter;
- the character at it is a plain separator (space, newline, punctuation): never a combining mark, so
  NFC composes nothing across the cut, and never a character of an added token (`<|im_end|>` …), so
  no special token spans it.

Encoding the head cut there thus yields a prefix of the whole text's tokens; when it holds at least the
tokens the prompt keeps, those are the reference's tokens. Otherwise the head is doubled and encoded
again, up to the whole text. Tokenizers of another shape are never cut.
"""

from __future__ import annotations

import json
import re

# The Qwen2/2.5 pre-tokenizer split regex (tokenizer.json "pre_tokenizer"; the stand-ins are built with it),
# the shape the argument above holds for.
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
               r"|\s+(?!\S)|\s+")
SEPARATORS = " \t\n.,;:!?\"()[]{}。，、；：！？「」"
# First guess of characters per kept token (English runs ~4.3 for Qwen2.5); a short guess costs one more encode.
CHARS_PER_TOKEN = 5


class TextCutter:
    """Where to cut a text before encoding so that its first tokens stay exact (None: encode it whole)."""

    def __init__(self, tokenizer):
        added = "".join(token.content for token in tokenizer.get_added_tokens_decoder().values())
        separators = "".join(c for c in SEPARATORS if c not in added)
        self.enabled = _is_qwen2_shape(tokenizer) and bool(separators)
        # A letter (Python's isalpha = \p{L}), then one of the separators.
        self._boundary = re.compile(rf"(?<=[^\W\d_])(?=[{re.escape(separators)}])")

    def cut(self, text: str, at: int) -> int | None:
        """The first clean boundary at or after character `at`; None when there is none (or `at` is past the end)."""
        if not self.enabled or at >= len(text):
            return None
        found = self._boundary.search(text, max(1, at))
        return found.start() if found else None


def encode_heads(tokenizer, cutter: TextCutter, texts: list[str], needed: int) -> list[list[int]]:
    """Token ids of each text, exact for at least its first `needed` tokens (all of them when it has fewer).

    Long texts are encoded from a head cut at a clean boundary, doubled until it yields `needed` tokens.
    """
    limit = needed * CHARS_PER_TOKEN + 64
    cuts = [cutter.cut(t, limit) if len(t) > limit else None for t in texts]
    ids = _encode(tokenizer, [t if c is None else t[:c] for t, c in zip(texts, cuts)])
    while True:
        short = [i for i, c in enumerate(cuts) if c is not None and len(ids[i]) < needed]
        if not short:
            return ids
        for i in short:
            cuts[i] = cutter.cut(texts[i], 2 * cuts[i])
        for i, encoded in zip(short, _encode(tokenizer, [texts[i] if cuts[i] is None else texts[i][:cuts[i]] for i in short])):
            ids[i] = encoded


def _encode(tokenizer, texts: list[str]) -> list[list[int]]:
    return [e.ids for e in tokenizer.encode_batch_fast(texts, add_special_tokens=False)] if texts else []


def _is_qwen2_shape(tokenizer) -> bool:
    """NFC (or none), the Qwen2 split regex then byte-level, BPE: the shape the module's argument holds for."""
    normalizer = json.loads(tokenizer.normalizer.__getstate__()) if tokenizer.normalizer is not None else {}
    pre = json.loads(tokenizer.pre_tokenizer.__getstate__()) if tokenizer.pre_tokenizer is not None else {}
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else []
    return (
        normalizer.get("type") in ("NFC", None) and type(tokenizer.model).__name__ == "BPE"
        and len(steps) == 2 and steps[0].get("type") == "Split" and steps[0].get("pattern", {}).get("Regex") == QWEN2_SPLIT
        and steps[0].get("behavior") == "Isolated" and not steps[0].get("invert")
        and steps[1].get("type") == "ByteLevel" and not steps[1].get("use_regex", True)
    )
