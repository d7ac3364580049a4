"""The guide's three tasks, registered under its explicit names and sent by name.

``execute_task`` runs the PSI job it is given: each party's key column is read from its input
file, the intersection is written to the receiver's output path (a stand-in for SecretFlow's
cryptographic PSI: the same inputs, outputs and result, computed in the clear).
"""

from __future__ import annotations

import csv
import socket
from pathlib import Path
from typing import Any

from demos.sending.celery_app import EXECUTE, HEALTH, HELLO, app
from demos.sending.params import InvalidParams, validate


@app.task(name=HELLO, bind=True)
def hello_task(self: Any, name: str = "world") -> str:
    return f"Hello, {name}! (from {self.request.hostname})"


@app.task(name=HEALTH, bind=True)
def health_check(self: Any) -> dict[str, Any]:
    return {"status": "ok", "worker": self.request.hostname, "host": socket.gethostname()}


def _keys(path: str, key: str, field: str) -> list[str]:
    try:
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            if key not in (reader.fieldnames or []):
                raise InvalidParams("key", f"{key!r} is not a column of {path} (columns: {reader.fieldnames})")
            return [row[key] for row in reader]
    except FileNotFoundError:
        raise InvalidParams(field, f"no such file {path!r} on worker {socket.gethostname()}") from None


@app.task(name=EXECUTE, bind=True)
def execute_task(self: Any, task_id: str, params: dict[str, Any]) -> dict[str, Any]:
    """Validate ``params`` (an error names the field), run the job, return a structured result."""
    job = validate(params)
    first, second = job["parties"]
    keys = {p: _keys(job["input_path"][p], job["key"], f"input_path.{p}") for p in job["parties"]}
    both = sorted(set(keys[first]) & set(keys[second]))
    receiver = job["receiver"]
    out = Path(job["output_path"][receiver])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(job["key"] + "\n" + "".join(f"{k}\n" for k in both))
    return {
        "task_id": task_id,
        "celery_id": self.request.id,
        "status": "SUCCESS",
        "protocol": job["protocol"],
        "spu_protocol": job["spu"]["runtime"]["protocol"],
        "parties": job["parties"],
        "input_rows": {p: len(v) for p, v in keys.items()},
        "intersection_size": len(both),
        "receiver": receiver,
        "output_path": str(out),
    }
