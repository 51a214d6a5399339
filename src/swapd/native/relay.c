/* swapd's native relay: the body of an engine's chunked response moved from the engine's
 * socket to the client's socket by a thread of its own, with no Python (and no GIL) per frame.
 *
 * Python (swapd.native) does everything up to and including the response head, then hands
 * over both sockets with relay_add(): this thread reads the engine's socket, follows the
 * chunked framing (to find the response's end and to meter the body), and writes each read
 * to the client as it came, so a paced stream still reaches the client frame by frame. When
 * the client's socket is full it stops reading the engine's until the client catches up.
 * A flow ends when the terminating chunk has been written (DONE), or when the engine closes
 * or breaks the framing, the client goes away, the engine is idle too long, or Python aborts
 * it; ended flows are queued for relay_next() and the notify eventfd is written.
 *
 * Per flow the thread keeps what swapd's meter and capture need: the body's size, the time of
 * its first byte (CLOCK_MONOTONIC, as Python's time.monotonic), its first HEAD_MAX and last
 * TAIL_MAX bytes, and up to `keep` bytes of it for a capture. The sockets are dup()ed: Python
 * may close its own while the thread still holds them.
 *
 * The native front (front.c, included at the end) serves whole requests with these parts.
 *
 * scan_names() finds the names of token numbers in a body window for swapd.observe.activity,
 * and scan_request() a JSON request body's model for swapd.proxy.body, on whichever thread
 * asks (they keep no state).
 *
 * Only the C library and POSIX threads: built by hatch_build.py, loaded with ctypes. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUF_SIZE 65536
#define EVENTS 256
#define HEAD_MAX 4096
#define TAIL_MAX 16384
#define IDLE_CHECK 0.1 /* seconds between two looks for idle engines */

enum { RUNNING = 0, DONE, UPSTREAM_CLOSED, CLIENT_GONE, IDLE, ABORTED, BAD_FRAMING };

enum { C_SIZE, C_EXT, C_SIZE_LF, C_DATA, C_DATA_CR, C_DATA_LF, C_TRAILER, C_TRAILER_LINE,
       C_TRAILER_LF, C_FINAL_LF, C_END };

typedef struct flow {
    int64_t id;
    int up, cl;                  /* the dup()ed sockets: engine, client */
    int state, digits;           /* the chunk parser */
    uint64_t acc, left;
    int end, err, extra;         /* why it ended, errno, bytes past the end */
    int abort;                   /* asked by Python (atomic) */
    int queued;                  /* in the done list (under lock): relay_next may take it */
    int complete;                /* the terminating chunk is read; written once out is empty */
    int waiting;                 /* out holds bytes the client's socket did not take yet */
    char *out;
    size_t out_len, out_off;
    double idle, last, first;    /* idle limit (0: none), last read, first body byte (0) */
    int64_t size;                /* body bytes (without the chunk framing) */
    char head[HEAD_MAX];
    size_t head_len;
    char tail[TAIL_MAX];         /* a ring: the last TAIL_MAX body bytes */
    size_t tail_pos;
    int64_t tail_total;
    char *keep;                  /* up to keep_max body bytes, for a capture */
    size_t keep_len, keep_cap, keep_max;
    int keep_cut;                /* more came than keep_max */
    struct flow *prev, *next;    /* in one of the relay's lists */
} flow;

typedef struct {
    int64_t id;
    int32_t end, err;
    int32_t extra, keep_cut;
    int64_t size;
    double first;
    int64_t head_len, tail_len, keep_len;
    char *keep;                  /* the caller owns it: relay_free() */
    char head[HEAD_MAX];
    char tail[TAIL_MAX];
} result;

typedef struct {
    int ep, control, notify;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t queued;          /* broadcast when ended flows join the done list */
    flow *incoming, *active, *done; /* incoming and done under lock; active: the thread's */
    int stopping, timed;
} relay;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void push(flow **list, flow *f) {
    f->prev = NULL;
    f->next = *list;
    if (*list) (*list)->prev = f;
    *list = f;
}

static void unlink_flow(flow **list, flow *f) {
    if (f->prev) f->prev->next = f->next; else *list = f->next;
    if (f->next) f->next->prev = f->prev;
    f->prev = f->next = NULL;
}

static void signal_fd(int fd) {
    uint64_t one = 1;
    ssize_t n = write(fd, &one, sizeof one);
    (void)n; /* a full eventfd counter still wakes the reader */
}

/* The body bytes [p, p+n): metered, and kept for the capture. */
static void body(flow *f, const char *p, size_t n) {
    if (!n) return;
    if (f->first == 0.0) f->first = now();
    __atomic_store_n(&f->size, f->size + (int64_t)n, __ATOMIC_RELAXED);
    if (f->head_len < HEAD_MAX) {
        size_t k = HEAD_MAX - f->head_len < n ? HEAD_MAX - f->head_len : n;
        memcpy(f->head + f->head_len, p, k);
        f->head_len += k;
    }
    const char *q = p;
    size_t m = n;
    if (m > TAIL_MAX) { q += m - TAIL_MAX; m = TAIL_MAX; }
    size_t first = TAIL_MAX - f->tail_pos < m ? TAIL_MAX - f->tail_pos : m;
    memcpy(f->tail + f->tail_pos, q, first);
    memcpy(f->tail, q + first, m - first);
    f->tail_pos = (f->tail_pos + m) % TAIL_MAX;
    f->tail_total += (int64_t)n;
    if (f->keep_max) {
        size_t room = f->keep_max - f->keep_len;
        size_t k = n < room ? n : room;
        if (k < n) f->keep_cut = 1;
        if (k) {
            if (f->keep_len + k > f->keep_cap) {
                size_t cap = f->keep_cap ? f->keep_cap : 65536;
                while (cap < f->keep_len + k) cap *= 2;
                if (cap > f->keep_max) cap = f->keep_max;
                char *grown = realloc(f->keep, cap);
                if (!grown) { f->keep_cut = 1; f->keep_max = f->keep_len; return; }
                f->keep = grown;
                f->keep_cap = cap;
            }
            memcpy(f->keep + f->keep_len, p, k);
            f->keep_len += k;
        }
    }
}

