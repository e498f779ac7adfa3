/* The user program's flat binary (build/user.bin), page-aligned. */
	.section .user_image, "a"
	.balign 4096
	.incbin "user.bin"
	.balign 4096
