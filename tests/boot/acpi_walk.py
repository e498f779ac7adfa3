"""Reading ACPI tables back from guest memory the way an OS finds them."""
import struct


def find_rsdp(memory):
    """As an OS does (ACPI 5.2.5.1): 16-byte boundaries in 0xE0000-0xFFFFF."""
    for addr in range(0xE0000, 0x100000, 16):
        if memory.read(addr, 8) == b"RSD PTR " and sum(memory.read(addr, 20)) & 0xFF == 0:
            return addr
    return None


def sdt(memory, addr):
    signature, length = struct.unpack("<4sI", memory.read(addr, 8))
    data = memory.read(addr, length)
    assert sum(data) & 0xFF == 0, f"{signature} checksum"
    return signature.decode(), data


def walk(memory, rsdp_at=0xE0000):
    rsdp_addr = find_rsdp(memory)
    assert rsdp_addr == rsdp_at
    rsdp = memory.read(rsdp_addr, 36)
    assert sum(rsdp) & 0xFF == 0 and rsdp[15] == 2
    rsdt_addr, length, xsdt_addr = struct.unpack_from("<IIQ", rsdp, 16)
    assert length == 36
    name, rsdt = sdt(memory, rsdt_addr)
    assert name == "RSDT"
    name, xsdt = sdt(memory, xsdt_addr)
    assert name == "XSDT"
    pointers = list(struct.unpack_from(f"<{(len(rsdt) - 36) // 4}I", rsdt, 36))
    assert pointers == list(struct.unpack_from(f"<{(len(xsdt) - 36) // 8}Q", xsdt, 36))
    tables = dict(sdt(memory, p) for p in pointers)
    fadt = tables["FACP"]
    facs_addr, dsdt_addr = struct.unpack_from("<II", fadt, 36)
    assert struct.unpack_from("<QQ", fadt, 132) == (facs_addr, dsdt_addr)
    assert facs_addr % 64 == 0 and memory.read(facs_addr, 4) == b"FACS"
    tables["DSDT"] = sdt(memory, dsdt_addr)[1]
    tables["FACS"] = memory.read(facs_addr, 64)
    return tables


def madt_entries(madt):
    out, i = [], 44
    while i < len(madt):
        kind, length = madt[i], madt[i + 1]
        out.append((kind, madt[i:i + length]))
        i += length
    return out
