"""The instruction set as data: THE opcode table (opcodes.py), the decoder and
operand accessors that read it, and Intel syntax for what was decoded.
"""
