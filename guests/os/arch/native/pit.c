/* 8253/8254 interval timer, channel 0, as a periodic tick on IRQ0. */
#include "devices.h"
#include "x86.h"

#define PIT_HZ 1193182u

void pit_init(unsigned hz)
{
	uint32_t divisor = (PIT_HZ + hz / 2) / hz;
	outb(0x43, 0x34);               /* channel 0, lobyte/hibyte, mode 2 */
	outb(0x40, divisor & 0xff);
	outb(0x40, divisor >> 8);
}
