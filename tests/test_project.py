"""The project keeps its promises about itself: README, CI, --help, types and lint agree."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from celery_sim.cli import cli

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def setup_commands() -> list[str]:
    section = README.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)\n```", section, flags=re.S)


def test_readme_has_exactly_two_setup_commands_run_and_test() -> None:
    commands = setup_commands()
    assert len(commands) == 2
    assert commands[0].endswith("python -m celery_sim complete")
    assert commands[1].endswith("python -m pytest")


def test_the_chinese_readme_has_the_same_two_setup_commands() -> None:
    chinese = (ROOT / "README.zh-CN.md").read_text(encoding="utf-8")
    section = chinese.split("## 安装", 1)[1].split("\n## ", 1)[0]
    assert re.findall(r"```bash\n(.*?)\n```", section, flags=re.S) == setup_commands()


def test_ci_runs_both_readme_commands_in_order_each_in_a_fresh_venv_with_real_brokers_required() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    plain, tests = setup_commands()
    assert plain in ci and tests in ci
    assert ci.index(plain) < ci.index(tests), "the plain install runs first, before the test extras arrive"
    before_plain, between = ci[: ci.index(plain)], ci[ci.index(plain) + len(plain) : ci.index(tests)]
    assert "rm -rf .venv" in before_plain and "rm -rf .venv" in between, "each command gets a fresh venv"
    assert "export CELERY_SIM_REQUIRE_BROKERS=1" in ci


def test_every_flag_in_the_readme_is_in_the_help() -> None:
    flags = set(re.findall(r"^\| `(--[a-z-]+)", README, flags=re.M))
    assert {"--broker", "--timeout", "--json"} <= flags
    for command in ("complete", "run"):
        help_text = CliRunner().invoke(cli, [command, "--help"]).output
        missing = [flag for flag in flags if flag not in help_text]
        assert missing == [], f"{command} --help lacks {missing}"


def test_the_package_type_checks_strictly() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_the_code_passes_the_linter_and_the_formatter() -> None:
    for args in (["check", "."], ["format", "--check", "."]):
        completed = subprocess.run(
            [sys.executable, "-m", "ruff", *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
        )
        assert completed.returncode == 0, completed.stdout + completed.stderr


def test_the_public_names_are_pinned_and_each_resolves() -> None:
    import celery_sim

    assert celery_sim.__all__ == [
        "BrokerError",
        "CelerySimError",
        "Check",
        "Context",
        "DrainTimeout",
        "Event",
        "Harness",
        "HarnessConfig",
        "HarnessError",
        "MissingModuleError",
        "RunReport",
        "Runner",
        "ScenarioResult",
        "SkipScenario",
        "Status",
        "TaskExpectation",
        "Timeline",
        "UsageError",
        "WaitTimeout",
        "WorkerError",
        "diagnose_result",
        "drain",
        "scenario",
    ]
    for name in celery_sim.__all__:
        assert getattr(celery_sim, name) is not None
    assert celery_sim.Harness.__module__ == "celery_sim.core.harness"


def test_a_public_function_is_not_shadowed_by_a_module_of_its_name() -> None:
    """`from celery_sim import scenario` once gave the module celery_sim.scenario (imported first)."""
    code = (
        "import celery_sim.scenarios.scenario, celery_sim.core.drain, celery_sim.observe.diagnose\n"
        "from celery_sim import scenario, drain, diagnose_result\n"
        "print(all(callable(f) and not isinstance(f, type(celery_sim)) for f in (scenario, drain, diagnose_result)))"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert completed.stdout.strip() == "True", completed.stderr


def test_importing_the_package_does_not_import_celery() -> None:
    code = "import sys, celery_sim; print('celery' in sys.modules)"
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert completed.stdout.strip() == "False"


def test_help_answers_without_importing_celery() -> None:
    """`--help` of every command stays cheap (issue 15 measures it: 0.12 s, it was 0.3 s)."""
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from celery_sim.cli import cli\n"
        "for args in (['--help'], ['complete', '--help'], ['call', '--help'], ['bench', '--help']):\n"
        "    assert CliRunner().invoke(cli, args).exit_code == 0, args\n"
        "print(sorted(m for m in ('celery', 'kombu', 'rich') if m in sys.modules))"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert completed.stdout.strip() == "[]", completed.stdout + completed.stderr


def test_list_answers_without_importing_celery_and_shows_the_catalog_as_imported() -> None:
    """`list` reads names and summaries from the families' source (issue 15: 0.13 s, it was 0.4 s)."""
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from celery_sim.cli import cli\n"
        "result = CliRunner().invoke(cli, ['list'], terminal_width=400)\n"
        "assert result.exit_code == 0, result.output\n"
        "print(sorted(m for m in ('celery', 'kombu') if m in sys.modules))\n"
        "print(result.output)"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    imported, _, listing = completed.stdout.partition("\n")
    assert imported == "[]", completed.stdout + completed.stderr
    from celery_sim.scenarios.catalog import load_catalog
    from celery_sim.scenarios.index import catalog_index

    catalog = [(s.name, s.summary) for s in load_catalog().all()]
    assert catalog_index() == catalog  # every name and summary, worked out as Python does
    assert all(name in listing for name, _ in catalog) and f"{len(catalog)} scenarios" in listing


def test_the_stored_catalog_index_is_the_one_read_from_the_source_now() -> None:
    """`list` uses the stored index while its sources are unchanged; a stale one costs ~40 ms."""
    import json

    from celery_sim.scenarios import index
    from celery_sim.scenarios.families import FAMILIES

    found = index.read_index()
    assert found is not None
    stored = json.loads(index.STORED.read_text(encoding="utf-8"))
    fresh = {"families": FAMILIES, "sources": found[1], "index": [list(item) for item in found[0]]}
    assert stored == fresh, "stale: run `python -m celery_sim.scenarios.index` and commit catalog_index.json"


def test_a_stored_index_is_used_only_while_every_source_it_was_read_from_is_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from celery_sim.scenarios import index
    from celery_sim.scenarios.families import FAMILIES

    found = index.read_index()
    assert found is not None
    marker = [["marker.only_in_the_stored_copy", "seen only if the stored index is used"]]
    document = {"families": FAMILIES, "sources": dict(found[1]), "index": marker}
    monkeypatch.setattr(index, "STORED", tmp_path / "catalog_index.json")
    index.STORED.write_text(json.dumps(document), encoding="utf-8")
    assert index.catalog_index() == [("marker.only_in_the_stored_copy", "seen only if the stored index is used")]

    module = sorted(document["sources"])[-1]  # a module of constants, or a family
    document["sources"][module] = "0:00000000"  # as if that file had been edited since
    index.STORED.write_text(json.dumps(document), encoding="utf-8")
    assert index.catalog_index() == found[0] and len(found[0]) > 1

    index.STORED.write_text("{not json", encoding="utf-8")
    assert index.catalog_index() == found[0]
