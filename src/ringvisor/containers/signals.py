"""Signal names and numbers as `kill` accepts them."""
import _signal as signal  # the C module: `signal` would import enum (5 ms of a trivial run)

from .errors import OciError

# signal numbers by name (x86-64 Linux, signal(7)), as `kill` accepts them
SIGNALS = {
    "HUP": 1, "INT": 2, "QUIT": 3, "ILL": 4, "TRAP": 5, "ABRT": 6, "IOT": 6, "BUS": 7,
    "FPE": 8, "KILL": 9, "USR1": 10, "SEGV": 11, "USR2": 12, "PIPE": 13, "ALRM": 14,
    "TERM": 15, "STKFLT": 16, "CHLD": 17, "CONT": 18, "STOP": 19, "TSTP": 20, "TTIN": 21,
    "TTOU": 22, "URG": 23, "XCPU": 24, "XFSZ": 25, "VTALRM": 26, "PROF": 27, "WINCH": 28,
    "IO": 29, "POLL": 29, "PWR": 30, "SYS": 31,
}


def parse_signal(text):
    """A number, a name with or without SIG, or RTMIN+n / RTMAX-n."""
    text = (text or "TERM").upper()
    if text.isdigit():
        number = int(text)
        if not 0 < number <= signal.SIGRTMAX:
            raise OciError(f"invalid signal {text}")
        return number
    name = text[3:] if text.startswith("SIG") else text
    for prefix, base, sign in (("RTMIN", signal.SIGRTMIN, 1), ("RTMAX", signal.SIGRTMAX, -1)):
        if name.startswith(prefix):
            offset = name[len(prefix):].lstrip("+-")
            if offset == "" or (offset.isdigit() and name[len(prefix)] in "+-"):
                number = base + sign * int(offset or 0)
                if signal.SIGRTMIN <= number <= signal.SIGRTMAX:
                    return number
    if name not in SIGNALS:
        raise OciError(f"unknown signal {text!r}")
    return SIGNALS[name]
