"""The shop's own scenarios, written with the catalog's ``@scenario`` decorator.

Run them on an embedded broker with
``python -m celery_sim complete --app demos.shop.celery_app:app --scenarios demos.shop.scenarios``
(``--real-broker URL`` for Redis or RabbitMQ).
"""

from __future__ import annotations

from celery_sim import Context, scenario

from . import tasks


@scenario("shop.charge_retry", "a charge the gateway fails twice is retried after 60 s each time, then succeeds")
def charge_retry(ctx: Context) -> None:
    with ctx.harness.time_scale(0.001):
        result = tasks.charge.delay("o-1", 30, fail_times=2)
    charged = ctx.wait(result)
    ctx.check("charged on the third attempt", {"order": "o-1", "charged": 30, "attempts": 3}, charged)
    ctx.check("retry countdowns (s)", [60.0, 60.0], [round(c or 0, 1) for c in ctx.timeline.countdowns(result.id)])
    queues = {ctx.harness.ns.logical(str(e.data.get("queue"))) for e in ctx.events(result.id, ["published"])}
    ctx.check("every attempt routed to", {"payments"}, queues)


@scenario("shop.order_chord", "an order reserves its lines in parallel, then one callback confirms it")
def order_chord(ctx: Context) -> None:
    placed = tasks.place_order.delay("o-2", [("apple", 2), ("pear", 3)])
    confirmation = ctx.app.AsyncResult(ctx.wait(placed))
    ctx.check("confirmed with every line", {"order": "o-2", "items": 5}, ctx.wait(confirmation))
    reserved = ctx.events(kinds=["succeeded"])
    ctx.check("stock reservations that ran", 2, sum(1 for e in reserved if e.name == "shop.reserve_stock"))
