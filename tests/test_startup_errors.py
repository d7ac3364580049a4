"""Start-up failures are reported as what they are, at once: a missing module, a refused connection."""

from __future__ import annotations

import pytest
from celery import Celery

from celery_sim.core.installed import check_installed, missing_module
from celery_sim.errors import HarnessError, MissingModuleError, WorkerError
from celery_sim.observe.events import EventRecorder
from celery_sim.observe.timeline import Timeline


def test_a_missing_module_behind_a_worker_error_is_found_and_named() -> None:
    try:
        try:
            raise ModuleNotFoundError("No module named 'packaging'", name="packaging")
        except ImportError as cause:
            raise WorkerError("worker main@x exited while starting") from cause
    except WorkerError as exc:
        found = missing_module(exc, "the worker")
    assert isinstance(found, MissingModuleError)
    assert found.module == "packaging"
    assert "pip install packaging" in str(found)
    assert "the worker imports it" in str(found)


def test_an_error_with_no_import_error_behind_it_is_no_missing_module() -> None:
    assert missing_module(RuntimeError("boom")) is None


def test_check_installed_names_the_module_that_does_not_import() -> None:
    with pytest.raises(MissingModuleError, match=r"'csim_no_such_module' is not installed; the test imports it"):
        check_installed({"csim_no_such_module": "the test"})


def test_the_event_receiver_reports_a_refused_connection_instead_of_waiting_out_its_timeout() -> None:
    app = Celery("csim-refused", broker="redis://127.0.0.1:1/0", set_as_current=False)
    recorder = EventRecorder(app, Timeline())
    with pytest.raises(HarnessError, match=r"could not start: .*(Connection|refused)"):
        recorder.start(timeout=30.0)
    app.close()
