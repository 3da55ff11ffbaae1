/* SPDX-License-Identifier: MIT */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "conf-parser.h"
#include "log.h"

typedef struct TestConfig {
        char *name;
        char **list;
        bool flag;
        unsigned count;
        uint16_t port;
        uint64_t size;
        uint64_t timeout;
        int level;
        unsigned small;
        unsigned positive;
        uint64_t buffer;
        uint64_t ttl;
} TestConfig;

CONF_PARSER_RANGE(parse_small, conf_parse_unsigned_range, 2, 5)
CONF_PARSER_RANGE(parse_buffer, conf_parse_bytes_range, 1024, 2048, "1K..2K")

static const ConfItem items[] = {
        {"Main", "Name", conf_parse_string, offsetof(TestConfig, name)},
        {"Main", "List", conf_parse_strv, offsetof(TestConfig, list)},
        {"Main", "Flag", conf_parse_bool, offsetof(TestConfig, flag)},
        {"Main", "Count", conf_parse_unsigned, offsetof(TestConfig, count)},
        {"Main", "Port", conf_parse_port, offsetof(TestConfig, port)},
        {"Limits", "Size", conf_parse_bytes, offsetof(TestConfig, size)},
        {"Limits", "Timeout", conf_parse_sec, offsetof(TestConfig, timeout)},
        {"Limits", "LogLevel", conf_parse_log_level, offsetof(TestConfig, level)},
        {"Bounded", "Small", parse_small, offsetof(TestConfig, small)},
        {"Bounded", "Positive", conf_parse_unsigned_positive, offsetof(TestConfig, positive)},
        {"Bounded", "Buffer", parse_buffer, offsetof(TestConfig, buffer)},
        {"Bounded", "TTL", conf_parse_sec_positive, offsetof(TestConfig, ttl)},
};

static char dir[] = "/tmp/test-conf-parser-XXXXXX";
static char path[sizeof(dir) + 16];
static char log_path[sizeof(dir) + 16];

static void config_done(TestConfig *c) {
        free(c->name);
        for (char **i = c->list; i && *i; i++)
                free(*i);
        free(c->list);
        *c = (TestConfig){};
}

static void write_file(const char *p, const char *text) {
        FILE *f = fopen(p, "we");

        assert_non_null(f);
        assert_int_equal(fputs(text, f) >= 0, 1);
        assert_int_equal(fclose(f), 0);
}

static char *read_file(const char *p) {
        FILE *f = fopen(p, "re");
        char *s = calloc(1, 65536);
        size_t n;

        assert_non_null(f);
        assert_non_null(s);
        n = fread(s, 1, 65535, f);
        s[n] = 0;
        fclose(f);
        return s;
}

/* Parses text as a file; *ret_log gets what was logged. */
static int parse(const char *text, TestConfig *c, char **ret_log) {
        int saved, fd, r;

        write_file(path, text);

        fflush(stderr);
        saved = dup(STDERR_FILENO);
        assert_true(saved >= 0);
        fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);
        close(fd);

        r = conf_parse_file(path, items, ELEMENTSOF(items), c);

        fflush(stderr);
        assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
        close(saved);

        *ret_log = read_file(log_path);
        return r;
}

