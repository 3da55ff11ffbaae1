/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>

/* "dskectl check-state DIR": loads a node's state directory read-only, with every check a daemon
 * makes at start-up, and prints whose it is, its pools and its records; or what is wrong. */
int check_state(const char *path, bool json);
