"""Fast batch tokenization of rendered text pieces (no special tokens added: templates write their own)."""

from __future__ import annotations

import re
from typing import Any

#: Pieces cached between calls; cleared when full (the repeated ones come back at once).
CACHE_LIMIT = 200_000
#: Texts compared against plain encoding before piece splitting is trusted for a tokenizer.
VERIFY_TEXTS = 64


def encode_texts(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    """Token ids of each text, in one parallel call to the Rust tokenizer when there is one.

    ``encode_batch_fast`` skips offsets and is ~30% faster than the tokenizer's ``__call__``; added tokens
    such as ``<|im_end|>`` in the text are still recognised as single tokens.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        encode = getattr(backend, "encode_batch_fast", None) or backend.encode_batch
        return [enc.ids for enc in encode(texts, add_special_tokens=False)]
    return tokenizer(texts, add_special_tokens=False)["input_ids"]


class PieceEncoder:
    """Tokenize rendered chats, caching the pieces between special tokens.

    Chat templates repeat the same text between special tokens in every example (the default system
    prompt, ``assistant\\n``); the tokenizer splits text at added tokens before anything else, so those
    pieces can be tokenized once and reused. Exactness is checked on the first texts against plain
    encoding; on any difference (tokens that strip spaces, tokenizers that prefix a space per piece) this
    falls back to plain encoding.
    """

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.ids = _splittable_tokens(tokenizer)
        self.pattern = re.compile("(" + "|".join(map(re.escape, sorted(self.ids, key=len, reverse=True))) + ")") \
            if self.ids else None
        self.cache: dict[str, list[int]] = {}
        self.verified: bool | None = None if self.pattern else False

    def __call__(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text, equal to :func:`encode_texts`."""
        if self.verified is None:
            sample = texts[:VERIFY_TEXTS]
            self.verified = self._encode(sample) == encode_texts(self.tokenizer, sample)
            self.cache.clear()
        if not self.verified:
            return encode_texts(self.tokenizer, texts)
        return self._encode(texts)

    def _encode(self, texts: list[str]) -> list[list[int]]:
        assert self.pattern is not None
        if len(self.cache) > CACHE_LIMIT:
            self.cache.clear()
        split = [self.pattern.split(t) for t in texts]
        todo = list({p for parts in split for p in parts[::2] if p and p not in self.cache})
        if todo:
            self.cache.update(zip(todo, encode_texts(self.tokenizer, todo), strict=True))
        out = []
        for parts in split:
            ids: list[int] = []
            for k, part in enumerate(parts):
                if k % 2:
                    ids.append(self.ids[part])
                elif part:
                    ids += self.cache[part]
            out.append(ids)
        return out


def _splittable_tokens(tokenizer: Any) -> dict[str, int]:
    """Added tokens the tokenizer matches verbatim (no whitespace stripping, not normalised)."""
    out = {}
    for idx, tok in (getattr(tokenizer, "added_tokens_decoder", None) or {}).items():
        content = getattr(tok, "content", None)
        if content and not (getattr(tok, "lstrip", False) or getattr(tok, "rstrip", False)
                            or getattr(tok, "single_word", False) or getattr(tok, "normalized", False)):
            out[content] = idx
    return out
