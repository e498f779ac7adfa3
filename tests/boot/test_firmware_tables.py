"""ACPI (spec 6.x chapter 5) and MP spec 1.4 tables: checksums, the pointers
between them, what they say about the machine, and Debian's acpica-tools
(`iasl -d` disassembles every table without errors, `acpiexec` loads them
and runs the DSDT)."""
import struct
import subprocess

import pytest

from ringvisor.boot import aml, firmware_tables
from ringvisor.boot.pc_description import PcDescription
from ringvisor.errors import ConfigError
from ringvisor.machine.memory import GuestMemory

from acpi_walk import madt_entries, walk
from acpica_tools import tool

MiB = 1 << 20


def installed(**kw):
    memory = GuestMemory(16 * MiB)
    desc = PcDescription(**kw)
    blobs = firmware_tables.install(memory, desc)
    return memory, desc, blobs


@pytest.mark.parametrize("cpus", [1, 2, 8])
def test_acpi_tables_describe_the_machine(cpus):
    memory, desc, _ = installed(cpus=cpus)
    tables = walk(memory)
    assert set(tables) == {"FACP", "APIC", "DSDT", "FACS"}
    madt = tables["APIC"]
    assert struct.unpack_from("<II", madt, 36) == (0xFEE00000, 1)
    entries = madt_entries(madt)
    lapics = [struct.unpack("<BBBBI", e) for k, e in entries if k == 0]
    assert [(uid, apic_id, flags) for _, _, uid, apic_id, flags in lapics] == \
        [(i, i, 1) for i in range(cpus)]
    (ioapic,) = [struct.unpack("<BBBBII", e) for k, e in entries if k == 1]
    assert ioapic[2:] == (cpus, 0, 0xFEC00000, 0)
    overrides = [struct.unpack("<BBBBIH", e)[3:] for k, e in entries if k == 2]
    assert overrides == [(0, 2, 0), (9, 9, 0b1101)]
    assert [struct.unpack("<BBBHB", e)[2:] for k, e in entries if k == 4] == [(0xFF, 0, 1)]
    fadt = tables["FACP"]
    assert fadt[8] == 3 and len(fadt) == 244
    assert struct.unpack_from("<H", fadt, 46)[0] == 9
    assert struct.unpack_from("<I", fadt, 76)[0] == 0x608       # PM timer
    assert fadt[91] == 4
    assert not struct.unpack_from("<I", fadt, 112)[0] & (1 << 8)  # 24-bit timer
    assert struct.unpack_from("<BBBBQ", fadt, 208) == (1, 32, 0, 3, 0x608)
    assert struct.unpack_from("<I", fadt, 112)[0] & (1 << 10)      # RESET_REG_SUP
    assert struct.unpack_from("<BBBBQB", fadt, 116) == (1, 8, 0, 1, 0xCF9, 0x06)


def test_hpet_table_only_with_an_hpet():
    memory, desc, _ = installed(cpus=1, hpet_base=0xFED00000)
    hpet = walk(memory)["HPET"]
    assert struct.unpack_from("<IBBBBQ", hpet, 36) == (0x8086A201, 0, 64, 0, 0, 0xFED00000)


def test_mp_floating_pointer_and_configuration_table():
    memory, desc, _ = installed(cpus=3)
    found = [a for a in range(0x9FC00, 0xA0000, 16) if memory.read(a, 4) == b"_MP_"]
    assert found == [0x9FC00]
    fp = memory.read(0x9FC00, 16)
    assert sum(fp) & 0xFF == 0 and fp[8] == 1 and fp[9] == 4 and fp[11] == 0 and fp[12] == 0
    config_addr = struct.unpack_from("<I", fp, 4)[0]
    header = memory.read(config_addr, 44)
    sig, length, rev, _, oem, product, _, _, count, lapic, ext_len, _, _ = \
        struct.unpack("<4sHBB8s12sIHHIHBB", header)
    assert (sig, rev, lapic, ext_len) == (b"PCMP", 4, 0xFEE00000, 0)
    table = memory.read(config_addr, length)
    assert sum(table) & 0xFF == 0
    sizes = {0: 20, 1: 8, 2: 8, 3: 8, 4: 8}
    entries, i = [], 44
    while i < length:
        entries.append(table[i:i + sizes[table[i]]])
        i += sizes[table[i]]
    assert len(entries) == count
    kinds = [e[0] for e in entries]
    assert kinds == sorted(kinds)                                # the order the spec requires
    cpus = [struct.unpack("<BBBBII8s", e) for e in entries if e[0] == 0]
    assert [(c[1], c[3]) for c in cpus] == [(0, 3), (1, 1), (2, 1)]   # BSP first, all enabled
    assert all(c[5] & (1 << 9) for c in cpus)                    # APIC feature flag
    assert [e for e in entries if e[0] == 1] == [b"\x01\x00ISA   "]
    assert [struct.unpack("<BBBBI", e)[1:] for e in entries if e[0] == 2] == [(3, 0x20, 1, 0xFEC00000)]
    io = {e[5]: (e[7], struct.unpack_from("<H", e, 2)[0]) for e in entries if e[0] == 3}
    assert sorted(io) == [i for i in range(16) if i != 2]
    assert io[0] == (2, 0) and io[4] == (4, 0) and io[9] == (9, 0b1101)
    local = [struct.unpack("<BBHBBBB", e) for e in entries if e[0] == 4]
    assert [(l[1], l[5], l[6]) for l in local] == [(3, 0xFF, 0), (1, 0xFF, 1)]


