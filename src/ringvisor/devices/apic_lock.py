"""One lock per APIC bus orders the APICs' and I/O APICs' state changes."""
import functools


def locked(method):
    """Devices raise lines from host threads (the UART's reader) while the
    vCPU thread reads and acknowledges: one lock per APIC bus (the APICs'
    and I/O APICs' `lock`) orders them. `pending()` stays lock-free."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self.lock:
            return method(self, *args, **kwargs)
    return wrapper