static int hex(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Follow the chunked framing over [p, p+n); returns how many bytes belong to this response
 * (all of them until its end), or -1 on bad framing. */
static ssize_t parse(flow *f, const char *p, size_t n) {
    size_t i = 0;
    while (i < n) {
        char c = p[i];
        switch (f->state) {
        case C_SIZE: {
            int d = hex(c);
            if (d >= 0) {
                if (f->acc >> 56) return -1; /* no chunk is that large */
                f->acc = f->acc * 16 + (uint64_t)d;
                f->digits++;
            } else if (f->digits && (c == ';' || c == ' ' || c == '\t')) {
                f->state = C_EXT;
            } else if (f->digits && c == '\r') {
                f->state = C_SIZE_LF;
            } else {
                return -1;
            }
            i++;
            break;
        }
        case C_EXT:
            if (c == '\r') f->state = C_SIZE_LF;
            i++;
            break;
        case C_SIZE_LF:
            if (c != '\n') return -1;
            i++;
            if (f->acc == 0) {
                f->state = C_TRAILER;
            } else {
                f->left = f->acc;
                f->state = C_DATA;
            }
            break;
        case C_DATA: {
            size_t k = n - i < f->left ? n - i : (size_t)f->left;
            body(f, p + i, k);
            f->left -= k;
            i += k;
            if (!f->left) f->state = C_DATA_CR;
            break;
        }
        case C_DATA_CR:
            if (c != '\r') return -1;
            f->state = C_DATA_LF;
            i++;
            break;
        case C_DATA_LF:
            if (c != '\n') return -1;
            f->state = C_SIZE;
            f->acc = 0;
            f->digits = 0;
            i++;
            break;
        case C_TRAILER:
            f->state = c == '\r' ? C_FINAL_LF : C_TRAILER_LINE;
            i++;
            break;
        case C_TRAILER_LINE:
            if (c == '\r') f->state = C_TRAILER_LF;
            i++;
            break;
        case C_TRAILER_LF:
            if (c != '\n') return -1;
            f->state = C_TRAILER;
            i++;
            break;
        case C_FINAL_LF:
            if (c != '\n') return -1;
            f->state = C_END;
            return (ssize_t)(i + 1);
        default:
            return (ssize_t)i;
        }
    }
    return (ssize_t)n;
}

static void finish(relay *r, flow *f, int end, int err, flow **ended) {
    if (f->end) return;
    f->end = end;
    f->err = err;
    epoll_ctl(r->ep, EPOLL_CTL_DEL, f->up, NULL);
    epoll_ctl(r->ep, EPOLL_CTL_DEL, f->cl, NULL);
    close(f->up);
    close(f->cl);
    f->up = f->cl = -1;
    if (f->idle > 0) r->timed--;
    unlink_flow(&r->active, f);
    push(ended, f);
}

static void watch(relay *r, flow *f, int waiting) {
    struct epoll_event ev;
    f->waiting = waiting;
    ev.events = waiting ? 0 : EPOLLIN;
    ev.data.ptr = f;
    epoll_ctl(r->ep, EPOLL_CTL_MOD, f->up, &ev);
    ev.events = waiting ? EPOLLOUT : 0;
    ev.data.ptr = (void *)((uintptr_t)f | 1);
    epoll_ctl(r->ep, EPOLL_CTL_MOD, f->cl, &ev);
}

/* Write what the client has not taken yet; DONE once it is all out after the last chunk. */
static void flush(relay *r, flow *f, flow **ended) {
    while (f->out_off < f->out_len) {
        ssize_t w = send(f->cl, f->out + f->out_off, f->out_len - f->out_off, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (!f->waiting) watch(r, f, 1);
                return;
            }
            finish(r, f, CLIENT_GONE, errno, ended);
            return;
        }
        f->out_off += (size_t)w;
    }
    f->out_off = f->out_len = 0;
    if (f->complete) {
        finish(r, f, DONE, 0, ended);
        return;
    }
    if (f->waiting) {
        f->last = now(); /* a client that was behind is not an idle engine */
        watch(r, f, 0);
    }
}

static void readable(relay *r, flow *f, char *buf, flow **ended) {
    if (f->waiting) return; /* the client has bytes to take first */
    ssize_t n = recv(f->up, buf, BUF_SIZE, 0);
    if (n < 0) {
        if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) return;
        finish(r, f, UPSTREAM_CLOSED, errno, ended);
        return;
    }
    if (n == 0) {
        finish(r, f, UPSTREAM_CLOSED, 0, ended);
        return;
    }
    f->last = now();
    ssize_t used = parse(f, buf, (size_t)n);
    if (used < 0) {
        finish(r, f, BAD_FRAMING, 0, ended);
        return;
    }
    if (used < n) f->extra = 1;
    if (f->state == C_END) f->complete = 1;
    size_t off = 0;
    while (off < (size_t)used) {
        ssize_t w = send(f->cl, buf + off, (size_t)used - off, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            finish(r, f, CLIENT_GONE, errno, ended);
            return;
        }
        off += (size_t)w;
    }
    if (off < (size_t)used) { /* the client is behind: keep the rest, stop reading */
        size_t rest = (size_t)used - off;
        char *out = malloc(rest);
        if (!out) {
            finish(r, f, CLIENT_GONE, ENOMEM, ended);
            return;
        }
        memcpy(out, buf + off, rest);
        free(f->out);
        f->out = out;
        f->out_len = rest;
        f->out_off = 0;
        watch(r, f, 1);
        return;
    }
    if (f->complete) finish(r, f, DONE, 0, ended);
}

static void control(relay *r, flow **ended) {
    uint64_t count;
    ssize_t n = read(r->control, &count, sizeof count);
    (void)n;
    pthread_mutex_lock(&r->lock);
    while (r->incoming) {
        flow *f = r->incoming;
        unlink_flow(&r->incoming, f);
        push(&r->active, f);
        if (f->idle > 0) r->timed++;
        struct epoll_event ev;
        ev.events = EPOLLIN;
        ev.data.ptr = f;
        int bad = epoll_ctl(r->ep, EPOLL_CTL_ADD, f->up, &ev) < 0;
        ev.events = 0;
        ev.data.ptr = (void *)((uintptr_t)f | 1);
        bad = bad || epoll_ctl(r->ep, EPOLL_CTL_ADD, f->cl, &ev) < 0;
        if (bad) finish(r, f, ABORTED, errno, ended);
    }
    pthread_mutex_unlock(&r->lock);
    for (flow *f = r->active, *next; f; f = next) {
        next = f->next;
        if (__atomic_load_n(&f->abort, __ATOMIC_ACQUIRE)) finish(r, f, ABORTED, 0, ended);
    }
}

static void check_idle(relay *r, flow **ended) {
    double t = now();
    for (flow *f = r->active, *next; f; f = next) {
        next = f->next;
        if (f->idle > 0 && !f->waiting && t - f->last > f->idle) finish(r, f, IDLE, 0, ended);
    }
}

