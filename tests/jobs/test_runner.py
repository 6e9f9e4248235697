"""The job runner with an in-memory service: outcomes, refusals, shutdown, signed webhooks."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import orjson
import pytest

from swiftshot.config import Settings
from swiftshot.runtime import webhooks
from swiftshot.runtime.jobs import JobRunner
from swiftshot.spec import RenderSpec
from swiftshot.store.jobs import JobStore, NewItem

from .receiver import Receiver

try:
    from swiftshot.runtime.worker import Rejected
except ImportError:  # the core runtime has not landed: same name, same fields
    class Rejected(Exception):  # type: ignore[no-redef]
        def __init__(self, status=503, reason="overload", retry_after_s=None, message=""):
            super().__init__(message)
            self.status, self.reason, self.retry_after_s = status, reason, retry_after_s


@dataclass
class Rendered:
    key: str
    cache_status: str = "miss"


class FakeService:
    def __init__(self, delay_s: float = 0.0, reject_first: int = 0) -> None:
        self.delay_s = delay_s
        self.reject_first = reject_first
        self.calls: list[tuple[RenderSpec, str]] = []

    async def render(self, spec, *, priority="standard", deadline_s=None, products=None):
        self.calls.append((spec, priority))
        if len(self.calls) <= self.reject_first:
            raise Rejected(503, "overload", None, "queue full")
        if "explode" in spec.prompt:
            raise RuntimeError("GPU fell over")
        await asyncio.sleep(self.delay_s)
        return Rendered(spec.cache_key())


def _settings(tmp_path, **jobs) -> Settings:
    base = dict(webhook_secret="s3cret", webhook_allow_private=True, webhook_backoff_s=0.05,
                poll_s=0.05, retry_backoff_s=0.02, max_attempts=2, lease_s=5.0)
    return Settings(data_dir=tmp_path / "var", jobs={**base, **jobs})


def _specs(*prompts: str) -> list[NewItem]:
    return [NewItem(RenderSpec(prompt=p, size="64x64").model_dump_json()) for p in prompts]


async def _until(pred, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < end, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_items_render_at_batch_priority_and_signed_webhook_arrives(tmp_path):
    settings = _settings(tmp_path)
    service = FakeService(delay_s=0.01)
    runner = JobRunner.from_settings(settings, service)
    with Receiver(fail_first=2) as rx:
        job = runner.store.create_job(_specs("a", "b", "c", "explode"), webhook_url=rx.url)
        await runner.start()
        runner.notify()
        await _until(lambda: runner.store.get_job(job).webhook_state == "delivered")
        view = runner.store.get_job(job)
        await runner.stop()
    assert {p for _, p in service.calls} == {"batch"}
    assert view.status == "done" and view.progress == {"done": 3, "failed": 1, "total": 4}
    failed = view.items[3]
    assert failed.attempts == 2 and "GPU fell over" in failed.error and "gave up" in failed.error
    assert rx.attempts == 3, "two refused deliveries, then one accepted"
    (d,) = rx.deliveries
    assert webhooks.verify(d.body, "s3cret", d.headers["X-Swiftshot-Signature"])
    assert not webhooks.verify(d.body.replace(b'"done"', b'"fail"'), "s3cret",
                               d.headers["X-Swiftshot-Signature"])
    payload = orjson.loads(d.body)
    assert str(payload["timestamp"]) == d.headers["X-Swiftshot-Timestamp"]
    assert abs(payload["timestamp"] - time.time()) < 60
    assert payload["id"] == job and payload["progress"]["done"] == 3
    assert payload["items"][0]["url"].startswith("/i/") and payload["items"][0]["url"].endswith(".png")
    assert view.webhook_attempts == 3 and view.webhook_error is None


async def test_refusals_are_retried_later_and_not_counted_as_attempts(tmp_path):
    service = FakeService(reject_first=3)
    runner = JobRunner.from_settings(_settings(tmp_path, concurrency=1), service)
    job = runner.store.create_job(_specs("x"))
    await runner.start()
    await _until(lambda: runner.store.get_job(job).status == "done")
    item = runner.store.get_job(job).items[0]
    await runner.stop()
    assert item.status == "done" and item.attempts == 1 and item.completions == 1
    assert len(service.calls) == 4


async def test_invalid_stored_spec_fails_with_field_named(tmp_path):
    runner = JobRunner.from_settings(_settings(tmp_path), FakeService())
    job = runner.store.create_job([NewItem('{"width": 65}')])
    await runner.start()
    await _until(lambda: runner.store.get_job(job).status == "done")
    item = runner.store.get_job(job).items[0]
    await runner.stop()
    assert item.status == "failed" and item.attempts == 1 and "width" in item.error


async def test_stop_hands_in_flight_items_back(tmp_path):
    settings = _settings(tmp_path, concurrency=2)
    runner = JobRunner.from_settings(settings, FakeService(delay_s=30))
    job = runner.store.create_job(_specs("a", "b", "c"))
    await runner.start()
    await _until(lambda: runner.in_flight == 2)
    await runner.stop()
    store = JobStore(settings.jobs.db_path)
    view = store.get_job(job)
    assert [i.status for i in view.items] == ["queued"] * 3
    assert [i.attempts for i in view.items] == [0, 0, 0]


async def test_webhook_gives_up_after_configured_retries(tmp_path):
    runner = JobRunner.from_settings(_settings(tmp_path, webhook_retries=2), FakeService())
    with Receiver(fail_first=100) as rx:
        job = runner.store.create_job(_specs("a"), webhook_url=rx.url)
        await runner.start()
        await _until(lambda: runner.store.get_job(job).webhook_state == "failed")
        view = runner.store.get_job(job)
        await runner.stop()
    assert rx.attempts == 3 and view.webhook_attempts == 3 and view.webhook_error == "HTTP 500"


@pytest.mark.parametrize("url", ["ftp://example.com/x", "/relative", "http://user:pw@example.com/",
                                 "http://127.0.0.1:8080/hook", "http://10.1.2.3/h"])
def test_webhook_url_refused(url):
    with pytest.raises(webhooks.WebhookURLError, match="webhook_url"):
        webhooks.check_url(url, allow_private=False)


def test_loopback_allowed_when_configured():
    assert webhooks.check_url("http://127.0.0.1:8080/h", allow_private=True)


async def test_outcomes_are_counted_in_metrics(tmp_path):
    from swiftshot import telemetry

    def value(metric, label):
        return metric.labels(label)._value.get()

    before = {k: value(telemetry.JOB_ITEM_OUTCOMES, k) for k in ("done", "refused", "retry", "failed")}
    runner = JobRunner.from_settings(_settings(tmp_path, concurrency=1), FakeService(reject_first=1))
    job = runner.store.create_job(_specs("ok", "explode"))
    await runner.start()
    # in_flight too: the item is "done" in the store a moment before its task counts the
    # outcome (the count follows the store call); stopping in between cancelled the count
    await _until(lambda: runner.store.get_job(job).status == "done" and runner.in_flight == 0)
    await runner.stop()
    delta = {k: value(telemetry.JOB_ITEM_OUTCOMES, k) - before[k] for k in before}
    assert delta == {"done": 1, "refused": 1, "retry": 1, "failed": 1}


async def test_a_failing_store_call_does_not_stop_the_runner(tmp_path, caplog):
    runner = JobRunner.from_settings(_settings(tmp_path), FakeService())
    real_claim, calls = runner.store.claim, []

    def flaky_claim(n):
        calls.append(n)
        if len(calls) == 1:
            raise OSError("disk hiccup")
        return real_claim(n)

    runner.store.claim = flaky_claim
    job = runner.store.create_job(_specs("a"))
    await runner.start()
    await _until(lambda: runner.store.get_job(job).status == "done")
    await runner.stop()
    assert "disk hiccup" in caplog.text


async def test_stop_is_prompt_with_items_finishing_during_it(tmp_path):
    runner = JobRunner.from_settings(_settings(tmp_path, concurrency=8), FakeService(delay_s=0.001))
    runner.store.create_job(_specs(*[f"p{i}" for i in range(40)]))
    await runner.start()
    await _until(lambda: runner.in_flight > 0)
    await asyncio.wait_for(runner.stop(), 10)  # a hang here is the bug this guards against
    assert runner.in_flight == 0


async def test_stop_hands_back_items_whose_tasks_never_started(tmp_path):
    # stop() right after the claim, before the item tasks took their first step (as happens
    # on a loaded machine): the claims must still go back to the queue at once.
    settings = _settings(tmp_path, concurrency=2)
    runner = JobRunner.from_settings(settings, FakeService(delay_s=30))
    job = runner.store.create_job(_specs("a", "b"))
    claims = runner.store.claim(2)
    for claim in claims:
        task = asyncio.get_running_loop().create_task(runner._run_item(claim))
        runner._inflight[task] = claim
    await runner.stop()  # the tasks are cancelled before they ever ran
    view = JobStore(settings.jobs.db_path).get_job(job)
    assert [i.status for i in view.items] == ["queued"] * 2
    assert [i.attempts for i in view.items] == [0, 0]


async def test_a_photo_that_does_not_decode_fails_its_own_item_saying_why(tmp_path):
    """An item's photo is checked by its header here and decoded where the render runs (an
    engine worker is sent the file): truncated data fails that item — a user error, not
    retried — with what was wrong, and the job's other items render."""
    import hashlib
    import io

    from swiftshot.service import Service
    from swiftshot.testing.products import make_photo

    buf = io.BytesIO()
    make_photo("bottle_white_sweep", (256, 256)).image.save(buf, "JPEG", quality=90)
    good = buf.getvalue()
    bad = good[: len(good) // 2]
    shas = [hashlib.sha256(d).hexdigest() for d in (good, bad)]
    settings = _settings(tmp_path)
    settings.server.warmup_shapes = [(64, 64)]
    service = Service(settings)
    await service.start()
    runner = JobRunner.from_settings(settings, service)
    try:
        items = [NewItem(RenderSpec(preset="amazon", product_sha256=sha).model_dump_json(), sha)
                 for sha in shas]
        job = runner.store.create_job(items, blobs=dict(zip(shas, (good, bad), strict=True)))
        await runner.start()
        runner.notify()
        await _until(lambda: runner.store.get_job(job).status == "done", timeout=60)
        view = runner.store.get_job(job)
    finally:
        await runner.stop()
        await service.stop()
    assert view.progress == {"done": 1, "failed": 1, "total": 2}
    failed = view.items[1]
    assert failed.status == "failed" and failed.attempts == 1
    assert failed.error.startswith("product: image data is truncated or corrupt"), failed.error
