"""Block compilation: guest traces turned into Python functions for speed (trace
discovery, structure, code generation, inline templates, lazy flags, the
memory fast path, fault recovery, the cold path). An implementation detail of
the soft hardware, not the binary-translation technique.
"""
