"""The pure scheduler, driven by a fake clock: order, aging, batching, admission, expiry."""

from __future__ import annotations

import itertools

import pytest

from swiftshot.config import SchedulerSettings
from swiftshot.runtime.scheduler import Scheduler, WorkItem


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


_ids = itertools.count(1)


def make(clock: Clock, priority="standard", key="A", deadline_in: float = 1000.0,
         cost: float = 1.0) -> WorkItem:
    return WorkItem(id=next(_ids), batch_key=key, priority=priority, arrival=clock(),
                    deadline=clock() + deadline_in, cost=cost)


def sched(clock: Clock, capacity_hint_s: float = 0.001, **kw) -> Scheduler:
    base = {"max_batch_size": 4, "max_wait_ms": 10.0, "aging_ms": 1000.0}
    return Scheduler(SchedulerSettings(**{**base, **kw}), clock=clock,
                     capacity_hint_s=capacity_hint_s)


def submit_all(s: Scheduler, items: list[WorkItem]) -> None:
    for it in items:
        adm = s.submit(it)
        assert adm.accepted, adm


def test_empty_scheduler_has_nothing_to_do():
    clock = Clock()
    s = sched(clock)
    assert s.dispatch_delay() is None
    assert s.next_batch() == []
    assert s.depth() == {"realtime": 0, "standard": 0, "batch": 0, "prefetch": 0}


def test_priority_order_across_classes():
    clock = Clock()
    s = sched(clock, max_batch_size=1)
    items = {p: make(clock, p, key=p) for p in ("prefetch", "batch", "standard", "realtime")}
    submit_all(s, list(items.values()))
    clock.advance(0.02)
    order = [s.next_batch()[0].priority for _ in range(4)]
    assert order == ["realtime", "standard", "batch", "prefetch"]


def test_ties_broken_by_deadline_then_arrival():
    clock = Clock()
    s = sched(clock, max_batch_size=1)
    late = make(clock, key="x", deadline_in=50)
    clock.advance(0.001)
    urgent = make(clock, key="y", deadline_in=5)
    clock.advance(0.001)
    same_deadline_later = make(clock, key="z")
    same_deadline_later.deadline = late.deadline
    submit_all(s, [late, urgent, same_deadline_later])
    clock.advance(0.02)
    assert [s.next_batch()[0].id for _ in range(3)] == [urgent.id, late.id, same_deadline_later.id]


def test_aging_lets_prefetch_overtake_after_waiting():
    clock = Clock()
    s = sched(clock, max_batch_size=1, aging_ms=1000.0)
    old_prefetch = make(clock, "prefetch", key="p")
    submit_all(s, [old_prefetch])
    clock.advance(2.5)  # climbed two classes: prefetch → batch → standard
    fresh_standard = make(clock, "standard", key="s")
    fresh_batch = make(clock, "batch", key="b")
    submit_all(s, [fresh_standard, fresh_batch])
    # Now level with the fresh standard item; its earlier deadline (it arrived 2.5 s sooner)
    # breaks the tie, and the fresh batch item comes after both.
    assert s.next_batch()[0].id == old_prefetch.id
    assert s.next_batch()[0].id == fresh_standard.id

    # Without the wait it would have been last.
    s2 = sched(clock, max_batch_size=1, aging_ms=1000.0)
    submit_all(s2, [make(clock, "prefetch", key="p"), make(clock, "batch", key="b")])
    clock.advance(0.02)
    assert s2.next_batch()[0].priority == "batch"


def test_aging_climbs_one_class_per_aging_period():
    clock = Clock()
    s = sched(clock, max_batch_size=1, aging_ms=1000.0)
    prefetch = make(clock, "prefetch", key="p", deadline_in=10_000)
    submit_all(s, [prefetch])
    clock.advance(1.5)  # prefetch (3) → batch-equivalent (2): not enough to beat realtime (0)
    rt = make(clock, "realtime", key="r", deadline_in=10_000)
    submit_all(s, [rt])
    clock.advance(0.02)
    assert s.next_batch()[0].id == rt.id
    assert s.next_batch()[0].id == prefetch.id


