"""Differential testing of the soft CPU against the kvm engine: real silicon
at CPL 3, and at CPL 0 the host kernel's instruction emulator on PVM (see
the "Differential testing against silicon" section of cpu/README.md)."""
