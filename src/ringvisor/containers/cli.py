"""`ringvisor-oci`: runc's command line (what podman, conmon and CRI-O call).

Parsing is by hand from one table, the way runc's flag library reads it: `-flag` and
`--flag`, `--flag value` and `--flag=value`, global flags before the command. Nothing heavy
is imported here: a trivial `run` is raced against runc and crun.
"""
import os
import sys

from .errors import OciError

VERSION = "0.1.0"
USAGE = """usage: ringvisor-oci [global flags] COMMAND [flags] ID
commands: create, start, state, kill, delete, run, exec, list, pause, resume, ps,
          features, spec
global flags: --root DIR, --log FILE, --log-format text|json, --debug, --systemd-cgroup,
              --version"""

# flag name -> (destination, takes a value, repeatable)
_CREATE = {"bundle": ("bundle", True, False), "b": ("bundle", True, False),
           "pid-file": ("pid_file", True, False), "console-socket": ("console_socket", True, False),
           "preserve-fds": ("preserve_fds", True, False), "no-pivot": ("no_pivot", False, False),
           "no-new-keyring": ("no_new_keyring", False, False)}
COMMANDS = {
    "create": _CREATE,
    "run": dict(_CREATE, detach=("detach", False, False), d=("detach", False, False),
                keep=("keep", False, False)),
    "start": {},
    "state": {},
    "kill": {"all": ("all", False, False), "a": ("all", False, False)},
    "delete": {"force": ("force", False, False), "f": ("force", False, False)},
    "exec": {"process": ("process", True, False), "p": ("process", True, False),
             "console-socket": ("console_socket", True, False),
             "pid-file": ("pid_file", True, False), "detach": ("detach", False, False),
             "d": ("detach", False, False), "tty": ("tty", False, False), "t": ("tty", False, False),
             "cwd": ("cwd", True, False), "env": ("env", True, True), "e": ("env", True, True),
             "user": ("user", True, False), "u": ("user", True, False),
             "additional-gids": ("additional_gids", True, True), "g": ("additional_gids", True, True),
             "cap": ("cap", True, True), "c": ("cap", True, True),
             "no-new-privs": ("no_new_privs", False, False),
             "preserve-fds": ("preserve_fds", True, False),
             "process-label": ("process_label", True, False),
             "apparmor": ("apparmor", True, False), "ignore-paused": ("ignore_paused", False, False)},
    "list": {"format": ("format", True, False), "f": ("format", True, False),
             "quiet": ("quiet", False, False), "q": ("quiet", False, False)},
    "ps": {"format": ("format", True, False), "f": ("format", True, False)},
    "pause": {}, "resume": {}, "features": {},
    "spec": {"bundle": ("bundle", True, False), "b": ("bundle", True, False),
             "rootless": ("rootless", False, False)},
}
GLOBAL = {"root": ("root", True, False), "log": ("log", True, False),
          "log-format": ("log_format", True, False), "debug": ("debug", False, False),
          "systemd-cgroup": ("systemd_cgroup", False, False), "criu": ("criu", True, False),
          "rootless": ("rootless", True, False), "version": ("version", False, False),
          "v": ("version", False, False), "help": ("help", False, False), "h": ("help", False, False)}


def parse_flags(args, table, stop_at_positional):
    """(options, positionals). With stop_at_positional, everything after the first
    positional is positional (runc's behaviour, which `exec ID cmd -x` relies on)."""
    options, positionals = {}, []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            positionals.extend(args[i + 1:])
            break
        if arg.startswith("-") and arg != "-" and not (positionals and stop_at_positional):
            name, has_value, value = arg.lstrip("-").partition("=")
            if name not in table:
                raise OciError(f"flag provided but not defined: {arg}")
            dest, takes_value, repeat = table[name]
            if takes_value:
                if not has_value:
                    i += 1
                    if i >= len(args):
                        raise OciError(f"flag needs an argument: {arg}")
                    value = args[i]
            else:
                if has_value and value not in ("true", "false"):
                    raise OciError(f"invalid boolean value {value!r} for {arg}")
                value = not has_value or value == "true"
            if repeat:
                options.setdefault(dest, []).append(value)
            else:
                options[dest] = value
        else:
            positionals.append(arg)
        i += 1
    return options, positionals


def split_global(argv):
    """Global flags end at the first word that is not a flag: the command."""
    for i, arg in enumerate(argv):
        if not arg.startswith("-"):
            previous = argv[i - 1].lstrip("-") if i else ""
            if previous in GLOBAL and GLOBAL[previous][1]:
                continue
            return argv[:i], arg, argv[i + 1:]
    return argv, None, []


