"""The engine protocol, the errors engines raise, and an in-memory fake for tests above.

An engine turns a list of :class:`~swiftshot.spec.RenderSpec` that share one ``batch_key`` into
one image per spec, in order. It knows nothing of queues, HTTP or caches.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image

from swiftshot.spec import RenderSpec

StepCallback = Callable[[int, int, "Image.Image | None"], "bool | None"]
"""``on_step(i, n, preview)``: called after step ``i`` of ``n`` (1-based). ``preview`` is a
cheap low-resolution image of the first item, or None when the engine has none. Returning
``False`` cancels the batch: the engine stops and raises :class:`Cancelled`."""


class EngineError(Exception):
    """The engine could not produce the images (bad model folder, out of memory ...)."""


class EngineConfigError(EngineError):
    """The engine or model asked for does not exist or cannot be loaded; a user error."""


class Cancelled(Exception):
    """``on_step`` asked to stop."""


@runtime_checkable
class Engine(Protocol):
    name: str
    version: str
    """Changes whenever the same spec would give other pixels; part of every cache key."""

    def load(self) -> None:
        """Load weights / build tables. Idempotent."""

    def warmup(self, shapes: Sequence[tuple[int, int]]) -> None:
        """Run once per (width, height) so the first real request pays no first-call costs."""

    def batch_key(self, spec: RenderSpec) -> Hashable:
        """Specs with equal keys may run in one ``run`` call."""

    def run(self, specs: Sequence[RenderSpec], on_step: StepCallback | None = None) -> list[Image.Image]:
        """One RGB or RGBA image per spec, in order. Specs are normalised (seed set)."""


def check_cancel(on_step: StepCallback | None, i: int, n: int, preview: Image.Image | None = None) -> None:
    if on_step is not None and on_step(i, n, preview) is False:
        raise Cancelled(f"cancelled after step {i} of {n}")


class FakeEngine:
    """Deterministic, configurable engine for tests of the layers above.

    Each image is a flat colour taken from the hash of the spec's canonical form, so equal specs
    give equal pixels and different specs differ. ``delay_s`` per call (plus ``per_item_s`` per
    spec) simulates inference time; ``fail_when`` raises for chosen specs; ``calls`` records every
    batch for assertions.
    """

    name = "fake"

    def __init__(self, *, delay_s: float = 0.0, per_item_s: float = 0.0, steps: int = 1,
                 fail_when: Callable[[RenderSpec], bool] | None = None, version: str = "1") -> None:
        self.version = version
        self.delay_s = delay_s
        self.per_item_s = per_item_s
        self.steps = steps
        self.fail_when = fail_when
        self.calls: list[list[RenderSpec]] = []
        self.loaded = False
        self.warmed: list[tuple[int, int]] = []
        self._lock = threading.Lock()

    def load(self) -> None:
        self.loaded = True

    def warmup(self, shapes: Sequence[tuple[int, int]]) -> None:
        self.warmed.extend(shapes)

    def batch_key(self, spec: RenderSpec) -> Hashable:
        return (spec.width, spec.height)

    def run(self, specs: Sequence[RenderSpec], on_step: StepCallback | None = None) -> list[Image.Image]:
        with self._lock:
            self.calls.append(list(specs))
        total = self.delay_s + self.per_item_s * len(specs)
        for i in range(1, self.steps + 1):
            if total:
                time.sleep(total / self.steps)
            check_cancel(on_step, i, self.steps)
        if self.fail_when is not None and any(self.fail_when(s) for s in specs):
            raise EngineError("fake engine failure (fail_when matched a spec in this batch)")
        return [self._image(s) for s in specs]

    @staticmethod
    def _image(spec: RenderSpec) -> Image.Image:
        digest = hashlib.sha256(repr(spec.canonical()).encode()).digest()
        arr = np.empty((spec.height, spec.width, 3), np.uint8)
        arr[...] = np.frombuffer(digest[:3], np.uint8)
        return Image.fromarray(arr, "RGB")