static void *run(void *arg) {
    relay *r = arg;
    struct epoll_event events[EVENTS];
    char *buf = malloc(BUF_SIZE);
    double checked = now();
    for (;;) {
        int n = epoll_wait(r->ep, events, EVENTS, r->timed ? (int)(IDLE_CHECK * 1000) : -1);
        if (n < 0 && errno != EINTR) break;
        flow *ended = NULL;
        for (int i = 0; i < n; i++) {
            void *p = events[i].data.ptr;
            if (!p) {
                control(r, &ended);
                continue;
            }
            flow *f = (flow *)((uintptr_t)p & ~(uintptr_t)1);
            if (f->end) continue; /* ended earlier in this batch */
            uint32_t e = events[i].events;
            if ((uintptr_t)p & 1) { /* the client's socket */
                if (e & (EPOLLERR | EPOLLHUP)) finish(r, f, CLIENT_GONE, 0, &ended);
                else if (e & EPOLLOUT) flush(r, f, &ended);
            } else if (e & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
                if (buf) readable(r, f, buf, &ended);
            }
        }
        if (r->timed && now() - checked >= IDLE_CHECK) {
            checked = now();
            check_idle(r, &ended);
        }
        pthread_mutex_lock(&r->lock);
        int stop = r->stopping;
        int any = ended != NULL;
        while (ended) {
            flow *f = ended;
            unlink_flow(&ended, f);
            f->queued = 1;
            push(&r->done, f);
        }
        if (any) pthread_cond_broadcast(&r->queued);
        pthread_mutex_unlock(&r->lock);
        if (any) signal_fd(r->notify);
        if (stop) break;
    }
    free(buf);
    return NULL;
}

static void drop(flow *f) {
    if (f->up >= 0) close(f->up);
    if (f->cl >= 0) close(f->cl);
    free(f->out);
    free(f->keep);
    free(f);
}

void *relay_create(void) {
    relay *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->ep = epoll_create1(EPOLL_CLOEXEC);
    r->control = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    r->notify = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->queued, NULL);
    struct epoll_event ev;
    ev.events = EPOLLIN;
    ev.data.ptr = NULL;
    if (r->ep < 0 || r->control < 0 || r->notify < 0 ||
        epoll_ctl(r->ep, EPOLL_CTL_ADD, r->control, &ev) < 0 ||
        pthread_create(&r->thread, NULL, run, r) != 0) {
        if (r->ep >= 0) close(r->ep);
        if (r->control >= 0) close(r->control);
        if (r->notify >= 0) close(r->notify);
        free(r);
        return NULL;
    }
    pthread_setname_np(r->thread, "swapd-relay"); /* shows in /proc/PID/task/TID/comm */
    return r;
}

/* The fd Python watches: readable when relay_next() has something. */
int relay_notify_fd(void *h) { return ((relay *)h)->notify; }

/* Hand over a response body: the flow (for relay_abort, relay_settle and relay_size, until
 * relay_next has returned it), or NULL with errno set. */
void *relay_add(void *h, int64_t id, int up, int cl, double idle, int64_t keep) {
    relay *r = h;
    flow *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    f->id = id;
    f->up = dup(up);
    f->cl = dup(cl);
    if (f->up < 0 || f->cl < 0) {
        int err = errno;
        drop(f);
        errno = err;
        return NULL;
    }
    f->state = C_SIZE;
    f->idle = idle;
    f->last = now();
    f->keep_max = keep > 0 ? (size_t)keep : 0;
    pthread_mutex_lock(&r->lock);
    push(&r->incoming, f);
    pthread_mutex_unlock(&r->lock);
    signal_fd(r->control);
    return f;
}

/* Ask the thread to end a flow (ABORTED); a flow that has ended already keeps its end. */
void relay_abort(void *h, void *flow_) {
    flow *f = flow_;
    __atomic_store_n(&f->abort, 1, __ATOMIC_RELEASE);
    signal_fd(((relay *)h)->control);
}

/* relay_abort, then wait until the thread has queued the flow for relay_next: its end is then
 * known (DONE when the last chunk was written before the abort came, else ABORTED). */
void relay_settle(void *h, void *flow_) {
    relay *r = h;
    flow *f = flow_;
    relay_abort(h, f);
    pthread_mutex_lock(&r->lock);
    while (!f->queued && !r->stopping) pthread_cond_wait(&r->queued, &r->lock);
    pthread_mutex_unlock(&r->lock);
}

/* The body bytes a flow has relayed so far. */
int64_t relay_size(void *flow_) {
    return __atomic_load_n(&((flow *)flow_)->size, __ATOMIC_RELAXED);
}

/* The body's last TAIL_MAX bytes (fewer for a shorter body) into out, in order; their count. */
static int64_t tail_of(const flow *f, char *out) {
    size_t t = f->tail_total < TAIL_MAX ? (size_t)f->tail_total : TAIL_MAX;
    size_t start = (f->tail_pos + TAIL_MAX - t) % TAIL_MAX;
    size_t first = TAIL_MAX - start < t ? TAIL_MAX - start : t;
    memcpy(out, f->tail + start, first);
    memcpy(out + first, f->tail, t - first);
    return (int64_t)t;
}

/* One ended flow into *out (1), or none left (0). The caller reads the notify fd first, then
 * calls this until it returns 0. */
int relay_next(void *h, result *out) {
    relay *r = h;
    pthread_mutex_lock(&r->lock);
    flow *f = r->done;
    if (f) unlink_flow(&r->done, f);
    pthread_mutex_unlock(&r->lock);
    if (!f) return 0;
    out->id = f->id;
    out->end = f->end;
    out->err = f->err;
    out->extra = f->extra;
    out->keep_cut = f->keep_cut;
    out->size = f->size;
    out->first = f->first;
    out->head_len = (int64_t)f->head_len;
    memcpy(out->head, f->head, f->head_len);
    out->tail_len = tail_of(f, out->tail);
    out->keep = f->keep;
    out->keep_len = (int64_t)f->keep_len;
    f->keep = NULL;
    drop(f);
    return 1;
}

void relay_free(void *p) { free(p); }

/* Stop the thread and close every flow's sockets. */
void relay_destroy(void *h) {
    relay *r = h;
    pthread_mutex_lock(&r->lock);
    r->stopping = 1;
    pthread_mutex_unlock(&r->lock);
    signal_fd(r->control);
    pthread_cond_broadcast(&r->queued);
    pthread_join(r->thread, NULL);
    flow *lists[3] = {r->incoming, r->active, r->done};
    for (int i = 0; i < 3; i++) {
        for (flow *f = lists[i], *next; f; f = next) {
            next = f->next;
            drop(f);
        }
    }
    close(r->ep);
    close(r->control);
    close(r->notify);
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->queued);
    free(r);
}

/* Where the quoted names "usage", "timings" and "num_cached_tokens" start in [p, p+n), in
 * order: the places swapd.observe.activity looks for token numbers in a body window. The same
 * places as one bytes.find loop per name (a name's matches do not overlap each other), found
 * 16 bytes at a time: a quote followed by u, t or n is rare in JSON, while quotes, and the
 * names' letters, are everywhere. Returns how many there are; at most max are written. */
typedef unsigned char v16 __attribute__((vector_size(16)));

static const char *const NAMES[3] = {"\"usage\"", "\"timings\"", "\"num_cached_tokens\""};
static const int64_t NAME_LENS[3] = {7, 9, 19};

