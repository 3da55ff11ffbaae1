/* SPDX-License-Identifier: MIT */
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "bench-conn.h"
#include "buffer.h"

/* Key containers are a few hundred bytes; anything far larger is not a node of ours. */
#define MAX_RESPONSE_HEAD ((size_t) 64 * 1024)
#define MAX_RESPONSE_BODY ((size_t) 4 * 1024 * 1024)
#define READ_CHUNK        ((size_t) 16 * 1024)

struct BenchConn {
        sd_event *event;
        union {
                struct sockaddr sa;
                struct sockaddr_in in;
                struct sockaddr_in6 in6;
        } addr;
        socklen_t addr_len;

        int fd;
        sd_event_source *source;
        uint32_t events;
        bool connecting;
        bool reused; /* the connection carried a response before: it may have been closed meanwhile */

        /* The request in flight, kept whole until its response is complete, to retry it once on a
         * fresh connection when a kept-alive one turns out to be closed. */
        BenchConnDone done;
        void *userdata;
        uint64_t since;
        char *out;
        size_t out_size, out_alloc, out_sent;

        char *in; /* NUL-terminated */
        size_t in_size, in_alloc;
};

static uint64_t now_usec(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000;
}

/* Responses carry keys: wipe what was read before the memory is reused. */
static void conn_wipe_input(BenchConn *c) {
        if (c->in)
                explicit_bzero(c->in, c->in_size);
        c->in_size = 0;
}

static void conn_close(BenchConn *c) {
        c->source = sd_event_source_disable_unref(c->source);
        c->fd = safe_close(c->fd);
        c->connecting = false;
        c->reused = false;
        c->events = 0;
        conn_wipe_input(c);
}

static void conn_finish(BenchConn *c, int error, const char *message, unsigned status, const char *body,
                        size_t body_size) {
        BenchConnDone done = c->done;
        void *userdata = c->userdata;

        c->done = NULL;
        c->userdata = NULL;
        c->out_size = c->out_sent = 0;
        if (error < 0)
                conn_close(c);
        done(c, error, message, status, body ?: "", body_size, userdata);
}

static int conn_watch(BenchConn *c, uint32_t events) {
        int k;

        if (c->events == events)
                return 0;
        k = sd_event_source_set_io_events(c->source, events);
        if (k < 0)
                return k;
        c->events = events;
        return 0;
}

static int conn_io(sd_event_source *s, int fd, uint32_t revents, void *userdata);

static int conn_connect(BenchConn *c) {
        int k;

        c->fd = socket(c->addr.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c->fd < 0)
                return -errno;
        (void) setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &(int){1}, sizeof(int));

        if (connect(c->fd, &c->addr.sa, c->addr_len) < 0) {
                if (errno != EINPROGRESS) {
                        k = -errno;
                        conn_close(c);
                        return k;
                }
                c->connecting = true;
        }
        c->events = EPOLLIN | (c->connecting ? EPOLLOUT : 0);
        k = sd_event_add_io(c->event, &c->source, c->fd, c->events, conn_io, c);
        if (k < 0) {
                conn_close(c);
                return k;
        }
        (void) sd_event_source_set_description(c->source, "bench-conn");
        return 0;
}

static int conn_flush(BenchConn *c) {
        while (c->out_sent < c->out_size) {
                ssize_t n = send(c->fd, c->out + c->out_sent, c->out_size - c->out_sent, MSG_NOSIGNAL);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                return conn_watch(c, EPOLLIN | EPOLLOUT);
                        return -errno;
                }
                c->out_sent += (size_t) n;
        }
        return conn_watch(c, EPOLLIN);
}

/* A kept-alive connection the server closed before answering: try once more on a new one. */
static int conn_retry(BenchConn *c) {
        int k;

        conn_close(c);
        k = conn_connect(c);
        if (k < 0)
                return k;
        c->out_sent = 0;
        return c->connecting ? 0 : conn_flush(c);
}

