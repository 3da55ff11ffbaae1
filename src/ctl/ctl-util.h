/* SPDX-License-Identifier: MIT */
#pragma once

#include <dirent.h>
#include <json-c/json.h>
#include <stdio.h>

#include "macro.h"
#include "strv.h"

static inline void fclosep(FILE **f) {
        if (*f)
                (void) fclose(*f);
}

static inline void closedirp(DIR **d) {
        if (*d)
                (void) closedir(*d);
}

static inline void json_tokener_freep(json_tokener **t) {
        if (*t)
                json_tokener_free(*t);
}

/* Zeroes the value of every "key" member in the objects of a key container ({"keys": [...]}) before
 * the JSON is freed, so key material does not linger in freed memory. */
void json_wipe_keys(json_object *container);

/* A member of an object as a string, NULL when absent or of another type. */
const char *json_get_string_member(json_object *o, const char *key);
