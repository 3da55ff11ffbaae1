/* SPDX-License-Identifier: MIT */
#include <stdbool.h>

#include "crc32.h"

static uint32_t crc_table[256];
static bool crc_table_ready;

static void crc_table_init(void) {
        for (uint32_t i = 0; i < 256; i++) {
                uint32_t c = i;

                for (unsigned k = 0; k < 8; k++)
                        c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
                crc_table[i] = c;
        }
        crc_table_ready = true;
}

uint32_t crc32_update(uint32_t crc, const void *data, size_t size) {
        const uint8_t *p = data;

        if (!crc_table_ready)
                crc_table_init();

        crc = ~crc;
        for (size_t i = 0; i < size; i++)
                crc = crc_table[(crc ^ p[i]) & 0xffu] ^ (crc >> 8);
        return ~crc;
}
