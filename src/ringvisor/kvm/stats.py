"""KVM's binary statistics (KVM_GET_STATS_FD, Linux 5.14+): the counters the
host kernel keeps per VM and per vCPU, exits it handled itself included."""
from __future__ import annotations

import ctypes as C
import fcntl
import os

from ringvisor.kvm import ioctls as I
from ringvisor.kvm import structs as S

TYPE_MASK, TYPE_CUMULATIVE, TYPE_INSTANT, TYPE_PEAK = 0xF, 0, 1, 2


class StatsReader:
    """Reads every scalar (cumulative, instant, peak) statistic of one fd."""

    def __init__(self, fd: int):
        self.fd = fd
        header = S.kvm_stats_header.from_buffer_copy(os.pread(fd, C.sizeof(S.kvm_stats_header), 0))
        desc_size = C.sizeof(S.kvm_stats_desc) + header.name_size
        raw = os.pread(fd, desc_size * header.num_desc, header.desc_offset)
        self.fields: list[tuple[str, int]] = []   # name, file offset of its u64
        for i in range(header.num_desc):
            chunk = raw[i * desc_size:(i + 1) * desc_size]
            desc = S.kvm_stats_desc.from_buffer_copy(chunk)
            name = chunk[C.sizeof(S.kvm_stats_desc):].split(b"\0", 1)[0].decode()
            if desc.flags & TYPE_MASK in (TYPE_CUMULATIVE, TYPE_INSTANT, TYPE_PEAK) and desc.size == 1:
                self.fields.append((name, header.data_offset + desc.offset))
        self._start = min((f[1] for f in self.fields), default=header.data_offset)
        self._end = max((f[1] + 8 for f in self.fields), default=header.data_offset)

    @classmethod
    def open(cls, kvm, fd: int) -> "StatsReader | None":
        """Statistics of a VM or vCPU fd; None where the kernel has none (< 5.14)."""
        if not kvm.check_extension(I.KVM_CAP_BINARY_STATS_FD):
            return None
        try:
            return cls(fcntl.ioctl(fd, I.KVM_GET_STATS_FD, 0))
        except OSError:
            return None

    def read(self) -> dict[str, int]:
        data = os.pread(self.fd, self._end - self._start, self._start)
        return {name: int.from_bytes(data[off - self._start:off - self._start + 8], "little")
                for name, off in self.fields}

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items()}
