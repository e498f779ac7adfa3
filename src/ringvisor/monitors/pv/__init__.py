"""Paravirtualization: a guest kernel built for the monitor calls it through
hypercalls (int 0x82) and a shared info page (docs/pv-abi.md).
"""
