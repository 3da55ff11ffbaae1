/* SPDX-License-Identifier: MIT */
#pragma once

/* Message authentication (PROTOCOL.md §4): HMAC-SHA256 keyed with exactly 32 PSRD bytes over
 * raw_query || raw_body for requests and raw_body for responses, carried in the header
 *   DSKE-Signature: <allocation string>%<base64 of the 32-byte MAC>
 * We emit '%' (what the reference sends) and accept '%' or ';' (what its documentation shows). */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "psrd.h"

#define DSKE_SIGNATURE_HEADER "DSKE-Signature"
#define DSKE_MAC_KEY_SIZE     32u
#define DSKE_MAC_SIZE         32u

/* Plain HMAC-SHA256 (RFC 2104) of the concatenation of the iovecs, any key length. */
void hmac_sha256(const void *key, size_t key_size, const struct iovec *iov, size_t n_iov,
                 uint8_t ret[static 32]);

/* The DSKE MAC over query || body (either may be empty/NULL). -EINVAL unless key_size == 32. */
int dske_mac(const uint8_t *key, size_t key_size, const void *query, size_t query_size, const void *body,
             size_t body_size, uint8_t ret[static DSKE_MAC_SIZE]);

/* Recomputes the MAC and compares it in constant time. Returns 0 when it matches, -EINVAL for a
 * key that is not 32 bytes, -EBADMSG when it does not match. */
int dske_mac_verify(const uint8_t *key, size_t key_size, const void *query, size_t query_size,
                    const void *body, size_t body_size, const uint8_t mac[static DSKE_MAC_SIZE]);

/* The exact length of the header value for allocation a, and a writer of it at p (no NUL) that
 * returns the end; a must be a DSKE_MAC_KEY_SIZE allocation. */
size_t signature_header_length(const Allocation *a);
char *signature_header_write(const Allocation *a, const uint8_t mac[static DSKE_MAC_SIZE], char *p);

/* Formats the header value "<allocation>%<b64(mac)>". Returns 0, -EINVAL (an allocation that is
 * not DSKE_MAC_KEY_SIZE bytes), -ENOMEM. */
int signature_header_format(const Allocation *a, const uint8_t mac[static DSKE_MAC_SIZE], char **ret);

/* Parses a header value: exactly one '%' or ';' between a non-empty allocation string and the
 * base64 MAC. The allocation must total exactly DSKE_MAC_KEY_SIZE bytes in non-overlapping
 * fragments (checked here, before any PSRD is touched) and the MAC must be 44 characters of strict
 * base64 that decode to exactly 32 bytes. The out parameters are set only on success. Returns 0,
 * -EINVAL (NULL arguments), -EBADMSG (malformed), -E2BIG (too many fragments), -ENOMEM. */
int signature_header_parse(const char *s, Allocation **ret_allocation,
                           uint8_t ret_mac[static DSKE_MAC_SIZE]);
