/* SPDX-License-Identifier: MIT */
#pragma once

/* CRC-32 (IEEE 802.3, as zlib and gzip): detects torn and corrupted state files. Not a MAC. */

#include <stddef.h>
#include <stdint.h>

/* Continues crc over size bytes; start with crc = 0. */
uint32_t crc32_update(uint32_t crc, const void *data, size_t size);
