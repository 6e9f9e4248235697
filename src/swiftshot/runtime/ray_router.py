"""The request router of the engine deployments (Serve's ``request_router_config``).

Serve's default router ("power of two choices") picks two random replicas and sends to the
less loaded, retrying with back-off (25, 50, 100 … ms) while both are full. That suits many
callers each sending a little. Our front is different: it sends a batch only when it knows a
replica has room (``slots``), so exactly one or a few replicas are free at that moment; with 8
replicas and one free, two random picks miss it three times in four, and each miss costs a
queue-length probe and then a back-off sleep — the largest part of what the Ray path added per
batch at 8 replicas (docs/PERFORMANCE.md, "the Ray executor: where the time went").

:class:`FrontRouter` ranks every replica instead, from the queue lengths Serve already keeps in
this process (raised on send, lowered on completion, corrected by each replica's accept/reject
answer), so the free replica is found on the first try with no probe:

* a batch of a lower class (standard, batch, prefetch) goes to the replica with the fewest
  requests in flight;
* a realtime batch (``rank`` 0) goes to an idle replica if there is one, else to the replica
  whose running batch began first (so it is the likeliest to finish first); the replica runs
  it before any lower-class batch that was sent ahead and waits there
  (``EngineReplica`` / ``PriorityGate``).

It also tells the front which replicas exist (``ray_direct.watch``, for the direct data
channel), and sends a request that names one replica (``_to=<replica id>``) to that replica
only.

Imported by path in the processes that hold a handle (the front); nothing else imports it.
Serve pickles this module *by value* with the deployment's config, so it holds no state of its
own (a module-level lock failed the deploy: "cannot pickle '_thread.lock'") and reaches the
executor through a real import (``ray_direct``).
"""

from __future__ import annotations

import random
import time
from typing import Any

from ray.serve.request_router import (
    PendingRequest,
    ReplicaID,
    RequestRouter,
    RunningReplica,
)


def _target(pending: PendingRequest | None) -> str | None:
    if pending is None:
        return None
    try:
        to = pending.kwargs.get("_to")
    except AttributeError:
        return None
    return str(to) if to else None


def placement_key(rank: int, load: int, busy_since: float) -> tuple[int, float]:
    """How a batch of class ``rank`` ranks a replica with ``load`` batches in flight, the
    oldest running since ``busy_since`` (lowest first): realtime to an idle replica, else to
    the one whose running batch began first (it frees soonest); other classes to the fewest
    batches in flight. FrontRouter's order, and the direct channel's (RayExecutor._pick)."""
    if rank == 0:
        return (0, 0.0) if load == 0 else (1, busy_since)
    return (load, 0.0)


def _rank(pending: PendingRequest | None) -> int:
    if pending is None:
        return 1
    try:
        return int(pending.kwargs.get("rank", 1))
    except (AttributeError, TypeError, ValueError):
        return 1


