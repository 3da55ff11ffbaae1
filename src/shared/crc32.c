/* SPDX-License-Identifier: MIT */
#include <string.h>

#include "crc32.h"

/* Eight tables: table[k][b] is the CRC of byte b followed by k zero bytes, so that eight bytes are
 * folded in per step (blocks of PSRD are checked whole at every checkpoint). Filled before main(),
 * so that threads share them without a check on every call. */
static uint32_t crc_table[8][256];

__attribute__((constructor)) static void crc_table_init(void) {
        for (uint32_t i = 0; i < 256; i++) {
                uint32_t c = i;

                for (unsigned k = 0; k < 8; k++)
                        c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
                crc_table[0][i] = c;
        }
        for (uint32_t i = 0; i < 256; i++)
                for (unsigned k = 1; k < 8; k++)
                        crc_table[k][i] =
                                (crc_table[k - 1][i] >> 8) ^ crc_table[0][crc_table[k - 1][i] & 0xffu];
}

uint32_t crc32_update(uint32_t crc, const void *data, size_t size) {
        const uint8_t *p = data;

        crc = ~crc;
        for (; size >= 8; p += 8, size -= 8) {
                uint32_t lo, hi;

                memcpy(&lo, p, 4);
                memcpy(&hi, p + 4, 4);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
                lo = __builtin_bswap32(lo);
                hi = __builtin_bswap32(hi);
#endif
                lo ^= crc;
                crc = crc_table[7][lo & 0xffu] ^ crc_table[6][(lo >> 8) & 0xffu] ^
                      crc_table[5][(lo >> 16) & 0xffu] ^ crc_table[4][lo >> 24] ^ crc_table[3][hi & 0xffu] ^
                      crc_table[2][(hi >> 8) & 0xffu] ^ crc_table[1][(hi >> 16) & 0xffu] ^
                      crc_table[0][hi >> 24];
        }
        for (; size > 0; p++, size--)
                crc = crc_table[0][(crc ^ *p) & 0xffu] ^ (crc >> 8);
        return ~crc;
}