static int group_setup(void **state) {
        assert_non_null(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/t.conf", dir);
        snprintf(log_path, sizeof(log_path), "%s/log", dir);
        return 0;
}

static int group_teardown(void **state) {
        (void) unlink(path);
        (void) unlink(log_path);
        (void) rmdir(dir);
        return 0;
}

static void test_good_file(void **state) {
        TestConfig c = {.port = 9, .level = LOG_INFO};
        char *log = NULL;

        assert_int_equal(parse("# A comment\n"
                               "; another\n"
                               "\n"
                               "[Main]\n"
                               "Name = hub-one\n"
                               "  Flag=yes\n"
                               "Count=42 ; an inline comment\n"
                               "Port=8101\r\n"
                               "List=a b\n"
                               "List=\tc\n"
                               "[Limits]\n"
                               "Size=4K\n"
                               "Timeout=1min 30s\n"
                               "LogLevel=debug\n"
                               "[Bounded]\n"
                               "Small=5\n"
                               "Positive=1\n"
                               "Buffer=2K\n"
                               "TTL=1ms\n",
                               &c, &log),
                         0);
        assert_string_equal(log, "");
        assert_string_equal(c.name, "hub-one");
        assert_true(c.flag);
        assert_int_equal(c.count, 42);
        assert_int_equal(c.port, 8101);
        assert_non_null(c.list);
        assert_string_equal(c.list[0], "a");
        assert_string_equal(c.list[1], "b");
        assert_string_equal(c.list[2], "c");
        assert_null(c.list[3]);
        assert_int_equal(c.size, 4096);
        assert_int_equal(c.timeout, 90 * 1000000ULL);
        assert_int_equal(c.level, LOG_DEBUG);
        assert_int_equal(c.small, 5);
        assert_int_equal(c.positive, 1);
        assert_int_equal(c.buffer, 2048);
        assert_int_equal(c.ttl, 1000);
        free(log);

        /* Later files and lines override; empty values reset strings and lists. */
        assert_int_equal(parse("[Main]\nName=a=b\nName=\nList=\nList=z\nFlag=off\n", &c, &log), 0);
        assert_null(c.name);
        assert_string_equal(c.list[0], "z");
        assert_null(c.list[1]);
        assert_false(c.flag);
        assert_int_equal(c.port, 8101);
        free(log);

        assert_int_equal(parse("[Main]\nName=a=b\n", &c, &log), 0);
        assert_string_equal(c.name, "a=b");
        free(log);

        /* Nothing but comments. */
        assert_int_equal(parse("", &c, &log), 0);
        free(log);
        config_done(&c);
}

static void test_missing_file(void **state) {
        TestConfig c = {};
        char p[sizeof(dir) + 32];

        snprintf(p, sizeof(p), "%s/does-not-exist.conf", dir);
        assert_int_equal(conf_parse_file(p, items, ELEMENTSOF(items), &c), -ENOENT);
}

typedef struct BadCase {
        const char *text;
        const char *message; /* after "PATH:" */
} BadCase;

static void test_errors_name_the_line(void **state) {
        static const BadCase cases[] = {
                {"[Main]\nNope=1\n", "2: Unknown key 'Nope' in section [Main]."},
                {"# comment\n\n[Other]\nName=x\n", "3: Unknown section [Other]."},
                /* A section is checked even without keys, indented or with a comment after it. */
                {"[Main]\nName=x\n  [Other] ; empty\n", "3: Unknown section [Other]."},
                {"[Main]\n[]\n", "2: Unknown section []."},
                {"Name=x\n", "1: Unknown key 'Name' in section []."},
                {"[Main]\n  ; indented comment\n\n   Flag=maybe\n",
                 "4: Invalid value for Main.Flag: 'maybe' is not a boolean"},
                {"[Main]\nPort=0\n", "2: Invalid value for Main.Port: '0' is not a port number (1..65535)."},
                {"[Main]\nPort=65536\n", "2: Invalid value for Main.Port: '65536' is not a port number"},
                {"[Main]\nPort=-1\n", "2: Invalid value for Main.Port: '-1'"},
                {"[Main]\nPort=80 # not a comment here\n",
                 "2: Invalid value for Main.Port: '80 # not a comment"},
                {"[Main]\nCount=4294967296\n", "2: Invalid value for Main.Count: '4294967296'"},
                {"[Main]\nCount=\n", "2: Invalid value for Main.Count: ''"},
                {"[Main]\nCount=0x10\n", "2: Invalid value for Main.Count: '0x10'"},
                {"[Limits]\nSize=10KB\n", "2: Invalid value for Limits.Size: '10KB' is not a size in bytes"},
                {"[Limits]\nSize=1.5K\n", "2: Invalid value for Limits.Size: '1.5K'"},
                {"[Limits]\nSize=20000000T\n", "2: Invalid value for Limits.Size: '20000000T'"},
                {"[Limits]\nTimeout=5 parsecs\n",
                 "2: Invalid value for Limits.Timeout: '5 parsecs' is not a time"},
                {"[Limits]\nTimeout=s\n", "2: Invalid value for Limits.Timeout: 's'"},
                {"[Limits]\nLogLevel=loud\n",
                 "2: Invalid value for Limits.LogLevel: 'loud' is not a log level"},
                {"[Main]\nName=x\nthis line has no equals sign\n",
                 "3: Syntax error: expected [Section] or Key=Value."},
                {"[Main\nName=x\n", "1: Syntax error"},
                {"[Bounded]\nSmall=1\n",
                 "2: Invalid value for Bounded.Small: '1' is not a number between 2 and 5."},
                {"[Bounded]\nSmall=6\n", "2: Invalid value for Bounded.Small: '6'"},
                {"[Bounded]\nPositive=0\n",
                 "2: Invalid value for Bounded.Positive: '0' is not a number between 1"},
                {"[Bounded]\nBuffer=1023\n",
                 "2: Invalid value for Bounded.Buffer: '1023' is out of range 1K..2K."},
                {"[Bounded]\nBuffer=2049\n", "2: Invalid value for Bounded.Buffer: '2049' is out of range"},
                {"[Bounded]\nBuffer=lots\n",
                 "2: Invalid value for Bounded.Buffer: 'lots' is not a size in bytes"},
                {"[Bounded]\nTTL=0\n",
                 "2: Invalid value for Bounded.TTL: '0' is not a time span greater than zero."},
                {"[Bounded]\nTTL=0ms\n", "2: Invalid value for Bounded.TTL: '0ms'"},
                {"[Bounded]\nTTL=soon\n", "2: Invalid value for Bounded.TTL: 'soon' is not a time span ("},
                /* The first error ends the parse: line 5 is never looked at. */
                {"[Main]\n\nFlag=2\n\nNope=1\n", "3: Invalid value for Main.Flag: '2'"},
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                TestConfig c = {};
                char *log = NULL, expected[512];

                snprintf(expected, sizeof(expected), "%s:%s", path, cases[i].message);
                assert_int_equal(parse(cases[i].text, &c, &log), -EINVAL);
                if (!strstr(log, expected))
                        fail_msg("case %zu: expected \"%s\" in \"%s\"", i, expected, log);
                config_done(&c);
                free(log);
        }
}

static void test_first_error_only(void **state) {
        TestConfig c = {};
        char *log = NULL;

        assert_int_equal(parse("[Main]\nFlag=2\nNope=1\n", &c, &log), -EINVAL);
        assert_non_null(strstr(log, ":2: Invalid value for Main.Flag"));
        assert_null(strstr(log, "Nope"));
        free(log);
        config_done(&c);
}

static void test_long_line(void **state) {
        TestConfig c = {};
        char text[1024], *log = NULL;
        int n;

        n = snprintf(text, sizeof(text), "[Main]\n# fine\nName=");
        memset(text + n, 'x', 500);
        strcpy(text + n + 500, "\nFlag=yes\n");

        assert_int_equal(parse(text, &c, &log), -EINVAL);
        assert_non_null(strstr(log, "t.conf:3: Line too long"));
        assert_false(c.flag);
        free(log);
        config_done(&c);

        /* Just under the limit. */
        n = snprintf(text, sizeof(text), "[Main]\nName=");
        memset(text + n, 'y', 150);
        strcpy(text + n + 150, "\n");
        assert_int_equal(parse(text, &c, &log), 0);
        assert_int_equal(strlen(c.name), 150);
        free(log);
        config_done(&c);
}

static void test_parse_sec(void **state) {
        static const struct {
                const char *text;
                uint64_t usec;
        } good[] = {
                {"0", 0},
                {"30", 30000000},
                {"30s", 30000000},
                {"500ms", 500000},
                {"5min", 300000000},
                {"1h 30min", 5400000000},
                {"1min30s", 90000000},
                {"1.5s", 1500000},
                {"0.25", 250000},
                {"2d", 172800000000},
                {"10us", 10},
                {"3 sec", 3000000},
                {"2hours", 7200000000},
                {"1 minute", 60000000},
        };
        static const char *const bad[] = {
                "",          " ",    "s",   "-1", "1x", "1.s", ".5", "1.1234567s", "99999999999999999999",
                "5 parsecs", "1msx", "1e3",
        };

        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                uint64_t v = 1;
                if (conf_parse_sec("f", 1, "S.K", good[i].text, &v) != 0 || v != good[i].usec)
                        fail_msg("'%s' gave %" PRIu64 ", expected %" PRIu64, good[i].text, v, good[i].usec);
        }
        log_set_max_level(LOG_CRIT);
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                uint64_t v = 7;
                if (conf_parse_sec("f", 1, "S.K", bad[i], &v) != -EINVAL || v != 7)
                        fail_msg("'%s' was accepted", bad[i]);
        }
        log_set_max_level(LOG_INFO);
}

