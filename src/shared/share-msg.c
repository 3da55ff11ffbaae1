/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "psrd-metadata.h"
#include "share-msg.h"

#define STRLEN(s) (sizeof("" s "") - 1)

#define POST_HEAD         "{\"master_client_name\":\""
#define POST_MASTER_SAE   "\",\"master_sae_id\":\""
#define POST_SLAVE_SAE    "\",\"slave_sae_id\":\""
#define POST_KEY_ID       "\",\"user_key_id\":\""
#define POST_SHARE_INDEX  "\",\"share_index\":"
#define REPLY_SHARE_INDEX "{\"share_index\":"
#define ALLOCATION        ",\"encryption_key_allocation\":"
#define VALUE             ",\"encrypted_share_value\":\""
#define TAIL              "\"}"

/* share_index is at most SHAMIR_SHARES_MAX - 1 in practice; room for any unsigned. */
#define INDEX_DIGITS_MAX 10

static char *append(char *p, const char *s, size_t n) {
        memcpy(p, s, n);
        return p + n;
}

#define APPEND_LITERAL(p, lit) append((p), (lit), STRLEN(lit))

/* base64(a XOR b) without the plaintext XOR in a heap buffer: 48-byte groups (a multiple of 3, so
 * the encodings join up) go through a stack buffer that is wiped afterwards. */
static char *base64_write_xor(const uint8_t *a, const uint8_t *b, size_t n, char *p) {
        uint8_t chunk[48];

        for (size_t off = 0; off < n; off += sizeof(chunk)) {
                size_t l = MIN(sizeof(chunk), n - off);

                for (size_t i = 0; i < l; i++)
                        chunk[i] = a[off + i] ^ b[off + i];
                p = base64_encode_into(chunk, l, p);
        }
        explicit_bzero(chunk, sizeof(chunk));
        return p;
}

static bool pad_is_valid(const Allocation *pad, const uint8_t *share, size_t size) {
        return pad && pad->data && pad->n_fragments > 0 && pad->size == size && share && size > 0;
}

/* The part both bodies end with: the share index, the pad's allocation and the encrypted share. */
static size_t share_tail_length(unsigned share_index, const Allocation *pad, size_t size) {
        return decimal_length(share_index) + STRLEN(ALLOCATION) + allocation_json_length(pad) +
               STRLEN(VALUE) + base64_encoded_length(size) + STRLEN(TAIL);
}

static char *share_tail_write(char *p, unsigned share_index, const Allocation *pad, const uint8_t *share,
                              size_t size) {
        p = decimal_write(p, share_index);
        p = APPEND_LITERAL(p, ALLOCATION);
        p = allocation_json_write(pad, p);
        p = APPEND_LITERAL(p, VALUE);
        p = base64_write_xor(share, pad->data, size, p);
        p = APPEND_LITERAL(p, TAIL);
        *p = '\0';
        return p;
}

int share_post_format(const char *master_client_name, const char *master_sae_id, const char *slave_sae_id,
                      const Uuid *key_id, unsigned share_index, const Allocation *pad, const uint8_t *share,
                      size_t size, char **ret, size_t *ret_size) {
        size_t l_client, l_master, l_slave, n;
        char *body, *p;

        if (!key_id || !ret || !ret_size || !pad_is_valid(pad, share, size))
                return -EINVAL;
        /* Valid names need no escaping in a JSON string. */
        if (!name_is_valid(master_client_name) || !name_is_valid(master_sae_id) ||
            !name_is_valid(slave_sae_id))
                return -EINVAL;
        if (size > (SIZE_MAX - 4096) / 4 * 3)
                return -ENOMEM;

        l_client = strlen(master_client_name);
        l_master = strlen(master_sae_id);
        l_slave = strlen(slave_sae_id);
        n = STRLEN(POST_HEAD) + l_client + STRLEN(POST_MASTER_SAE) + l_master + STRLEN(POST_SLAVE_SAE) +
            l_slave + STRLEN(POST_KEY_ID) + UUID_STRING_MAX - 1 + STRLEN(POST_SHARE_INDEX) +
            share_tail_length(share_index, pad, size);

        body = malloc(n + 1);
        if (!body)
                return -ENOMEM;

        p = APPEND_LITERAL(body, POST_HEAD);
        p = append(p, master_client_name, l_client);
        p = APPEND_LITERAL(p, POST_MASTER_SAE);
        p = append(p, master_sae_id, l_master);
        p = APPEND_LITERAL(p, POST_SLAVE_SAE);
        p = append(p, slave_sae_id, l_slave);
        p = APPEND_LITERAL(p, POST_KEY_ID);
        (void) uuid_to_string(key_id, p); /* its NUL is overwritten next */
        p += UUID_STRING_MAX - 1;
        p = APPEND_LITERAL(p, POST_SHARE_INDEX);
        (void) share_tail_write(p, share_index, pad, share, size);

        *ret = body;
        *ret_size = n;
        return 0;
}

