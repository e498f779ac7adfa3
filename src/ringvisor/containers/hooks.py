"""POSIX-platform hooks: each runs with the container's state on stdin, its own args and
env, and an optional timeout in seconds."""
from . import fastjson as json

from .errors import OciError


def run(config, stage, state, must_succeed=True, log=None):
    """Run the hooks of one stage in order. A failing prestart/createRuntime/
    createContainer/startContainer hook is an error; poststart and poststop failures are
    only logged (runtime-spec)."""
    entries = (config.get("hooks") or {}).get(stage) or []
    if entries:
        import subprocess  # only when there are hooks: it costs a trivial run 5 ms
    for hook in entries:
        path = hook["path"]
        args = hook.get("args") or [path]
        env = dict(e.partition("=")[::2] for e in hook.get("env") or [])
        try:
            result = subprocess.run(args, executable=path, input=json.dumps(state).encode(),
                                    env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                    timeout=hook.get("timeout"), close_fds=True)
            problem = (f"exit status {result.returncode}" if result.returncode else None)
            detail = result.stderr.decode(errors="replace").strip().splitlines()
            if problem and detail:
                problem += f": {detail[-1]}"
        except subprocess.TimeoutExpired:
            problem = f"timed out after {hook['timeout']} s"
        except OSError as exc:
            problem = exc.strerror
        if problem:
            message = f"{stage} hook {path}: {problem}"
            if must_succeed:
                raise OciError(message)
            if log:
                log(message)
