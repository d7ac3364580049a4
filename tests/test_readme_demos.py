"""Every command of the README's demo-app section, run as pasted: each ```bash block in bash with
``-e -o pipefail``, ``python`` and ``celery`` being this environment's; the Redis they use diffed."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from tests.test_real_brokers import need

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## The guides' systems, as demo apps"
REDIS = "redis://127.0.0.1:6379/0"

#: What each block must print (besides exiting 0), by a command it holds.
EXPECTED = {
    "send hello\n": [
        "Hello, world!",
        "'intersection_size': 3",
        "params.parties:",
        "no worker consumes queue 'nobody'",
        "ALL PASSED",
    ],
    "--external --wait 30": ["Hello, world! (from celery@", "'intersection_size': 3"],
    "run demo.learning": ["ALL PASSED", "result: 5"],
    "serve ai_runner": ['{"status":"ok"}', '"status":"PENDING"'],
    "run demo.async_truth": ["ALL PASSED  2 scenario(s)"],
}


def blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    start = text.index(SECTION)
    end = text.index("\n## ", start + len(SECTION))
    return re.findall(r"```bash\n(.*?)```", text[start:end], re.S)


def test_the_section_has_a_block_for_each_app() -> None:
    found = blocks()
    assert len(found) == len(EXPECTED), found
    for marker in EXPECTED:
        assert sum(marker in block for block in found) == 1, marker


@pytest.mark.real_broker
@pytest.mark.timeout(600)
@pytest.mark.parametrize("block", blocks(), ids=[b.splitlines()[0][:40] for b in blocks()])
def test_each_block_works_when_pasted(block: str, tmp_path: Path) -> None:
    uses_redis = "celery -A" in block
    if uses_redis:
        need(REDIS)
        db = redis.Redis.from_url(REDIS)
        before = set(db.keys("*"))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "COLUMNS": "200"}
    shell = subprocess.Popen(
        ["bash", "-e", "-o", "pipefail", "-c", block],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        stdout, stderr = shell.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(shell.pid, signal.SIGKILL)  # the block and what it started in the background
        stdout, stderr = shell.communicate(timeout=30)
    finally:
        if uses_redis:
            created = set(db.keys("*")) - before
            results = sorted(k for k in created if k.startswith(b"celery-task-meta-"))
            if created:
                db.delete(*created)  # the worker's own queue bindings
            db.close()
    out = stdout + stderr
    assert shell.returncode == 0, out
    assert "Traceback" not in out, out
    marker = next(m for m in EXPECTED if m in block)
    for seen in EXPECTED[marker]:
        assert seen in out, f"{seen!r} not in:\n{out}"
    if uses_redis:
        assert results == [], "a result outlived the commands"
