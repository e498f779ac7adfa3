"""The x87 FPU of the soft CPU (placeholder docstring, completed below)."""
from ringvisor.cpu.x87.execute import DONE, FERR, MF, NM, UD, execute, mnemonic  # noqa: F401
from ringvisor.cpu.x87.state import Fpu  # noqa: F401
