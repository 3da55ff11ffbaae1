/* SPDX-License-Identifier: MIT */
#include <assert.h>
#include <ini.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "conf-parser.h"
#include "log.h"
#include "strv.h"

typedef struct ConfParse {
        FILE *file;
        const char *filename;
        const ConfItem *table;
        size_t n_items;
        void *target;

        char *buf;
        size_t buf_alloc;
        unsigned line;       /* the line inih is looking at */
        int error;           /* the first error, which ends the parse */
        unsigned error_line; /* where it was reported */
        int read_error;
} ConfParse;

static inline void fclosep(FILE **f) {
        if (*f)
                (void) fclose(*f);
}

int conf_log_invalid(const char *filename, unsigned line, const char *key, const char *format, ...) {
        char detail[512];
        va_list ap;

        va_start(ap, format);
        (void) vsnprintf(detail, sizeof(detail), format, ap);
        va_end(ap);
        log_error("%s:%u: Invalid value for %s: %s", filename, line, key, detail);
        return -EINVAL;
}

static bool conf_find_section(const ConfParse *p, const char *name, size_t len) {
        for (size_t i = 0; i < p->n_items; i++)
                if (strlen(p->table[i].section) == len && memcmp(p->table[i].section, name, len) == 0)
                        return true;
        return false;
}

/* inih's reader: one physical line per call, so that our count is the line inih works on. */
static char *conf_read_line(char *str, int num, void *stream) {
        ConfParse *p = stream;
        const char *s;
        ssize_t n;
        size_t len;

        if (p->error != 0 || p->read_error != 0)
                return NULL;

        errno = 0;
        n = getline(&p->buf, &p->buf_alloc, p->file);
        if (n < 0) {
                if (ferror(p->file))
                        p->read_error = errno > 0 ? -errno : -EIO;
                return NULL;
        }
        p->line++;

        /* inih takes an indented line for the continuation of the previous value; for us
         * indentation means nothing. */
        s = p->buf;
        while (*s == ' ' || *s == '\t')
                s++;
        len = (size_t) n - (size_t) (s - p->buf);

        /* inih reads into a fixed buffer; a longer line would be split in two behind our back. */
        if (num < 3 || len >= (size_t) num) {
                log_error("%s:%u: Line too long (the limit is %i characters).", p->filename, p->line,
                          MAX(num - 2, 0));
                p->error = -EINVAL;
                p->error_line = p->line;
                return NULL;
        }
        /* inih reports keys only, so a section without any would pass unchecked. */
        if (*s == '[') {
                const char *end = strchr(s, ']');

                if (end && !conf_find_section(p, s + 1, (size_t) (end - s - 1))) {
                        log_error("%s:%u: Unknown section [%.*s].", p->filename, p->line,
                                  (int) (end - s - 1), s + 1);
                        p->error = -EINVAL;
                        p->error_line = p->line;
                        return NULL;
                }
        }
        memcpy(str, s, len + 1);
        return str;
}

static const ConfItem *conf_find(const ConfParse *p, const char *section, const char *key) {
        for (size_t i = 0; i < p->n_items; i++)
                if (streq(p->table[i].section, section) && streq(p->table[i].key, key))
                        return p->table + i;
        return NULL;
}

static int conf_handle(void *userdata, const char *section, const char *key, const char *value) {
        ConfParse *p = userdata;
        const ConfItem *item;
        char name[512];
        int k;

        item = conf_find(p, section, key);
        if (!item) {
                log_error("%s:%u: Unknown key '%s' in section [%s].", p->filename, p->line, key, section);
                k = -EINVAL;
                goto fail;
        }

        (void) snprintf(name, sizeof(name), "%s.%s", section, key);
        k = item->parse(p->filename, p->line, name, value, (uint8_t *) p->target + item->offset);
        if (k < 0)
                goto fail;
        return 1;

fail:
        p->error = k;
        p->error_line = p->line;
        return 0;
}

int conf_parse_file(const char *path, const ConfItem *table, size_t n_items, void *target) {
        _cleanup_(fclosep) FILE *f = NULL;
        ConfParse p;
        int r;

        assert(path);
        assert(table || n_items == 0);
        assert(target);

        f = fopen(path, "re");
        if (!f) {
                if (errno == ENOENT)
                        return -ENOENT;
                return log_error_errno(negative_errno(), "Failed to open %s: %m", path);
        }

        p = (ConfParse){
                .file = f,
                .filename = path,
                .table = table,
                .n_items = n_items,
                .target = target,
        };
        r = ini_parse_stream(conf_read_line, &p, conf_handle, &p);
        free(p.buf);

        if (p.read_error != 0)
                return log_error_errno(p.read_error, "Failed to read %s: %m", path);
        if (r == -2)
                return log_oom();
        /* inih reports the first line it could not make sense of, ours or its own. */
        if (r > 0 && (p.error == 0 || (unsigned) r != p.error_line))
                log_error("%s:%i: Syntax error: expected [Section] or Key=Value.", path, r);
        if (p.error != 0)
                return p.error;
        if (r != 0)
                return -EINVAL;
        return 0;
}