class Log:
    """--log FILE with --log-format text|json (conmon reads errors from it)."""

    def __init__(self, path, fmt):
        self.path, self.fmt = path, fmt or "text"
        if self.fmt not in ("text", "json"):
            raise OciError(f"--log-format {self.fmt!r} is not text or json")

    def write(self, level, message):
        if not self.path:
            return
        import time
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if self.fmt == "json":
            import json
            line = json.dumps({"level": level, "msg": message, "time": stamp})
        else:
            line = f'time="{stamp}" level={level} msg="{message}"'
        try:
            with open(self.path, "a") as f:
                f.write(line + "\n")
        except OSError:
            pass


def _one_id(positionals, command, extra_ok=0):
    if not positionals:
        raise OciError(f"{command}: a container ID is required")
    if len(positionals) > 1 + extra_ok:
        raise OciError(f"{command}: unexpected arguments {' '.join(positionals[1 + extra_ok:])}")
    return positionals[0]


def dispatch(command, options, positionals, glob):
    from . import lifecycle
    root = glob.get("root") or os.environ.get("RINGVISOR_OCI_ROOT") or "/run/ringvisor-oci"
    if command in ("create", "run"):
        cid = _one_id(positionals, command)
        preserve = _int(options.get("preserve_fds", "0"), "--preserve-fds")
        if command == "create":
            lifecycle.create(root, cid, options.get("bundle"), options.get("pid_file"),
                             options.get("console_socket"), preserve, options.get("no_pivot", False))
            return 0
        from . import running
        return running.run(root, cid, options.get("bundle"), options.get("pid_file"),
                             options.get("console_socket"), preserve,
                             options.get("detach", False), options.get("keep", False),
                             options.get("no_pivot", False))
    if command == "start":
        lifecycle.start(root, _one_id(positionals, command))
    elif command == "state":
        import json
        print(json.dumps(lifecycle.state(root, _one_id(positionals, command)), indent=2))
    elif command == "kill":
        cid = _one_id(positionals, command, extra_ok=1)
        lifecycle.kill(root, cid, positionals[1] if len(positionals) > 1 else None,
                       options.get("all", False))
    elif command == "delete":
        lifecycle.delete(root, _one_id(positionals, command), options.get("force", False))
    elif command in ("pause", "resume"):
        lifecycle.pause(root, _one_id(positionals, command), command == "pause")
    elif command == "list":
        from . import listing
        listing.print_list(root, options.get("format", "table"), options.get("quiet", False))
    elif command == "ps":
        from . import listing
        listing.print_ps(root, _one_id(positionals, command, extra_ok=99),
                         options.get("format", "table"), positionals[1:])
    elif command == "features":
        from . import features
        features.print_features()
    elif command == "spec":
        from . import listing
        listing.write_default_spec(options.get("bundle") or ".")
    elif command == "exec":
        from . import exec as exec_mod
        cid = _one_id(positionals, command, extra_ok=10**6)
        return exec_mod.exec_command(root, cid, positionals[1:], options)
    return 0


def _int(text, flag):
    try:
        return int(text)
    except ValueError:
        raise OciError(f"{flag} {text!r} is not a number") from None


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    log = Log(None, None)
    try:
        global_args, command, rest = split_global(argv)
        glob, _ = parse_flags(global_args, GLOBAL, False)
        log = Log(glob.get("log"), glob.get("log_format"))
        if glob.get("version"):
            print(f"ringvisor-oci version {VERSION}\nspec: 1.1.0")
            return 0
        if glob.get("help") or command in (None, "help"):
            print(USAGE)
            return 0 if glob.get("help") or command == "help" else 2
        if command not in COMMANDS:
            raise OciError(f"unknown command {command!r} (see ringvisor-oci --help)")
        if glob.get("systemd_cgroup"):
            if not os.path.isdir("/run/systemd/system"):
                raise OciError("--systemd-cgroup: systemd is not running on this host; use "
                               "the cgroupfs manager")
            raise OciError("--systemd-cgroup: ringvisor-oci drives cgroupfs only; use the "
                           "cgroupfs manager")
        options, positionals = parse_flags(rest, COMMANDS[command], command == "exec")
        if glob.get("debug"):
            log.write("debug", f"{command} {' '.join(positionals)}".strip())
        status = dispatch(command, options, positionals, glob)
        if glob.get("debug"):
            log.write("debug", f"{command} done, exit status {status}")
        return status
    except OciError as exc:
        message = str(exc)
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        from .errors import describe
        message = describe(exc)
    print(f"ringvisor-oci: {message}", file=sys.stderr)
    log.write("error", message)
    return 1


def entry():
    sys.exit(main())
