"""Tasks of the retries demo, written as the guides write them.

Each fails in a planned way (by attempt number, ``self.request.retries``), so that every run of a
scenario sees the same story. Their retry delays are the guides' (seconds to minutes); scenarios
run them under a time scale (see ``celery_sim.core.timewarp``), so a 30 s countdown takes 30 ms.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task

from demos import ledger


@shared_task(bind=True, max_retries=5, name="demos.retries.fetch_page")
def fetch_page(self: Any, url: str, failures: int) -> dict[str, Any]:
    """Manual retry: the guides' ``raise self.retry(exc=exc, countdown=30)``."""
    try:
        if self.request.retries < failures:
            raise ConnectionError(f"{url} unreachable (attempt {self.request.retries + 1})")
    except ConnectionError as exc:
        raise self.retry(exc=exc, countdown=30) from exc
    return {"url": url, "attempts": self.request.retries + 1}


@shared_task(
    bind=True,
    autoretry_for=(ConnectionError,),
    retry_kwargs={"max_retries": 3, "countdown": 5},
    name="demos.retries.sync_inventory",
)
def sync_inventory(self: Any, store: str, failures: int) -> str:
    """Automatic retry for ConnectionError only, at most 3 retries, 5 s apart."""
    if self.request.retries < failures:
        raise ConnectionError(f"{store}: inventory service unreachable")
    return f"{store}: synced"


@shared_task(
    bind=True,
    autoretry_for=(TimeoutError,),
    retry_backoff=2,
    retry_backoff_max=20,
    retry_jitter=False,
    max_retries=6,
    name="demos.retries.call_api",
)
def call_api(self: Any, endpoint: str) -> str:
    """Exponential backoff without jitter: 2, 4, 8, 16, then capped at 20 s."""
    raise TimeoutError(f"{endpoint} timed out")


@shared_task(
    bind=True,
    autoretry_for=(TimeoutError,),
    retry_backoff=True,
    retry_jitter=True,
    max_retries=10,
    name="demos.retries.call_api_jittered",
)
def call_api_jittered(self: Any, endpoint: str) -> str:
    """Backoff with the defaults: factor 1 s, capped at retry_backoff_max=600 s, full jitter."""
    raise TimeoutError(f"{endpoint} timed out")


def _call_model(prompt: str, failure: str, attempt: int) -> str:
    """Stands for an AI provider's API: fails as planned on the first attempts."""
    if failure == "network" and attempt < 2:
        raise ConnectionError("provider unreachable")
    if failure == "bad_input":
        raise ValueError(f"prompt rejected: {prompt!r}")
    if failure == "other" and attempt < 1:
        raise RuntimeError("provider returned 500")
    return f"answer to {prompt!r}"


@shared_task(bind=True, max_retries=3, name="demos.retries.run_ai_task")
def run_ai_task(self: Any, prompt: str, failure: str = "none") -> str:
    """The AI-task-runner pattern: network errors retry fast, bad input fails at once, the rest retries slowly."""
    try:
        return _call_model(prompt, failure, self.request.retries)
    except (ConnectionError, TimeoutError) as exc:
        raise self.retry(exc=exc, countdown=2**self.request.retries) from exc
    except ValueError:
        raise  # bad input will not get better: fail now
    except Exception as exc:
        raise self.retry(exc=exc, countdown=60) from exc


@shared_task(bind=True, name="demos.retries.poll_default")
def poll_default(self: Any) -> None:
    """Retries without ``exc`` and without max_retries (Celery's default is 3)."""
    raise self.retry(countdown=1)


@shared_task(bind=True, max_retries=2, name="demos.retries.poll_with_exc")
def poll_with_exc(self: Any) -> None:
    """Retries with ``exc=``: that exception is what the caller gets once retries run out."""
    raise self.retry(exc=ConnectionError("still down"), countdown=1)


@shared_task(bind=True, max_retries=None, name="demos.retries.poll_forever")
def poll_forever(self: Any, failures: int) -> int:
    """``max_retries=None``: retries as long as it takes."""
    if self.request.retries < failures:
        raise self.retry(countdown=1)
    return self.request.retries


@shared_task(bind=True, max_retries=1, name="demos.retries.retry_no_throw")
def retry_no_throw(self: Any) -> str:
    """``self.retry(throw=False)``: schedules a retry and carries on; this attempt then succeeds."""
    if self.request.retries == 0:
        self.retry(countdown=60, throw=False)
        return "first attempt returned"
    return "retry returned"


def _charge(app: Any, order_id: str, attempt: int) -> None:
    ledger.record(app, f"charges-{order_id}", {"order": order_id, "attempt": attempt})


@shared_task(bind=True, max_retries=3, name="demos.retries.charge_unsafe")
def charge_unsafe(self: Any, order_id: str) -> str:
    """Charges, then the receipt service times out once: the retry charges again."""
    _charge(self.app, order_id, self.request.retries)
    if self.request.retries == 0:
        raise self.retry(exc=TimeoutError("receipt service timed out"), countdown=5)
    return f"{order_id}: charged, receipt sent"


@shared_task(bind=True, max_retries=3, name="demos.retries.charge_once")
def charge_once(self: Any, order_id: str, idempotency_key: str) -> str:
    """The same, with an idempotency key: a retry sees the charge was made and does not repeat it.

    The guides keep the key in Redis (``SET key 1 NX``) or a unique database column; here the
    key lives in the result backend's ledger. Retries of one task run one after the other, so
    the read-then-write is safe for them (two different tasks with one key would need an atomic
    claim).
    """
    done = {entry.get("key") for entry in ledger.read(self.app, f"keys-{order_id}")}
    if idempotency_key not in done:
        _charge(self.app, order_id, self.request.retries)
        ledger.record(self.app, f"keys-{order_id}", {"key": idempotency_key})
    if self.request.retries == 0:
        raise self.retry(exc=TimeoutError("receipt service timed out"), countdown=5)
    return f"{order_id}: charged, receipt sent"
