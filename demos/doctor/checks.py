"""The doctor's checks, shared by the scenarios that make a cause on purpose and have it named."""

from __future__ import annotations

from celery_sim.scenarios.scenario import Context
from celery_sim.tools.doctor import Finding

__all__ = ["NO_REPLY_S", "REPLY_TIMEOUT_S", "names_cause"]

#: The doctor's reply timeout here. Each broadcast returns as soon as every worker of the run has
#: answered, so only "no worker at all" waits it out (with the shorter NO_REPLY_S); a real
#: deployment's `doctor` waits 1 s, as `celery inspect` does. (On Redis, the broadcast after one
#: that nobody answered takes about 0.6 s: measured, hence not less than 2 s.)
REPLY_TIMEOUT_S = 2.0
NO_REPLY_S = 0.5


def names_cause(ctx: Context, what: str, finding: Finding, kind: str, *says: str, ok: bool = False) -> bool:
    """Check that the doctor named cause ``kind`` (and said ``says``, and judged ``ok``)."""
    text = " ".join([finding.cause, *finding.evidence])
    return ctx.check(
        f"{what}: the doctor names",
        {"kind": kind, "ok": ok, "says": list(says)},
        {"kind": finding.kind, "ok": finding.ok, "cause": finding.cause},
        passed=finding.kind == kind and finding.ok == ok and all(s in text for s in says),
    )
