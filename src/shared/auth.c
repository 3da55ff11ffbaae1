/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <nettle/hmac.h>
#include <stdio.h>
#include <string.h>

#include "auth.h"
#include "codec.h"
#include "psrd-metadata.h"
#include "secret.h"

void hmac_sha256(const void *key, size_t key_size, const struct iovec *iov, size_t n_iov,
                 uint8_t ret[static 32]) {
        struct hmac_sha256_ctx ctx;

        hmac_sha256_set_key(&ctx, key_size, key_size > 0 ? key : (const uint8_t *) "");
        for (size_t i = 0; i < n_iov; i++)
                if (iov[i].iov_len > 0)
                        hmac_sha256_update(&ctx, iov[i].iov_len, iov[i].iov_base);
        hmac_sha256_digest(&ctx, SHA256_DIGEST_SIZE, ret);

        /* The context holds the key-derived inner and outer hash states. */
        explicit_bzero(&ctx, sizeof(ctx));
}

int dske_mac(const uint8_t *key, size_t key_size, const void *query, size_t query_size, const void *body,
             size_t body_size, uint8_t ret[static DSKE_MAC_SIZE]) {
        if (!key || key_size != DSKE_MAC_KEY_SIZE)
                return -EINVAL;
        if ((!query && query_size > 0) || (!body && body_size > 0))
                return -EINVAL;

        /* No separator and no length prefix between the two parts, as the reference does. */
        hmac_sha256(key, key_size,
                    (const struct iovec[]){
                            {.iov_base = (void *) query, .iov_len = query_size},
                            {.iov_base = (void *) body, .iov_len = body_size},
                    },
                    2, ret);
        return 0;
}

int dske_mac_verify(const uint8_t *key, size_t key_size, const void *query, size_t query_size,
                    const void *body, size_t body_size, const uint8_t mac[static DSKE_MAC_SIZE]) {
        uint8_t expected[DSKE_MAC_SIZE];
        bool ok;
        int r;

        r = dske_mac(key, key_size, query, query_size, body, body_size, expected);
        if (r < 0)
                return r;

        ok = secret_equal(expected, mac, DSKE_MAC_SIZE);
        explicit_bzero(expected, sizeof(expected));
        return ok ? 0 : -EBADMSG;
}

size_t signature_header_length(const Allocation *a) {
        return allocation_string_length(a) + 1 + base64_encoded_length(DSKE_MAC_SIZE);
}

char *signature_header_write(const Allocation *a, const uint8_t mac[static DSKE_MAC_SIZE], char *p) {
        p = allocation_string_write(a, p);
        *p++ = '%';
        return base64_encode_into(mac, DSKE_MAC_SIZE, p);
}

int signature_header_format(const Allocation *a, const uint8_t mac[static DSKE_MAC_SIZE], char **ret) {
        char *s, *e;

        if (!a || !ret || a->n_fragments == 0 || a->size != DSKE_MAC_KEY_SIZE)
                return -EINVAL;

        s = malloc(signature_header_length(a) + 1);
        if (!s)
                return -ENOMEM;
        e = signature_header_write(a, mac, s);
        *e = '\0';

        *ret = s;
        return 0;
}

/* C1: a MAC key made of fragments that name the same byte twice is shorter than it looks. The
 * fragments are few (at most DSKE_MAC_KEY_SIZE of at least one byte each), so compare all pairs. */
static bool fragments_overlap(const Allocation *a) {
        for (size_t i = 0; i < a->n_fragments; i++)
                for (size_t j = i + 1; j < a->n_fragments; j++) {
                        const Fragment *f = a->fragments + i, *g = a->fragments + j;

                        if (!uuid_equal(&f->block_uuid, &g->block_uuid))
                                continue;
                        if (f->start < g->start + g->size && g->start < f->start + f->size)
                                return true;
                }
        return false;
}

int signature_header_parse(const char *s, Allocation **ret_allocation,
                           uint8_t ret_mac[static DSKE_MAC_SIZE]) {
        _cleanup_(allocation_freep) Allocation *a = NULL;
        uint8_t mac[DSKE_MAC_SIZE];
        const char *sep, *b64;
        size_t n, b64_size, mac_size;
        int r;

        if (!s || !ret_allocation)
                return -EINVAL;

        /* Neither the allocation string nor base64 can contain '%' or ';', so there must be
         * exactly one of them. */
        n = strcspn(s, "%;");
        sep = s + n;
        if (*sep == '\0' || sep[1 + strcspn(sep + 1, "%;")] != '\0')
                return -EBADMSG;
        if (n == 0)
                return -EBADMSG;

        b64 = sep + 1;
        b64_size = strlen(b64);
        if (b64_size != base64_encoded_length(DSKE_MAC_SIZE))
                return -EBADMSG;
        r = base64_decode_into(b64, b64_size, mac, sizeof(mac), &mac_size);
        if (r < 0 || mac_size != DSKE_MAC_SIZE)
                return -EBADMSG;

        r = allocation_from_string(s, n, &a);
        if (r < 0)
                return r;

        if (a->n_fragments == 0 || a->size != DSKE_MAC_KEY_SIZE)
                return -EBADMSG;
        for (size_t i = 0; i < a->n_fragments; i++)
                if (a->fragments[i].size == 0)
                        return -EBADMSG;
        if (fragments_overlap(a))
                return -EBADMSG;

        memcpy(ret_mac, mac, DSKE_MAC_SIZE);
        *ret_allocation = TAKE_PTR(a);
        return 0;
}
