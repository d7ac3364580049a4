"""The shop's tests, written with celery_sim's pytest plugin (the ``csim`` fixture).

They call the shop's own task objects; each test gets a real Celery worker on an in-process broker
(``--csim-broker redis://...`` or ``amqp://...`` runs the same tests on a real one).
"""

from __future__ import annotations

import pytest
from celery.exceptions import NotRegistered

from celery_sim import DrainTimeout, Harness
from demos.shop import tasks

#: Delays of this module's tests take a thousandth of their real length: a 60 s retry takes 60 ms.
pytestmark = pytest.mark.csim(time_scale=0.001)


def test_a_charge_is_retried_after_gateway_errors(csim: Harness) -> None:
    result = tasks.charge.delay("o-1", 30, fail_times=2)
    csim.drain(timeout=5)
    assert result.get(timeout=1) == {"order": "o-1", "charged": 30, "attempts": 3}
    csim.expect(result).ran_on("payments").retried(2, countdown=60).succeeded()


def test_a_receipt_goes_to_the_emails_queue(csim: Harness) -> None:
    result = tasks.send_receipt.delay("o-2")
    assert result.get(timeout=5) == "receipt for o-2 sent"
    csim.expect(result).ran_on("emails").went_through("published", "received", "started", "succeeded")


def test_an_order_reserves_every_line_then_confirms(csim: Harness) -> None:
    placed = tasks.place_order.delay("o-3", [("apple", 2), ("pear", 3), ("fig", 1)])
    csim.drain(timeout=5)
    confirmation = csim.app.AsyncResult(placed.get(timeout=1))
    assert confirmation.get(timeout=1) == {"order": "o-3", "items": 6}
    csim.expect(confirmation).ran_on("shop").succeeded({"order": "o-3", "items": 6})


def test_out_of_stock_is_raised_as_itself(csim: Harness) -> None:
    tasks.place_order.delay("o-4", [("apple", 2), ("pear", 11)])
    with pytest.raises(tasks.OutOfStock, match="pear: 11 ordered"):
        csim.drain(timeout=5)
    csim.drain(timeout=5, fail_fast=False)  # the chord's callback: failed by Celery, nothing left


@pytest.mark.csim(unconsumed=("reports",))
def test_a_queue_nobody_consumes_is_named(csim: Harness) -> None:
    result = tasks.nightly_report.delay()
    with pytest.raises(DrainTimeout, match="no worker consumes queue 'reports'"):
        csim.drain(timeout=0.5)
    assert "start a worker with -Q reports" in csim.diagnose(result)
    assert csim.purge() == 1  # else the test fails for the message it left


def test_a_task_name_no_worker_knows_is_named(csim: Harness) -> None:
    csim.app.send_task("shop.refund", args=["o-5"])
    with pytest.raises(NotRegistered, match=r"'shop\.refund'.*has no task by that name"):
        csim.drain(timeout=5)