static bool header_is(const char *line, size_t len, const char *name, const char **ret_value,
                      size_t *ret_len) {
        size_t n = strlen(name);

        if (len <= n || line[n] != ':' || strncasecmp(line, name, n) != 0)
                return false;
        line += n + 1;
        len -= n + 1;
        while (len > 0 && (*line == ' ' || *line == '\t'))
                line++, len--;
        while (len > 0 && (line[len - 1] == ' ' || line[len - 1] == '\t'))
                len--;
        *ret_value = line;
        *ret_len = len;
        return true;
}

/* 1: a whole response is in c->in and was handed out; 0: more bytes needed; < 0: broken response. */
static int conn_parse(BenchConn *c, const char **ret_message) {
        const char *end, *p, *v;
        size_t head, vl, content_length = SIZE_MAX;
        unsigned status;
        bool close_after = false;

        end = memmem(c->in, c->in_size, "\r\n\r\n", 4);
        if (!end) {
                if (c->in_size > MAX_RESPONSE_HEAD) {
                        *ret_message = "Response headers too large.";
                        return -EMSGSIZE;
                }
                return 0;
        }
        head = (size_t) (end - c->in) + 4;

        if (c->in_size < 12 || strncmp(c->in, "HTTP/1.", 7) != 0 || c->in[8] != ' ' || c->in[9] < '1' ||
            c->in[9] > '5' || c->in[10] < '0' || c->in[10] > '9' || c->in[11] < '0' || c->in[11] > '9') {
                *ret_message = "Not an HTTP/1.x response.";
                return -EBADMSG;
        }
        status = (unsigned) (c->in[9] - '0') * 100 + (unsigned) (c->in[10] - '0') * 10 +
                 (unsigned) (c->in[11] - '0');

        for (p = (const char *) memchr(c->in, '\n', head) + 1; p < c->in + head - 2;) {
                const char *eol = memchr(p, '\n', (size_t) (c->in + head - p));
                size_t len = (size_t) (eol - p);

                if (len > 0 && p[len - 1] == '\r')
                        len--;
                if (header_is(p, len, "Content-Length", &v, &vl)) {
                        size_t n = 0;
                        if (vl == 0 || vl > 9) {
                                *ret_message = "Bad Content-Length.";
                                return -EBADMSG;
                        }
                        for (size_t i = 0; i < vl; i++) {
                                if (v[i] < '0' || v[i] > '9') {
                                        *ret_message = "Bad Content-Length.";
                                        return -EBADMSG;
                                }
                                n = n * 10 + (size_t) (v[i] - '0');
                        }
                        content_length = n;
                } else if (header_is(p, len, "Transfer-Encoding", &v, &vl)) {
                        *ret_message = "Chunked responses are not supported.";
                        return -EBADMSG;
                } else if (header_is(p, len, "Connection", &v, &vl))
                        close_after = vl == 5 && strncasecmp(v, "close", 5) == 0;
                p = eol + 1;
        }

        /* An interim response: the final one follows. */
        if (status < 200) {
                memmove(c->in, c->in + head, c->in_size - head);
                explicit_bzero(c->in + c->in_size - head, head);
                c->in_size -= head;
                c->in[c->in_size] = 0;
                return conn_parse(c, ret_message);
        }
        if (content_length == SIZE_MAX) {
                *ret_message = "Response without Content-Length.";
                return -EBADMSG;
        }
        if (content_length > MAX_RESPONSE_BODY) {
                *ret_message = "Response too large.";
                return -EMSGSIZE;
        }
        if (c->in_size < head + content_length)
                return 0;
        if (c->in_size > head + content_length) {
                *ret_message = "Unexpected bytes after the response.";
                return -EBADMSG;
        }

        /* The body is followed by the NUL that terminates c->in. */
        c->reused = true;
        conn_finish(c, 0, NULL, status, c->in + head, content_length);
        conn_wipe_input(c);
        if (close_after)
                conn_close(c);
        return 1;
}

