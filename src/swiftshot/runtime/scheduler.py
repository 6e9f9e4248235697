"""What runs next: priority classes, deadlines, admission control and dynamic batching.

Pure: no I/O, no asyncio, no threads; time comes from an injected clock. The worker loop is

    delay = scheduler.dispatch_delay()      # None: idle; > 0: wait (or for a new arrival)
    batch = scheduler.next_batch()          # may be [] when the head expired meanwhile
    ... run it ...
    scheduler.record(len(batch), seconds)   # feeds the service-time estimate used to admit

Order. Each item has a class rank (realtime 0 … prefetch 3) that improves by one for every
``aging_ms`` it has waited, so nothing starves. The head is the item with the best effective
rank, ties broken by deadline then arrival. Its batch is filled with queued items that share
its ``batch_key`` (any class), best first, up to ``max_batch_size``. An engine that gains
nothing from batching (``batch_gain = False``: it renders items in turn) gets one item at a time
with no batching window: waiting could only add latency.

Reserved slots. ``slots`` batches run at once (the executor's workers). ``realtime_slots`` of
them are kept for realtime work: a batch with no realtime item (a *shared* batch) may start only
while fewer than ``slots - realtime_slots`` shared batches run (at least one may always run).
When only reserved slots are free, the best queued realtime item starts, and lower-class items
wait even if they are the head; so a realtime arrival never waits behind a running lower-class
item while a reserved slot is idle. Until the first realtime request, and again after
``lend_reserved_after_s`` without one, the reserve is lent to the other classes; the next
realtime arrival ends the loan (None: never lent, held from the start).

Admission. A request is refused at once rather than left to time out: when its class's queue
is full (429, or 503 when every class is full), when the server drains (503), or when the
estimated wait — queued work ahead of it plus the work running, times the measured per-item
service time — would pass its deadline (429 with a Retry-After).
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any

from swiftshot.config import PRIORITIES, Priority, SchedulerSettings
from swiftshot.runtime.lane import Lane

RANK: dict[Priority, int] = {p: i for i, p in enumerate(PRIORITIES)}

EWMA_ALPHA = 0.2
"""Weight of the newest batch in the per-item service-time estimate."""
MIN_RETRY_AFTER_S = 1.0
MAX_RETRY_AFTER_S = 60.0


@dataclass
class WorkItem:
    id: int
    batch_key: Hashable
    priority: Priority
    arrival: float
    deadline: float
    payload: Any = None
    cost: float = 1.0
    expires: float | None = None
    """When it is dropped from the queue; None: at ``deadline``. Set apart from ``deadline``
    once a promotion tightens the deadline (for order) but the first asker still waits."""

    @property
    def expiry(self) -> float:
        return self.deadline if self.expires is None else self.expires


@dataclass(frozen=True)
class Admission:
    accepted: bool
    status: int = 202
    reason: str = ""
    retry_after_s: float = 0.0
    message: str = ""
    started: bool = False
    """Accepted and handed out at once (``submit(start=True)``): the caller runs it now."""


ACCEPTED = Admission(True)
STARTED = Admission(True, started=True)


class Scheduler:
    def __init__(self, settings: SchedulerSettings, clock: Callable[[], float] = time.monotonic,
                 capacity_hint_s: float = 0.05, *, batch_gain: bool = True,
                 max_batch_size: int | None = None) -> None:
        self.settings = settings
        self.clock = clock
        self.max_batch = min(settings.max_batch_size, max_batch_size or settings.max_batch_size)
        self.batch_gain = batch_gain
        """False: the engine runs a batch's items in turn, so waiting for company only adds
        latency; batches are then one item (a realtime arrival waits for one item, not eight)
        and go at once."""
        if not batch_gain:
            self.max_batch = 1
        self.max_wait_s = settings.max_wait_ms / 1000.0
        self.aging_s = settings.aging_ms / 1000.0
        self.per_item_s = capacity_hint_s
        """EWMA of seconds of engine time per item; starts at the hint until measured."""
        self._items: dict[int, WorkItem] = {}
        self._lanes: dict[Priority, Lane] = {p: Lane(RANK[p], self.aging_s) for p in PRIORITIES}
        self._key_lanes: dict[Hashable, dict[Priority, Lane]] = {}
        self._key_count: dict[Hashable, int] = {}
        self._deadlines: list[tuple[float, int]] = []
        self._count: dict[Priority, int] = dict.fromkeys(PRIORITIES, 0)
        self._cost: dict[Priority, float] = dict.fromkeys(PRIORITIES, 0.0)
        self._running_cost = 0.0
        self._running_items = 0
        self._expired: list[WorkItem] = []
        self._draining = False
        self.slots = 1
        """Batches that run at once (the executor's workers); the estimated wait divides the
        work ahead among them."""
        self.ahead = 0
        """Batches that may be handed out beyond ``slots`` to wait inside the executor's
        workers (the Ray executor's ``pipeline_depth``): they take no running slot, so they
        count on top of the shared limit, never against the reserve."""
        self.realtime_slots = settings.realtime_slots
        self.lend_after_s = settings.lend_reserved_after_s
        self._last_realtime = -math.inf
        """When a realtime request last arrived: none yet, so the reserve is lent (where
        lending is on) until the first one; a server that never sees realtime traffic keeps
        every slot for the work it has."""
        self._running_batches: dict[int, bool] = {}
        """Handed out and not yet recorded: first item id → shared (no realtime item)."""
        self.held_back = 0
        """Times lower-class work was held back because only reserved slots were free
        (next_batch handed out a realtime batch instead, or nothing; dispatch_delay said
        wait)."""
        self.lent = 0
        """Shared batches started on a reserved slot while it was lent."""

    # -- admission ----------------------------------------------------------------------------

    def submit(self, item: WorkItem, *, start: bool = False) -> Admission:
        """Admit ``item`` (or say why not). ``start``: the caller has a free slot for it; when
        ``item`` would be the whole of :meth:`next_batch`'s next batch now (nothing queued, no
        batching window, a slot its class may take), it is handed out here (``started``)
        instead of queued and taken back out at once — the lone miss's usual case."""
        if item.priority not in RANK:
            raise ValueError(f"priority must be one of {', '.join(PRIORITIES)}; got {item.priority!r}")
        if item.id in self._items:
            raise ValueError(f"work item id {item.id} is already queued")
        if item.priority == "realtime":
            self._last_realtime = self.clock()  # refused or not: realtime traffic is here
        if self._draining:
            return Admission(False, 503, "draining", self._retry_after(item.priority),
                             "the server is shutting down and takes no new work; retry on another "
                             "replica or in a moment")
        limit = self.settings.queue_limit.get(item.priority, 0)
        if self._count[item.priority] >= limit:
            if all(self._count[p] >= self.settings.queue_limit.get(p, 0) for p in PRIORITIES):
                return Admission(False, 503, "overloaded", self._retry_after("prefetch"),
                                 "every priority queue is full; retry later")
            return Admission(False, 429, "queue_full", self._retry_after(item.priority),
                             f"the {item.priority} queue is full ({limit} waiting); retry later "
                             f"or use another priority")
        now = self.clock()
        wait = self.estimated_wait(item.priority)
        finish = now + wait + self.per_item_s * item.cost
        if finish > item.deadline:
            budget = max(0.0, item.deadline - now)
            return Admission(False, 429, "deadline", self._retry_after(item.priority),
                             f"estimated wait {wait:.2f}s plus {self.per_item_s * item.cost:.2f}s "
                             f"of work would pass this request's deadline of {budget:.2f}s; "
                             f"retry later or allow a longer deadline")
        if start and not self._items and self.max_batch == 1 \
                and (item.priority == "realtime" or not self._shared_full(now)):
            self._hand_out([item])
            return STARTED
        self._add(item)
        return ACCEPTED

    def estimated_wait(self, priority: Priority) -> float:
        """Seconds before a new ``priority`` item would start: work running plus work queued
        in its class and the classes above it, at the measured per-item service time, spread
        over the slots it may use (the other classes: the shared ones only)."""
        rank = RANK[priority]
        ahead = self._running_cost + sum(self._cost[p] for p in PRIORITIES if RANK[p] <= rank)
        slots = self.slots if priority == "realtime" else self.shared_limit(self.clock())
        return ahead * self.per_item_s / slots

    # -- reserved slots -----------------------------------------------------------------------

    def reserve(self) -> int:
        """Slots kept for realtime work now: ``realtime_slots``, less where fewer than two
        slots exist (one always stays shared)."""
        return max(0, min(self.realtime_slots, self.slots - 1))

    def lending(self, now: float | None = None) -> bool:
        """Whether the reserve is lent: no realtime request for ``lend_after_s`` and none
        queued."""
        now = self.clock() if now is None else now
        return (self.lend_after_s is not None and self._count["realtime"] == 0
                and now - self._last_realtime >= self.lend_after_s)

    def shared_limit(self, now: float | None = None) -> int:
        """Shared batches (no realtime item) that may run at once."""
        reserve = self.reserve()
        if reserve == 0 or self.lending(now):
            return self.slots
        return self.slots - reserve

    @property
    def running_shared(self) -> int:
        """Shared batches handed out and not yet recorded."""
        return sum(self._running_batches.values())

    def _shared_full(self, now: float) -> bool:
        return self.reserve() > 0 and self.running_shared >= self.shared_limit(now) + self.ahead

    def _retry_after(self, priority: Priority) -> float:
        # Come back once the work now ahead of this class has been done.
        return min(MAX_RETRY_AFTER_S, max(MIN_RETRY_AFTER_S, self.estimated_wait(priority)))

    def set_draining(self, draining: bool) -> None:
        self._draining = draining

    @property
    def draining(self) -> bool:
        return self._draining

    # -- queue --------------------------------------------------------------------------------
    # Each item sits in two lanes (runtime/lane.py): its class's, to find the head, and its
    # (batch_key, class)'s, to fill the head's batch; both answer "best item" without a scan.
    # Expiry uses a deadline heap. All of it lazily deleted.

    def _add(self, item: WorkItem) -> None:
        c = item.priority
        self._items[item.id] = item
        self._lanes[c].add(item)
        key_lanes = self._key_lanes.setdefault(item.batch_key, {})
        if c not in key_lanes:
            key_lanes[c] = Lane(RANK[c], self.aging_s)
        key_lanes[c].add(item)
        self._key_count[item.batch_key] = self._key_count.get(item.batch_key, 0) + 1
        self._count[c] += 1
        self._cost[c] += item.cost
        heapq.heappush(self._deadlines, (item.expiry, item.id))
        if len(self._deadlines) > 2 * len(self._items) + 64:
            self._deadlines = [(it.expiry, it.id) for it in self._items.values()]
            heapq.heapify(self._deadlines)

    def _remove(self, item: WorkItem) -> None:
        c = item.priority
        del self._items[item.id]
        self._lanes[c].remove(item.id)
        key_lanes = self._key_lanes[item.batch_key]
        key_lanes[c].remove(item.id)
        if not key_lanes[c]:
            del key_lanes[c]
            if not key_lanes:
                del self._key_lanes[item.batch_key]
        self._key_count[item.batch_key] -= 1
        if not self._key_count[item.batch_key]:
            del self._key_count[item.batch_key]
        self._count[c] -= 1
        self._cost[c] -= item.cost
        if self._count[c] == 0:
            self._cost[c] = 0.0  # no float drift once a class is empty

    def cancel(self, item_id: int) -> bool:
        """Remove a queued item (its client went away). False when it is not queued."""
        item = self._items.get(item_id)
        if item is None:
            return False
        self._remove(item)
        return True

    def promote(self, item_id: int, priority: Priority, deadline: float) -> bool:
        """A more urgent asker now waits on a queued item (single-flight joined it): raise its
        class to ``priority`` and tighten its deadline to ``deadline`` where those are better.
        It keeps its arrival (its age) and the expiry it had, since its first asker still
        waits for it. False when it is not queued (running, done) or nothing improves."""
        if priority not in RANK:
            raise ValueError(f"priority must be one of {', '.join(PRIORITIES)}; got {priority!r}")
        item = self._items.get(item_id)
        if item is None:
            return False
        if priority == "realtime":
            self._last_realtime = self.clock()
        better = priority if RANK[priority] < RANK[item.priority] else item.priority
        sooner = min(item.deadline, deadline)
        if better == item.priority and sooner == item.deadline:
            return False
        self._remove(item)
        item.expires = max(item.expiry, deadline)
        item.priority, item.deadline = better, sooner
        self._add(item)
        return True

    def depth(self) -> dict[Priority, int]:
        return dict(self._count)

    def __len__(self) -> int:
        return len(self._items)

    @property
    def running(self) -> int:
        """Items handed out by next_batch and not yet recorded."""
        return self._running_items

    def order(self, item: WorkItem, now: float) -> tuple[int, float, float, int]:
        """Sort key of ``item`` at ``now``: (effective class, deadline, arrival, id)."""
        aged = int((now - item.arrival) // self.aging_s) if now > item.arrival else 0
        return (max(0, RANK[item.priority] - aged), item.deadline, item.arrival, item.id)

    def _drop_expired(self, now: float) -> None:
        heap = self._deadlines
        while heap and heap[0][0] <= now:
            deadline, item_id = heapq.heappop(heap)
            item = self._items.get(item_id)
            if item is not None and item.expiry == deadline:
                self._remove(item)
                self._expired.append(item)

    def _best_of(self, lanes: Iterable[Lane], now: float) -> WorkItem | None:
        best: WorkItem | None = None
        best_order: tuple[int, float, float, int] | None = None
        for lane in lanes:
            item = lane.best(now)
            if item is not None:
                order = self.order(item, now)
                if best_order is None or order < best_order:
                    best, best_order = item, order
        return best

    def _head(self, now: float) -> WorkItem | None:
        return self._best_of(self._lanes.values(), now) if self._items else None

    def _startable(self, now: float) -> tuple[WorkItem | None, bool]:
        """The head that may start now, and whether a lower-class head was passed over for
        the reserve. With only reserved slots free that is the best realtime item (None when
        none is queued): the others wait for a shared slot."""
        head = self._head(now)
        if head is None or head.priority == "realtime" or not self._shared_full(now):
            return head, False
        return self._lanes["realtime"].best(now), True

    def dispatch_delay(self) -> float | None:
        """Seconds until :meth:`next_batch` has something to hand out; None when empty, or
        when what is queued waits for a shared slot (a batch ending or a realtime arrival
        changes that: ask again then) and the reserve will not be lent."""
        now = self.clock()
        head, passed_over = self._startable(now)
        if head is not None:
            return self._delay(head, now)
        if passed_over:
            self.held_back += 1
        if passed_over and self.lend_after_s is not None and not self.lending(now):
            # the loan begins then (already lent and still full: only a batch ending frees a
            # place; a 0 here made the dispatch loop spin without yielding)
            return max(0.0, self._last_realtime + self.lend_after_s - now)
        return None

    def _delay(self, head: WorkItem, now: float) -> float:
        if not self.batch_gain or self._key_count[head.batch_key] >= self.max_batch:
            return 0.0
        # Wait for company at most max_wait, and never so long that the head misses its deadline.
        fill_by = head.arrival + self.max_wait_s
        latest = head.deadline - self.per_item_s * head.cost
        return max(0.0, min(fill_by, latest) - now)

    def next_batch(self) -> list[WorkItem]:
        """The next batch to run, best first; [] when nothing is due yet."""
        now = self.clock()
        self._drop_expired(now)
        head, passed_over = self._startable(now)
        if passed_over:
            self.held_back += 1
        if head is None or self._delay(head, now) > 0:
            return []
        # Merge the (key, class) lanes best-first; only the lane that gave an item is asked again.
        lanes = dict(self._key_lanes[head.batch_key])
        tops = {c: lane.best(now) for c, lane in lanes.items()}
        batch: list[WorkItem] = []
        while len(batch) < self.max_batch and tops:
            c = min(tops, key=lambda p: self.order(tops[p], now))  # type: ignore[arg-type]
            item = tops[c]
            assert item is not None
            self._remove(item)
            batch.append(item)
            nxt = lanes[c].best(now)
            if nxt is None:
                del tops[c]
            else:
                tops[c] = nxt
        self._hand_out(batch)
        return batch

    def _hand_out(self, batch: list[WorkItem]) -> None:
        """Count ``batch`` as running until :meth:`record` (from :meth:`next_batch`, or one
        item started at once by :meth:`submit`)."""
        self._running_cost += sum(it.cost for it in batch)
        self._running_items += len(batch)
        shared = all(it.priority != "realtime" for it in batch)
        if shared:
            if self.reserve() > 0 and \
                    self.running_shared >= self.slots + self.ahead - self.reserve():
                self.lent += 1  # only a lent reserve let it start
        self._running_batches[batch[0].id] = shared

    def expired(self) -> list[WorkItem]:
        """Items dropped because their deadline passed, since the last call."""
        out, self._expired = self._expired, []
        return out

    # -- feedback -----------------------------------------------------------------------------

    def record(self, batch_size: int, seconds: float, *, ok: bool = True,
               cost: float | None = None, batch: list[WorkItem] | None = None) -> None:
        """A batch handed out by next_batch has finished (or failed: ``ok=False`` releases
        its capacity without teaching the estimate a failure's time). ``batch``: its items,
        which frees its slot (shared or reserved); without it the oldest running batch's."""
        if batch:
            self._running_batches.pop(batch[0].id, None)
        elif batch is None and self._running_batches:
            self._running_batches.pop(next(iter(self._running_batches)))
        self._running_items = max(0, self._running_items - batch_size)
        self._running_cost = max(0.0, self._running_cost - (batch_size if cost is None else cost))
        if self._running_items == 0:
            self._running_cost = 0.0
        if ok and batch_size > 0 and seconds >= 0 and math.isfinite(seconds):
            sample = seconds / batch_size
            self.per_item_s += EWMA_ALPHA * (sample - self.per_item_s)
