/* Byte-string helpers (the direction flag is clear in all of ringos). */
#include "lib.h"

void *memset(void *d, int c, size_t n)
{
	/* One string instruction per call: cheap on every engine, including
	 * an instruction emulator, where a byte loop would cost 4 per byte. */
	void *p = d;
	size_t words = n / 4, bytes = n % 4;
	uint32_t v = (uint8_t)c * 0x01010101u;
	__asm__ volatile("rep stosl\n\tmovl %3, %%ecx\n\trep stosb"
			 : "+D"(p), "+c"(words) : "a"(v), "r"(bytes) : "memory");
	return d;
}

void *memcpy(void *d, const void *s, size_t n)
{
	void *p = d;
	size_t words = n / 4, bytes = n % 4;
	__asm__ volatile("rep movsl\n\tmovl %3, %%ecx\n\trep movsb"
			 : "+D"(p), "+S"(s), "+c"(words) : "r"(bytes) : "memory");
	return d;
}

int memcmp(const void *a, const void *b, size_t n)
{
	const unsigned char *p = a, *q = b;
	for (; n; n--, p++, q++)
		if (*p != *q)
			return *p - *q;
	return 0;
}

size_t strlen(const char *s)
{
	size_t n = 0;
	while (s[n])
		n++;
	return n;
}

int strcmp(const char *a, const char *b)
{
	while (*a && *a == *b)
		a++, b++;
	return (unsigned char)*a - (unsigned char)*b;
}

int strncmp(const char *a, const char *b, size_t n)
{
	for (; n; n--, a++, b++) {
		if (*a != *b)
			return (unsigned char)*a - (unsigned char)*b;
		if (!*a)
			return 0;
	}
	return 0;
}
