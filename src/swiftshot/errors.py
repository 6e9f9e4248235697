"""One error model for the whole service: :class:`ServiceError` (status, code, message,
retry_after, param).

Every failure a caller may see is a ``ServiceError`` or a subclass: the scheduler's refusals
(``runtime.worker.Rejected``), warming up / draining (``service.Unavailable``), engine failures
(``engines.EngineError`` 502, ``EngineConfigError`` 400), cancellation (``Cancelled`` 499), bad
operations (``ops.OpsError`` 4xx), and the routes' own ``api.errors.ApiError``. The HTTP layer
turns any of them into the same JSON answer (``api/errors.py``), with ``Retry-After`` when
``retry_after`` is set; anything else is an internal error (500, logged).

Errors cross process boundaries (engine worker processes, Ray replicas): every subclass pickles
and unpickles to an equal error whatever its ``__init__`` looks like (``__reduce__`` below
rebuilds from the instance's fields, not from the constructor's arguments).
"""

from __future__ import annotations

from typing import Any


def _rebuild(cls: type[ServiceError], args: tuple[Any, ...], state: dict[str, Any]) -> ServiceError:
    exc = cls.__new__(cls)
    Exception.__init__(exc, *args)
    exc.__dict__.update(state)
    return exc


class ServiceError(Exception):
    """A failure with the HTTP answer it deserves.

    ``status``: HTTP status (4xx the caller's fault, 5xx ours). ``code``: a stable machine-
    readable word (``overloaded``, ``deadline``, ``engine_error``, ``unknown_model`` ...).
    ``message``: what went wrong and what is allowed, for a person. ``retry_after``: seconds
    (sent as ``Retry-After``) when trying again later may work, else 0. ``param``: the request
    field at fault, when there is one.
    """

    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str = "", *, status: int | None = None, code: str | None = None,
                 retry_after: float = 0.0, param: str | None = None) -> None:
        super().__init__(message or code or self.code)
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        self.message = message or self.code
        self.retry_after = retry_after
        self.param = param

    # Kept for the code that predates the one model (the scheduler's names).
    @property
    def reason(self) -> str:
        return self.code

    @property
    def retry_after_s(self) -> float:
        return self.retry_after

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.args, dict(self.__dict__)))

    def __eq__(self, other: object) -> bool:
        return (type(self) is type(other) and self.args == other.args  # type: ignore[attr-defined]
                and self.__dict__ == other.__dict__)

    __hash__ = Exception.__hash__

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "code": self.code, "message": self.message,
                "retry_after": self.retry_after, "param": self.param}


class WorkerLost(ServiceError):
    """The engine worker (process, replica) running a batch died or became unreachable. The
    front retries the batch once elsewhere; a second loss reaches the caller as this 503."""

    status = 503
    code = "worker_lost"
    started = True
    """False when the batch was known to be still waiting inside the worker (sent ahead, behind
    another batch) when the worker was lost: the loss says nothing about its own inputs, and
    the front sends it again without counting it against them (crash isolation)."""


def as_service_error(exc: BaseException) -> ServiceError:
    """``exc`` itself when it is a ServiceError, else an internal error that says what it was
    (for crossing a process boundary: an arbitrary exception may not pickle)."""
    if isinstance(exc, ServiceError):
        return exc
    return ServiceError(f"internal error in the engine worker ({type(exc).__name__}: {exc})",
                        status=500, code="internal_error")
