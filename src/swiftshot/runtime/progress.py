"""What a request hears while it waits: queued (position, ETA), started, partial previews.

A :class:`Listener` is handed to ``Worker.submit`` (and carried across whatever executor runs
the engine). Its callback is always called on the event loop that submitted the request, in
order: ``Queued`` once at admission, ``Started`` when its batch reaches the engine, then up to
``partials`` ``Partial`` images (engine previews, see :func:`swiftshot.engines.base.preview_steps`).
The final image is not an event: it is the result of ``submit``.

Streaming endpoints (SSE) and progress subscribers build on this; nothing here knows HTTP.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from PIL import Image

from swiftshot.engines.base import MAX_PREVIEWS

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Queued:
    position: int
    """Requests ahead of this one (running work included), 0 = next."""
    eta_s: float
    """Estimated seconds until it starts, from the scheduler's measured service time."""


@dataclass(frozen=True, slots=True)
class Started:
    """Its batch is in the engine now."""


@dataclass(frozen=True, slots=True)
class Partial:
    index: int
    """0-based, in order; at most ``Listener.partials`` of them."""
    image: Image.Image
    """A real intermediate result (coarse render, or the latents decoded by a tiny VAE)."""


Event = Queued | Started | Partial


class Listener:
    """Receives one request's events on its event loop.

    ``partials`` (0..3) is how many previews the consumer wants; 0 means the engine makes
    none for it (previews cost a decode). A callback that raises is logged and otherwise
    ignored: a broken consumer must not fail the render.
    """

    __slots__ = ("callback", "partials", "sent")

    def __init__(self, callback: Callable[[Event], None], partials: int = 0) -> None:
        if not 0 <= partials <= MAX_PREVIEWS:
            raise ValueError(f"partials must be between 0 and {MAX_PREVIEWS}; got {partials}")
        self.callback = callback
        self.partials = partials
        self.sent = 0
        """Partials delivered so far."""

    def emit(self, event: Event) -> None:
        if isinstance(event, Partial):
            if self.sent >= self.partials:
                return
            event = Partial(self.sent, event.image)
            self.sent += 1
        try:
            self.callback(event)
        except Exception:  # noqa: BLE001 - the consumer's fault, not the render's
            log.exception("progress listener failed on %s", type(event).__name__)


class Fanout(Listener):
    """One listener standing for several (coalesced joiners of one render see the same
    previews). Members may join while the render is under way; a late joiner gets the
    events from then on, with its own partial numbering."""

    __slots__ = ("members",)

    def __init__(self, members: Iterable[Listener] = ()) -> None:
        self.members: list[Listener] = list(members)
        super().__init__(self._each, max((m.partials for m in self.members), default=0))

    def add(self, member: Listener) -> None:
        self.members.append(member)
        self.partials = max(self.partials, member.partials)

    def remove(self, member: Listener) -> None:
        if member in self.members:
            self.members.remove(member)

    def emit(self, event: Event) -> None:
        # no own partial budget: each member counts (and caps) its own
        self._each(event)

    def _each(self, event: Event) -> None:
        for m in list(self.members):
            m.emit(event)
