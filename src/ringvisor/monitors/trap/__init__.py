"""Trap-and-emulate: the guest kernel deprivileged to ring 1 (0/1/3) or ring 3
(0/3/3); monitor.py is the run loop and trap dispatch.
"""