int conf_parse_string(const char *filename, unsigned line, const char *key, const char *value, void *data) {
        char **s = data, *n = NULL;

        /* An empty value resets to the default. */
        if (!isempty(value)) {
                n = strdup(value);
                if (!n)
                        return log_oom();
        }
        free(*s);
        *s = n;
        return 0;
}

int conf_parse_strv(const char *filename, unsigned line, const char *key, const char *value, void *data) {
        char ***l = data;

        /* An empty value empties the list; otherwise words are appended, so a long list can span
         * several lines. */
        if (isempty(value)) {
                strv_freep(l);
                return 0;
        }
        if (strv_extend_split(l, value, " \t") < 0)
                return log_oom();
        return 0;
}

int conf_parse_bool(const char *filename, unsigned line, const char *key, const char *value, void *data) {
        static const char *const yes[] = {"yes", "true", "on", "1"};
        static const char *const no[] = {"no", "false", "off", "0"};
        bool *b = data;

        for (size_t i = 0; i < ELEMENTSOF(yes); i++) {
                if (strcasecmp(value, yes[i]) == 0) {
                        *b = true;
                        return 0;
                }
                if (strcasecmp(value, no[i]) == 0) {
                        *b = false;
                        return 0;
                }
        }
        return conf_log_invalid(filename, line, key,
                                "'%s' is not a boolean (yes/no, true/false, on/off, 1/0).", value);
}

/* Decimal digits only: no sign, no spaces, no base prefix. Returns the number of digits read, or 0
 * when there are none or the number does not fit. */
static size_t parse_digits(const char *s, uint64_t *ret) {
        uint64_t v = 0;
        size_t i;

        for (i = 0; s[i] >= '0' && s[i] <= '9'; i++)
                if (__builtin_mul_overflow(v, 10, &v) ||
                    __builtin_add_overflow(v, (uint64_t) (s[i] - '0'), &v))
                        return 0;
        if (i > 0)
                *ret = v;
        return i;
}

static int parse_uint64(const char *s, uint64_t *ret) {
        uint64_t v;
        size_t n = parse_digits(s, &v);

        if (n == 0 || s[n] != '\0')
                return -EINVAL;
        *ret = v;
        return 0;
}

int conf_parse_unsigned(const char *filename, unsigned line, const char *key, const char *value,
                        void *data) {
        unsigned *u = data;
        uint64_t v;

        if (parse_uint64(value, &v) < 0 || v > UINT_MAX)
                return conf_log_invalid(filename, line, key, "'%s' is not a number between 0 and %u.", value,
                                        UINT_MAX);
        *u = (unsigned) v;
        return 0;
}

int conf_parse_unsigned_range(const char *filename, unsigned line, const char *key, const char *value,
                              void *data, unsigned min, unsigned max) {
        unsigned *u = data;
        uint64_t v;

        if (parse_uint64(value, &v) < 0 || v < min || v > max)
                return conf_log_invalid(filename, line, key, "'%s' is not a number between %u and %u.",
                                        value, min, max);
        *u = (unsigned) v;
        return 0;
}

int conf_parse_unsigned_positive(const char *filename, unsigned line, const char *key, const char *value,
                                 void *data) {
        return conf_parse_unsigned_range(filename, line, key, value, data, 1, UINT_MAX);
}

int conf_parse_port(const char *filename, unsigned line, const char *key, const char *value, void *data) {
        uint16_t *port = data;
        uint64_t v;

        if (parse_uint64(value, &v) < 0 || v < 1 || v > UINT16_MAX)
                return conf_log_invalid(filename, line, key, "'%s' is not a port number (1..65535).", value);
        *port = (uint16_t) v;
        return 0;
}

int conf_parse_bytes(const char *filename, unsigned line, const char *key, const char *value, void *data) {
        static const struct {
                const char *suffix;
                uint64_t factor;
        } units[] = {
                {"", 1},
                {"B", 1},
                {"K", UINT64_C(1) << 10},
                {"KiB", UINT64_C(1) << 10},
                {"M", UINT64_C(1) << 20},
                {"MiB", UINT64_C(1) << 20},
                {"G", UINT64_C(1) << 30},
                {"GiB", UINT64_C(1) << 30},
                {"T", UINT64_C(1) << 40},
                {"TiB", UINT64_C(1) << 40},
        };
        uint64_t *bytes = data, v;
        size_t n = parse_digits(value, &v);

        if (n > 0)
                for (size_t i = 0; i < ELEMENTSOF(units); i++)
                        if (streq(value + n, units[i].suffix)) {
                                if (__builtin_mul_overflow(v, units[i].factor, &v))
                                        break;
                                *bytes = v;
                                return 0;
                        }
        return conf_log_invalid(
                filename, line, key,
                "'%s' is not a size in bytes (a number, optionally followed by K, M, G or T).", value);
}

