"""bench/mips.py's guest and runners, briefly: the guest's self-count is
exact, its checksum is CRC-32 of the sieve, and every runner reports the
same figures; the differential bookkeeping without real timing."""
from __future__ import annotations

import shutil
import sys
import zlib
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import mips  # noqa: E402
import mips_runners  # noqa: E402
from mips_runners import RunFailed, Sample  # noqa: E402

SIEVE_N = 4096


def sieve() -> bytes:
    flags = bytearray([1]) * SIEVE_N
    flags[0] = flags[1] = 0
    for i in range(2, 64):
        if flags[i]:
            flags[i * i::i] = bytes(len(range(i * i, SIEVE_N, i)))
    return bytes(flags)


def soft_run(rounds: int, ring: int) -> tuple[Sample, int]:
    """A soft-engine run and the CPU's own retired-instruction count."""
    from ringvisor.vm import VmConfig, build_machine
    out = bytearray()
    machine = build_machine(VmConfig(kernel=str(mips_runners.PAYLOAD), engine="soft", technique="native",
                                     cmdline=f"rounds={rounds} ring={ring}", memory=16 << 20), out.extend)
    try:
        result = machine.run()
        retired = machine.engine.instructions
    finally:
        machine.close()
    assert result.status == 0
    return mips_runners.parse(bytes(out), rounds, ring, result.wall_seconds), retired


@pytest.mark.parametrize("ring", [0, 3])
def test_the_guest_counts_its_instructions_exactly_and_checksums_the_sieve(test_kernels, ring):
    one, retired_one = soft_run(1, ring)
    two, retired_two = soft_run(2, ring)
    # Everything outside the counted loop is the same in both runs, so the
    # soft CPU's retired-instruction counter must move by the guest's count.
    assert two.instructions - one.instructions == retired_two - retired_one
    assert sum(sieve()) == 564
    assert one.checksum == zlib.crc32(sieve())
    assert two.checksum == zlib.crc32(sieve() * 2)


@pytest.mark.kvm
@pytest.mark.parametrize("ring", [0, 3])
def test_kvm_agrees_with_soft(test_kernels, ring):
    soft, _ = soft_run(2, ring)
    kvm = mips_runners.kvm(2, ring)
    assert (kvm.checksum, kvm.instructions) == (soft.checksum, soft.instructions)
    assert kvm.host_emulated is not None


@pytest.mark.parametrize("ring", [0, 3])
def test_unicorn_agrees_with_soft(test_kernels, ring):
    pytest.importorskip("unicorn", reason="unicorn is a bench extra (pip install -e '.[bench]')")
    soft, _ = soft_run(2, ring)
    uc = mips_runners.unicorn(2, ring)
    assert (uc.checksum, uc.instructions) == (soft.checksum, soft.instructions)


@pytest.mark.skipif(not shutil.which("qemu-system-i386"), reason="needs qemu-system-i386")
def test_qemu_tcg_agrees_with_soft(test_kernels):
    soft, _ = soft_run(2, 3)
    tcg = mips_runners.tcg(2, 3)
    assert (tcg.checksum, tcg.instructions) == (soft.checksum, soft.instructions)


def test_a_wrong_report_is_a_failure_not_a_traceback():
    with pytest.raises(RunFailed, match="no report"):
        mips_runners.parse(b"garbage", 1, 0, 0.1)
    out = b"mips rounds=1 cpl=0 primes=564\nmips checksum=0x92da572c instructions=120696\n"
    with pytest.raises(RunFailed, match="CPL 0"):
        mips_runners.parse(out, 1, 3, 0.1)


def test_runs_that_disagree_are_caught():
    check = mips.Checker()
    check(1, Sample(0x1234, 100, 0.1), "a")
    check(1, Sample(0x1234, 100, 0.2), "b")
    with pytest.raises(RunFailed, match="but a reported"):
        check(1, Sample(0x1234, 101, 0.1), "c")


def test_calibration_aims_the_difference_at_the_target():
    # A synthetic runner: 0.05 s of start-up, then 1 ms a round.
    asked = []

    def run(rounds):
        asked.append(rounds)
        return Sample(0, rounds, 0.05 + rounds * 1e-3)
    n = mips.calibrate(run, run(1), seconds=1.5)
    assert n == 500                       # 3N rounds of 1 ms = 1.5 s
    assert max(asked) * 1e-3 * 0.75 >= mips.PILOT_SECONDS


def test_an_unavailable_runner_is_na_in_the_table_and_the_last_line(monkeypatch):
    def missing(rounds, ring):
        raise mips_runners.Unavailable("no such peer here")

    def steady(rounds, ring):             # 10 MIPS after 0.1 s of start-up
        return Sample(7, rounds * 1_000_000, 0.1 + rounds * 0.1)
    monkeypatch.setitem(mips.RUNNERS, "unicorn", missing)
    monkeypatch.setitem(mips.RUNNERS, "soft", steady)
    check = mips.Checker()
    rows = [mips.Row("soft", 0), mips.Row("unicorn", 0)]
    for row in rows:
        mips.measure(row, check, runs=3, seconds=1.0)
    assert rows[1].status == "n/a" and rows[1].reason == "no such peer here"
    assert rows[0].mips == pytest.approx([10.0] * 3)
    assert mips.last_line(rows) == "mips soft=10.00 unicorn=n/a tcg=n/a kvm_cpl0=n/a kvm_cpl3=n/a"
