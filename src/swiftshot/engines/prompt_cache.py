"""Text-encoder outputs cached by (model, prompt, negative prompt), bounded in bytes.

Catalog prompts repeat: the same "white marble counter, soft light" is asked for with many
seeds. The text encoder's output depends only on the model and the text, so a repeated prompt
with a new seed need not run the encoder again (0.1-1 s of a ~2 s CPU render for SD 2.1).

Entries are per prompt (batch dimension 1), so a batch mixes hits and misses freely: the misses
are encoded in one encoder call, split, stored, and the batch's embeddings are concatenated in
the batch's order. Hits and misses are counted in ``swiftshot_prompt_embedding_cache_total``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from swiftshot import telemetry

Entry = tuple[Any, ...]
"""One prompt's tensors (each with batch dimension 1, or None), in the encoder's output order."""


def _nbytes(entry: Entry) -> int:
    return sum(t.numel() * t.element_size() for t in entry if t is not None)


class PromptEmbeddingCache:
    """LRU of per-prompt text-encoder outputs, at most ``max_bytes`` in all (0 turns it off)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Hashable, Entry] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def get_or_encode(self, keys: Sequence[Hashable],
                      encode: Callable[[list[int]], Sequence[Entry]]) -> list[Entry]:
        """The entry of each key, in order; ``encode(indices)`` is called once with the indices
        of the keys not cached (first occurrence of each) and returns one entry per index."""
        out: list[Entry | None] = [None] * len(keys)
        first_miss: dict[Hashable, int] = {}
        with self._lock:
            for i, k in enumerate(keys):
                e = self._entries.get(k)
                if e is not None:
                    self._entries.move_to_end(k)
                    out[i] = e
                elif k not in first_miss:
                    first_miss[k] = i
        if first_miss:
            idx = list(first_miss.values())
            encoded = encode(idx)
            with self._lock:
                for i, e in zip(idx, encoded, strict=True):
                    self._put(keys[i], e)
            by_key = {keys[i]: e for i, e in zip(idx, encoded, strict=True)}
            out = [by_key[k] if e is None else e for k, e in zip(keys, out, strict=True)]
        # A prompt repeated inside one batch is encoded once: its repeats count as hits.
        misses = len(first_miss)
        hits = len(keys) - misses
        self.hits += hits
        self.misses += misses
        if hits:
            telemetry.PROMPT_EMBED_CACHE.labels("hit").inc(hits)
        if misses:
            telemetry.PROMPT_EMBED_CACHE.labels("miss").inc(misses)
        telemetry.PROMPT_EMBED_CACHE_BYTES.set(self._bytes)
        return out  # type: ignore[return-value]

    def _put(self, key: Hashable, entry: Entry) -> None:
        size = _nbytes(entry)
        if size > self.max_bytes:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= _nbytes(old)
        self._entries[key] = entry
        self._bytes += size
        while self._bytes > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= _nbytes(evicted)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0
