#!/bin/sh
# Developer check: build ringos and run every workload under QEMU TCG,
# checking the lines each must print. With one CPU ringos uses neither
# QEMU's BIOS nor its APICs; with -smp 2 and 4 it finds the CPUs in
# SeaBIOS's MADT and runs on every one (guests/os/README.md).
#   usage: ./qemu-check.sh        (from guests/os, or anywhere)
set -u
cd "$(dirname "$0")"
make -s || exit 1

QEMU=${QEMU:-qemu-system-i386}
command -v "$QEMU" >/dev/null || { echo "qemu-check: $QEMU not found" >&2; exit 1; }
OUT=build/qemu-check
mkdir -p "$OUT"
fails=0

# run NAME CPU ELF CMDLINE EXPECTED_STATUS [CPUS]
run() {
	name=$1 cpu=$2 elf=$3 cmdline=$4 want=$5 smp=${6:-1}
	log="$OUT/$name.log"
	timeout 120 "$QEMU" -accel tcg -cpu "$cpu" -smp "$smp" -m 64 -kernel "$elf" \
		-append "$cmdline" -nographic -serial stdio -monitor none \
		-display none -no-reboot \
		-device isa-debug-exit,iobase=0xf4,iosize=1 >"$log.raw" 2>&1
	rc=$?
	tr -d '\r' <"$log.raw" | sed 's/.*\(ringos 0\.1 \)/\1/' >"$log"
	# isa-debug-exit makes QEMU exit with (status << 1) | 1.
	got=$(sed -n 's/^ringos: exit status \([0-9]*\)$/\1/p' "$log" | tail -n 1)
	if [ "${got:-none}" != "$want" ] || [ $rc -ne $((want * 2 + 1)) ]; then
		echo "FAIL $name: exit status ${got:-none}, qemu exit $rc; want $want (see $log)"
		fails=$((fails + 1))
		return 1
	fi
	return 0
}

# expect NAME REGEX...: every regex must match a line of the log
expect() {
	name=$1
	shift
	for re in "$@"; do
		if ! grep -Eq -- "$re" "$OUT/$name.log"; then
			echo "FAIL $name: no line matches /$re/ (see $OUT/$name.log)"
			fails=$((fails + 1))
			return 1
		fi
	done
	echo "ok   $name"
}

N=build/ringos.elf

run tasks pentium2 $N "workload=tasks" 0 &&
expect tasks '^ringos 0\.1 \(native build\) workload=tasks$' \
	'^\[task [0-9]+\] spin 5$' '^\[task [0-9]+\] sleep 5 ' \
	'^ringos: task [0-9]+ killed: #PF page fault .* cr2=00100000' \
	'^tasks done: 4 tasks, 15 lines, 1 killed, preemptions>0 yes$'

run nanobench pentium2 $N "workload=nanobench iters=200" 0 &&
expect nanobench \
	$(for b in in cr call/ret pgfault divzero ptemod syscall; do
		echo "^nanobench $b iters=200 cycles_per_iter=[0-9]+\$"; done)

run probe-bare qemu32,-hypervisor $N "workload=probe" 0 &&
expect probe-bare '^probe sgdt value=(0x[0-9a-f]+/0x002f) expected=\1 ok$' \
	'^probe lar_kcode .* ok$' '^virtualization visible: no$'
if grep -q VISIBLE "$OUT/probe-bare.log"; then
	echo "FAIL probe-bare: a check says VISIBLE on a bare (emulated) CPU"
	fails=$((fails + 1))
fi

run probe-hv qemu32,+hypervisor $N "workload=probe" 0 &&
expect probe-hv '^probe cpuid_hypervisor_bit value=0x0001 expected=0x0000 VISIBLE$' \
	'^probe cpuid_hypervisor_vendor value="TCGTCGTCGTCG"' \
	'^virtualization visible: yes$'

run compute pentium2 $N "workload=compute iters=5" 0 &&
expect compute '^compute checksum=[0-9a-f]{8} instructions=[0-9]+$'
run compute-ring0 pentium2 $N "workload=compute iters=5 ring=0" 0 &&
expect compute-ring0 '^compute checksum=[0-9a-f]{8} instructions=[0-9]+$'
c3=$(grep '^compute checksum' "$OUT/compute.log")
c0=$(grep '^compute checksum' "$OUT/compute-ring0.log")
if [ -z "$c3" ] || [ "$c3" != "$c0" ]; then
	echo "FAIL compute: ring 3 and ring 0 differ: '$c3' vs '$c0'"
	fails=$((fails + 1))
fi

run options pentium2 $N "workload=compute iters=1 frobnicate=1" 0 &&
expect options "^ringos: warning: ignoring unknown option 'frobnicate=1'$"

# Several CPUs: tasks on every CPU, the TLB shootdown, and its control
# (without the IPI the other CPU's TLB still maps the unmapped page).
for n in 2 4; do
	run tasks-smp$n qemu32 $N "workload=tasks iters=2" 0 $n &&
	expect tasks-smp$n "^ringos: smp: $n CPUs in the MADT; local APIC timer 100 Hz" \
		'^\[task [0-9]+\] spin 2 on cpu[0-9]+$' \
		"^\\[init\\] CPUs that ran tasks: .* \\(every CPU: yes\\)$" \
		"^\\[init\\] $((n - 1)) CPU\\(s\\) acknowledged the TLB shootdown$" \
		'^tlb shootdown: ok '
done
run tasks-smp-stale qemu32 $N "workload=tasks iters=1 shootdown=0" 1 2 &&
expect tasks-smp-stale '^tlb shootdown: STALE '
# SeaBIOS 1.16's MP table lists the BSP alone: acpi=off falls back to one CPU.
run tasks-smp-mptable qemu32 $N "workload=tasks iters=1 acpi=off" 0 2 &&
expect tasks-smp-mptable '^tasks done: 4 tasks, 3 lines, 1 killed, preemptions>0 yes$'
if grep -q 'smp' "$OUT/tasks-smp-mptable.log"; then
	echo "FAIL tasks-smp-mptable: SMP with an MP table of one CPU"; fails=$((fails + 1)); fi

# The PV kernel needs a ringvisor PV monitor; on bare QEMU it must notice
# and exit with status 5 without printing anything.
timeout 30 "$QEMU" -accel tcg -m 64 -kernel build/ringos-pv.elf -nographic \
	-serial none -monitor none -display none -no-reboot \
	-device isa-debug-exit,iobase=0xf4,iosize=1 >/dev/null 2>&1
rc=$?
if [ $rc -eq 11 ]; then echo "ok   pv-without-monitor (exit 5)"; else
	echo "FAIL pv-without-monitor: qemu exit code $rc, want 11"; fails=$((fails + 1)); fi

if [ $fails -eq 0 ]; then echo "qemu-check: all passed"; else echo "qemu-check: $fails failed"; fi
[ $fails -eq 0 ]
