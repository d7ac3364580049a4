"""The catalog's names and summaries, read from the family modules' source without importing them.

``python -m celery_sim list`` only shows names and summaries; importing the families imports
Celery and every demo task (0.4 s). Here each module's ``@scenario("name", "summary", ...)``
decorators are read with :mod:`ast`; a summary built from the module's constants (an f-string
of literals, a concatenation) is worked out too. Anything else gives None, and the caller
imports the catalog instead: never a wrong listing.

Parsing the families takes ~60 ms, a third of ``list``: the result is also stored with the
package (``catalog_index.json``) together with the length and CRC-32 of every source it was read from, and
used only while each of those files, and the families, are unchanged. ``python -m
celery_sim.scenarios.index`` writes it again (a test fails while it is stale).
"""

from __future__ import annotations

import ast
import contextlib
import functools
import importlib.util
import json
import sys
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from celery_sim.scenarios.families import FAMILIES

__all__ = ["catalog_index", "read_index"]

#: The index as last written, with the digests of the sources it was read from.
STORED = Path(__file__).with_name("catalog_index.json")

Index = list[tuple[str, str]]


class _NotConstant(Exception):
    pass


def _value(node: ast.expr, constants: Mapping[str, Any]) -> Any:
    """The value of ``node``, built from literals and the module's constant names only."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name) and node.id in constants:
        return constants[node.id]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _value(node.left, constants) + _value(node.right, constants)
    if isinstance(node, ast.JoinedStr):
        parts = []
        for item in node.values:
            if isinstance(item, ast.FormattedValue):
                spec = "" if item.format_spec is None else _value(item.format_spec, constants)
                if item.conversion != -1:
                    raise _NotConstant(ast.dump(item))
                parts.append(format(_value(item.value, constants), spec))
            else:
                parts.append(_value(item, constants))
        return "".join(parts)
    raise _NotConstant(ast.dump(node))


@functools.cache
def _package_folder(top: str) -> Path | None:
    spec = importlib.util.find_spec(top)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


@functools.cache
def _source(module: str) -> Path:
    """The file of ``module``, found from its top package's folder: ``find_spec`` of a submodule
    would import its parent packages (and ``demos.<app>/__init__.py`` imports a Celery app)."""
    top, _, rest = module.partition(".")
    folder = _package_folder(top)
    if folder is None:
        raise _NotConstant(module)
    base = folder.joinpath(*rest.split(".")) if rest else None
    for path in (base.with_suffix(".py"), base / "__init__.py") if base is not None else ():
        if path.is_file():
            return path
    raise _NotConstant(module)


def _fingerprint(data: bytes) -> str:
    """Length and CRC-32: enough to see an edit, and cheaper to import than :mod:`hashlib`'s OpenSSL."""
    return f"{len(data)}:{zlib.crc32(data):08x}"


def _digest(module: str) -> str:
    return _fingerprint(_source(module).read_bytes())


def _parse(module: str, read: dict[str, str]) -> ast.Module:
    """The tree of ``module``; its source's fingerprint goes into ``read``."""
    path = _source(module)
    data = path.read_bytes()
    read[module] = _fingerprint(data)
    return ast.parse(data, str(path))


def _constants(tree: ast.Module, package: str, read: dict[str, str], depth: int = 0) -> dict[str, Any]:
    """Module-level names assigned a literal (``HOLD_S = 0.5``), in order, and those imported
    from a module of ``package`` that assigns them so (``from demos.timing.tasks import HOLD_S``)."""
    found: dict[str, Any] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.ImportFrom) and stmt.module and stmt.module.startswith(package + ".") and depth < 2:
            with contextlib.suppress(_NotConstant, OSError, SyntaxError, ImportError):
                theirs = _constants(_parse(stmt.module, read), package, read, depth + 1)
                found.update({a.asname or a.name: theirs[a.name] for a in stmt.names if a.name in theirs})
            continue
        targets: list[ast.expr] = []
        value: ast.expr | None = None
        if isinstance(stmt, ast.Assign):
            targets, value = stmt.targets, stmt.value
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            targets, value = [stmt.target], stmt.value
        pairs: list[tuple[ast.expr, ast.expr]] = []
        for target in targets:
            if isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple) and len(target.elts) == len(value.elts):
                pairs += zip(target.elts, value.elts, strict=True)  # HOLD_S, LIMIT_S = 0.6, 0.2
            elif value is not None:
                pairs.append((target, value))
        for target, value in pairs:
            if isinstance(target, ast.Name):
                with contextlib.suppress(_NotConstant, TypeError):
                    found[target.id] = _value(value, found)
    return found


def _module_scenarios(module: str, read: dict[str, str]) -> Index:
    tree = _parse(module, read)
    constants = _constants(tree, module.split(".", 1)[0], read)
    found = []
    for stmt in tree.body:
        if not isinstance(stmt, ast.FunctionDef):
            continue
        for decorator in stmt.decorator_list:
            if (
                isinstance(decorator, ast.Call)
                and isinstance(decorator.func, ast.Name)
                and decorator.func.id == "scenario"
            ):
                if len(decorator.args) < 2:
                    raise _NotConstant(stmt.name)
                name, summary = (_value(arg, constants) for arg in decorator.args[:2])
                found.append((str(name), str(summary)))
    return found


def read_index() -> tuple[Index, dict[str, str]] | None:
    """The index read from the families' source, and the digest of each module read; None as for
    :func:`catalog_index`."""
    read: dict[str, str] = {}
    try:
        return [item for module in FAMILIES.values() for item in _module_scenarios(module, read)], read
    except (_NotConstant, OSError, SyntaxError, TypeError, ValueError, ImportError):
        return None


def _stored() -> Index | None:
    """The stored index, if the families and every source it was read from are unchanged."""
    try:
        stored = json.loads(STORED.read_text(encoding="utf-8"))
        if stored["families"] != FAMILIES:
            return None
        if any(_digest(module) != digest for module, digest in stored["sources"].items()):
            return None
        return [(str(name), str(summary)) for name, summary in stored["index"]]
    except (_NotConstant, OSError, ValueError, KeyError, TypeError, ImportError):
        return None


def catalog_index() -> Index | None:
    """``(name, summary)`` of every catalog scenario in catalog order, or None if one cannot be read."""
    stored = _stored()
    if stored is not None:
        return stored
    found = read_index()
    return None if found is None else found[0]


def write_stored(path: Path = STORED) -> Index:
    """Store the index as read from the source now (what ``python -m`` on this module does)."""
    found = read_index()
    if found is None:
        raise SystemExit("the catalog cannot be read from its source: its scenarios need importing")
    index, read = found
    document = {"families": FAMILIES, "sources": read, "index": index}
    path.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return index


if __name__ == "__main__":
    print(f"{len(write_stored())} scenarios written to {STORED}", file=sys.stderr)
