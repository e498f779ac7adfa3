/* Native-only hardware: the CPU tables the kernel owns and the three
 * devices of the ringvisor machine. The PV build has none of these. */
#ifndef RINGOS_NATIVE_DEVICES_H
#define RINGOS_NATIVE_DEVICES_H
#include "types.h"

/* gdt.c: GDT_ENTRIES descriptors in a page of their own */
#define GDT_ENTRIES 6
extern uint64_t gdt[];
void gdt_init(void);
void gdt_prepare(uint64_t *page, unsigned index);   /* an AP's GDT and TSS */
void gdt_load_ap(unsigned index);
void tss_set_esp0(uint32_t esp0);

/* idt.c */
extern uint64_t idt[256];
void idt_init(void);
void idt_load(void);

/* apic.c: local APICs, the APs (several CPUs only) */
void apic_detect(void);            /* before paging: MADT / MP table */
bool apic_smp(void);               /* several CPUs found: the APIC path */
void apic_devices_init(unsigned hz);
const char *apic_table_name(void);
uint32_t apic_timer_count(void);

/* pic.c: 8259A pair, remapped to vectors 0x20-0x2f */
void pic_init(void);
void pic_unmask(unsigned irq);
bool pic_spurious(unsigned irq);
void pic_eoi(unsigned irq);

/* pit.c: 8253/8254 channel 0 on IRQ0 */
void pit_init(unsigned hz);

/* uart.c: 16550A COM1 on IRQ4 */
#define COM1_IRQ 4
void uart_init(void);              /* polled mode */
void uart_enable_irq(void);        /* interrupt-driven from now on */
void uart_write(const char *s, size_t n);
void uart_isr(void);
void uart_sync(void);              /* drain the ring, back to polled mode */
#endif
