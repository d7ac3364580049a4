"""The learning guide's tasks, from "add" to sending email over SMTP."""

from __future__ import annotations

import csv
import json
import os
import smtplib
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from demos.learning.celery_app import app
from demos.learning.pixels import gradient, grayscale, thumbnail, write_pgm

# -- basic -----------------------------------------------------------------------------------


@app.task(name="learning.add")
def add(x: float, y: float) -> float:
    return x + y


@app.task(name="learning.multiply")
def multiply(x: float, y: float) -> float:
    return x * y


@app.task(name="learning.long_task", bind=True)
def long_task(self: Any, steps: int = 4) -> dict[str, Any]:
    """Reports its progress (state PROGRESS, meta current/total/percent) after each step."""
    for step in range(1, steps + 1):
        self.update_state(state="PROGRESS", meta={"current": step, "total": steps, "percent": step * 100 // steps})
    return {"current": steps, "total": steps, "status": "done"}


@app.task(name="learning.square")
def square(x: int) -> int:
    return x * x


@app.task(name="learning.total")
def total(values: list[int]) -> int:
    return sum(values)


# -- the guide's two retry strategies ----------------------------------------------------------


class FlakyServiceError(Exception):
    """A dependency failed: worth retrying."""


@app.task(
    name="learning.exponential_retry",
    bind=True,
    autoretry_for=(FlakyServiceError,),
    retry_backoff=True,  # 1 s, 2 s, 4 s, ... (Celery's retry_backoff, capped by retry_backoff_max)
    retry_backoff_max=600,
    retry_jitter=False,
    max_retries=5,
)
def exponential_retry(self: Any, fail_times: int) -> int:
    if self.request.retries < fail_times:
        raise FlakyServiceError(f"attempt {self.request.retries + 1} failed")
    return self.request.retries + 1


@app.task(name="learning.fixed_retry", bind=True, max_retries=3, default_retry_delay=10)
def fixed_retry(self: Any, fail_times: int) -> int:
    """Retries every 10 s (the explicit ``self.retry`` form)."""
    if self.request.retries < fail_times:
        raise self.retry(exc=FlakyServiceError(f"attempt {self.request.retries + 1} failed"))
    return self.request.retries + 1


# -- real-world tasks -------------------------------------------------------------------------


@app.task(
    name="learning.send_email",
    bind=True,
    autoretry_for=(smtplib.SMTPException, ConnectionError),
    retry_backoff=2,
    retry_jitter=False,
    max_retries=4,
)
def send_email(
    self: Any, to: str, subject: str, body: str, host: str = "127.0.0.1", port: int = 1025
) -> dict[str, Any]:
    """Send one message over SMTP; a transient refusal (4xx) or a dropped connection is retried."""
    message = EmailMessage()
    message["From"] = "learning@example.com"
    message["To"] = to
    message["Subject"] = subject
    message["X-Attempt"] = str(self.request.retries + 1)
    message.set_content(body)
    with smtplib.SMTP(host, port, timeout=10) as smtp:
        smtp.send_message(message)
    return {"to": to, "subject": subject, "attempts": self.request.retries + 1}


@app.task(name="learning.process_image", bind=True)
def process_image(self: Any, width: int, height: int, factor: int, out: str) -> dict[str, Any]:
    """Make an RGB image, turn it grey, shrink it by ``factor``, write a PGM file; progress per stage."""
    stages = ("generated", "grayscale", "thumbnail", "written")
    image = gradient(width, height)
    self.update_state(state="PROGRESS", meta={"stage": stages[0], "percent": 25})
    grey = grayscale(image, width, height)
    self.update_state(state="PROGRESS", meta={"stage": stages[1], "percent": 50})
    small, w, h = thumbnail(grey, width, height, factor)
    self.update_state(state="PROGRESS", meta={"stage": stages[2], "percent": 75})
    write_pgm(Path(out), small, w, h)
    self.update_state(state="PROGRESS", meta={"stage": stages[3], "percent": 100})
    return {"width": w, "height": h, "path": out, "bytes": os.path.getsize(out)}


@app.task(name="learning.export_csv")
def export_csv(rows: list[dict[str, Any]], path: str) -> int:
    fields = list(rows[0]) if rows else []
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)


@app.task(name="learning.import_csv")
def import_csv(path: str) -> dict[str, Any]:
    """Read the rows back; a row whose amount is not a number is reported, not imported."""
    good, bad = [], []
    with open(path, newline="") as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            try:
                good.append({**row, "amount": float(row["amount"])})
            except (KeyError, ValueError):
                bad.append(line)
    return {"rows": good, "rejected_lines": bad}


@app.task(name="learning.generate_report")
def generate_report(path: str, out: str) -> dict[str, Any]:
    with open(path, newline="") as handle:
        amounts = [float(row["amount"]) for row in csv.DictReader(handle)]
    report = {"rows": len(amounts), "total": sum(amounts), "mean": sum(amounts) / len(amounts) if amounts else 0.0}
    Path(out).write_text(json.dumps(report, indent=2))
    return report


@app.task(name="learning.cleanup_temp_files")
def cleanup_temp_files(folder: str, max_age_s: float = 60) -> list[str]:
    """Delete the files in ``folder`` not modified for ``max_age_s`` seconds; returns their names."""
    now = time.time()
    removed = []
    root = Path(folder)
    for path in sorted(root.iterdir()) if root.is_dir() else []:
        if path.is_file() and now - path.stat().st_mtime > max_age_s:
            path.unlink()
            removed.append(path.name)
    return removed


@app.task(name="learning.daily_report")
def daily_report(folder: str) -> str:
    return f"daily report: {sum(1 for _ in Path(folder).iterdir()) if Path(folder).is_dir() else 0} file(s) in {folder}"
