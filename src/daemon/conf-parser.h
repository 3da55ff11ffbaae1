/* SPDX-License-Identifier: MIT */
#pragma once

/* Table-driven INI configuration on top of libinih. Every "[Section] Key=" must appear in the
 * table; each value is parsed by a typed parser into the target struct at the item's offset.
 * Errors are logged as "FILE:LINE: ..." and make conf_parse_file() fail with -EINVAL; parsing
 * stops at the first one.
 *
 * Lines starting with '#' or ';' are comments, and so is " ;..." after a value. Indentation is
 * ignored (no continuation lines). A line may hold about 200 characters (inih's buffer); list
 * parsers append, so long lists can be split over several lines. */

#include <stddef.h>
#include <stdint.h>

#include "macro.h"

/* key is "Section.Key", for messages. A parser logs what is wrong (conf_log_invalid() helps) and
 * returns a negative errno. */
typedef int (*ConfParser)(const char *filename, unsigned line, const char *key, const char *value,
                          void *data);

typedef struct ConfItem {
        const char *section;
        const char *key;
        ConfParser parse;
        size_t offset; /* into the target struct */
} ConfItem;

/* Parses path into target. Returns 0, -ENOENT when the file does not exist (nothing logged, so
 * optional files can be skipped), -EINVAL after logging what is wrong, or another negative errno. */
int conf_parse_file(const char *path, const ConfItem *table, size_t n_items, void *target);

/* Logs "FILE:LINE: Invalid value for KEY: <message>" and returns -EINVAL. */
int conf_log_invalid(const char *filename, unsigned line, const char *key, const char *format, ...)
        _printf_(4, 5);

/* Parsers for ConfItem.parse. data points at the field. An empty value resets strings (to NULL)
 * and lists (to empty) and is invalid for the others. */
int conf_parse_string(const char *filename, unsigned line, const char *key, const char *value,
                      void *data); /* char *, replaced */
int conf_parse_strv(const char *filename, unsigned line, const char *key, const char *value,
                    void *data); /* char **, NULL-terminated, whitespace-separated; appended */
int conf_parse_bool(const char *filename, unsigned line, const char *key, const char *value,
                    void *data); /* bool: yes/no/true/false/on/off/1/0 */
int conf_parse_unsigned(const char *filename, unsigned line, const char *key, const char *value,
                        void *data); /* unsigned */
int conf_parse_port(const char *filename, unsigned line, const char *key, const char *value,
                    void *data); /* uint16_t, 1..65535 */
int conf_parse_bytes(const char *filename, unsigned line, const char *key, const char *value,
                     void *data); /* uint64_t; suffixes K, M, G, T (1024-based), KiB... */
int conf_parse_sec(const char *filename, unsigned line, const char *key, const char *value,
                   void *data); /* uint64_t µs: "30" (s), "30s", "500ms", "5min", "1h 30min" */

/* Bounded variants, for a ConfParser that names its bounds (see CONF_PARSER_RANGE()): the value
 * must lie in min..max, which range spells for the message ("1K..64M"). The _positive ones are
 * ConfParsers themselves: at least 1, or a time span greater than zero. */
int conf_parse_unsigned_range(const char *filename, unsigned line, const char *key, const char *value,
                              void *data, unsigned min, unsigned max);
int conf_parse_unsigned_positive(const char *filename, unsigned line, const char *key, const char *value,
                                 void *data);
int conf_parse_bytes_range(const char *filename, unsigned line, const char *key, const char *value,
                           void *data, uint64_t min, uint64_t max, const char *range);
int conf_parse_sec_positive(const char *filename, unsigned line, const char *key, const char *value,
                            void *data);

/* Defines the ConfParser "name" that calls one of the _range parsers with the bounds given. */
#define CONF_PARSER_RANGE(name, parser, ...)                                                                \
        static int name(const char *filename, unsigned line, const char *key, const char *value,            \
                        void *data) {                                                                       \
                return parser(filename, line, key, value, data, __VA_ARGS__);                               \
        }

int conf_parse_log_level(const char *filename, unsigned line, const char *key, const char *value,
                         void *data); /* int */
