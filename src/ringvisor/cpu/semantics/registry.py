"""Registry binding table rows to semantic functions `fn(cpu, ins)`.

Semantic modules register with `@sem("ADD", ...)` (or `register(name, fn)`);
`bind()` attaches a handler to every table row by mnemonic, falling back to
the row's family ("Jcc" for JZ). A row without semantics is a bug caught by
the tests (tests/cpu/test_table.py).
"""
from __future__ import annotations

HANDLERS: dict[str, object] = {}


def sem(*names):
    def deco(fn):
        for n in names:
            HANDLERS[n] = fn
        return fn
    return deco


def register(name: str, fn) -> None:
    HANDLERS[name] = fn


def bind() -> list:
    from ringvisor.cpu.isa.opcodes import ROWS
    missing = []
    for row in ROWS:
        row.handler = (HANDLERS.get(row.opcode) or HANDLERS.get(row.mnemonic)
                       or HANDLERS.get(row.family))
        if row.handler is None:
            missing.append(row)
    return missing
