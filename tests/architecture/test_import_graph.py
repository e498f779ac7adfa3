"""The layers of docs/architecture.md, checked on the import graph.

Every `import` in src/ringvisor (module level or inside a function: a lazy
import is still a dependency) is read with `ast`; a module may import only
from its own layer or a lower one, plus the named rules below. The names
of the files under cpu/ and monitors/ are checked too: a package, not a
prefix, says what a file belongs to.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SRC / "ringvisor"

# Lowest first. A module belongs to the first layer with a matching prefix.
LAYERS = [
    ("vocabulary", ["ringvisor.errors", "ringvisor.exits", "ringvisor.cpu_state", "ringvisor.engine",
                    "ringvisor"]),
    ("machine parts", ["ringvisor.machine.memory", "ringvisor.machine.bus", "ringvisor.machine.report",
                       "ringvisor.machine.trace", "ringvisor.machine.soft_platform", "ringvisor.machine.pc_platform",
                       "ringvisor.machine.watchdog", "ringvisor.devices", "ringvisor.boot"]),
    ("engines", ["ringvisor.cpu", "ringvisor.kvm"]),
    ("machine", ["ringvisor.machine.machine", "ringvisor.machine"]),
    ("monitors", ["ringvisor.monitors"]),
    ("os-level", ["ringvisor.containers"]),
    ("composition root", ["ringvisor.vm"]),
    ("front ends", ["ringvisor.cli", "ringvisor.compare", "ringvisor.difftest", "ringvisor.testvectors",
                    "ringvisor.gdb", "ringvisor.guests", "ringvisor.__main__"]),
]

# (importer prefix, imported prefix, why it is forbidden even where layers allow it)
FORBIDDEN = [
    ("ringvisor.monitors", "ringvisor.machine.machine",
     "a monitor is handed the machine it serves; it never imports the machine's module"),
    ("ringvisor.monitors.common", "ringvisor.monitors.trap", "shared monitor code knows no technique"),
    ("ringvisor.monitors.common", "ringvisor.monitors.bt", "shared monitor code knows no technique"),
    ("ringvisor.monitors.common", "ringvisor.monitors.pv", "shared monitor code knows no technique"),
    ("ringvisor.monitors.trap", "ringvisor.monitors.bt", "bt builds on trap, not the other way"),
    ("ringvisor.monitors.trap", "ringvisor.monitors.pv", "techniques are independent"),
    ("ringvisor.monitors.pv", "ringvisor.monitors.trap", "techniques are independent"),
    ("ringvisor.monitors.pv", "ringvisor.monitors.bt", "techniques are independent"),
    ("ringvisor.monitors.hw", "ringvisor.monitors.trap", "techniques are independent"),
    ("ringvisor.monitors.hw", "ringvisor.monitors.bt", "techniques are independent"),
    ("ringvisor.monitors.hw", "ringvisor.monitors.pv", "techniques are independent"),
    ("ringvisor.monitors.trap", "ringvisor.monitors.hw", "techniques are independent"),
    ("ringvisor.monitors.pv", "ringvisor.monitors.hw", "techniques are independent"),
    ("ringvisor.monitors.common", "ringvisor.monitors.hw", "shared monitor code knows no technique"),
    ("ringvisor.containers", "ringvisor.cpu", "OS-level virtualization shares no CPU with the others"),
    ("ringvisor.containers", "ringvisor.kvm", "OS-level virtualization shares no CPU with the others"),
    ("ringvisor.containers", "ringvisor.machine", "a container is a process, not a machine"),
    ("ringvisor.containers", "ringvisor.monitors", "a container is a process, not a machine"),
    ("ringvisor.cpu.vmx", "ringvisor.cpu.compiler", "VMX decides exits in the semantics' check, not in the compiler"),
    ("ringvisor.cpu.isa", "ringvisor.cpu.compiler", "the ISA tables know nothing of the compiler"),
    ("ringvisor.cpu.semantics", "ringvisor.cpu.compiler", "the interpreter's semantics know nothing of the compiler"),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every ringvisor module `path` imports, resolved to module names."""
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found = set()
    for node in _walk_runtime(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:       # `from pkg import module` names a module
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in MODULES else base)
    return {m for m in found if m == "ringvisor" or m.startswith("ringvisor.")}


def _walk_runtime(tree):
    """ast.walk without `if TYPE_CHECKING:` blocks (annotations only, never run)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and getattr(child.test, "id", None) == "TYPE_CHECKING":
                stack.extend(child.orelse)
                continue
            stack.append(child)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}
GRAPH = {m: imports_of(p) for m, p in MODULES.items()}


def within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def layer_of(module: str) -> int:
    for index, (_, prefixes) in enumerate(LAYERS):
        # the package itself ("ringvisor") matches only exactly
        if any(module == p or (p != "ringvisor" and within(module, p)) for p in prefixes):
            return index
    raise AssertionError(f"{module} is in no layer of docs/architecture.md: add it to LAYERS")


def test_every_module_has_a_layer():
    for module in MODULES:
        layer_of(module)


def test_no_module_imports_upward():
    upward = [f"{m} ({LAYERS[layer_of(m)][0]}) imports {t} ({LAYERS[layer_of(t)][0]})"
              for m, targets in sorted(GRAPH.items()) for t in sorted(targets)
              if layer_of(t) > layer_of(m)]
    assert not upward, "\n".join(upward)


@pytest.mark.parametrize("importer,imported,why", FORBIDDEN)
def test_forbidden_imports(importer, imported, why):
    bad = [f"{m} imports {t}" for m, targets in sorted(GRAPH.items()) if within(m, importer)
           for t in sorted(targets) if within(t, imported)]
    assert not bad, f"{why}:\n" + "\n".join(bad)


def test_the_machine_knows_no_technique_and_no_engine():
    """machine/ and devices/ are handed their engine; the composition root
    (vm.py) is the one place that chooses it."""
    for m, targets in GRAPH.items():
        if within(m, "ringvisor.machine") or within(m, "ringvisor.devices"):
            assert not {t for t in targets if within(t, "ringvisor.monitors") or within(t, "ringvisor.cpu")
                        or within(t, "ringvisor.kvm")}, m


def cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in GRAPH.get(v, ()):
            if w not in MODULES or w == v:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(MODULES):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    found = cycles()
    assert not found, "\n".join(" <-> ".join(c) for c in found)


def test_no_file_repeats_its_package_in_its_name():
    """monitors/bt/cache.py, not monitors/bt/bt_cache.py (nor monitors/common/bt_x.py)."""
    bad = []
    for top in ("cpu", "monitors"):
        for path in (PACKAGE / top).rglob("*.py"):
            folder = path.parent
            siblings = {p.name for p in folder.parent.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
            for name in {folder.name} | siblings:
                if path.stem.startswith(name + "_"):
                    bad.append(str(path.relative_to(PACKAGE)))
    assert not bad, bad
