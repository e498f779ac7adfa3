"""`--cpus N` on the kvm engine: a host thread per vCPU, the APs started by
the guest's INIT-SIPI-SIPI through KVM's in-kernel local APICs, found
through the MP table (guests/tests/apic.c), every vCPU's exits handled and
every thread stopped at the end; `--stats` prints a `cpu<N>` line per vCPU.

On PVM (kvm_pvm) the host kernel emulates 32-bit guest code and lacks the
32-bit IRET: the APs start (INIT/SIPI, real mode, protected mode) and the
first interrupt handler's IRET ends the run; elsewhere the whole test
kernel passes."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from ringvisor.kvm import cpuid
from ringvisor.kvm import structs as S
from ringvisor.kvm.backend import detect

ON_PVM = detect().name == "PVM"


def ringvisor(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "ringvisor", "run", *args], capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=timeout)


def one_line_error(proc, code, words):
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    assert words in proc.stderr.splitlines()[0], proc.stderr


@pytest.mark.kvm
@pytest.mark.parametrize("cpus", [2, 3])
def test_the_apic_test_kernel_starts_the_aps_through_kvm(test_kernels, cpus):
    proc = ringvisor(str(test_kernels / "apic.elf"), "--engine", "kvm", "--cpus", str(cpus), "--timeout", "60")
    out = proc.stdout
    assert f"mptable cpus={cpus}" in out                      # no fw_cfg on kvm: the MP table
    assert "ok APIC ID = CPUID initial APIC ID" in out
    assert f"APs alive={cpus - 1} ids={(1 << cpus) - 2:#010x}" in out
    assert "ok every AP started once" in out
    if ON_PVM:
        one_line_error(proc, 4, "emulation failure (PVM emulates guest ring-0 code")
        assert "iret" in proc.stderr
    else:
        assert proc.returncode == 0, proc.stderr
        assert "ok local APIC timer: 3 periodic interrupts" in out
        assert "ok PIT through I/O APIC pin 2: 3 interrupts" in out
        assert "ok an IPI to every AP" in out and "apic done failures=0" in out
    assert "FAIL" not in out


@pytest.mark.kvm
def test_stats_give_one_line_per_vcpu_with_the_aps_waiting_for_sipi(test_kernels, tmp_path):
    doc = tmp_path / "stats.json"
    proc = ringvisor(str(test_kernels / "hello.elf"), "--engine", "kvm", "--cpus", "3", "--stats",
                     "--json", str(doc))
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("cpu")]
    assert [line.split()[0] for line in lines] == ["cpu0", "cpu1", "cpu2"]
    cpus = json.loads(doc.read_text())["cpus"]
    assert [c["mp_state"] for c in cpus] == ["runnable", "uninitialized", "uninitialized"]
    assert cpus[0]["userspace_exits"] > 0 and cpus[1]["userspace_exits"] == 0


@pytest.mark.kvm
@pytest.mark.parametrize("how, args, words", [
    ("1", (), "triple fault"),
    ("2", (), "halted with interrupts disabled (cli; hlt)"),
    ("3", ("--timeout", "1.5"), "did not finish within 1.5 s"),
])
def test_a_misbehaving_bsp_ends_every_vcpu_thread(test_kernels, how, args, words):
    proc = ringvisor(str(test_kernels / "crash.elf"), "--engine", "kvm", "--cpus", "2",
                     "--cmdline", f"how={how}", *args, timeout=60)
    one_line_error(proc, 4, words)


@pytest.mark.kvm
def test_ctrl_c_stops_every_vcpu_thread(test_kernels):
    proc = subprocess.Popen([sys.executable, "-m", "ringvisor", "run", str(test_kernels / "crash.elf"),
                             "--engine", "kvm", "--cpus", "2", "--cmdline", "how=3"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    while "spinning" not in proc.stdout.readline():
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and err.strip() == "ringvisor: interrupted"


@pytest.mark.kvm
@pytest.mark.parametrize("cpus, words", [
    ("0", "--cpus 0: a machine has at least one CPU"),
    ("255", "--cpus 255: an xAPIC machine has 1 to 254 CPUs"),
])
def test_a_cpu_count_out_of_range_is_one_line(test_kernels, cpus, words):
    proc = ringvisor(str(test_kernels / "hello.elf"), "--engine", "kvm", "--cpus", cpus)
    one_line_error(proc, 2, words)
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.kvm
def test_gdb_with_several_kvm_vcpus_is_refused_in_one_line(test_kernels):
    proc = ringvisor(str(test_kernels / "hello.elf"), "--engine", "kvm", "--cpus", "2", "--gdb-wait")
    words = "--gdb on the kvm engine debugs one vCPU"
    one_line_error(proc, 2, words)
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.kvm
def test_more_vcpus_than_this_kvm_offers_is_one_line():
    """The engine's own check (the CLI's xAPIC limit, 254, comes first
    where KVM_CAP_MAX_VCPUS is larger, as on this host's 1024)."""
    from ringvisor.errors import ConfigError
    from ringvisor.kvm import ioctls as I
    from ringvisor.kvm.engine import KvmEngine
    from ringvisor.kvm.system import Kvm
    from ringvisor.machine.memory import GuestMemory
    with Kvm() as kvm:
        limit = kvm.check_extension(I.KVM_CAP_MAX_VCPUS) or kvm.check_extension(I.KVM_CAP_NR_VCPUS) or 4
    with pytest.raises(ConfigError, match=f"--cpus {limit + 1}: this host's KVM runs 1 to {limit} vCPUs"):
        KvmEngine(GuestMemory(1 << 20), cpus=limit + 1)


def test_each_vcpu_sees_its_own_initial_apic_id_in_cpuid():
    supported = [S.kvm_cpuid_entry2(function=1, ebx=0x00010800), S.kvm_cpuid_entry2(function=0xB, index=0),
                 S.kvm_cpuid_entry2(function=0xB, index=1), S.kvm_cpuid_entry2(function=0x1F, index=0)]
    entries = cpuid.guest_cpuid(supported, apic_id=5)
    leaf1 = next(e for e in entries if e.function == 1)
    assert leaf1.ebx == 0x05010800                      # EBX[31:24] initial APIC ID, the rest kept
    assert all(e.edx == 5 for e in entries if e.function in (0xB, 0x1F))
    assert supported[0].ebx == 0x00010800               # the host's table is not changed
