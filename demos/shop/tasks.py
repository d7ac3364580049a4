"""The shop's tasks: bound to the app itself (``@app.task``), as most projects write them."""

from __future__ import annotations

from typing import Any

from celery import chord

from .celery_app import app

#: What a stock check may reserve at most, per line.
MAX_PER_LINE = 10


class PaymentGatewayError(Exception):
    """The payment provider did not answer: worth retrying."""


class OutOfStock(Exception):
    """More was ordered than a line may reserve: retrying cannot help."""


@app.task(name="shop.charge", bind=True, autoretry_for=(PaymentGatewayError,), max_retries=3, default_retry_delay=60)
def charge(self: Any, order_id: str, amount: int, fail_times: int = 0) -> dict[str, Any]:
    """Charge an order; the gateway fails the first ``fail_times`` attempts (retried after 60 s)."""
    if self.request.retries < fail_times:
        raise PaymentGatewayError(f"gateway timeout charging {order_id}")
    return {"order": order_id, "charged": amount, "attempts": self.request.retries + 1}


@app.task(name="shop.reserve_stock")
def reserve_stock(sku: str, quantity: int) -> int:
    if quantity > MAX_PER_LINE:
        raise OutOfStock(f"{sku}: {quantity} ordered, at most {MAX_PER_LINE} per line")
    return quantity


@app.task(name="shop.confirm_order")
def confirm_order(reserved: list[int], order_id: str) -> dict[str, Any]:
    return {"order": order_id, "items": sum(reserved)}


@app.task(name="shop.place_order")
def place_order(order_id: str, lines: list[tuple[str, int]]) -> str:
    """Reserve every line in parallel, then confirm the order (a chord); returns the chord's id."""
    result = chord(reserve_stock.s(sku, qty) for sku, qty in lines)(confirm_order.s(order_id))
    return str(result.id)


@app.task(name="shop.send_receipt")
def send_receipt(order_id: str) -> str:
    return f"receipt for {order_id} sent"


@app.task(name="shop.nightly_report")
def nightly_report() -> str:
    return "report"
