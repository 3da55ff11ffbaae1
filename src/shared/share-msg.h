/* SPDX-License-Identifier: MIT */
#pragma once

/* The bodies of the in-band key-share messages (PROTOCOL.md §7.3, §7.4), written in place in the
 * one compact form the reference sends, and read back from that form without a JSON library:
 *
 *   POST request: {"master_client_name":"…","master_sae_id":"…","slave_sae_id":"…",
 *                  "user_key_id":"<uuid>","share_index":N,
 *                  "encryption_key_allocation":{"fragments":[…]},"encrypted_share_value":"<b64>"}
 *   GET reply:    {"share_index":N,"encryption_key_allocation":{"fragments":[…]},
 *                  "encrypted_share_value":"<b64>"}
 *
 * The readers accept only that exact form (member order, no white space, names made of
 * [A-Za-z0-9._-], no escapes) and answer -EBADMSG for anything else, including an allocation that
 * allocation_from_json() would refuse. A receiver then hands the body to its general JSON parser,
 * which accepts or rejects it exactly as it would have without the fast path: what the readers
 * accept is a subset of JSON that the general parser maps to the same values. */

#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "psrd.h"

#define SHARE_MSG_NAME_MAX 63 /* longest name_is_valid() accepts */

/* Writes the POST key-share body. The share goes out encrypted: share XOR pad->data, with pad an
 * allocation of exactly size bytes whose metadata is sent. The names must pass name_is_valid(),
 * so that none needs escaping. *ret (NUL-terminated, *ret_size bytes without the NUL) carries
 * no secret; the caller frees it. Returns 0, -EINVAL, -ENOMEM. */
int share_post_format(const char *master_client_name, const char *master_sae_id, const char *slave_sae_id,
                      const Uuid *key_id, unsigned share_index, const Allocation *pad, const uint8_t *share,
                      size_t size, char **ret, size_t *ret_size);

/* Writes the GET key-share reply body, the share encrypted as above. Returns 0, -EINVAL, -ENOMEM. */
int share_reply_format(unsigned share_index, const Allocation *pad, const uint8_t *share, size_t size,
                       char **ret, size_t *ret_size);

typedef struct SharePostView {
        char master_client_name[SHARE_MSG_NAME_MAX + 1];
        char master_sae_id[SHARE_MSG_NAME_MAX + 1];
        char slave_sae_id[SHARE_MSG_NAME_MAX + 1];
        char user_key_id[UUID_STRING_MAX]; /* as sent; not yet checked to be a UUID */
        int64_t share_index;               /* as sent; not yet range-checked */
        Allocation *encryption_key;        /* metadata only, owned */
        const char *encrypted_share_value; /* into the body, not NUL-terminated */
        size_t encrypted_share_value_size;
} SharePostView;

typedef struct ShareReplyView {
        int64_t share_index;
        Allocation *encryption_key; /* metadata only, owned */
        const char *encrypted_share_value;
        size_t encrypted_share_value_size;
} ShareReplyView;

/* Read a body of size bytes in the form above. On success the view is filled (release it with the
 * matching _done()); on failure it is left empty. Returns 0, -EBADMSG (another form), -ENOMEM. */
int share_post_parse(const void *body, size_t size, SharePostView *ret);
int share_reply_parse(const void *body, size_t size, ShareReplyView *ret);

void share_post_view_done(SharePostView *v);
void share_reply_view_done(ShareReplyView *v);
