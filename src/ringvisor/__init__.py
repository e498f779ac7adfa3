"""ringvisor: a hypervisor in Python that runs x86 guests under every classic
virtualization technique and measures what each one costs."""

__version__ = "0.1.0"
