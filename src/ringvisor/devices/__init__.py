"""Emulated devices: state machines that see (offset, size, value) and raise
interrupts through an injected `irq(level)` callable; nothing here knows KVM
or the CPU. `terminal` is the host side of the console."""
