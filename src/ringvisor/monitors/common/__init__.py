"""What every deprivileging monitor (trap, bt, pv) shares: the monitor region and
the real tables, the virtual CPU, shadow paging and the guest MMU, the
stepper, emulation of privileged instructions, and delivery of faults and
interrupts into the guest.
"""