def test_batches_gather_the_same_batch_key_across_classes_up_to_max():
    clock = Clock()
    s = sched(clock, max_batch_size=4)
    a = [make(clock, "standard", key="A") for _ in range(3)]
    b = [make(clock, "standard", key="B") for _ in range(2)]
    a_batch = [make(clock, "batch", key="A") for _ in range(3)]
    submit_all(s, a + b + a_batch)
    assert s.dispatch_delay() == 0.0  # key A already has a full batch waiting
    first = s.next_batch()
    assert [it.id for it in first] == [it.id for it in a] + [a_batch[0].id]
    assert all(it.batch_key == "A" for it in first)
    clock.advance(0.011)
    second = s.next_batch()
    assert [it.id for it in second] == [it.id for it in b]
    third = s.next_batch()
    assert [it.id for it in third] == [it.id for it in a_batch[1:]]
    assert s.next_batch() == []


def test_max_wait_holds_a_partial_batch_for_company():
    clock = Clock()
    s = sched(clock, max_batch_size=4, max_wait_ms=10.0)
    submit_all(s, [make(clock, key="A")])
    assert s.dispatch_delay() == pytest.approx(0.010)
    assert s.next_batch() == []  # not due yet
    clock.advance(0.004)
    submit_all(s, [make(clock, key="A")])
    assert s.dispatch_delay() == pytest.approx(0.006)  # the head's wait counts, not the newest's
    clock.advance(0.006)
    assert s.dispatch_delay() == 0.0
    assert len(s.next_batch()) == 2


def test_max_wait_never_pushes_the_head_past_its_deadline():
    clock = Clock()
    s = sched(clock, capacity_hint_s=0.002, max_wait_ms=50.0)
    submit_all(s, [make(clock, "realtime", deadline_in=0.010)])
    assert s.dispatch_delay() == pytest.approx(0.008)


def test_full_queue_is_refused_with_429_and_retry_after():
    clock = Clock()
    s = sched(clock, queue_limit={"realtime": 2, "standard": 3, "batch": 3, "prefetch": 3})
    submit_all(s, [make(clock, "realtime", key=i) for i in range(2)])
    adm = s.submit(make(clock, "realtime"))
    assert not adm.accepted
    assert adm.status == 429 and adm.reason == "queue_full"
    assert adm.retry_after_s >= 1.0
    assert "realtime queue is full" in adm.message
    assert s.submit(make(clock, "standard")).accepted  # other classes still take work
    assert s.depth()["realtime"] == 2


def test_every_class_full_is_503():
    clock = Clock()
    limits = {"realtime": 1, "standard": 1, "batch": 1, "prefetch": 1}
    s = sched(clock, queue_limit=limits)
    submit_all(s, [make(clock, p, key=p) for p in limits])
    adm = s.submit(make(clock, "standard"))
    assert (adm.accepted, adm.status, adm.reason) == (False, 503, "overloaded")


def test_estimated_wait_past_the_deadline_is_refused_at_once():
    clock = Clock()
    s = sched(clock, capacity_hint_s=0.1, max_batch_size=8)
    submit_all(s, [make(clock, "standard", key=i) for i in range(10)])  # 10 × 0.1 s ahead
    assert s.estimated_wait("standard") == pytest.approx(1.0)
    adm = s.submit(make(clock, "standard", deadline_in=0.5))
    assert not adm.accepted
    assert adm.status == 429 and adm.reason == "deadline"
    assert adm.retry_after_s == pytest.approx(1.0)
    assert "deadline" in adm.message
    # Work queued below a class is not ahead of it: a realtime request still fits.
    assert s.estimated_wait("realtime") == 0.0
    assert s.submit(make(clock, "realtime", deadline_in=0.5)).accepted
    # And a generous deadline is accepted in the same state.
    assert s.submit(make(clock, "standard", deadline_in=5.0)).accepted


def test_record_teaches_the_service_time_used_to_admit():
    clock = Clock()
    s = sched(clock, capacity_hint_s=0.001, max_batch_size=8)
    submit_all(s, [make(clock, key=i) for i in range(20)])
    assert s.submit(make(clock, deadline_in=0.5)).accepted  # 21 × 1 ms: fine
    for _ in range(30):  # the engine turns out to take 100 ms per item
        s.record(1, 0.1)
    assert s.per_item_s == pytest.approx(0.1, rel=0.01)
    assert not s.submit(make(clock, deadline_in=0.5)).accepted


