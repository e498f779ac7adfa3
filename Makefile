# ringvisor: `make demo` and `make test` are the two set-up commands on a fresh
# machine; both run `make install` first (idempotent).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install guests demo test test-all bench bench-exits bench-mips bench-soft bench-linux bench-containers bench-bios clean

install: $(STAMP) guests

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "ringvisor needs Python 3.11 or newer ($(PYTHON) is older)"; exit 1; }
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || \
		{ echo "python venv is missing; installing Debian's python3-venv"; \
		  apt-get update -qq && apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); }
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,chart]'
	$(BIN)/python -m compileall -q src/ringvisor/containers
	@touch $@

# The guests are built from source with the machine's gcc and binutils.
guests:
	@command -v gcc >/dev/null || { echo "gcc is needed to build the guests (apt-get install gcc)"; exit 1; }
	$(MAKE) -s -C guests/tests
	$(MAKE) -s -C guests/container
	@if [ -f guests/os/Makefile ]; then $(MAKE) -s -C guests/os; fi

demo: install
	$(BIN)/ringvisor demo

test: install
	$(BIN)/python -m pytest -q

# Debian 12's own i386 kernel (linux-image-686) and a busybox initramfs, in
# guests/linux/build/ (downloads through apt; not part of install; idempotent).
.PHONY: linux
linux:
	$(MAKE) -C guests/linux PYTHON=$(PYTHON)

# Debian's kernel booting on the soft engine, and `compare --guest linux` (native, trap-ring1,
# hw-ept: RINGVISOR_LINUX_COMPARE): minutes each, so not part of `make test`.
.PHONY: test-linux
test-linux: install linux
	RINGVISOR_LINUX_BOOT=1 $(BIN)/python -m pytest -q -s tests/boot/test_linux_boot.py tests/boot/test_linux.py \
		tests/boot/test_linux_compare.py < /dev/null

# Differential testing of the soft CPU against /dev/kvm: a long hypothesis
# campaign (RINGVISOR_FUZZ_EXAMPLES cases per CPL), not part of `make test`.
.PHONY: fuzz-cpu
fuzz-cpu: install
	$(BIN)/python -m ringvisor.difftest --examples $${RINGVISOR_FUZZ_EXAMPLES:-20000} < /dev/null

# Differential testing of the soft x87 FPU against the host's own FPU (a small
# compiled harness): RINGVISOR_FUZZ_EXAMPLES cases of up to 4 instructions.
.PHONY: fuzz-x87
fuzz-x87: install
	$(BIN)/python -m ringvisor.cpu.x87.silicon --examples $${RINGVISOR_FUZZ_EXAMPLES:-50000} --insns 4 $${RINGVISOR_FUZZ_SEED:+--seed $$RINGVISOR_FUZZ_SEED} < /dev/null

# Benchmarks against real peers (QEMU from Debian, Unicorn from PyPI): not part of `make test`.
bench-deps: install
	@command -v qemu-system-i386 >/dev/null || apt-get install -y -qq qemu-system-x86
	$(BIN)/pip install -q -e '.[bench]'

bench-exits: bench-deps
	$(BIN)/python bench/exit_cost.py

bench-mips: bench-deps
	$(BIN)/python bench/mips.py

bench: bench-exits bench-mips

# Debian's SeaBIOS POSTing on the soft engine (run --bios) beside QEMU's TCG.
bench-bios: install
	@test -f /usr/share/seabios/bios.bin || apt-get install -y -qq seabios
	$(BIN)/python bench/bios_post.py

# The soft engine on ringos's workloads and Debian's Linux boot (after `make linux`);
# SOFT_BASELINE=DIR compares with another checkout (before/after a change).
bench-soft: install
	$(BIN)/python bench/soft_speed.py $${SOFT_BASELINE:+--baseline $$SOFT_BASELINE} $${SOFT_WORKLOADS:+--workloads $$SOFT_WORKLOADS}

# Debian's Linux to its ready line: ringvisor natively and under bt and trap against
# QEMU TCG, medians and ratios (after `make linux`; tens of minutes). LINUX_BENCH passes
# options, e.g. LINUX_BENCH='--techniques native=3,trap:3=1,hw:ept=1,qemu=5 --jobs 2 --profile'.
bench-linux: bench-deps linux
	$(BIN)/python bench/linux_boot.py $(LINUX_BENCH)

# ringvisor-oci against runc and crun (Debian's), on a busybox-static bundle: needs root.
bench-containers: install
	@command -v runc >/dev/null && command -v crun >/dev/null && [ -x /bin/busybox ] || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq runc crun busybox-static < /dev/null; }
	@# bytecode ahead of time: with PYTHONDONTWRITEBYTECODE set, every start would compile
	$(BIN)/python -m compileall -q src/ringvisor/containers
	$(BIN)/python bench/container_start.py

clean:
	rm -rf $(VENV) guests/tests/build guests/os/build guests/linux/build guests/container/build
