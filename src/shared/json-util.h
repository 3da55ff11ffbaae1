/* SPDX-License-Identifier: MIT */
#pragma once

#include <json-c/json.h>

#include "macro.h"

static inline void json_object_putp(json_object **o) {
        if (*o)
                (void) json_object_put(*o);
}
#define _cleanup_json_ _cleanup_(json_object_putp)

/* Serialises compactly, as the reference does (no spaces, "/" not escaped). */
#define JSON_C_TO_STRING_DSKE (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)