int share_reply_format(unsigned share_index, const Allocation *pad, const uint8_t *share, size_t size,
                       char **ret, size_t *ret_size) {
        char *body, *p;
        size_t n;

        if (!ret || !ret_size || !pad_is_valid(pad, share, size))
                return -EINVAL;
        if (size > (SIZE_MAX - 4096) / 4 * 3)
                return -ENOMEM;

        n = STRLEN(REPLY_SHARE_INDEX) + share_tail_length(share_index, pad, size);
        body = malloc(n + 1);
        if (!body)
                return -ENOMEM;

        p = APPEND_LITERAL(body, REPLY_SHARE_INDEX);
        (void) share_tail_write(p, share_index, pad, share, size);

        *ret = body;
        *ret_size = n;
        return 0;
}

/* Reading */

typedef struct Cursor {
        const char *p, *end;
} Cursor;

static bool cursor_literal(Cursor *c, const char *s, size_t n) {
        if ((size_t) (c->end - c->p) < n || memcmp(c->p, s, n) != 0)
                return false;
        c->p += n;
        return true;
}

#define CURSOR_LITERAL(c, lit) cursor_literal((c), (lit), STRLEN(lit))

static bool is_name_char(char ch) {
        return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
               ch == '.' || ch == '_' || ch == '-';
}

static bool is_base64_char(char ch) {
        return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
               ch == '+' || ch == '/' || ch == '=';
}

/* The characters of a JSON string body up to (not including) the closing quote, all of them
 * accepted by ok(). Strings with escapes or other characters are left to the general parser. */
static bool cursor_span(Cursor *c, bool (*ok)(char), const char **ret, size_t *ret_size) {
        const char *start = c->p;

        while (c->p < c->end && ok(*c->p))
                c->p++;
        if (c->p >= c->end || *c->p != '"')
                return false;
        *ret = start;
        *ret_size = (size_t) (c->p - start);
        return true;
}

/* A name-like string of 1 to max characters, copied NUL-terminated into buf (max + 1 bytes). */
static bool cursor_name(Cursor *c, char *buf, size_t max) {
        const char *s;
        size_t n;

        if (!cursor_span(c, is_name_char, &s, &n) || n == 0 || n > max)
                return false;
        memcpy(buf, s, n);
        buf[n] = '\0';
        return true;
}

/* A JSON integer in the plain form 0|[1-9][0-9]*, small enough that no parser rounds it. */
static bool cursor_uint(Cursor *c, uint64_t *ret) {
        uint64_t v = 0;
        size_t n = 0;

        while (c->p + n < c->end && c->p[n] >= '0' && c->p[n] <= '9') {
                if (n >= 18)
                        return false;
                v = v * 10 + (uint64_t) (c->p[n] - '0');
                n++;
        }
        if (n == 0 || (n > 1 && c->p[0] == '0'))
                return false;
        c->p += n;
        *ret = v;
        return true;
}

/* {"fragments":[{"block_uuid":"<uuid>","start":N,"size":N},...]} with every check that
 * allocation_from_json() makes. */