static void test_parse_bytes_and_numbers(void **state) {
        static const struct {
                const char *text;
                uint64_t bytes;
        } good[] = {
                {"0", 0},
                {"1", 1},
                {"512B", 512},
                {"4K", 4096},
                {"4KiB", 4096},
                {"1M", 1048576},
                {"2G", 2147483648},
                {"1T", 1099511627776},
                {"16777215T", 16777215ULL << 40},
        };
        static const char *const bad_bytes[] = {"", "K", "4k", "4 K", "4KB", "-4K", "16777216T", "1.5M"};
        static const char *const bad_bools[] = {"", "2", "ye", "yess", "enabled"};
        uint16_t port = 5;
        unsigned u = 5;
        bool b = false;

        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                uint64_t v = 1;
                if (conf_parse_bytes("f", 1, "S.K", good[i].text, &v) != 0 || v != good[i].bytes)
                        fail_msg("'%s' gave %" PRIu64, good[i].text, v);
        }
        log_set_max_level(LOG_CRIT);
        for (size_t i = 0; i < ELEMENTSOF(bad_bytes); i++) {
                uint64_t v = 7;
                if (conf_parse_bytes("f", 1, "S.K", bad_bytes[i], &v) != -EINVAL || v != 7)
                        fail_msg("'%s' was accepted", bad_bytes[i]);
        }
        for (size_t i = 0; i < ELEMENTSOF(bad_bools); i++)
                assert_int_equal(conf_parse_bool("f", 1, "S.K", bad_bools[i], &b), -EINVAL);
        assert_int_equal(conf_parse_port("f", 1, "S.K", "0", &port), -EINVAL);
        assert_int_equal(conf_parse_port("f", 1, "S.K", "65536", &port), -EINVAL);
        assert_int_equal(conf_parse_port("f", 1, "S.K", " 80", &port), -EINVAL);
        assert_int_equal(conf_parse_unsigned("f", 1, "S.K", "+1", &u), -EINVAL);
        assert_int_equal(port, 5);
        assert_int_equal(u, 5);
        log_set_max_level(LOG_INFO);

        assert_int_equal(conf_parse_port("f", 1, "S.K", "65535", &port), 0);
        assert_int_equal(port, 65535);
        assert_int_equal(conf_parse_port("f", 1, "S.K", "1", &port), 0);
        assert_int_equal(port, 1);
        assert_int_equal(conf_parse_unsigned("f", 1, "S.K", "4294967295", &u), 0);
        assert_int_equal(u, 4294967295U);
        assert_int_equal(conf_parse_bool("f", 1, "S.K", "TRUE", &b), 0);
        assert_true(b);
        assert_int_equal(conf_parse_bool("f", 1, "S.K", "0", &b), 0);
        assert_false(b);
        assert_int_equal(conf_parse_bool("f", 1, "S.K", "On", &b), 0);
        assert_true(b);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_good_file),
                cmocka_unit_test(test_missing_file),
                cmocka_unit_test(test_errors_name_the_line),
                cmocka_unit_test(test_first_error_only),
                cmocka_unit_test(test_long_line),
                cmocka_unit_test(test_parse_sec),
                cmocka_unit_test(test_parse_bytes_and_numbers),
        };

        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
