/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <unistd.h>

#include "log.h"

static int max_level = LOG_INFO;
static const char *log_ident = NULL;
static bool log_to_terminal = false;

static const char *const level_names[] = {
        "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
};

void log_set_max_level(int level) {
        max_level = level;
}

int log_get_max_level(void) {
        return max_level;
}

int log_level_from_string(const char *s) {
        if (!s)
                return -EINVAL;
        for (size_t i = 0; i < ELEMENTSOF(level_names); i++)
                if (strcasecmp(s, level_names[i]) == 0)
                        return (int) i;
        if (strcasecmp(s, "error") == 0)
                return LOG_ERR;
        if (s[0] >= '0' && s[0] <= '7' && s[1] == '\0')
                return s[0] - '0';
        return -EINVAL;
}

void log_open(const char *ident) {
        log_ident = ident;
        log_to_terminal = isatty(STDERR_FILENO) > 0;
}

int log_internal(int level, int error, const char *file, int line, const char *func, const char *format,
                 ...) {
        int saved = errno;
        char buf[2048];
        va_list ap;

        if (error != 0)
                errno = abs(error);
        va_start(ap, format);
        (void) vsnprintf(buf, sizeof(buf), format, ap);
        va_end(ap);

        /* A person reads a terminal; the journal and log files want the priority. */
        if (log_to_terminal)
                fprintf(stderr, "%s: %s\n", strempty(log_ident), buf);
        else
                fprintf(stderr, "<%d>%s\n", level & LOG_PRIMASK, buf);

        if (max_level >= LOG_DEBUG && level == LOG_DEBUG && error != 0)
                fprintf(stderr, "<%d>  (%s:%d %s)\n", LOG_DEBUG, file, line, func);

        errno = saved;
        return -abs(error);
}
