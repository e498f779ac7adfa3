/* A small vsnprintf (%c %s %d %u %x %p, '0', '#', width, ll). No floating point; 64-bit numbers are divided with
 * udiv64() because -nostdlib leaves out libgcc's __udivdi3. */
#include "lib.h"

uint64_t udiv64(uint64_t n, uint32_t d, uint32_t *rem)
{
	uint32_t hi = (uint32_t)(n >> 32), lo = (uint32_t)n;
	uint32_t qhi = hi / d, r = hi % d, qlo;

	/* r < d, so the 64/32 divide cannot overflow. */
	__asm__("divl %4" : "=a"(qlo), "=d"(r) : "a"(lo), "d"(r), "rm"(d));
	if (rem)
		*rem = r;
	return ((uint64_t)qhi << 32) | qlo;
}

struct out {
	char *buf;
	size_t size, len;
};

static void put(struct out *o, char c)
{
	if (o->len + 1 < o->size)
		o->buf[o->len] = c;
	o->len++;
}

static void put_num(struct out *o, uint64_t v, unsigned base, int width,
		    char pad, bool neg)
{
	char tmp[24];
	int n = 0;
	uint32_t digit;

	do {
		v = udiv64(v, base, &digit);
		tmp[n++] = "0123456789abcdef"[digit];
	} while (v);
	if (neg)
		tmp[n++] = '-';
	while (width-- > n)
		put(o, pad);
	while (n)
		put(o, tmp[--n]);
}

int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
	struct out o = { buf, size, 0 };

	for (; *fmt; fmt++) {
		if (*fmt != '%') {
			put(&o, *fmt);
			continue;
		}
		char pad = ' ';
		int width = 0, longs = 0;
		bool alt = false;       /* '#': 0x prefix for %x */
		fmt++;
		if (*fmt == '#')
			alt = true, fmt++;
		if (*fmt == '0')
			pad = '0', fmt++;
		while (*fmt >= '0' && *fmt <= '9')
			width = width * 10 + (*fmt++ - '0');
		while (*fmt == 'l')
			longs++, fmt++;

		uint64_t v;
		switch (*fmt) {
		case 'c':
			put(&o, (char)va_arg(ap, int));
			break;
		case 's': {
			const char *s = va_arg(ap, const char *);
			int n = (int)strlen(s ? s : "(null)");
			while (width-- > n)
				put(&o, ' ');
			for (s = s ? s : "(null)"; *s; s++)
				put(&o, *s);
			break;
		}
		case 'd': {
			int64_t sv = longs >= 2 ? va_arg(ap, int64_t) : va_arg(ap, int);
			put_num(&o, sv < 0 ? -(uint64_t)sv : (uint64_t)sv, 10, width, pad, sv < 0);
			break;
		}
		case 'u':
		case 'x':
			v = longs >= 2 ? va_arg(ap, uint64_t) : va_arg(ap, unsigned);
			if (alt && *fmt == 'x')
				put(&o, '0'), put(&o, 'x');
			put_num(&o, v, *fmt == 'u' ? 10 : 16, width, pad, false);
			break;
		case 'p':
			put(&o, '0');
			put(&o, 'x');
			put_num(&o, (uintptr_t)va_arg(ap, void *), 16, 8, '0', false);
			break;
		case '\0':
			fmt--;
			break;
		default:
			put(&o, '%');
			put(&o, *fmt);
		}
	}
	if (size)
		buf[o.len < size ? o.len : size - 1] = '\0';
	return (int)o.len;
}

int snprintf(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, size, fmt, ap);
	va_end(ap);
	return n;
}