class FrontRouter(RequestRouter):
    """Every replica ranked by load; realtime to the replica that frees first (module doc).
    No FIFO mixin: the replica chosen for a request goes to that request (a realtime batch's
    pick is not handed to an older lower-class one).

    Load is this router's own count: requests each replica accepted and has not finished, plus
    sends not yet answered. Serve's queue-length cache is not used to rank: it was seen to
    over-count (raised on every send, rejected ones too), and a replica it over-counts is
    ranked last, never sent to and so never corrected — on 8 replicas two sat nearly idle
    through a run. The count is written into that cache on each choice, so Serve's own check
    before sending agrees with it instead of probing the replica. With several fronts on one
    deployment each counts only its own requests; a replica that is fuller than this front
    thinks rejects the send (Serve's max_ongoing_requests) and Serve routes it again."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._busy_since: dict[ReplicaID, float] = {}
        self._inflight: dict[ReplicaID, int] = {}
        self._routed: set[tuple[str, ReplicaID]] = set()
        self._sending: dict[ReplicaID, int] = {}
        """Sends not yet answered (accepted or rejected): they count as load already."""
        self._reported: dict[ReplicaID, int] = {}
        """What a replica last answered it holds (all fronts' requests), until one of ours
        finishes there: a floor under our own count, so a replica that another front filled
        is not chosen again and again."""
        super().__init__(*args, **kwargs)

    async def choose_replicas(self, candidate_replicas: list[RunningReplica],
                              pending_request: PendingRequest | None = None
                              ) -> list[list[RunningReplica]]:
        if not candidate_replicas:
            return []
        to = _target(pending_request)
        if to is not None:  # a request for one replica (its channel address): only there
            return [[r for r in candidate_replicas if r.replica_id.unique_id == to]]
        inflight, sending, reported = self._inflight, self._sending, self._reported
        load = {r.replica_id: max(inflight.get(r.replica_id, 0) + sending.get(r.replica_id, 0),
                                  reported.get(r.replica_id, 0))
                for r in candidate_replicas}

        rank, now, busy_since = _rank(pending_request), time.monotonic(), self._busy_since

        def key(r: RunningReplica) -> tuple[int, float]:
            return placement_key(rank, load[r.replica_id], busy_since.get(r.replica_id, now))
        # One replica per rank: Serve takes the first that has room, in this order. Ties (equal
        # load) in random order: with the router on the front's loop several batches are ranked
        # in one turn, before any send is counted, and a stable sort sent them all to the first
        # candidate; after a replica was replaced, the new one got nothing while the old one
        # had room (the SIGKILL test in production's same-loop mode: 5 of 10 runs, 0 of 6 with
        # this).
        shuffled = list(candidate_replicas)
        random.shuffle(shuffled)
        ranked = sorted(shuffled, key=key)
        # Serve checks its queue-length cache before sending and probes a replica the cache
        # calls full (an RPC per check): tell it what this router counted instead.
        cache = self.replica_queue_len_cache
        for r in ranked:
            cache.update(r.replica_id, load[r.replica_id])
        return [[r] for r in ranked]

    def on_send_request(self, replica_id: ReplicaID) -> None:
        super().on_send_request(replica_id)
        self._sending[replica_id] = self._sending.get(replica_id, 0) + 1

    def on_new_queue_len_info(self, replica_id: ReplicaID, num_ongoing_requests: int) -> None:
        # the replica's answer to a send (accepted or not), or to a probe
        super().on_new_queue_len_info(replica_id, num_ongoing_requests)
        self._reported[replica_id] = num_ongoing_requests
        n = self._sending.get(replica_id, 0)
        if n:
            self._sending[replica_id] = n - 1

    def on_request_routed(self, pending_request: PendingRequest, replica_id: ReplicaID,
                          result: Any) -> None:
        n = self._inflight.get(replica_id, 0)
        if n == 0:
            self._busy_since[replica_id] = time.monotonic()
        self._inflight[replica_id] = n + 1
        self._routed.add((pending_request.metadata.internal_request_id, replica_id))

    def on_request_completed(self, replica_id: ReplicaID, internal_request_id: str) -> None:
        # Called for a send the replica rejected too (then retried elsewhere under the same
        # request id): only an accepted one, on this replica, counts down.
        key = (internal_request_id, replica_id)
        if key not in self._routed:
            return
        self._routed.discard(key)
        self._reported.pop(replica_id, None)
        n = max(0, self._inflight.get(replica_id, 0) - 1)
        self._inflight[replica_id] = n
        if n:
            self._busy_since[replica_id] = time.monotonic()  # the next one starts now

    def on_replica_actor_died(self, replica_id: ReplicaID) -> None:
        super().on_replica_actor_died(replica_id)
        self._forget(replica_id)

    def update_replicas(self, replicas: list[RunningReplica]) -> None:
        super().update_replicas(replicas)
        live = {r.replica_id for r in replicas}
        for rid in [rid for rid in self._inflight if rid not in live]:
            self._forget(rid)
        from swiftshot.runtime.ray_direct import replicas_listed

        replicas_listed(self._deployment_id.app_name,
                        {r.replica_id.unique_id for r in replicas})

    def _forget(self, replica_id: ReplicaID) -> None:
        self._inflight.pop(replica_id, None)
        self._sending.pop(replica_id, None)
        self._reported.pop(replica_id, None)
        self._busy_since.pop(replica_id, None)
        self._routed = {k for k in self._routed if k[1] != replica_id}