def test_bad_cpu_counts_are_refused():
    for cpus in (0, 255):
        with pytest.raises(ConfigError, match="CPUs"):
            PcDescription(cpus=cpus)


def test_many_cpus_still_fit_and_move_the_ioapic_id():
    memory, desc, blobs = installed(cpus=64)
    assert desc.ioapic_id == 0
    assert len([e for k, e in madt_entries(walk(memory)["APIC"]) if k == 0]) == 64
    assert blobs.end <= 0xF0000


def test_aml_encodings():
    assert aml.pkg_length(10) == b"\x0b"
    assert aml.pkg_length(62) == b"\x3f"
    assert aml.pkg_length(63) == bytes([0x41, 0x04])              # 65 total: two bytes
    assert aml.pkg_length(3000) == bytes([0x40 | (3002 & 0xF), 3002 >> 4])
    assert aml.pkg_length(5000) == bytes([0x80 | (5003 & 0xF), (5003 >> 4) & 0xFF, 5003 >> 12])
    assert aml.name_string("\\_SB.PCI0") == b"\\\x2e_SB_PCI0"
    assert aml.eisa_id("PNP0A03") == b"\x0c\x41\xd0\x0a\x03"
    assert aml.integer(0x1234) == b"\x0b\x34\x12"
    with pytest.raises(ValueError):
        aml.name_seg("bad")


@pytest.mark.parametrize("cpus, hpet", [(1, None), (4, 0xFED00000)])
def test_iasl_disassembles_every_table(tmp_path, cpus, hpet):
    iasl = tool("iasl")
    _, _, blobs = installed(cpus=cpus, hpet_base=hpet)
    for what, (_, data) in blobs.placed.items():
        if what in ("RSDP",) or what.startswith("MP "):
            continue                     # no SDT header: iasl reads neither (checked above)
        path = tmp_path / f"{what.lower()}.dat"
        path.write_bytes(data)
        run = subprocess.run([iasl, "-d", str(path)], capture_output=True, text=True,
                             stdin=subprocess.DEVNULL, timeout=60)
        assert run.returncode == 0, run.stdout + run.stderr
        listing = (tmp_path / f"{what.lower()}.dsl").read_text()
        assert "error" not in (run.stdout + run.stderr).lower(), what
        assert "**** " not in listing, listing               # iasl's marker for bad fields
        assert f'"{what}"' in listing or what == "FACS"


def test_acpiexec_loads_the_tables_and_runs_the_dsdt(tmp_path):
    acpiexec = tool("acpiexec")
    _, _, blobs = installed(cpus=2, hpet_base=0xFED00000)
    files = []
    for what in ("DSDT", "FACP", "APIC", "HPET", "FACS"):
        path = tmp_path / f"{what.lower()}.dat"
        path.write_bytes(blobs.placed[what][1])
        files.append(str(path))
    run = subprocess.run([acpiexec, "-b", "evaluate \\_S5; evaluate \\_SB.COM1._HID; namespace", *files],
                         capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    assert "ACPI Error" not in out and "ACPI Warning" not in out and "Exception" not in out, out
    assert "Package [Len 4]" in out or "Elements 04" in out
    assert "= 000000000105D041" in out                          # EisaId("PNP0501")
    for device in ("C000", "C001", "PIC_", "TMR_", "COM1", "HPET"):
        assert device in out


def test_dsdt_is_what_iasl_compiles_from_its_own_disassembly(tmp_path):
    """The AML encoder against the reference compiler: disassemble, compile
    back without optimizations, compare the AML byte for byte."""
    iasl = tool("iasl")
    _, _, blobs = installed(cpus=3, hpet_base=0xFED00000)
    dsdt = blobs.placed["DSDT"][1]
    (tmp_path / "dsdt.dat").write_bytes(dsdt)
    for args in (["-d", "dsdt.dat"], ["-oa", "-p", "again", "dsdt.dsl"]):
        run = subprocess.run([iasl, *args], capture_output=True, text=True, cwd=tmp_path,
                             stdin=subprocess.DEVNULL, timeout=60)
        assert run.returncode == 0, run.stdout + run.stderr
    assert "0 Errors, 0 Warnings" in run.stdout
    assert (tmp_path / "again.aml").read_bytes()[36:] == dsdt[36:]
