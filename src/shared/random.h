/* SPDX-License-Identifier: MIT */
#pragma once

#include <stddef.h>

/* Fills p with n bytes from the kernel's CSPRNG (getrandom(2)); returns 0 or a negative errno. */
int random_bytes(void *p, size_t n);

/* Tests only: routes random_bytes() through hook (NULL restores getrandom). */
typedef int (*RandomHook)(void *p, size_t n, void *userdata);
void random_set_hook(RandomHook hook, void *userdata);