int conf_parse_bytes_range(const char *filename, unsigned line, const char *key, const char *value,
                           void *data, uint64_t min, uint64_t max, const char *range) {
        uint64_t v;
        int r;

        r = conf_parse_bytes(filename, line, key, value, &v);
        if (r < 0)
                return r;
        if (v < min || v > max)
                return conf_log_invalid(filename, line, key, "'%s' is out of range %s.", value, range);
        *(uint64_t *) data = v;
        return 0;
}

/* "500ms", "30", "1.5s", "5min", "1h 30min": a sum of numbers with units; a bare number is seconds. */
static int parse_sec(const char *s, uint64_t *ret) {
        static const struct {
                const char *unit;
                uint64_t usec;
        } units[] = {
                /* Longer names first, so that "ms" is not read as "m" followed by junk. */
                {"seconds", UINT64_C(1000000)},
                {"second", UINT64_C(1000000)},
                {"minutes", UINT64_C(60000000)},
                {"minute", UINT64_C(60000000)},
                {"hours", UINT64_C(3600000000)},
                {"hour", UINT64_C(3600000000)},
                {"days", UINT64_C(86400000000)},
                {"day", UINT64_C(86400000000)},
                {"usec", UINT64_C(1)},
                {"msec", UINT64_C(1000)},
                {"sec", UINT64_C(1000000)},
                {"min", UINT64_C(60000000)},
                {"us", UINT64_C(1)},
                {"ms", UINT64_C(1000)},
                {"hr", UINT64_C(3600000000)},
                {"s", UINT64_C(1000000)},
                {"m", UINT64_C(60000000)},
                {"h", UINT64_C(3600000000)},
                {"d", UINT64_C(86400000000)},
        };
        uint64_t total = 0;
        bool any = false;

        for (const char *p = s;;) {
                uint64_t whole, frac = 0, frac_scale = 1, unit = UINT64_C(1000000), part;
                size_t n, unit_len = 0;
                const char *q;

                p += strspn(p, " \t");
                if (*p == '\0')
                        break;

                n = parse_digits(p, &whole);
                if (n == 0)
                        return -EINVAL;
                p += n;
                if (*p == '.') {
                        p++;
                        n = parse_digits(p, &frac);
                        /* Finer than a microsecond means nothing here; the limit also keeps
                         * frac * unit below 2^64. */
                        if (n == 0 || n > 6)
                                return -EINVAL;
                        for (size_t i = 0; i < n; i++)
                                frac_scale *= 10;
                        p += n;
                }
                /* "5min" and "5 min" alike. */
                q = p + strspn(p, " \t");
                for (size_t i = 0; i < ELEMENTSOF(units); i++) {
                        size_t l = strlen(units[i].unit);

                        if (strncmp(q, units[i].unit, l) == 0 &&
                            (q[l] == '\0' || q[l] == ' ' || q[l] == '\t' || (q[l] >= '0' && q[l] <= '9'))) {
                                unit = units[i].usec;
                                unit_len = l;
                                break;
                        }
                }
                if (unit_len > 0)
                        p = q + unit_len;
                else if (*p != '\0' && *p != ' ' && *p != '\t')
                        return -EINVAL;

                if (__builtin_mul_overflow(whole, unit, &part) ||
                    __builtin_add_overflow(part, frac * unit / frac_scale, &part) ||
                    __builtin_add_overflow(total, part, &total))
                        return -ERANGE;
                any = true;
        }
        if (!any)
                return -EINVAL;
        *ret = total;
        return 0;
}

int conf_parse_sec(const char *filename, unsigned line, const char *key, const char *value, void *data) {
        uint64_t *usec = data, v;

        if (parse_sec(value, &v) < 0)
                return conf_log_invalid(
                        filename, line, key,
                        "'%s' is not a time span (such as 30, 30s, 500ms, 5min or 1h 30min).", value);
        *usec = v;
        return 0;
}

int conf_parse_sec_positive(const char *filename, unsigned line, const char *key, const char *value,
                            void *data) {
        uint64_t v;
        int r;

        r = conf_parse_sec(filename, line, key, value, &v);
        if (r < 0)
                return r;
        if (v == 0)
                return conf_log_invalid(filename, line, key, "'%s' is not a time span greater than zero.",
                                        value);
        *(uint64_t *) data = v;
        return 0;
}

int conf_parse_log_level(const char *filename, unsigned line, const char *key, const char *value,
                         void *data) {
        int *level = data, l;

        l = log_level_from_string(value);
        if (l < 0)
                return conf_log_invalid(filename, line, key,
                                        "'%s' is not a log level (emerg, alert, crit, err, warning, notice, "
                                        "info, debug or 0..7).",
                                        value);
        *level = l;
        return 0;
}
