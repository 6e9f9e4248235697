"""The engine protocol, the errors engines raise, and an in-memory fake for tests above.

An engine turns a list of :class:`~swiftshot.spec.RenderSpec` that share one ``batch_key`` into
one image per spec, in order. It knows nothing of queues, HTTP or caches.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
from PIL import Image

from swiftshot.errors import ServiceError
from swiftshot.spec import RenderSpec

StepCallback = Callable[[int, int, "Image.Image | Sequence[Image.Image] | None"], "bool | None"]
"""``on_step(i, n, preview)``: called after step ``i`` of ``n`` (1-based). Returning ``False``
cancels the batch: the engine stops and raises :class:`Cancelled`.

Previews cost a decode, so an engine makes them only when the consumer asks: the callback may
carry ``previews: int`` (0..3, how many partial images its consumer wants; read it with
:func:`wanted_previews`), and the engine passes a preview only after the steps
:func:`preview_steps` names, ``None`` after the others. A preview is a list with one cheap
image per spec of the batch, in order (a single image stands for the first spec)."""

MAX_PREVIEWS = 3
"""Most partial images one request may ask for (OpenAI's ``partial_images`` is 0..3)."""


class EngineError(ServiceError):
    """The engine could not produce the images (bad model folder, out of memory ...): 502."""

    status = 502
    code = "engine_error"


class EngineConfigError(EngineError):
    """The engine or model asked for does not exist or cannot be loaded; a user error (400)."""

    status = 400
    code = "unknown_model"

    def __init__(self, message: str = "", **kw: Any) -> None:
        kw.setdefault("param", "model")
        super().__init__(message, **kw)


class Cancelled(ServiceError):
    """``on_step`` asked to stop (the client went away): 499."""

    status = 499
    code = "cancelled"


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


def wanted_previews(on_step: StepCallback | None) -> int:
    """How many partial previews ``on_step``'s consumer wants (0 when it says nothing)."""
    if on_step is None:
        return 0
    return max(0, min(MAX_PREVIEWS, int(getattr(on_step, "previews", 0) or 0)))


def preview_steps(n_steps: int, k: int) -> frozenset[int]:
    """The 1-based steps after which to make ``k`` previews of an ``n_steps`` run: spread
    evenly, never after the last step (that one is the final image), so a 1-step run has none.
    """
    if k <= 0 or n_steps <= 1:
        return frozenset()
    k = min(k, n_steps - 1)
    return frozenset(min(n_steps - 1, max(1, round((j + 1) * n_steps / (k + 1))))
                     for j in range(k))


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
    ignored_fields = frozenset({"steps", "guidance", "negative_prompt", "model"})
    batch_fields = ("width", "height")

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
        at = preview_steps(self.steps, wanted_previews(on_step))
        for i in range(1, self.steps + 1):
            if total:
                time.sleep(total / self.steps)
            preview = [self._preview(s, i) for s in specs] if i in at else None
            check_cancel(on_step, i, self.steps, preview)
        if self.fail_when is not None and any(self.fail_when(s) for s in specs):
            raise EngineError("fake engine failure (fail_when matched a spec in this batch)")
        return [self._image(s) for s in specs]

    @staticmethod
    def _preview(spec: RenderSpec, step: int) -> Image.Image:
        """A small grey whose level is the step: tests can tell previews apart and in order."""
        side = max(8, spec.width // 8), max(8, spec.height // 8)
        return Image.new("RGB", side, (step * 16 % 256,) * 3)

    @staticmethod
    def _image(spec: RenderSpec) -> Image.Image:
        digest = hashlib.sha256(repr(spec.canonical()).encode()).digest()
        arr = np.empty((spec.height, spec.width, 3), np.uint8)
        arr[...] = np.frombuffer(digest[:3], np.uint8)
        return Image.fromarray(arr, "RGB")