int64_t scan_names(const char *p, int64_t n, int64_t *out, int64_t max) {
    const v16 quote = {'"', '"', '"', '"', '"', '"', '"', '"', '"', '"', '"', '"', '"', '"', '"', '"'};
    const v16 u = quote - '"' + 'u', t = quote - '"' + 't', m = quote - '"' + 'n';
    int64_t next[3] = {0, 0, 0}; /* per name: where its next match may start */
    int64_t count = 0, i = 0;
    while (i < n) {
        int64_t stop = n;
        if (i + 17 <= n) {
            v16 a, b;
            uint64_t w[2];
            memcpy(&a, p + i, 16);
            memcpy(&b, p + i + 1, 16);
            v16 hit = (v16)(a == quote) & (v16)((b == u) | (b == t) | (b == m));
            memcpy(w, &hit, 16);
            if (!(w[0] | w[1])) {
                i += 16;
                continue;
            }
            stop = i + 16;
        }
        for (; i < stop; i++) {
            if (p[i] != '"' || i + 1 >= n) continue;
            char c = p[i + 1];
            int k = c == 'u' ? 0 : c == 't' ? 1 : c == 'n' ? 2 : -1;
            if (k < 0 || i < next[k] || n - i < NAME_LENS[k]) continue;
            if (memcmp(p + i, NAMES[k], (size_t)NAME_LENS[k]) != 0) continue;
            if (count < max) out[count] = i;
            count++;
            next[k] = i + NAME_LENS[k];
        }
    }
    return count;
}

/* -- A request body's model, without parsing it into objects ---------------------------------
 *
 * scan_request() reads a JSON body once, checking what json.loads would check, and notes the
 * top-level "model" and "stream" (the last of each, as json.loads keeps). It is conservative:
 * it returns 1 only for a body json.loads accepts as an object, and 0 for anything it does not
 * follow, so that Python parses it and says what is wrong: invalid JSON, a byte-order mark or
 * UTF-16/32, NaN or Infinity, a surrogate in UTF-8, a top-level key with escapes, nesting
 * deeper than max_depth (or SCAN_DEPTH), a "stream" that is an array or an object.
 * out[0], out[1]: the model string's bytes (inside its quotes); out[2]: 0 no "model", 1 a
 * string without escapes, 2 a string with escapes, 3 not a string; out[3]: whether "stream"
 * is truthy (Python's bool() of its value). */
#define SCAN_DEPTH 256

typedef const unsigned char *cursor;

#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL

static cursor spaces(cursor s, cursor e) {
    while (s < e && (*s == ' ' || *s == '\n' || *s == '\r' || *s == '\t')) s++;
    return s;
}

/* A UTF-8 sequence's length at s (2 to 4), or 0 when it is not one Python's strict decoder
 * takes (a surrogate is refused: Python would take it with surrogatepass; it parses those). */
