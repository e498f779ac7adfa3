"""Binary translation: a TrapMonitor whose guest kernel code runs from a
translation cache, sensitive instructions rewritten into callouts
(docs/monitors.md).
"""
