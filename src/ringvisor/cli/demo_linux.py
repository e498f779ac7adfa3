"""`ringvisor demo --linux`: Debian 12's own i386 kernel (`make linux`
puts it and a busybox initramfs in guests/linux/build) boots on the soft
engine natively, then under one monitor. Each boot shows the kernel's key
lines; the verdict compares what the guest itself reports once it is up
(the initramfs's lines after `linux guest ready`: the kernel release, the
CPU's model name and flags) with the native boot's.

Each boot takes minutes of pure-Python CPU, so the demo says how long
before it starts (docs/linux.md has the measurements) and shows progress:
the elapsed time and the kernel's latest line."""
from __future__ import annotations

import re
import time
from dataclasses import dataclass

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from ringvisor import guests
from ringvisor.errors import GuestImageError

BUILD = guests.ROOT / "linux" / "build"
KERNEL, INITRD = BUILD / "vmlinuz", BUILD / "initrd.cpio.gz"
READY = "linux guest ready"
MONITORS = ("bt", "trap", "hw")
DEFAULT_MONITOR = "bt"
# CPU minutes to the ready line, what the demo announces before it starts
# (docs/linux.md, 2026-12-06): native 179 s, trap 281 s, bt 703 s measured;
# hw from its wall time beside native's (1.12x, docs/monitors.md). Wall time
# on a busy machine is longer.
MINUTES = {"native": 3, "bt": 12, "trap": 5, "hw": 4}
# Printk lines worth showing a newcomer: what the kernel found and was given.
KEY_LINES = ("Linux version", "Kernel command line:", "BIOS-e820:", "Reserving virtual address space",
             "Memory:", "CPU0:", "x86/fpu:", "printk: console [ttyS0] enabled", "Run /init", "reboot:")
TIMESTAMP = re.compile(r"^\[\s*\d+\.\d+\] ")
TECHNIQUE_WORDS = {"native": "natively (the soft CPU as bare hardware)",
                   "bt": "under binary translation (--technique bt)",
                   "trap": "under trap-and-emulate, the kernel in ring 1 (--technique trap)",
                   "hw": "under the hw monitor on the soft CPU's VMX with EPT (--technique hw --engine soft)"}


def fetched() -> bool:
    return KERNEL.is_file() and INITRD.is_file()


NOT_FETCHED = ("Debian's Linux kernel is not fetched: `make linux` downloads it (through apt) into "
               "guests/linux/build for `ringvisor demo --linux`")


@dataclass
class Boot:
    technique: str
    text: str
    status: int
    reason: str
    seconds: float
    instructions: int


def key_lines(text: str) -> list[str]:
    """The kernel's lines a newcomer should see, without their timestamps
    (the e820 map's first usable range only: the rest is detail)."""
    out, e820 = [], 0
    for line in text.splitlines():
        bare = TIMESTAMP.sub("", line.rstrip("\r"))
        if any(bare.startswith(k) for k in KEY_LINES):
            if bare.startswith("BIOS-e820:"):
                e820 += 1
                if e820 > 1:
                    continue
            out.append(bare)
    return out


def guest_report(text: str) -> list[str]:
    """What the initramfs prints once the kernel is up: the ready line and
    the lines after it that are not the kernel's own (no printk timestamp)."""
    lines = [line.rstrip("\r") for line in text.splitlines()]
    for i, line in enumerate(lines):
        if line.startswith(READY):
            return [l for l in lines[i:] if l and not TIMESTAMP.match(l)]
    return []


def verdict(native: Boot, other: Boot) -> tuple[bool, list[str]]:
    """(same, the lines that differ, as `-native` / `+other`)."""
    a, b = guest_report(native.text), guest_report(other.text)
    if not a:
        return False, ["the native boot did not reach the ready line"]
    if a == b:
        return True, []
    diff = [f"- {l}" for l in a if l not in b] + [f"+ {l}" for l in b if l not in a]
    if not b:
        diff.append(f"  (no ready line under {other.technique}: {other.reason})")
    return False, diff


def boot(technique: str, say: Console) -> Boot:
    """One boot to the guest's reset (the initramfs ends with `reboot -f`),
    with a progress line: elapsed time and the kernel's latest line."""
    from ringvisor.errors import RingvisorError
    from ringvisor.vm import VmConfig, build_machine
    config = VmConfig(kernel=str(KERNEL), engine="soft", technique=technique,
                      modules=(str(INITRD),), image_format="linux", timeout=3 * 3600)
    seen = bytearray()
    with Progress(SpinnerColumn(), TimeElapsedColumn(), TextColumn("{task.description}"),
                  console=say, transient=True, disable=not say.is_terminal) as progress:
        task = progress.add_task("starting", total=None)

        def console(data: bytes) -> None:
            seen.extend(data)
            tail = bytes(seen[-400:]).decode(errors="replace").replace("\r", "").rstrip("\n")
            last = tail.rsplit("\n", 1)[-1]
            progress.update(task, description=TIMESTAMP.sub("", last)[:70])

        machine = build_machine(config, console)
        start = time.perf_counter()
        try:
            result = machine.run()
            status, reason = result.status, result.reason
        except RingvisorError as e:
            status, reason = e.exit_code, str(e).splitlines()[0]
        finally:
            machine.close()
        seconds = time.perf_counter() - start
    return Boot(technique, seen.decode(errors="replace"), status, reason, seconds,
                machine.platform.engine.instructions)


def command(args) -> int:
    say = Console(stderr=True, highlight=False, soft_wrap=True)
    if not fetched():
        raise GuestImageError(NOT_FETCHED)
    monitor = args.technique or DEFAULT_MONITOR
    say.print("[bold]ringvisor demo --linux[/]: Debian 12's own i386 kernel (Linux 6.1) and a busybox "
              "initramfs, unmodified, on ringvisor's pure-Python CPU")
    say.print(f"two boots to the initramfs's ready line: about {MINUTES['native']} minutes natively and "
              f"{MINUTES[monitor]} under {monitor}, in CPU time (longer on a busy machine)\n")
    boots = []
    for technique in ("native", monitor):
        command_line = "ringvisor run --engine soft " + ("" if technique == "native" else
                                                        f"--technique {technique} ") + \
            "guests/linux/build/vmlinuz --initrd guests/linux/build/initrd.cpio.gz"
        say.print(f"[bold]>>> Linux {TECHNIQUE_WORDS[technique]}[/]\n    ({command_line})")
        b = boot(technique, say)
        boots.append(b)
        for line in key_lines(b.text) + guest_report(b.text):
            say.print(f"    {line}", markup=False)
        say.print(f"    [dim]{b.instructions:,} guest instructions in {b.seconds:.0f} s; "
                  f"ended: {b.reason}[/]\n")
    same, diff = verdict(*boots)
    if same:
        say.print(f"[bold]verdict[/]: under {monitor}, same output as native "
                  f"({len(guest_report(boots[0].text))} lines of the guest's own report)")
    else:
        say.print(f"[bold]verdict[/]: under {monitor}, the guest's report differs from native:")
        for line in diff:
            say.print(f"    {line}", markup=False)
    return 0 if all(b.status == 0 for b in boots) else 1
