/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <sys/random.h>

#include "random.h"

static RandomHook random_hook = NULL;
static void *random_hook_userdata = NULL;

void random_set_hook(RandomHook hook, void *userdata) {
        random_hook = hook;
        random_hook_userdata = userdata;
}

int random_bytes(void *p, size_t n) {
        unsigned char *q = p;

        if (random_hook)
                return random_hook(p, n, random_hook_userdata);

        while (n > 0) {
                ssize_t l = getrandom(q, n, 0);
                if (l < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                q += l;
                n -= (size_t) l;
        }
        return 0;
}
