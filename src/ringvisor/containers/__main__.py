"""`python -m ringvisor.containers` is `ringvisor-oci`."""
from .cli import entry

entry()
