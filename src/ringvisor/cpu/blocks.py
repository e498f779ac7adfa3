"""Block compilation (placeholder: one interpreted instruction per call)."""
from __future__ import annotations


class BlockCache:
    def __init__(self, cpu):
        self.cpu = cpu

    def run(self, target: int) -> None:
        self.cpu.step()

    def clear(self) -> None:
        pass