def test_running_work_counts_until_recorded():
    clock = Clock()
    s = sched(clock, capacity_hint_s=0.1)
    submit_all(s, [make(clock) for _ in range(4)])
    batch = s.next_batch()
    assert len(batch) == 4 and s.running == 4
    assert s.estimated_wait("realtime") == pytest.approx(0.4)
    s.record(4, 0.4)
    assert s.running == 0
    assert s.estimated_wait("realtime") == 0.0


def test_failed_batch_releases_capacity_without_teaching_its_time():
    clock = Clock()
    s = sched(clock, capacity_hint_s=0.1)
    submit_all(s, [make(clock)])
    clock.advance(0.02)
    s.next_batch()
    s.record(1, 0.0001, ok=False)
    assert s.per_item_s == 0.1 and s.running == 0


def test_expired_items_are_dropped_and_reported():
    clock = Clock()
    s = sched(clock, max_batch_size=4)
    short = make(clock, key="A", deadline_in=0.5)
    keep = make(clock, key="A", deadline_in=100)
    submit_all(s, [short, keep])
    clock.advance(1.0)
    batch = s.next_batch()
    assert [it.id for it in batch] == [keep.id]
    assert [it.id for it in s.expired()] == [short.id]
    assert s.expired() == []  # reported once
    assert s.depth()["standard"] == 0


def test_cancel_removes_a_queued_item():
    clock = Clock()
    s = sched(clock)
    a, b = make(clock), make(clock)
    submit_all(s, [a, b])
    assert s.cancel(a.id) is True
    assert s.cancel(a.id) is False
    assert s.depth()["standard"] == 1
    clock.advance(0.02)
    assert [it.id for it in s.next_batch()] == [b.id]
    assert s.cancel(b.id) is False  # running, not queued
    assert s.dispatch_delay() is None


def test_cancel_frees_admission_capacity():
    clock = Clock()
    s = sched(clock, queue_limit={"realtime": 2, "standard": 2, "batch": 2, "prefetch": 2})
    a, b = make(clock), make(clock)
    submit_all(s, [a, b])
    assert not s.submit(make(clock)).accepted
    s.cancel(a.id)
    assert s.submit(make(clock)).accepted


def test_draining_refuses_with_503():
    clock = Clock()
    s = sched(clock)
    s.set_draining(True)
    adm = s.submit(make(clock))
    assert (adm.accepted, adm.status, adm.reason) == (False, 503, "draining")
    s.set_draining(False)
    assert s.submit(make(clock)).accepted


def test_bad_priority_and_duplicate_ids_are_named():
    clock = Clock()
    s = sched(clock)
    with pytest.raises(ValueError, match="priority must be one of realtime, standard, batch, prefetch"):
        s.submit(WorkItem(id=1, batch_key="A", priority="urgent", arrival=0, deadline=9))  # type: ignore[arg-type]
    item = make(clock)
    s.submit(item)
    with pytest.raises(ValueError, match="already queued"):
        s.submit(item)


def test_cost_weights_the_estimate():
    clock = Clock()
    s = sched(clock, capacity_hint_s=0.1)
    submit_all(s, [make(clock, key="big", cost=5.0)])
    assert s.estimated_wait("standard") == pytest.approx(0.5)
    s.cancel(next(iter(s._items)))
    assert s.estimated_wait("standard") == 0.0


# -- the indexed scheduler against a brute-force reference -------------------------------------


