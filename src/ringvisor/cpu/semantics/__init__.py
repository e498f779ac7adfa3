"""What each instruction does, grouped by Intel SDM topic (arith, logic, shift,
string, datamove, control, transfer, segments, protection, interrupts, task,
system); registry.py binds them to the table.
"""
