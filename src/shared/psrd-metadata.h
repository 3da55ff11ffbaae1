/* SPDX-License-Identifier: MIT */
#pragma once

/* The two wire forms of allocation metadata (PROTOCOL.md §4.1, §4.2):
 *   string: "<uuid>:<start>:<size>,<uuid>:<start>:<size>"  (the DSKE-Signature header)
 *   JSON:   {"fragments":[{"block_uuid":"<uuid>","start":<int>,"size":<int>}, ...]}
 * Parsing is strict: canonical UUIDs, decimal integers 0|[1-9][0-9]*, 1 <= size, start + size
 * within PSRD_BLOCK_SIZE_MAX, at least one and at most PSRD_FRAGMENTS_MAX fragments, nothing
 * extra. Parsed allocations carry fragments only (data == NULL). */

#include <json-c/json.h>

#include "psrd.h"

/* Returns 0, -EINVAL (no fragments: the wire form always has one), -ENOMEM. *ret is freed by the
 * caller. UUIDs come out in lowercase. */
int allocation_to_string(const Allocation *a, char **ret);
/* Parses n bytes at s (no NUL needed; an embedded NUL is malformed). Returns 0, -EBADMSG
 * (malformed), -E2BIG (too many fragments), -ENOMEM. Fragments are not checked for overlap. */
int allocation_from_string(const char *s, size_t n, Allocation **ret);

/* The exact length of the string form, and a writer of it at p (no NUL) that returns the end.
 * For headers and bodies built in place; a must have at least one fragment. */
size_t allocation_string_length(const Allocation *a);
char *allocation_string_write(const Allocation *a, char *p);

/* The same for the JSON form, byte for byte what allocation_to_json() serialises to. */
size_t allocation_json_length(const Allocation *a);
char *allocation_json_write(const Allocation *a, char *p);

/* Returns a new {"fragments":[...]} object in the reference's field order, or NULL on OOM. */
json_object *allocation_to_json(const Allocation *a);
/* Parses the object form. Unknown members are rejected. Returns as allocation_from_string(). */
int allocation_from_json(json_object *o, Allocation **ret);
