"""The guide's PSI-style parameters for ``execute_task``, validated with errors that name the field.

The shape (SecretFlow's PSI job, as the guide sends it)::

    {"parties": ["alice", "bob"],
     "spu": {"cluster": {"nodes": [{"party": "alice", "address": "127.0.0.1:9100"}, ...]},
             "runtime": {"protocol": "SEMI2K", "field": "FM128"}},
     "input_path": {"alice": ".../alice.csv", "bob": ".../bob.csv"},
     "output_path": {"alice": ".../alice_out.csv", "bob": ".../bob_out.csv"},
     "key": "uid", "receiver": "alice", "protocol": "ECDH_PSI_2PC"}
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

__all__ = ["FIELDS", "PSI_PROTOCOLS", "SPU_FIELDS", "SPU_PROTOCOLS", "InvalidParams", "example_params", "validate"]

PSI_PROTOCOLS = ("ECDH_PSI_2PC", "KKRT_PSI_2PC", "BC22_PSI_2PC")
SPU_PROTOCOLS = ("REF2K", "SEMI2K", "ABY3", "CHEETAH")
SPU_FIELDS = ("FM32", "FM64", "FM128")
FIELDS = ("parties", "spu", "input_path", "output_path", "key", "receiver", "protocol")
_ADDRESS = re.compile(r"^[\w.\-]+:\d{1,5}$")


class InvalidParams(ValueError):
    """A parameter is missing or wrong: ``params.<dotted field>: <problem>``.

    One string argument, so that Celery rebuilds it on the caller's side from the stored result.
    """

    def __init__(self, field: str, problem: str | None = None) -> None:
        super().__init__(field if problem is None else f"params.{field}: {problem}")

    @property
    def field(self) -> str:
        """The dotted path of the bad field (``spu.runtime.protocol``)."""
        return str(self.args[0]).split(":", 1)[0].removeprefix("params.").removeprefix("params")


def _need(params: dict[str, Any], field: str, kind: type, where: str = "") -> Any:
    path = f"{where}{field}"
    if field not in params:
        raise InvalidParams(path, f"missing ({kind.__name__} required)")
    value = params[field]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise InvalidParams(path, f"must be a {kind.__name__}, got {type(value).__name__} {value!r}")
    return value


def _per_party(params: dict[str, Any], field: str, parties: list[str]) -> dict[str, str]:
    paths = _need(params, field, dict)
    for party in parties:
        if party not in paths:
            raise InvalidParams(f"{field}.{party}", f"missing: every party needs one (parties: {parties})")
        if not isinstance(paths[party], str) or not paths[party]:
            raise InvalidParams(f"{field}.{party}", f"must be a non-empty path, got {paths[party]!r}")
    extra = sorted(set(paths) - set(parties))
    if extra:
        raise InvalidParams(f"{field}.{extra[0]}", f"not a party (parties: {parties})")
    return dict(paths)


def validate(params: Any) -> dict[str, Any]:
    """``params`` checked field by field; the first problem raises :class:`InvalidParams`."""
    if not isinstance(params, dict):
        raise InvalidParams("", f"must be a JSON object, got {type(params).__name__}")
    unknown = sorted(set(params) - set(FIELDS))
    if unknown:
        raise InvalidParams(unknown[0], f"unknown field; the fields are {', '.join(FIELDS)}")
    parties = _need(params, "parties", list)
    if len(parties) != 2 or not all(isinstance(p, str) and p for p in parties) or parties[0] == parties[1]:
        raise InvalidParams("parties", f"a 2-party PSI needs two distinct party names, got {parties!r}")
    spu = _need(params, "spu", dict)
    nodes = _need(_need(spu, "cluster", dict, "spu."), "nodes", list, "spu.cluster.")
    named = []
    for i, node in enumerate(nodes):
        where = f"spu.cluster.nodes[{i}]."
        if not isinstance(node, dict):
            raise InvalidParams(where[:-1], f"must be an object with party and address, got {node!r}")
        party = _need(node, "party", str, where)
        if party not in parties:
            raise InvalidParams(f"{where}party", f"{party!r} is not one of the parties {parties}")
        if not _ADDRESS.match(_need(node, "address", str, where)):
            raise InvalidParams(f"{where}address", f"{node['address']!r} is not host:port")
        named.append(party)
    if sorted(named) != sorted(parties):
        raise InvalidParams("spu.cluster.nodes", f"needs one node per party {parties}, got {named}")
    runtime = _need(spu, "runtime", dict, "spu.")
    if _need(runtime, "protocol", str, "spu.runtime.") not in SPU_PROTOCOLS:
        raise InvalidParams(
            "spu.runtime.protocol", f"{runtime['protocol']!r}: choose one of {', '.join(SPU_PROTOCOLS)}"
        )
    if runtime.get("field", "FM128") not in SPU_FIELDS:
        raise InvalidParams("spu.runtime.field", f"{runtime['field']!r}: choose one of {', '.join(SPU_FIELDS)}")
    inputs = _per_party(params, "input_path", parties)
    outputs = _per_party(params, "output_path", parties)
    _need(params, "key", str)
    receiver = _need(params, "receiver", str)
    if receiver not in parties:
        raise InvalidParams("receiver", f"{receiver!r} is not one of the parties {parties}")
    if _need(params, "protocol", str) not in PSI_PROTOCOLS:
        raise InvalidParams("protocol", f"{params['protocol']!r}: choose one of {', '.join(PSI_PROTOCOLS)}")
    return {**params, "input_path": inputs, "output_path": outputs}


def example_params(folder: Path) -> dict[str, Any]:
    """The guide's example job, with its two parties' input files written into ``folder``."""
    rows = {"alice": ["u1", "u2", "u3", "u5", "u8"], "bob": ["u2", "u3", "u4", "u8", "u9"]}
    for party, uids in rows.items():
        (folder / f"{party}.csv").write_text("uid,score\n" + "".join(f"{u},{i}\n" for i, u in enumerate(uids)))
    return {
        "parties": ["alice", "bob"],
        "spu": {
            "cluster": {
                "nodes": [
                    {"party": "alice", "address": "127.0.0.1:9100"},
                    {"party": "bob", "address": "127.0.0.1:9101"},
                ]
            },
            "runtime": {"protocol": "SEMI2K", "field": "FM128"},
        },
        "input_path": {p: str(folder / f"{p}.csv") for p in rows},
        "output_path": {p: str(folder / f"{p}_psi.csv") for p in rows},
        "key": "uid",
        "receiver": "alice",
        "protocol": "ECDH_PSI_2PC",
    }