static int cursor_allocation(Cursor *c, Allocation **ret) {
        _cleanup_(allocation_freep) Allocation *a = NULL;
        int r;

        if (!CURSOR_LITERAL(c, "{\"fragments\":["))
                return -EBADMSG;

        a = allocation_new();
        if (!a)
                return -ENOMEM;

        do {
                char buf[UUID_STRING_MAX];
                uint64_t start, size;
                Uuid uuid;

                if (!CURSOR_LITERAL(c, "{\"block_uuid\":\"") ||
                    (size_t) (c->end - c->p) < UUID_STRING_MAX - 1)
                        return -EBADMSG;
                memcpy(buf, c->p, UUID_STRING_MAX - 1);
                buf[UUID_STRING_MAX - 1] = '\0';
                c->p += UUID_STRING_MAX - 1;
                if (uuid_from_string(buf, &uuid) < 0)
                        return -EBADMSG;

                if (!CURSOR_LITERAL(c, "\",\"start\":") || !cursor_uint(c, &start) ||
                    !CURSOR_LITERAL(c, ",\"size\":") || !cursor_uint(c, &size) || !CURSOR_LITERAL(c, "}"))
                        return -EBADMSG;
                if (start > PSRD_BLOCK_SIZE_MAX || size > PSRD_BLOCK_SIZE_MAX)
                        return -EBADMSG;

                r = allocation_add_fragment(a, &uuid, (size_t) start, (size_t) size);
                if (r == -ENOMEM)
                        return r;
                if (r < 0)
                        return -EBADMSG;
        } while (CURSOR_LITERAL(c, ","));

        if (!CURSOR_LITERAL(c, "]}"))
                return -EBADMSG;

        *ret = TAKE_PTR(a);
        return 0;
}

/* ,"encryption_key_allocation":{…},"encrypted_share_value":"<b64>"} and the end of the body. */
static int cursor_share_tail(Cursor *c, Allocation **ret_allocation, const char **ret_value,
                             size_t *ret_value_size) {
        _cleanup_(allocation_freep) Allocation *a = NULL;
        const char *value;
        size_t value_size;
        int r;

        if (!CURSOR_LITERAL(c, ALLOCATION))
                return -EBADMSG;
        r = cursor_allocation(c, &a);
        if (r < 0)
                return r;
        if (!CURSOR_LITERAL(c, VALUE) || !cursor_span(c, is_base64_char, &value, &value_size) ||
            !CURSOR_LITERAL(c, TAIL) || c->p != c->end)
                return -EBADMSG;

        *ret_allocation = TAKE_PTR(a);
        *ret_value = value;
        *ret_value_size = value_size;
        return 0;
}

int share_post_parse(const void *body, size_t size, SharePostView *ret) {
        SharePostView v = {};
        Cursor c = {.p = body, .end = (const char *) body + size};
        uint64_t index;
        int r;

        if (!ret || (!body && size > 0))
                return -EINVAL;
        *ret = (SharePostView){};

        if (!CURSOR_LITERAL(&c, POST_HEAD) || !cursor_name(&c, v.master_client_name, SHARE_MSG_NAME_MAX) ||
            !CURSOR_LITERAL(&c, POST_MASTER_SAE) || !cursor_name(&c, v.master_sae_id, SHARE_MSG_NAME_MAX) ||
            !CURSOR_LITERAL(&c, POST_SLAVE_SAE) || !cursor_name(&c, v.slave_sae_id, SHARE_MSG_NAME_MAX) ||
            !CURSOR_LITERAL(&c, POST_KEY_ID) || !cursor_name(&c, v.user_key_id, UUID_STRING_MAX - 1) ||
            !CURSOR_LITERAL(&c, POST_SHARE_INDEX) || !cursor_uint(&c, &index))
                return -EBADMSG;
        v.share_index = (int64_t) index;

        r = cursor_share_tail(&c, &v.encryption_key, &v.encrypted_share_value,
                              &v.encrypted_share_value_size);
        if (r < 0)
                return r;

        *ret = v;
        return 0;
}

int share_reply_parse(const void *body, size_t size, ShareReplyView *ret) {
        ShareReplyView v = {};
        Cursor c = {.p = body, .end = (const char *) body + size};
        uint64_t index;
        int r;

        if (!ret || (!body && size > 0))
                return -EINVAL;
        *ret = (ShareReplyView){};

        if (!CURSOR_LITERAL(&c, REPLY_SHARE_INDEX) || !cursor_uint(&c, &index))
                return -EBADMSG;
        v.share_index = (int64_t) index;

        r = cursor_share_tail(&c, &v.encryption_key, &v.encrypted_share_value,
                              &v.encrypted_share_value_size);
        if (r < 0)
                return r;

        *ret = v;
        return 0;
}

void share_post_view_done(SharePostView *v) {
        if (!v)
                return;
        v->encryption_key = allocation_free(v->encryption_key);
}

void share_reply_view_done(ShareReplyView *v) {
        if (!v)
                return;
        v->encryption_key = allocation_free(v->encryption_key);
}
