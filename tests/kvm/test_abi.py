"""Our ioctl table and struct layouts against the machine's own
<linux/kvm.h>, compiled with gcc: a reference nobody here wrote."""
from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import pytest

from ringvisor.kvm import ioctls as I
from ringvisor.kvm import structs as S

HEADER = Path("/usr/include/linux/kvm.h")
pytestmark = pytest.mark.skipif(not HEADER.exists() or not shutil.which("gcc"),
                                reason="needs gcc and linux/kvm.h (Debian linux-libc-dev)")

SIZES = {"kvm_regs": S.kvm_regs, "kvm_sregs": S.kvm_sregs, "kvm_segment": S.kvm_segment,
         "kvm_userspace_memory_region": S.kvm_userspace_memory_region,
         "kvm_cpuid_entry2": S.kvm_cpuid_entry2, "kvm_pit_config": S.kvm_pit_config,
         "kvm_irq_level": S.kvm_irq_level, "kvm_ioeventfd": S.kvm_ioeventfd,
         "kvm_coalesced_mmio_zone": S.kvm_coalesced_mmio_zone, "kvm_coalesced_mmio": S.kvm_coalesced_mmio,
         "kvm_enable_cap": S.kvm_enable_cap, "kvm_stats_header": S.kvm_stats_header,
         "kvm_stats_desc": S.kvm_stats_desc, "kvm_vcpu_events": S.kvm_vcpu_events,
         "kvm_translation": S.kvm_translation, "kvm_mp_state": S.kvm_mp_state,
         "kvm_msr_entry": S.kvm_msr_entry, "kvm_irq_routing_entry": S.kvm_irq_routing_entry}
OFFSETS = {"io.port": 34, "io.count": 36, "io.data_offset": 40, "mmio.phys_addr": 32, "mmio.len": 48,
           "mmio.is_write": 52, "internal.suberror": 32, "internal.ndata": 36, "internal.data": 40,
           "emulation_failure.flags": 40, "emulation_failure.insn_size": 48,
           "emulation_failure.insn_bytes": 49, "exit_reason": 8, "immediate_exit": 1}


@pytest.fixture(scope="module")
def header_values(tmp_path_factory) -> dict[str, int]:
    lines = [f'P("{n}", {n});' for n in I.IOCTLS]
    lines += [f'P("{n}", {n});' for n in I.CAPS]
    lines += [f'P("sizeof {n}", sizeof(struct {n}));' for n in SIZES]
    lines += [f'P("offsetof {f}", offsetof(struct kvm_run, {f}));' for f in OFFSETS]
    lines += ['P("KVM_COALESCED_MMIO_PAGE_OFFSET", KVM_COALESCED_MMIO_PAGE_OFFSET);']
    src = ("#include <stdio.h>\n#include <stddef.h>\n#include <linux/kvm.h>\n"
           "#define P(n, v) printf(\"%s=%lu\\n\", n, (unsigned long)(v))\nint main(void) {\n"
           + "\n".join(lines) + "\nreturn 0; }\n")
    d = tmp_path_factory.mktemp("abi")
    (d / "abi.c").write_text(src)
    subprocess.run(["gcc", "-o", str(d / "abi"), str(d / "abi.c")], check=True)
    out = subprocess.run([str(d / "abi")], check=True, capture_output=True, text=True).stdout
    return {k: int(v) for k, v in (line.rsplit("=", 1) for line in out.splitlines())}


def test_ioctl_numbers_match_the_header(header_values):
    assert {n: I.IOCTLS[n] for n in I.IOCTLS} == {n: header_values[n] for n in I.IOCTLS}


def test_capability_numbers_match_the_header(header_values):
    assert {n: I.CAPS[n] for n in I.CAPS} == {n: header_values[n] for n in I.CAPS}


def test_structure_sizes_match_the_header(header_values):
    assert {n: ctypes.sizeof(c) for n, c in SIZES.items()} == {n: header_values[f"sizeof {n}"] for n in SIZES}


def test_kvm_run_offsets_match_the_header(header_values):
    assert OFFSETS == {f: header_values[f"offsetof {f}"] for f in OFFSETS}
    assert S.EXIT_UNION_OFFSET + S.kvm_run_io.port.offset == OFFSETS["io.port"]
    assert S.EXIT_UNION_OFFSET + S.kvm_run_emulation_failure.insn_bytes.offset == OFFSETS["emulation_failure.insn_bytes"]
