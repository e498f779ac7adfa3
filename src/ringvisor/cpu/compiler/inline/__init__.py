"""Inline instruction templates, as the code generator sees them.

templates.py holds the registry and the operand helpers; alu.py, move.py and
branch.py register the templates of their SDM topics when imported (here).
codegen.py is handed this module and reads CONTROL, CHECKED, effects(),
emit() and control() from it.
"""
from ringvisor.cpu.compiler.inline import alu, move, string  # noqa: F401  (they register their templates)
from ringvisor.cpu.compiler.inline.branch import emit_control as control
from ringvisor.cpu.compiler.inline.templates import CHECKED, CONTROL, TEMPLATES, effects, emit, inlinable

__all__ = ["CHECKED", "CONTROL", "TEMPLATES", "control", "effects", "emit", "inlinable"]
