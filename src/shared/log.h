/* SPDX-License-Identifier: MIT */
#pragma once

/* Logging to stderr with "<N>" syslog priority prefixes, which journald understands. Library code
 * in src/shared logs at debug level at most; daemons log where they handle an error. Never pass
 * key material to these functions. */

#include <syslog.h>

#include "macro.h"

void log_set_max_level(int level);
int log_get_max_level(void);
/* Parses "emerg".."debug" or "0".."7"; returns the level or -EINVAL. */
int log_level_from_string(const char *s);
/* Chooses the format: "IDENT: message" when stderr is a terminal, otherwise "<N>message" with the
 * syslog priority, which journald and the topology runner's log files keep. */
void log_open(const char *ident);

/* Logs at level; when error is non-zero errno is set to -error so "%m" shows it. Returns -|error|,
 * or 0 when error is 0, so callers can "return log_error_errno(r, ...)". */
int log_internal(int level, int error, const char *file, int line, const char *func, const char *format, ...)
        _printf_(6, 7);

#define log_full_errno(level, error, ...)                                                                   \
        ({                                                                                                  \
                int _level_ = (level), _e_ = (error);                                                       \
                _level_ <= log_get_max_level()                                                              \
                        ? log_internal(_level_, _e_, __FILE__, __LINE__, __func__, __VA_ARGS__)             \
                        : -abs(_e_);                                                                        \
        })

#define log_full(level, ...) (void) log_full_errno(level, 0, __VA_ARGS__)

#define log_debug(...)   log_full(LOG_DEBUG, __VA_ARGS__)
#define log_info(...)    log_full(LOG_INFO, __VA_ARGS__)
#define log_notice(...)  log_full(LOG_NOTICE, __VA_ARGS__)
#define log_warning(...) log_full(LOG_WARNING, __VA_ARGS__)
#define log_error(...)   log_full(LOG_ERR, __VA_ARGS__)

#define log_debug_errno(e, ...)   log_full_errno(LOG_DEBUG, e, __VA_ARGS__)
#define log_info_errno(e, ...)    log_full_errno(LOG_INFO, e, __VA_ARGS__)
#define log_notice_errno(e, ...)  log_full_errno(LOG_NOTICE, e, __VA_ARGS__)
#define log_warning_errno(e, ...) log_full_errno(LOG_WARNING, e, __VA_ARGS__)
#define log_error_errno(e, ...)   log_full_errno(LOG_ERR, e, __VA_ARGS__)

#define log_oom() log_error_errno(-ENOMEM, "Out of memory.")
