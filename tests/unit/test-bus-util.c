/* SPDX-License-Identifier: MIT */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "bus-util.h"

static void check_mapping(const char *instance, const char *expected) {
        char *s = NULL;

        assert_int_equal(bus_name_element_from_instance(instance, &s), 0);
        assert_string_equal(s, expected);
        /* A bus name element: [A-Za-z0-9_-]+, not starting with a digit. */
        assert_false(s[0] >= '0' && s[0] <= '9');
        assert_true(strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") ==
                    strlen(s));
        free(s);
}

static void test_name_mapping(void **state) {
        check_mapping("hank", "hank");
        check_mapping("Alice_2", "Alice_2");
        check_mapping("h-1.example", "h-1_example");
        check_mapping("hub-a", "hub-a");
        check_mapping("1st", "_1st");
        check_mapping("9", "_9");
}

static void test_name_rejected(void **state) {
        char *s = (char *) "untouched";

        assert_int_equal(bus_name_element_from_instance("", &s), -EINVAL);
        assert_int_equal(bus_name_element_from_instance(NULL, &s), -EINVAL);
        assert_int_equal(bus_name_element_from_instance("a b", &s), -EINVAL);
        assert_int_equal(bus_name_element_from_instance("a/b", &s), -EINVAL);
        assert_int_equal(bus_name_element_from_instance("caf\xc3\xa9", &s), -EINVAL);
        {
                char long_name[300];

                memset(long_name, 'a', sizeof(long_name) - 1);
                long_name[sizeof(long_name) - 1] = 0;
                assert_int_equal(bus_name_element_from_instance(long_name, &s), -EINVAL);
        }
        assert_string_equal(s, "untouched");
}

static void test_open_unreachable(void **state) {
        NodeBus b = {};

        assert_int_equal(setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/dske-test-bus", 1), 0);
        assert_true(node_bus_open(&b, "org.dske.Hub", "hank") < 0);
        assert_null(b.bus);
        assert_non_null(b.error);
        assert_false(node_bus_ok(&b));
        assert_true(node_bus_start(&b, NULL) < 0);
        node_bus_done(&b);
        assert_null(b.error);
        assert_null(b.name);

        /* A name that cannot be mapped never reaches the bus. */
        assert_int_equal(node_bus_open(&b, "org.dske.Hub", "a b"), -EINVAL);
        assert_null(b.bus);
        assert_non_null(b.error);
        node_bus_done(&b);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_name_mapping),
                cmocka_unit_test(test_name_rejected),
                cmocka_unit_test(test_open_unreachable),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