static int utf8_length(cursor s, cursor e) {
    unsigned c = s[0];
    if (c >= 0xC2 && c <= 0xDF) return e - s >= 2 && (s[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        if (e - s < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80) return 0;
        if ((c == 0xE0 && s[1] < 0xA0) || (c == 0xED && s[1] >= 0xA0)) return 0;
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (e - s < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80)
            return 0;
        if ((c == 0xF0 && s[1] < 0x90) || (c == 0xF4 && s[1] >= 0x90)) return 0;
        return 4;
    }
    return 0;
}

static int hex4(cursor s) {
    for (int i = 0; i < 4; i++)
        if (hex((char)s[i]) < 0) return 0;
    return 1;
}

/* The string at *at (its opening quote): *at moves past its closing quote; *escaped is set when
 * it holds an escape. 0 when it is not a valid JSON string. Plain ASCII goes 8 bytes a step. */
static int string_at(cursor *at, cursor e, int *escaped) {
    cursor s = *at + 1;
    for (;;) {
        while (e - s >= 8) {
            uint64_t w;
            memcpy(&w, s, 8);
            uint64_t quote = w ^ (ONES * '"'), slash = w ^ (ONES * '\\');
            uint64_t stop = (w & HIGHS) | ((w - ONES * 0x20) & ~w & HIGHS) |
                            ((quote - ONES) & ~quote & HIGHS) | ((slash - ONES) & ~slash & HIGHS);
            if (stop) break;
            s += 8;
        }
        if (s >= e) return 0;
        unsigned c = *s;
        if (c == '"') {
            *at = s + 1;
            return 1;
        }
        if (c == '\\') {
            *escaped = 1;
            if (e - s < 2) return 0;
            c = s[1];
            if (c == 'u') {
                if (e - s < 6 || !hex4(s + 2)) return 0;
                s += 6;
            } else if (c == '"' || c == '\\' || c == '/' || c == 'b' || c == 'f' || c == 'n' ||
                       c == 'r' || c == 't') {
                s += 2;
            } else {
                return 0;
            }
        } else if (c < 0x20) {
            return 0;
        } else if (c < 0x80) {
            s++;
        } else {
            int n = utf8_length(s, e);
            if (!n) return 0;
            s += n;
        }
    }
}

/* The number at *at (json's -?(0|[1-9]\d*)(\.\d+)?([eE][-+]?\d+)?); *nonzero: a digit of its
 * integer or fraction part is not 0 (1: yes, 0: no, -1: it has an exponent, which may take a
 * float to 0 or infinity: its truth is Python's to tell). */
static int number_at(cursor *at, cursor e, int *nonzero) {
    cursor s = *at;
    if (s < e && *s == '-') s++;
    if (s >= e || *s < '0' || *s > '9') return 0;
    if (*s == '0') {
        s++;
    } else {
        while (s < e && *s >= '0' && *s <= '9') s++;
        *nonzero = 1;
    }
    if (s < e && *s == '.') {
        s++;
        if (s >= e || *s < '0' || *s > '9') return 0;
        while (s < e && *s >= '0' && *s <= '9') {
            if (*s != '0') *nonzero = 1;
            s++;
        }
    }
    if (s < e && (*s == 'e' || *s == 'E')) {
        *nonzero = -1;
        s++;
        if (s < e && (*s == '+' || *s == '-')) s++;
        if (s >= e || *s < '0' || *s > '9') return 0;
        while (s < e && *s >= '0' && *s <= '9') s++;
    }
    *at = s;
    return 1;
}

static int word_at(cursor *at, cursor e, const char *word, size_t n) {
    if ((size_t)(e - *at) < n || memcmp(*at, word, n) != 0) return 0;
    *at += n;
    return 1;
}

int scan_request(const char *p, int64_t n, int64_t max_depth, int64_t *out) {
    cursor base = (cursor)p, s = base, e = base + n;
    char stack[SCAN_DEPTH];
    int depth = 0;
    int64_t limit = max_depth < SCAN_DEPTH ? max_depth : SCAN_DEPTH;
    int field = 0; /* the value being read is the top level's 1: "model", 2: "stream" */
    out[0] = out[1] = -1;
    out[2] = out[3] = 0;
    s = spaces(s, e);
    if (s >= e || *s != '{') return 0;
    for (;;) { /* at a value */
        s = spaces(s, e);
        if (s >= e) return 0;
        unsigned c = *s;
        if (field == 1) out[2] = 3; /* not a string, unless the string branch says so */
        if (c == '{' || c == '[') {
            if (depth >= limit) return 0;
            cursor inside = spaces(s + 1, e);
            int empty = inside < e && *inside == (c == '{' ? '}' : ']');
            if (field == 2) return 0; /* a container's truth: Python's to tell */
            field = 0;
            stack[depth++] = (char)c;
            s = inside;
            if (empty) {
                s++;
                depth--;
            } else if (c == '{') {
                goto key;
            } else {
                continue;
            }
        } else if (c == '"') {
            cursor start = s;
            int escaped = 0;
            if (!string_at(&s, e, &escaped)) return 0;
            if (field == 1) {
                out[0] = start + 1 - base;
                out[1] = s - 1 - base;
                out[2] = escaped ? 2 : 1;
            } else if (field == 2) {
                out[3] = s - start > 2;
            }
        } else if (c == '-' || (c >= '0' && c <= '9')) {
            int nonzero = 0;
            if (!number_at(&s, e, &nonzero)) return 0;
            if (field == 2 && nonzero < 0) return 0;
            if (field == 2) out[3] = nonzero;
        } else if (word_at(&s, e, "true", 4)) {
            if (field == 2) out[3] = 1;
        } else if (word_at(&s, e, "false", 5) || word_at(&s, e, "null", 4)) {
            if (field == 2) out[3] = 0;
        } else {
            return 0;
        }
        field = 0;
        for (;;) { /* after a value */
            if (depth == 0) return spaces(s, e) == e;
            s = spaces(s, e);
            if (s >= e) return 0;
            char open = stack[depth - 1];
            if (*s == ',') {
                s++;
                if (open == '{') goto key;
                break;
            }
            if (*s != (open == '{' ? '}' : ']')) return 0;
            s++;
            depth--;
        }
        continue;
    key:
        s = spaces(s, e);
        if (s >= e || *s != '"') return 0;
        {
            cursor start = s;
            int escaped = 0;
            if (!string_at(&s, e, &escaped)) return 0;
            if (depth == 1) {
                if (escaped) return 0; /* it might spell "model" */
                size_t len = (size_t)(s - start - 2);
                if (len == 5 && !memcmp(start + 1, "model", 5)) field = 1;
                else if (len == 6 && !memcmp(start + 1, "stream", 6)) field = 2;
            }
        }
        s = spaces(s, e);
        if (s >= e || *s != ':') return 0;
        s++;
    }
}

/* -- A request's head, for a native front ----------------------------------------------------
 *
 * scan_head() reads the head of one HTTP/1.1 request (the request line and the header fields,
 * up to the empty line) and notes what a front needs to route it without Python: the method,
 * the target, the body's content-length, whether the connection closes after it, and where the
 * fields a request is checked by (Host, Authorization, X-Api-Key, Origin, Content-Type) are. It
 * is conservative, as scan_request is: it vouches (returns the head's length) only for a head
 * that llhttp (uvicorn's parser) takes and reads the same way, and returns -1 for anything that
 * is unusual rather than wrong, so that Python serves it: another HTTP version, a method not in
 * METHODS, a target not in origin form or with bytes outside VISIBLE, a byte above 0x7E in a
 * field, a folded line, a Transfer-Encoding, Expect or Upgrade field, a Connection field other
 * than one close or keep-alive, two of a field noted here (or of Content-Length), a
 * content-length of more than 15 digits, more than HEAD_FIELDS fields or HEAD_LIMIT bytes. It
 * returns 0 while everything so far could begin such a head: read more, then ask again.
 * out: METHOD_AT, the method's index in METHODS; TARGET_AT and +1, the target's bytes; LENGTH_AT,
 * the content-length (-1 when none); CLOSE_AT, 1 for "Connection: close"; then for each noted
 * field, its value's bytes with the spaces around it left out (-1, 0 when it is absent). */
#define HEAD_LIMIT 16384
#define HEAD_FIELDS 100

static const char *const METHODS[] = {"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"};
static const char *const NOTED[] = {"host", "authorization", "x-api-key", "origin",
                                    "content-type"};
enum { METHOD_AT, TARGET_AT, LENGTH_AT = 3, CLOSE_AT, NOTED_AT, HEAD_OUT = NOTED_AT + 10 };

static int tchar(unsigned c) { /* RFC 9110's token characters */
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return 1;
    return c && strchr("!#$%&'*+-.^_`|~", (int)c) != NULL;
}

static int visible(unsigned c) { /* a target's bytes llhttp takes in any position */
    return c > 0x20 && c < 0x7F && c != '#';
}

static int named(cursor s, size_t n, const char *name) { /* case-insensitive, name in lower case */
    if (strlen(name) != n) return 0;
    for (size_t i = 0; i < n; i++)
        if ((s[i] | 0x20) != (unsigned char)name[i]) return 0;
    return 1;
}

int64_t scan_head(const char *p, int64_t n, int64_t *out) {
    cursor base = (cursor)p, s = base, e = base + (n < HEAD_LIMIT ? n : HEAD_LIMIT);
    int more = n < HEAD_LIMIT; /* running out of bytes means "read more", not "too long" */
    for (int i = 0; i < HEAD_OUT; i++) out[i] = -1;
    out[CLOSE_AT] = 0;
    for (int i = NOTED_AT + 1; i < HEAD_OUT; i += 2) out[i] = 0;
#define NEED(k) if (e - s < (k)) return more ? 0 : -1
    cursor word = s;
    while (s < e && *s >= 'A' && *s <= 'Z' && s - word < 8) s++;
    NEED(1);
    if (*s != ' ') return -1;
    for (int i = 0; i < (int)(sizeof METHODS / sizeof *METHODS); i++)
        if ((size_t)(s - word) == strlen(METHODS[i]) && !memcmp(word, METHODS[i], (size_t)(s - word)))
            out[METHOD_AT] = i;
    if (out[METHOD_AT] < 0) return -1;
    s++;
    NEED(1);
    if (*s != '/') return -1;
    out[TARGET_AT] = s - base;
    while (s < e && visible(*s)) s++;
    out[TARGET_AT + 1] = s - base - out[TARGET_AT];
    static const char VERSION[] = " HTTP/1.1\r\n";
    for (size_t i = 0; i < sizeof VERSION - 1; i++, s++) {
        NEED(1);
        if (*s != (unsigned char)VERSION[i]) return -1;
    }
    for (int fields = 0;; fields++) {
        NEED(1);
        if (*s == '\r') {
            s++;
            NEED(1);
            out[CLOSE_AT] = out[CLOSE_AT] == 1;
            return *s == '\n' ? s + 1 - base : -1;
        }
        if (fields == HEAD_FIELDS) return -1;
        cursor name = s;
        while (s < e && tchar(*s)) s++;
        NEED(1);
        if (*s != ':' || s == name) return -1;
        size_t name_len = (size_t)(s - name);
        s++;
        while (s < e && (*s == ' ' || *s == '\t')) s++;
        cursor value = s, value_end = s;
        while (s < e && ((*s >= 0x20 && *s < 0x7F) || *s == '\t')) {
            if (*s != ' ' && *s != '\t') value_end = s + 1;
            s++;
        }
        NEED(2);
        if (s[0] != '\r' || s[1] != '\n') return -1;
        s += 2;
        size_t len = (size_t)(value_end - value);
        if (named(name, name_len, "transfer-encoding") || named(name, name_len, "expect") ||
            named(name, name_len, "upgrade"))
            return -1;
        if (named(name, name_len, "content-length")) {
            if (out[LENGTH_AT] >= 0 || len == 0 || len > 15) return -1;
            int64_t v = 0;
            for (size_t i = 0; i < len; i++) {
                if (value[i] < '0' || value[i] > '9') return -1;
                v = v * 10 + (value[i] - '0');
            }
            out[LENGTH_AT] = v;
        } else if (named(name, name_len, "connection")) {
            if (out[CLOSE_AT] || !(named(value, len, "close") || named(value, len, "keep-alive")))
                return -1;
            out[CLOSE_AT] = named(value, len, "close") ? 1 : 2; /* 2: seen, keep-alive */
        }
        for (int k = 0; k < (int)(sizeof NOTED / sizeof *NOTED); k++) {
            if (!named(name, name_len, NOTED[k])) continue;
            if (out[NOTED_AT + 2 * k] >= 0) return -1;
            out[NOTED_AT + 2 * k] = value - base;
            out[NOTED_AT + 2 * k + 1] = (int64_t)len;
        }
    }
}

/* -- Gates: the scheduler's word to a native front, per model ---------------------------------
 *
 * A native front serves a ready model's requests without asking Python; the scheduler keeps
 * the say over the model through its gate. A request goes through (gate_enter) only while the
 * gate is open and the model has room under its concurrencyLimit; gate_leave ends it and notes
 * the time. Before the scheduler stops, sleeps or swaps a model it closes the gate and reads
 * the count (gate_close): once a closed gate's count is 0 no front request is in flight and
 * none can start, and it stays so until the scheduler opens the gate again. The leave that
 * empties a closed gate writes the notify eventfd, so the scheduler looks again. Python's own
 * requests are admitted with gate_admit, which checks the limit against both counts under the
 * lock and leaves the front the room that is left. One mutex for all gates: each call holds
 * it for a few instructions. */
typedef struct {
    int64_t count, room; /* front requests in flight; how many the front may have at most */
    int open;
    double last; /* when a front request last ended (CLOCK_MONOTONIC) */
} gate;

typedef struct {
    pthread_mutex_t lock;
    int64_t size;
    int notify;
    gate g[];
} gates;

void *gates_create(int64_t size, int notify) {
    gates *h = calloc(1, sizeof(gates) + (size_t)size * sizeof(gate));
    if (!h) return NULL;
    pthread_mutex_init(&h->lock, NULL);
    h->size = size;
    h->notify = notify;
    return h;
}

void gates_destroy(void *h) {
    pthread_mutex_destroy(&((gates *)h)->lock);
    free(h);
}

void gate_open(void *h_, int64_t i, int64_t room) { /* also: the room changed */
    gates *h = h_;
    pthread_mutex_lock(&h->lock);
    h->g[i].open = 1;
    h->g[i].room = room;
    pthread_mutex_unlock(&h->lock);
}

int64_t gate_close(void *h_, int64_t i) { /* the requests in flight when it closed */
    gates *h = h_;
    pthread_mutex_lock(&h->lock);
    h->g[i].open = 0;
    int64_t count = h->g[i].count;
    pthread_mutex_unlock(&h->lock);
    return count;
}

int gate_admit(void *h_, int64_t i, int64_t limit, int64_t admitted) {
    gates *h = h_;
    pthread_mutex_lock(&h->lock);
    int ok = admitted + h->g[i].count < limit;
    if (ok) h->g[i].room = limit - admitted - 1; /* >= count: Python takes one more */
    pthread_mutex_unlock(&h->lock);
    return ok;
}

int gate_enter(void *h_, int64_t i) {
    gates *h = h_;
    pthread_mutex_lock(&h->lock);
    gate *g = &h->g[i];
    int ok = g->open && g->count < g->room;
    if (ok) g->count++;
    pthread_mutex_unlock(&h->lock);
    return ok;
}

int gate_leave(void *h_, int64_t i) { /* 1: it emptied a closed gate (the eventfd is written) */
    gates *h = h_;
    double t = now();
    pthread_mutex_lock(&h->lock);
    gate *g = &h->g[i];
    g->count--;
    g->last = t;
    int emptied = !g->open && g->count == 0;
    pthread_mutex_unlock(&h->lock);
    if (emptied && h->notify >= 0) signal_fd(h->notify);
    return emptied;
}

void gate_read(void *h_, int64_t i, int64_t *count, double *last) {
    gates *h = h_;
    pthread_mutex_lock(&h->lock);
    *count = h->g[i].count;
    *last = h->g[i].last;
    pthread_mutex_unlock(&h->lock);
}

/* -- An engine's response head, as the client gets it ----------------------------------------
 *
 * response_head() reads the head of an engine's HTTP/1.1 response at p and writes to out the
 * head swapd sends the client, byte for byte as the Python relay writes it
 * (swapd.proxy.relay.client_head of swapd.proxy.forward.response_headers): the status line from
 * `lines` (uvicorn's, for 100..599); each field with its name in lower case and its value as
 * sent, less hop-by-hop fields, Transfer-Encoding and the fields Connection names (but
 * Content-Length, which is kept);
 * "x-accel-buffering: no" (instead of any sent) for an event stream; a date when the engine
 * sent none; "transfer-encoding: chunked" for a chunked body or one the engine ends by
 * closing (chunks are built for it); "connection: close" unless flags has CLIENT_KEEPS. It
 * returns the engine's head length, 0 while the bytes so far could begin one, -1 for a head
 * it leaves to Python (another version, a 1xx, a status line without a reason's space, a byte
 * above 0x7E, a folded line, two Content-Length fields or both framings, a Transfer-Encoding
 * other than one "chunked" with nothing after it (llhttp reads "chunked\t" as no framing), more than RESPONSE_FIELDS fields or CONNECTION_TOKENS names in
 * Connection, HEAD_LIMIT bytes), -2 when out has no room. info: RESP_STATUS, RESP_OUT (the bytes
 * written), RESP_MODE (1 chunks built here, 2 the engine's chunks, 3 as it comes),
 * RESP_LENGTH (-1: none), RESP_REUSE (the engine's connection serves again after this body,
 * as llhttp's should_keep_alive says; HEAD_ONLY: the request was a HEAD). */
#define RESPONSE_FIELDS 100
#define CONNECTION_TOKENS 16
enum { CLIENT_KEEPS = 1, HEAD_ONLY = 2 };
enum { RESP_STATUS, RESP_OUT, RESP_MODE, RESP_LENGTH, RESP_REUSE, RESP_INFO };
enum { MODE_FRAMED = 1, MODE_RAW, MODE_PLAIN };

/* Hop-by-hop fields (swapd.proxy.forward.HOP_BY_HOP), less Content-Length: a response keeps it,
 * a request's is written anew. */
static const char *const SKIPPED[] = {"connection", "keep-alive", "proxy-authenticate",
                                      "proxy-authorization", "proxy-connection", "te", "trailer",
                                      "trailers", "transfer-encoding", "upgrade", "host", "expect"};

typedef struct { cursor name, value; size_t name_len, value_len, trimmed; } field_at;

static int put(char **at, char *end, const void *s, size_t n) {
    if ((size_t)(end - *at) < n) return 0;
    memcpy(*at, s, n);
    *at += n;
    return 1;
}

/* The names a Connection value [t, end) lists, added to names/lens; 0 past CONNECTION_TOKENS. */
static int connection_names(cursor t, cursor end, cursor *names, size_t *lens, int *count) {
    while (t < end) {
        while (t < end && (*t == ' ' || *t == '\t' || *t == ',')) t++;
        cursor start = t, last = t;
        while (t < end && *t != ',') {
            if (*t != ' ' && *t != '\t') last = t + 1;
            t++;
        }
        if (last == start) continue;
        if (*count == CONNECTION_TOKENS) return 0;
        names[*count] = start;
        lens[(*count)++] = (size_t)(last - start);
    }
    return 1;
}

static int listed(cursor *names, size_t *lens, int count, cursor name, size_t n) {
    for (int k = 0; k < count; k++) {
        if (lens[k] != n) continue;
        size_t j = 0;
        while (j < n && (names[k][j] | 0x20) == (name[j] | 0x20)) j++;
        if (j == n) return 1;
    }
    return 0;
}

/* "name: value\r\n" with the name in lower case; 0 when out has no room. */
static int put_field(char **at, char *end, cursor name, size_t name_len, cursor value,
                     size_t value_len) {
    if ((size_t)(end - *at) < name_len + value_len + 4) return 0;
    for (size_t j = 0; j < name_len; j++) {
        unsigned c = name[j];
        *(*at)++ = (char)(c >= 'A' && c <= 'Z' ? c | 0x20 : c);
    }
    put(at, end, ": ", 2);
    put(at, end, value, value_len);
    put(at, end, "\r\n", 2);
    return 1;
}

int64_t response_head(const char *p, int64_t n, const char *const *lines, const char *date,
                      int64_t date_len, int64_t flags, char *out, int64_t cap, int64_t *info) {
    cursor base = (cursor)p, s = base, e = base + (n < HEAD_LIMIT ? n : HEAD_LIMIT);
    int more = n < HEAD_LIMIT;
    field_at fields[RESPONSE_FIELDS];
    cursor tokens[CONNECTION_TOKENS];
    size_t token_lens[CONNECTION_TOKENS];
    int count = 0, ntokens = 0, close = 0, chunked = 0;
    int64_t length = -1;
    static const char VERSION[] = "HTTP/1.1 ";
    for (size_t i = 0; i < sizeof VERSION - 1; i++, s++) {
        NEED(1);
        if (*s != (unsigned char)VERSION[i]) return -1;
    }
    int status = 0;
    for (int i = 0; i < 3; i++, s++) {
        NEED(1);
        if (*s < '0' || *s > '9') return -1;
        status = status * 10 + (*s - '0');
    }
    if (status < 200 || status > 599) return -1;
    NEED(1);
    if (*s != ' ') return -1;
    while (s < e && ((*s >= 0x20 && *s < 0x7F) || *s == '\t')) s++;
    NEED(2);
    if (s[0] != '\r' || s[1] != '\n') return -1;
    s += 2;
    for (;;) {
        NEED(1);
        if (*s == '\r') {
            s++;
            NEED(1);
            if (*s != '\n') return -1;
            s++;
            break;
        }
        if (count == RESPONSE_FIELDS) return -1;
        field_at *f = &fields[count++];
        f->name = s;
        while (s < e && tchar(*s)) s++;
        NEED(1);
        if (*s != ':' || s == f->name) return -1;
        f->name_len = (size_t)(s - f->name);
        s++;
        while (s < e && (*s == ' ' || *s == '\t')) s++;
        f->value = s;
        f->trimmed = 0;
        while (s < e && ((*s >= 0x20 && *s < 0x7F) || *s == '\t')) {
            if (*s != ' ' && *s != '\t') f->trimmed = (size_t)(s + 1 - f->value);
            s++;
        }
        NEED(2);
        if (s[0] != '\r' || s[1] != '\n') return -1;
        f->value_len = (size_t)(s - f->value);
        s += 2;
        if (named(f->name, f->name_len, "content-length")) {
            if (length >= 0 || f->trimmed == 0 || f->trimmed > 15) return -1;
            length = 0;
            for (size_t i = 0; i < f->trimmed; i++) {
                if (f->value[i] < '0' || f->value[i] > '9') return -1;
                length = length * 10 + (f->value[i] - '0');
            }
        } else if (named(f->name, f->name_len, "transfer-encoding")) {
            if (chunked || !named(f->value, f->value_len, "chunked")) return -1; /* no OWS */
            chunked = 1;
        } else if (named(f->name, f->name_len, "connection")) {
            int from = ntokens;
            if (!connection_names(f->value, f->value + f->value_len, tokens, token_lens, &ntokens))
                return -1;
            for (int k = from; k < ntokens; k++)
                if (named(tokens[k], token_lens[k], "close")) close = 1;
        }
    }
    if (chunked && length >= 0) return -1;
    int64_t size = s - base;
    /* what the client gets: the fields kept, whether it is an event stream, and dated */
    int kept[RESPONSE_FIELDS], sse = 0, dated = 0;
    for (int i = 0; i < count; i++) {
        field_at *f = &fields[i];
        kept[i] = 1;
        for (size_t k = 0; k < sizeof SKIPPED / sizeof *SKIPPED && kept[i]; k++)
            if (named(f->name, f->name_len, SKIPPED[k])) kept[i] = 0;
        if (kept[i] && !named(f->name, f->name_len, "content-length")) /* kept, even if named */
            kept[i] = !listed(tokens, token_lens, ntokens, f->name, f->name_len);
        if (!kept[i]) continue;
        if (named(f->name, f->name_len, "content-type"))
            sse = f->value_len >= 17 && !memcmp(f->value, "text/event-stream", 17);
        else if (named(f->name, f->name_len, "date"))
            dated = 1;
    }
    int no_body = (flags & HEAD_ONLY) || status == 204 || status == 304;
    int mode = no_body || length >= 0 ? MODE_PLAIN : chunked ? MODE_RAW : MODE_FRAMED;
    char *at = out, *end = out + cap;
    const char *line = lines[status - 100];
    if (!put(&at, end, line, strlen(line))) return -2;
    for (int i = 0; i < count; i++) {
        field_at *f = &fields[i];
        if (!kept[i] || (sse && named(f->name, f->name_len, "x-accel-buffering"))) continue;
        if (!put_field(&at, end, f->name, f->name_len, f->value, f->value_len)) return -2;
    }
    if (sse && !put(&at, end, "x-accel-buffering: no\r\n", 23)) return -2;
    if (!dated && !(put(&at, end, "date: ", 6) && put(&at, end, date, (size_t)date_len) &&
                    put(&at, end, "\r\n", 2)))
        return -2;
    if (mode != MODE_PLAIN && !put(&at, end, "transfer-encoding: chunked\r\n", 28)) return -2;
    if (!(flags & CLIENT_KEEPS) && !put(&at, end, "connection: close\r\n", 19)) return -2;
    if (!put(&at, end, "\r\n", 2)) return -2;
    info[RESP_STATUS] = status;
    info[RESP_OUT] = at - out;
    info[RESP_MODE] = mode;
    info[RESP_LENGTH] = length;
    info[RESP_REUSE] = !close && (no_body || length >= 0 || chunked);
    return size;
}

/* -- A request's head, as the engine gets it -------------------------------------------------
 *
 * request_head() writes the head swapd sends an engine for a client's request whose head
 * scan_head vouched for (p, n: that head), as swapd.proxy.relay.request_head writes it: the
 * method and `target`, "host: " `host`, each field with its name in lower case and its value as
 * llhttp gives it (the spaces before it left out), less hop-by-hop fields, the fields
 * Connection names and, with DROP_CREDENTIALS in `drop` (swapd checks API keys), Authorization
 * and X-Api-Key, with DROP_FORWARDING (a peer swapd does not trust) X-Forwarded-For, X-Real-IP
 * and Forwarded; the client's X-Forwarded-For values and its address `ip` joined into one
 * field; a content-length
 * of `length` unless the method is GET, HEAD or OPTIONS with no body. Returns the bytes
 * written, -1 for a head scan_head would not vouch for or with more than CONNECTION_TOKENS
 * names in Connection, -2 when out has no room. */

enum { DROP_CREDENTIALS = 1, DROP_FORWARDING = 2 };

/* The field line at s of a head scan_head vouched for: its name, its value (the spaces before
 * it left out) and where the next line starts. */
static cursor field_of(cursor s, cursor *name, size_t *name_len, cursor *value, size_t *len) {
    *name = s;
    while (*s != ':') s++;
    *name_len = (size_t)(s - *name);
    s++;
    while (*s == ' ' || *s == '\t') s++;
    *value = s;
    while (*s != '\r') s++;
    *len = (size_t)(s - *value);
    return s + 2;
}

int64_t request_head(const char *p, int64_t n, const char *target, int64_t target_len,
                     const char *host, int64_t host_len, const char *ip, int64_t ip_len,
                     int64_t length, int drop, char *out, int64_t cap) {
    int64_t scanned[HEAD_OUT];
    if (scan_head(p, n, scanned) != n) return -1;
    cursor base = (cursor)p, e = base + n;
    const char *method = METHODS[scanned[METHOD_AT]];
    cursor tokens[CONNECTION_TOKENS];
    size_t token_lens[CONNECTION_TOKENS];
    int ntokens = 0;
    /* the fields, twice: Connection's names first, then what is kept */
    cursor first = (cursor)memchr(base, '\n', (size_t)n) + 1, name, value;
    size_t name_len, value_len;
    for (cursor s = first; s < e && *s != '\r';) {
        s = field_of(s, &name, &name_len, &value, &value_len);
        if (named(name, name_len, "connection") &&
            !connection_names(value, value + value_len, tokens, token_lens, &ntokens))
            return -1;
    }
    char *at = out, *end = out + cap;
    if (!(put(&at, end, method, strlen(method)) && put(&at, end, " ", 1) &&
          put(&at, end, target, (size_t)target_len) && put(&at, end, " HTTP/1.1\r\nhost: ", 17) &&
          put(&at, end, host, (size_t)host_len) && put(&at, end, "\r\n", 2)))
        return -2;
    cursor forwarded[HEAD_FIELDS + 1];
    size_t forwarded_lens[HEAD_FIELDS + 1];
    int nforwarded = 0;
    for (cursor s = first; s < e && *s != '\r';) {
        s = field_of(s, &name, &name_len, &value, &value_len);
        int skip = named(name, name_len, "content-length"); /* and the response's list */
        for (size_t k = 0; k < sizeof SKIPPED / sizeof *SKIPPED && !skip; k++)
            skip = named(name, name_len, SKIPPED[k]);
        if (!skip) skip = listed(tokens, token_lens, ntokens, name, name_len);
        if ((drop & DROP_CREDENTIALS) && !skip)
            skip = named(name, name_len, "authorization") || named(name, name_len, "x-api-key");
        if ((drop & DROP_FORWARDING) && !skip)
            skip = named(name, name_len, "x-forwarded-for") || named(name, name_len, "x-real-ip") ||
                   named(name, name_len, "forwarded");
        if (skip) continue;
        if (named(name, name_len, "x-forwarded-for")) {
            forwarded[nforwarded] = value;
            forwarded_lens[nforwarded++] = value_len;
            continue;
        }
        if (!put_field(&at, end, name, name_len, value, value_len)) return -2;
    }
    if (ip_len) { /* the client's address goes last */
        forwarded[nforwarded] = (cursor)ip;
        forwarded_lens[nforwarded++] = (size_t)ip_len;
    }
    for (int k = 0; k < nforwarded; k++) {
        const char *before = k ? ", " : "x-forwarded-for: ";
        if (!(put(&at, end, before, strlen(before)) && put(&at, end, forwarded[k], forwarded_lens[k])))
            return -2;
    }
    if (nforwarded && !put(&at, end, "\r\n", 2)) return -2;
    int bodiless = !strcmp(method, "GET") || !strcmp(method, "HEAD") || !strcmp(method, "OPTIONS");
    if (length || !bodiless) {
        char number[32];
        int len = snprintf(number, sizeof number, "content-length: %lld\r\n", (long long)length);
        if (!put(&at, end, number, (size_t)len)) return -2;
    }
    if (!put(&at, end, "\r\n", 2)) return -2;
    return at - out;
}
#undef NEED

/* -- The native front: its own file, in this translation unit ------------------------------- */
#include "front.c"
