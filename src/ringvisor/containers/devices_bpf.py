"""cgroup v2 device rules: v2 has no devices.allow/deny files; a BPF program of type
BPF_PROG_TYPE_CGROUP_DEVICE attached to the container's cgroup decides each open and
mknod of a device node (as runc and crun do). The program is assembled here from the
rules: the last rule that matches decides, as the v1 files' sequence does, and a
device no rule matches is allowed (a new v1 cgroup inherits "allow all")."""
import ctypes
import os
import struct

from .errors import OciError

_libc = ctypes.CDLL(None, use_errno=True)
SYS_BPF = 321  # x86-64
BPF_PROG_LOAD, BPF_PROG_ATTACH = 5, 8
BPF_PROG_TYPE_CGROUP_DEVICE, BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI = 15, 6, 2
DEVICE_TYPE = {"b": 1, "c": 2}           # BPF_DEVCG_DEV_BLOCK, BPF_DEVCG_DEV_CHAR
ACCESS = {"m": 1, "r": 2, "w": 4}        # BPF_DEVCG_ACC_MKNOD, _READ, _WRITE

# struct bpf_insn opcodes used
LDX_W, AND_K, RSH_K, MOV_K, MOV_X, JNE_K, EXIT = 0x61, 0x54, 0x74, 0xb4, 0xbc, 0x55, 0x95


def _insn(code, dst=0, src=0, off=0, imm=0):
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def _rule_block(rule):
    """Instructions that return the rule's verdict when it matches and fall through (to
    the next rule) when not. Registers: r2 type, r3 access, r4 major, r5 minor."""
    tests = []  # (instructions before the jump, register, immediate): "if reg != imm: next"
    kind = rule.get("type", "a") or "a"
    if kind != "a":
        tests.append(([], 2, DEVICE_TYPE[kind]))
    access = sum(ACCESS[c] for c in (rule.get("access") or "rwm"))
    if access != 7:  # requested access must lie within the rule's: (r3 & ~access) == 0
        tests.append(([_insn(MOV_X, 1, 3), _insn(AND_K, 1, imm=~access & 7)], 1, 0))
    for register, key in ((4, "major"), (5, "minor")):
        value = rule.get(key)
        if value is not None and value >= 0:
            tests.append(([], register, value))
    verdict = [_insn(MOV_K, 0, imm=1 if rule.get("allow") else 0), _insn(EXIT)]
    block = []
    remaining = sum(len(pre) + 1 for pre, _, _ in tests) + len(verdict)
    for pre, register, imm in tests:
        block += pre
        remaining -= len(pre) + 1
        block.append(_insn(JNE_K, register, off=remaining, imm=imm))
    return block + verdict


def assemble(rules):
    program = [_insn(LDX_W, 2, 1, 0), _insn(AND_K, 2, imm=0xFFFF),
               _insn(LDX_W, 3, 1, 0), _insn(RSH_K, 3, imm=16),
               _insn(LDX_W, 4, 1, 4), _insn(LDX_W, 5, 1, 8)]
    for rule in reversed(rules):
        block = _rule_block(rule)
        program += block
        if len(block) == 2:  # matches every device: what follows could never run, and
            return b"".join(program)  # the verifier refuses unreachable instructions
    program += [_insn(MOV_K, 0, imm=1), _insn(EXIT)]
    return b"".join(program)


def _bpf(command, attr):
    buffer = ctypes.create_string_buffer(attr, 128)
    result = _libc.syscall(ctypes.c_long(SYS_BPF), ctypes.c_int(command), buffer,
                           ctypes.c_uint(128))
    if result < 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return result


def attach(cgroup_dir, rules):
    """Load the program for `rules` and attach it to the v2 cgroup directory."""
    code = assemble(rules)
    insns = ctypes.create_string_buffer(code, len(code))
    license_ = ctypes.create_string_buffer(b"Apache-2.0")
    log = ctypes.create_string_buffer(65536)
    attr = struct.pack("<IIQQIIQII16sII", BPF_PROG_TYPE_CGROUP_DEVICE, len(code) // 8,
                       ctypes.addressof(insns), ctypes.addressof(license_), 1, len(log),
                       ctypes.addressof(log), 0, 0, b"ringvisor_dev", 0, BPF_CGROUP_DEVICE)
    try:
        program = _bpf(BPF_PROG_LOAD, attr)
    except OSError as exc:
        detail = log.value.decode(errors="replace").strip().splitlines()[-1:] or [""]
        raise OciError(f"linux.resources.devices: the kernel refused the device filter: "
                       f"{exc.strerror} {detail[0]}".strip()) from None
    target = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        _bpf(BPF_PROG_ATTACH, struct.pack("<IIII", target, program, BPF_CGROUP_DEVICE,
                                          BPF_F_ALLOW_MULTI))
    except OSError as exc:
        raise OciError(f"linux.resources.devices: attaching the device filter to "
                       f"{cgroup_dir}: {exc.strerror}") from None
    finally:
        os.close(target)
        os.close(program)
