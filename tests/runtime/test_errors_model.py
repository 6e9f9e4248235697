"""One error model: every ServiceError survives pickling (it crosses process boundaries) and the
HTTP layer answers each with its own status, code and Retry-After."""

from __future__ import annotations

import pickle

import orjson
import pytest

from swiftshot.api.errors import ApiError, response_for
from swiftshot.engines.base import Cancelled, EngineConfigError, EngineError
from swiftshot.errors import ServiceError, WorkerLost, as_service_error
from swiftshot.ops import OpsError
from swiftshot.ops.presets import UnknownPreset
from swiftshot.runtime.worker import Rejected
from swiftshot.service import Unavailable

CASES = [
    (Rejected(429, "queue_full", 2.5, "the standard queue is full"), 429, "queue_full", 2.5),
    (Unavailable("warming_up", "loading", 5.0), 503, "warming_up", 5.0),
    (EngineError("out of memory"), 502, "engine_error", 0.0),
    (EngineConfigError("no such model"), 400, "unknown_model", 0.0),
    (Cancelled("gone"), 499, "cancelled", 0.0),
    (OpsError("ops[0]: bad", 400), 400, "invalid_ops", 0.0),
    (UnknownPreset("no preset x"), 422, "unknown_preset", 0.0),
    (WorkerLost("worker 2 died", retry_after=1.0), 503, "worker_lost", 1.0),
    (ApiError(404, "no such key", code="not_found"), 404, "not_found", 0.0),
]


@pytest.mark.parametrize(("exc", "status", "code", "retry"), CASES,
                         ids=[type(c[0]).__name__ for c in CASES])
def test_every_error_pickles_and_answers_with_its_own_fields(exc, status, code, retry):
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is type(exc) and isinstance(back, ServiceError)
    assert (back.status, back.code, back.retry_after, back.message, back.param) == \
        (exc.status, exc.code, exc.retry_after, exc.message, exc.param)
    assert str(back) == str(exc)
    resp = response_for(back)
    body = orjson.loads(resp.body)["error"]
    assert resp.status_code == status and body["code"] == code
    assert exc.message in body["message"]
    assert ("retry-after" in resp.headers) == bool(retry)


def test_ops_errors_stay_value_errors_for_the_job_runner():
    assert isinstance(OpsError("x"), ValueError) and isinstance(UnknownPreset("x"), ValueError)


def test_foreign_exceptions_become_internal_errors_that_pickle():
    class Weird(Exception):
        def __init__(self, a, b):
            super().__init__(a)

    e = as_service_error(Weird(1, 2))
    back = pickle.loads(pickle.dumps(e))
    assert back.status == 500 and "Weird" in back.message