static int conn_read(BenchConn *c) {
        const char *message = NULL;
        int k;

        for (;;) {
                ssize_t n;

                k = buffer_reserve((void **) &c->in, &c->in_alloc, c->in_size + READ_CHUNK + 1);
                if (k < 0) {
                        message = "Out of memory.";
                        break;
                }
                n = recv(c->fd, c->in + c->in_size, READ_CHUNK, 0);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN)
                        return 0;
                if (n <= 0) {
                        bool retry = n == 0 && c->in_size == 0 && c->reused && c->done;

                        if (!c->done) {
                                /* An idle connection the server closed: reconnect on the next request. */
                                conn_close(c);
                                return 0;
                        }
                        if (retry && conn_retry(c) >= 0)
                                return 0;
                        k = n == 0 ? -ECONNRESET : -errno;
                        message = n == 0 ? "Connection closed by the server." : strerror(-k);
                        break;
                }
                c->in_size += (size_t) n;
                c->in[c->in_size] = 0;
                if (!c->done) {
                        /* Nothing was asked: whatever this is, the connection is not usable. */
                        conn_close(c);
                        return 0;
                }
                k = conn_parse(c, &message);
                if (k != 0)
                        break;
        }
        if (k < 0 && c->done)
                conn_finish(c, k, message, 0, NULL, 0);
        return 0;
}

static int conn_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        BenchConn *c = userdata;
        int k;

        if (c->connecting && (revents & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
                int error = 0;
                socklen_t len = sizeof(error);

                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) < 0)
                        error = errno;
                if (error != 0) {
                        if (c->done)
                                conn_finish(c, -error, strerror(error), 0, NULL, 0);
                        else
                                conn_close(c);
                        return 0;
                }
                c->connecting = false;
        }
        if ((revents & EPOLLOUT) && !c->connecting && c->done) {
                k = conn_flush(c);
                if (k < 0) {
                        conn_finish(c, k, strerror(-k), 0, NULL, 0);
                        return 0;
                }
        }
        if (revents & (EPOLLIN | EPOLLERR | EPOLLHUP))
                return conn_read(c);
        return 0;
}

int bench_conn_new(sd_event *event, const char *address, uint16_t port, BenchConn **ret) {
        BenchConn *c;

        c = calloc(1, sizeof(BenchConn));
        if (!c)
                return -ENOMEM;
        c->fd = -EBADF;
        if (inet_pton(AF_INET, address, &c->addr.in.sin_addr) == 1) {
                c->addr.in.sin_family = AF_INET;
                c->addr.in.sin_port = htons(port);
                c->addr_len = sizeof(struct sockaddr_in);
        } else if (inet_pton(AF_INET6, address, &c->addr.in6.sin6_addr) == 1) {
                c->addr.in6.sin6_family = AF_INET6;
                c->addr.in6.sin6_port = htons(port);
                c->addr_len = sizeof(struct sockaddr_in6);
        } else {
                free(c);
                return -EINVAL;
        }
        c->event = sd_event_ref(event);
        *ret = c;
        return 0;
}

BenchConn *bench_conn_free(BenchConn *c) {
        if (!c)
                return NULL;
        conn_close(c);
        if (c->in)
                explicit_bzero(c->in, c->in_alloc);
        free(c->in);
        free(c->out);
        sd_event_unref(c->event);
        free(c);
        return NULL;
}

int bench_conn_request(BenchConn *c, const void *request, size_t size, BenchConnDone done, void *userdata) {
        int k;

        assert(c);
        assert(request);
        assert(done);

        if (c->done)
                return -EBUSY;
        k = buffer_reserve((void **) &c->out, &c->out_alloc, size);
        if (k < 0)
                return k;
        memcpy(c->out, request, size);
        c->out_size = size;
        c->out_sent = 0;

        if (c->fd < 0) {
                k = conn_connect(c);
                if (k < 0)
                        return k;
        }
        c->done = done;
        c->userdata = userdata;
        c->since = now_usec();
        if (c->connecting)
                return 0;
        k = conn_flush(c);
        if (k < 0 && c->reused)
                k = conn_retry(c);
        if (k < 0) {
                c->done = NULL;
                c->userdata = NULL;
                conn_close(c);
                return k;
        }
        return 0;
}

bool bench_conn_busy(const BenchConn *c, uint64_t *ret_since) {
        if (!c || !c->done)
                return false;
        if (ret_since)
                *ret_since = c->since;
        return true;
}

void bench_conn_abort(BenchConn *c, int error, const char *message) {
        if (c && c->done)
                conn_finish(c, error, message, 0, NULL, 0);
}