class Reference:
    """The ordering rules written as plainly as possible: scan everything, every time."""

    def __init__(self, s: Scheduler) -> None:
        self.s = s
        self.items: dict[int, WorkItem] = {}

    def order(self, it: WorkItem, now: float):
        aged = int((now - it.arrival) // self.s.aging_s) if now > it.arrival else 0
        rank = ["realtime", "standard", "batch", "prefetch"].index(it.priority)
        return (max(0, rank - aged), it.deadline, it.arrival, it.id)

    def next_batch(self, now: float) -> tuple[list[int], list[int]]:
        expired = sorted(i for i, it in self.items.items() if it.deadline <= now)
        for i in expired:
            del self.items[i]
        if not self.items:
            return [], expired
        head = min(self.items.values(), key=lambda it: self.order(it, now))
        group = [it for it in self.items.values() if it.batch_key == head.batch_key]
        due = (len(group) >= self.s.max_batch
               or now >= min(head.arrival + self.s.max_wait_s,
                             head.deadline - self.s.per_item_s * head.cost))
        if not due:
            return [], expired
        batch = sorted(group, key=lambda it: self.order(it, now))[: self.s.max_batch]
        for it in batch:
            del self.items[it.id]
        return [it.id for it in batch], expired


@pytest.mark.parametrize("seed", range(40))
def test_indexed_queue_matches_a_brute_force_reference(seed):
    import random

    rng = random.Random(seed)
    clock = Clock()
    s = sched(clock, capacity_hint_s=0.0001, max_batch_size=rng.choice([1, 3, 8]),
              max_wait_ms=rng.choice([0.0, 5.0]), aging_ms=rng.choice([50.0, 200.0]))
    ref = Reference(s)
    next_id = itertools.count(1)
    for _step in range(400):
        op = rng.random()
        if op < 0.5:
            # Arrivals a little out of order and deadlines of any length, to leave the
            # easy case (the worker's own stamps are in order).
            it = WorkItem(id=next(next_id), batch_key=rng.choice("ABC"),
                          priority=rng.choice(["realtime", "standard", "batch", "prefetch"]),
                          arrival=clock() - rng.choice([0.0, 0.0, rng.uniform(0, 0.3)]),
                          deadline=clock() + rng.uniform(0.01, 2.0))
            if s.submit(it).accepted:
                ref.items[it.id] = it
        elif op < 0.6 and ref.items:
            victim = rng.choice(sorted(ref.items))
            assert s.cancel(victim)
            del ref.items[victim]
        elif op < 0.85:
            got = [it.id for it in s.next_batch()]
            got_expired = sorted(it.id for it in s.expired())
            want, want_expired = ref.next_batch(clock())
            assert (got, got_expired) == (want, want_expired), f"step {_step}"
            if got:
                s.record(len(got), 0.0001)
        else:
            clock.advance(rng.choice([0.001, 0.01, 0.05, 0.3]))
        assert len(s) == len(ref.items)
        assert sum(s.depth().values()) == len(ref.items)


def test_settings_must_name_every_class():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"queue_limit must name every priority class.*'prefetch'"):
        SchedulerSettings(queue_limit={"realtime": 1, "standard": 1, "batch": 1})
    with pytest.raises(ValidationError, match="deadline_ms values must be > 0"):
        SchedulerSettings(deadline_ms={"realtime": 0, "standard": 1, "batch": 1, "prefetch": 1})


def test_a_lone_item_started_at_submit_is_counted_as_next_batch_counts_it():
    """``submit(start=True)`` hands a lone item out at once (no lanes, no heap) only where
    ``next_batch`` would have handed it out alone at once, and leaves the same counts."""
    from swiftshot.config import SchedulerSettings
    from swiftshot.runtime.scheduler import Scheduler, WorkItem

    def fresh(**kw):
        s = Scheduler(SchedulerSettings(), clock=lambda: 100.0, batch_gain=False, **kw)
        s.slots = 2
        return s

    def item(i, prio="standard"):
        return WorkItem(id=i, batch_key="k", priority=prio, arrival=100.0, deadline=200.0)

    started, queued = fresh(), fresh()
    assert started.submit(item(1), start=True).started
    assert queued.submit(item(1)).accepted and [it.id for it in queued.next_batch()] == [1]
    for s in (started, queued):
        assert (len(s), s.running, s.running_shared, s.lent) == (0, 1, 1, 0)
    # something queued: the new item queues behind it
    s = fresh()
    s.submit(item(1))
    a = s.submit(item(2), start=True)
    assert a.accepted and not a.started and len(s) == 2
    # a batching window (company may join): it queues
    s = Scheduler(SchedulerSettings(), clock=lambda: 100.0, batch_gain=True)
    s.slots = 2
    if s.max_batch > 1:
        assert not s.submit(item(1), start=True).started and len(s) == 1
    # start is only a hint: without it nothing changes
    s = fresh()
    assert not s.submit(item(1)).started and len(s) == 1
