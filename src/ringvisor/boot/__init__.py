"""Loaders: put a guest image into guest memory and describe the CPU state it
starts in (Multiboot 1 ELF kernels, raw flat binaries)."""
