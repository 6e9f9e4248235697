"""A lane: the queued items of one priority class, best first, without scanning the queue.

The scheduler orders items by (effective class, deadline, arrival, id), where the effective
class is the class rank improved by one per ``aging_s`` waited. Within one class that rank
depends only on age, so the items that share the lane's best effective rank are exactly the
oldest ones, down to an age threshold. The lane keeps three heaps, all with lazy deletion:

* ``_oldest`` (arrival): the oldest live item, which fixes the best effective rank now;
* ``_waiting`` (arrival): items not yet known to have that rank;
* ``_pool`` (deadline, arrival, id): items that do; its top is the lane's best.

Items move from waiting to pool as they age. When the oldest items leave, the best rank can
get worse and some pool items no longer qualify; they go back to waiting when they surface.
Every operation is O(log n) amortised, against O(n) for a scan of thousands of queued items
at each dispatch.
"""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from swiftshot.runtime.scheduler import WorkItem


class Lane:
    __slots__ = ("rank", "aging_s", "live", "_oldest", "_waiting", "_pool", "_in_pool")

    def __init__(self, rank: int, aging_s: float) -> None:
        self.rank = rank
        self.aging_s = aging_s
        self.live: dict[int, WorkItem] = {}
        self._oldest: list[tuple[float, int]] = []
        self._waiting: list[tuple[float, int]] = []
        self._pool: list[tuple[float, float, int]] = []
        self._in_pool: set[int] = set()

    def __len__(self) -> int:
        return len(self.live)

    def level(self, arrival: float, now: float) -> int:
        """Effective class of an item of this lane that arrived at ``arrival``."""
        aged = int((now - arrival) // self.aging_s) if now > arrival else 0
        return max(0, self.rank - aged)

    def add(self, item: WorkItem) -> None:
        self.live[item.id] = item
        heapq.heappush(self._oldest, (item.arrival, item.id))
        heapq.heappush(self._waiting, (item.arrival, item.id))
        if len(self._oldest) > 2 * len(self.live) + 32:
            self._compact()

    def remove(self, item_id: int) -> None:
        # Heap entries stay behind and are skipped when they surface (or dropped by _compact).
        self.live.pop(item_id, None)
        self._in_pool.discard(item_id)

    def best(self, now: float) -> WorkItem | None:
        """The lane's best item by (effective class, deadline, arrival, id) at ``now``."""
        live = self.live
        oldest = self._oldest
        while oldest and oldest[0][1] not in live:
            heapq.heappop(oldest)
        if not oldest:
            return None
        top = self.level(oldest[0][0], now)
        waiting, pool, in_pool = self._waiting, self._pool, self._in_pool
        # Release every item that has aged into the best rank (level is monotone in arrival).
        while waiting:
            arrival, item_id = waiting[0]
            if item_id not in live or item_id in in_pool:
                heapq.heappop(waiting)
            elif self.level(arrival, now) <= top:
                heapq.heappop(waiting)
                item = live[item_id]
                heapq.heappush(pool, (item.deadline, item.arrival, item_id))
                in_pool.add(item_id)
            else:
                break
        while pool:
            _deadline, arrival, item_id = pool[0]
            if item_id not in in_pool:
                heapq.heappop(pool)
            elif self.level(arrival, now) > top:
                # Its rank is no longer the best (older items left): back to waiting.
                heapq.heappop(pool)
                in_pool.discard(item_id)
                heapq.heappush(waiting, (arrival, item_id))
            else:
                return live[item_id]
        raise AssertionError("lane invariant broken: the oldest item is not in the pool")

    def _compact(self) -> None:
        self._oldest = [(it.arrival, it.id) for it in self.live.values()]
        heapq.heapify(self._oldest)
        self._waiting = [(it.arrival, it.id) for it in self.live.values()
                         if it.id not in self._in_pool]
        heapq.heapify(self._waiting)
        self._pool = [(it.deadline, it.arrival, it.id) for it in self.live.values()
                      if it.id in self._in_pool]
        heapq.heapify(self._pool)
