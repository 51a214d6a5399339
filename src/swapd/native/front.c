/* swapd's native front (docs/dataplane.md, option C): a thread that owns the listening socket
 * and serves the routine requests of ready models with no Python per request.
 *
 * Included at the end of relay.c (one translation unit: it uses the chunk parser, the body's
 * meter, the head scans and rewrites and the gates defined there).
 *
 * The thread accepts every connection and reads each request's head (scan_head) and body. A
 * request is routine when it is a POST to one of the model routes Python listed, with a
 * content-length body of at most max_body bytes, a JSON content type, no Origin (no browser),
 * no Sec-Fetch-Site, no forwarding fields, a Host the guard allows (plain_host, else the
 * table's names), and a body whose "model"
 * scan_request finds plainly; the model must be in the table Python publishes (front_table:
 * the names that need no rewrite, each with its gate and its engine's address, and the API
 * keys, if any, with those each may use: then the request must present one of them, which
 * the engine does not get) and its gate must let one more in (gate_enter). A routine request
 * goes to the engine over the front's own kept-alive connections, with the head request_head
 * writes; the engine's head comes back as
 * response_head makes it and the body as it comes (the engine's chunks, a length, or chunks
 * built for a body read to the close), followed through the chunk parser and metered as the
 * native relay does. Then the connection reads its next request.
 *
 * Anything else goes to Python with the bytes read so far: the connection (its fd and those
 * bytes) is queued for front_next (FRONT_PYTHON) and Python serves it from then on, as if
 * uvicorn had accepted it; Python hands a kept-alive connection back between two requests
 * (front_adopt). So does a routine request whose engine connection could not be made or
 * written to (Python then waits for the engine's restart as it does for its own).
 * Each finished exchange is queued too (FRONT_RECORD: the model's gate, the route, status,
 * times, the body's size, first and last bytes, and for a capture the request, the client's
 * head and the body within the capture budget, front_captures) for swapd's records; the
 * notify eventfd is written at once for a connection, and for records once per batch
 * (FRONT_BATCH). An exchange that ends with no answer yet (an engine that closes a new
 * connection before answering, and is not sent the request again; a head the front does not
 * follow or that comes too late; a cancel) has its record take the connection along, and
 * Python writes the error it would have written, so every error is worded by Python. front_inflight lists the exchanges in flight, front_cancel ends one. The
 * model's timeouts (connect, responseHeader, idleRead) and the server's limits (body size,
 * JSON depth, keep-alive and head timeouts, the connection cap; front_limits on a reload) are
 * kept here.
 *
 * front_stop stops accepting and closes each connection once its exchange has ended;
 * front_destroy ends the thread and closes everything. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#define FRONT_READ 65536
#define FRONT_POOL 32      /* idle engine connections kept per gate */
#define FRONT_BUSY 4       /* exchanges in flight from which a stream's engine connection closes */
#define FRONT_SWEEP 0.5    /* seconds between two looks for idle clients */
#define FRONT_PATHS 32
#define FRONT_BATCH 0.002  /* seconds a record may wait for the next one before Python is told */

enum { FRONT_RECORD = 1, FRONT_PYTHON };
enum { F_READ = 1, F_SEND, F_HEAD, F_BODY };
/* The ends of an exchange that has no answer yet and gets Python's error (refer): the engine's
 * head was not one the front follows (502), the engine closed a new connection before answering
 * (502), its head came later than responseHeader (504), an operator cancelled it (503). */
enum { ENGINE_HEAD = 7, ENGINE_CLOSED, HEAD_LATE, CANCELLED };

typedef struct {
    const char *name, *host;
    size_t name_len, host_len;
    int64_t gate;
    struct sockaddr_in addr;
    double connect, head, idle; /* the model's timeouts: connect, responseHeader, idleRead */
    const unsigned char *may;   /* per API key: 1 when it may use this name (the table's) */
} entry;

typedef struct { const char *p; size_t n; } span;

typedef struct { /* a network of server.trustedProxies */
    int family, bits;           /* 4 or 6; the prefix's length */
    unsigned char addr[16];
} net;

typedef struct {
    int64_t count, nkeys;
    entry *e;
    char *bytes;
    const char **keys;          /* the API keys (none: no key is asked for) */
    size_t *key_lens;
    int32_t *key_ids;           /* how Python names each in a record */
    int any_host;               /* the Host names the guard allows: any (allowedHosts "*"), */
    span *names, *domains;      /* these (lower case), and these domains (".example.com") */
    int64_t nnames, ndomains;
    int trust_all;              /* the peers whose forwarding fields are believed: any ("*"), */
    net *nets;                  /* or those in these networks */
    int64_t nnets;
} table;

typedef struct record {
    int kind, fd;
    int64_t id;
    int64_t gate;
    int status, path, end, key;
    double began, wall, ended;
    flow *f;           /* FRONT_RECORD: the response body's meter */
    char *data;        /* FRONT_PYTHON: the bytes read; FRONT_RECORD: the request, for a capture */
    size_t data_len, data_head;
    char *resp;        /* FRONT_RECORD, for a capture: the response head the client got */
    size_t resp_len;
    char peer[64];
    struct record *next;
} record;

typedef struct {
    int kind, fd;
    int64_t id, gate;
    int32_t status, path, end, key;
    double began, wall, ended, first;
    int64_t size, head_len, tail_len, data_len, data_head, resp_len, keep_len;
    char *data, *resp, *keep;
    int32_t keep_cut, pad2;
    char peer[64];
    char head[HEAD_MAX];
    char tail[TAIL_MAX];
} front_result;

typedef struct { int fd; struct sockaddr_in addr; } pooled;

typedef struct { /* an exchange in flight, as front_inflight tells it */
    int64_t id, gate, size;
    int32_t path, status, key, pad;
    double wall, began;
    char peer[64];
} front_flying;

typedef struct conn {
    int cl, up, phase, fresh, closing, mode, reuse, status, path, answered, behind, muted;
    int key;                     /* the exchange's API key, by its id (-1: none asked for) */
    uint32_t cl_events, up_events; /* what epoll watches each for now */
    int64_t up_gate;             /* the gate of the engine up is connected to */
    struct sockaddr_in up_addr;
    char *in;                    /* the client's bytes, from the current request's start */
    size_t in_len, in_cap, req_len;
    char *wr;                    /* what the engine gets */
    size_t wr_len, wr_off;
    char *rh;                    /* the engine's response head so far */
    size_t rh_len;
    char *ob;                    /* what the client has not taken yet */
    size_t ob_len, ob_off, ob_cap;
    int64_t gate, left;
    struct sockaddr_in addr;
    double began, wall, last;     /* last: idle since (between requests), then the engine's
                                   * last byte */
    double head_at;              /* the current request head's first byte came (0: none yet) */
    int served;                  /* a request was answered on it (keepAliveTimeout applies) */
    double connect, head, idle;   /* the exchange's timeouts (0: none) */
    int64_t reserved;            /* of the capture budget, for this response's body */
    size_t head_len;             /* the current request's head */
    char *resp;                  /* the client's response head, kept for a capture */
    size_t resp_len;
    flow *f;
    int64_t xid;                 /* the exchange's id */
    int cancel;                  /* asked by Python (front_cancel, under lock) */
    char peer[64];
    char shown[64];              /* the client's address as the exchange's records show it */
    struct conn *prev, *next;
    struct conn *fprev, *fnext;  /* in the front's exchanges in flight (under lock) */
} conn;

/* The server settings the front applies as Python does: a body's bytes and JSON depth at
 * most, an idle keep-alive connection's and a slow head's seconds, connections open at most
 * (0: no cap). A reload changes them (front_limits). */
typedef struct {
    int64_t max_body, max_depth, cap;
    double keep_alive, head_timeout;
} limits;

typedef struct {
    int ep, lfd, control, notify;
    pthread_t thread;
    pthread_mutex_t lock;        /* the table, the records, stopping and draining */
    table *t;
    record *first, *last;
    int stopping, draining, closed_listener;
    gates *g;
    const char *lines[500];
    char *paths[FRONT_PATHS];
    size_t path_lens[FRONT_PATHS];
    int npaths;
    limits lim;                  /* the thread's copy of the config's limits */
    limits asked;                /* front_limits' (under lock), taken when lim_asked */
    int lim_asked;
    int64_t keep_budget, keep_limit; /* captures (front_captures, under lock): all, each */
    int64_t keep_used;           /* the thread's: reserved by exchanges in flight */
    char date[64];
    size_t date_len;
    time_t date_at;
    conn *flying;                /* exchanges in flight (under lock: front_inflight reads it) */
    int64_t next_id;
    int64_t open;                /* connections the front has (atomic: front_open reads it) */
    int64_t python_open;         /* connections Python has (atomic: front_python_open) */
    conn *conns;
    conn *dead;                  /* closed in this epoll round: freed at its end */
    conn *incoming;              /* handed back by Python (front_adopt), under lock */
    int64_t exchanges;           /* in flight (read by front_active) */
    pooled *pool;
    int *pool_n;
    double pending;              /* when the oldest record Python was not told of came (0) */
    int told, urgent;            /* the eventfd is written; a connection waits for Python */
} front;

static char LISTENER;            /* epoll's tag for the listening socket */

static double wall(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void dated(front *F) {
    time_t t = time(NULL);
    if (t == F->date_at) return;
    struct tm tm;
    gmtime_r(&t, &tm);
    static const char *const DAYS[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const MONTHS[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    int n = snprintf(F->date, sizeof F->date, "%s, %02d %s %d %02d:%02d:%02d GMT",
                     DAYS[tm.tm_wday], tm.tm_mday, MONTHS[tm.tm_mon], tm.tm_year + 1900,
                     tm.tm_hour, tm.tm_min, tm.tm_sec);
    F->date_len = (size_t)n;
    F->date_at = t;
}

/* For front_next. Python is told (the eventfd) at once of a connection it must serve, and of
 * records once the oldest is FRONT_BATCH old, so that a busy front wakes it once per batch. */
static void queue(front *F, record *r) {
    r->next = NULL;
    pthread_mutex_lock(&F->lock);
    if (F->last) F->last->next = r; else F->first = r;
    F->last = r;
    if (F->pending == 0) F->pending = now();
    if (r->fd >= 0) F->urgent = 1; /* a connection for Python */
    pthread_mutex_unlock(&F->lock);
}

static void arm(front *F, int fd, void *tag, uint32_t events, int op) {
    struct epoll_event ev;
    ev.events = events;
    ev.data.ptr = tag;
    epoll_ctl(F->ep, op, fd, &ev);
}

/* Out of epoll, then closed: a socket another fd still refers to (Python's, while its
 * transport closes after a hand-back) would stay in epoll after a close alone. */
static void shut(front *F, int fd) {
    epoll_ctl(F->ep, EPOLL_CTL_DEL, fd, NULL);
    close(fd);
}

/* Have epoll watch what the connection's phase needs (one epoll_ctl, and only on a change):
 * the client for its next request, its leaving, or room when it is behind (its bytes while an
 * exchange runs: pipelined, read once it has ended); the engine for room to send the request,
 * its answer (not while the client is behind), or its close while it is kept between two. */
static void rewatch(front *F, conn *c) {
    uint32_t cl = EPOLLRDHUP, up = EPOLLIN;
    if (c->phase == F_READ || !c->muted) cl |= EPOLLIN;
    if (c->behind) {
        cl |= EPOLLOUT;
        up = 0;
    }
    if (c->phase == F_SEND) up = EPOLLOUT;
    if (cl != c->cl_events) {
        arm(F, c->cl, c, cl, EPOLL_CTL_MOD);
        c->cl_events = cl;
    }
    if (c->up >= 0 && up != c->up_events) {
        arm(F, c->up, (void *)((uintptr_t)c | 1), up, EPOLL_CTL_MOD);
        c->up_events = up;
    }
}

/* A new engine connection for c (pooled or just dialled) into epoll. */
static void attach(front *F, conn *c, int fd) {
    c->up = fd;
    c->up_gate = c->gate;
    c->up_addr = c->addr;
    c->up_events = c->phase == F_SEND ? EPOLLOUT : EPOLLIN;
    arm(F, fd, (void *)((uintptr_t)c | 1), c->up_events, EPOLL_CTL_ADD);
}

/* Off the list; freed once this epoll round's events (which may name it) are read. */
static void forget(front *F, conn *c) {
    if (c->prev) c->prev->next = c->next; else F->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    __atomic_fetch_sub(&F->open, 1, __ATOMIC_RELAXED);
    c->phase = 0;
    c->next = F->dead;
    F->dead = c;
}

/* An exchange begins (its id given) and ends, for front_inflight and front_cancel. */
static void fly(front *F, conn *c) {
    pthread_mutex_lock(&F->lock);
    c->xid = ++F->next_id;
    c->cancel = 0;
    c->fprev = NULL;
    c->fnext = F->flying;
    if (F->flying) F->flying->fprev = c;
    F->flying = c;
    pthread_mutex_unlock(&F->lock);
}

static void land(front *F, conn *c) {
    pthread_mutex_lock(&F->lock);
    if (c->fprev) c->fprev->fnext = c->fnext; else F->flying = c->fnext;
    if (c->fnext) c->fnext->fprev = c->fprev;
    c->fprev = c->fnext = NULL;
    pthread_mutex_unlock(&F->lock);
}

static void bury(front *F) {
    while (F->dead) {
        conn *c = F->dead;
        F->dead = c->next;
        free(c->in);
        free(c->wr);
        free(c->rh);
        free(c->ob);
        free(c->resp);
        free(c);
    }
}

static void pool_put(front *F, int64_t gate, int fd, const struct sockaddr_in *addr);

/* The engine's connection kept between two requests goes to the pool, others close. */
static void let_engine_go(front *F, conn *c) {
    if (c->up < 0) return;
    if (c->phase == F_READ) pool_put(F, c->up_gate, c->up, &c->up_addr);
    else shut(F, c->up);
    c->up = -1;
}

static void close_conn(front *F, conn *c) {
    let_engine_go(F, c);
    shut(F, c->cl);
    forget(F, c);
}

/* The connection is Python's from here on: its fd and the bytes read so far. */
static void to_python(front *F, conn *c) {
    record *r = calloc(1, sizeof *r);
    if (!r) {
        close_conn(F, c);
        return;
    }
    epoll_ctl(F->ep, EPOLL_CTL_DEL, c->cl, NULL);
    r->kind = FRONT_PYTHON;
    r->fd = c->cl;
    r->data = c->in;
    r->data_len = c->in_len;
    c->in = NULL;
    queue(F, r);
    let_engine_go(F, c);
    forget(F, c);
}

/* -- the engine's kept-alive connections ---------------------------------------------------- */

/* A kept connection the engine has neither closed nor sent anything on since. */
static int idle_alive(int fd) {
    char byte;
    ssize_t n = recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

static int pool_take(front *F, int64_t gate, const struct sockaddr_in *addr) {
    pooled *p = F->pool + gate * FRONT_POOL;
    while (F->pool_n[gate] > 0) {
        pooled got = p[--F->pool_n[gate]];
        if (idle_alive(got.fd) && got.addr.sin_addr.s_addr == addr->sin_addr.s_addr &&
            got.addr.sin_port == addr->sin_port)
            return got.fd;
        close(got.fd); /* closed by the engine, or an engine that is gone */
    }
    return -1;
}

/* Kept connections an engine closed (it stopped, or let them go) are closed at the next sweep,
 * not left half-closed until its model's next request, which may never come. */
static void pool_sweep(front *F) {
    for (int64_t gate = 0; gate < F->g->size; gate++) {
        pooled *p = F->pool + gate * FRONT_POOL;
        int kept = 0;
        for (int i = 0; i < F->pool_n[gate]; i++) {
            if (idle_alive(p[i].fd)) p[kept++] = p[i];
            else close(p[i].fd);
        }
        F->pool_n[gate] = kept;
    }
}

static void pool_put(front *F, int64_t gate, int fd, const struct sockaddr_in *addr) {
    epoll_ctl(F->ep, EPOLL_CTL_DEL, fd, NULL);
    if (F->pool_n[gate] == FRONT_POOL) {
        close(fd);
        return;
    }
    pooled *p = F->pool + gate * FRONT_POOL + F->pool_n[gate]++;
    p->fd = fd;
    p->addr = *addr;
}

static int dial(const struct sockaddr_in *addr) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (const struct sockaddr *)addr, sizeof *addr) < 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

/* -- an exchange ------------------------------------------------------------------------------ */

static void serve_next(front *F, conn *c);

/* The exchange has ended: its record queued for Python. One that ended before any byte of an
 * answer with an error of the front's (end >= ENGINE_HEAD) takes the client's connection along:
 * Python writes the error it would have written for the request, and closes it. */
static void ended(front *F, conn *c, int end) {
    int refer = end >= ENGINE_HEAD;
    land(F, c);
    gate_leave(F->g, c->gate);
    __atomic_fetch_sub(&F->exchanges, 1, __ATOMIC_RELAXED);
    flow *f = c->f;
    /* A stream's engine connection (a chunked answer) is not kept while the front is busy:
     * a kept connection's congestion window has grown, so the engine's kernel sends each of
     * its writes as a segment of its own; a new one's small window makes it gather the writes
     * that queue meanwhile into fewer, larger segments, which costs the engine, the kernel
     * and the front less per frame than the handshake costs per stream (docs/dataplane.md,
     * "New engine connections for streams under load"). Unloaded, the handshake would be the
     * larger cost, and a plain-length answer (a small request's) gains nothing. */
    int busy = __atomic_load_n(&F->exchanges, __ATOMIC_RELAXED) >= FRONT_BUSY;
    int reusable = end == DONE && c->reuse && !f->extra && c->mode != MODE_FRAMED &&
                   !(c->mode == MODE_RAW && busy);
    if (c->up >= 0 && !reusable) { /* else kept for this client's next request */
        shut(F, c->up);
        c->up = -1;
    }
    record *r = calloc(1, sizeof *r);
    if (r) {
        r->kind = FRONT_RECORD;
        r->id = c->xid;
        r->fd = refer ? c->cl : -1;
        r->gate = c->gate;
        r->status = c->status;
        r->path = c->path;
        r->end = end;
        r->key = c->key;
        r->began = c->began;
        r->wall = c->wall;
        r->ended = now();
        r->f = f;
        if (c->reserved >= 0) { /* capturing: the request and the head the client got */
            r->data = malloc(c->req_len);
            if (r->data) memcpy(r->data, c->in, c->req_len);
            r->data_len = r->data ? c->req_len : 0;
            r->data_head = c->head_len;
            r->resp = c->resp;
            r->resp_len = c->resp_len;
            c->resp = NULL;
        }
        memcpy(r->peer, c->shown, sizeof r->peer);
        queue(F, r);
    } else {
        free(f->keep);
        free(f);
        refer = 0; /* no record to take the connection: it closes */
        end = ABORTED;
    }
    c->f = NULL;
    free(c->wr);
    c->wr = NULL;
    free(c->resp);
    c->resp = NULL;
    if (c->reserved > 0) F->keep_used -= c->reserved;
    c->reserved = -1;
    c->ob_len = c->ob_off = 0;
    c->phase = F_READ; /* (an engine connection kept goes to the pool if this one closes) */
    if (refer) { /* the record took the client's connection */
        epoll_ctl(F->ep, EPOLL_CTL_DEL, c->cl, NULL);
        let_engine_go(F, c);
        forget(F, c);
        return;
    }
    if (end != DONE || c->closing || F->draining) {
        close_conn(F, c);
        return;
    }
    memmove(c->in, c->in + c->req_len, c->in_len - c->req_len); /* a pipelined next request */
    c->in_len -= c->req_len;
    c->req_len = 0;
    c->behind = c->muted = 0;
    c->served = 1;
    c->last = now();
    c->head_at = c->in_len ? c->last : 0;
    rewatch(F, c);
    if (c->in_len) serve_next(F, c);
}

/* Before the engine could have read the request (or on a kept-alive connection, before any
 * byte of its answer): a kept-alive connection is tried once fresh; a new one that cannot be
 * made or written to leaves the request to Python, as if the front had never taken it (Python
 * then waits for the engine's restart, as for its own). */
static void engine_failed(front *F, conn *c) {
    if (c->up >= 0) shut(F, c->up);
    c->up = -1;
    int fd;
    if (!c->fresh && (fd = dial(&c->addr)) >= 0) {
        c->fresh = 1;
        c->wr_off = 0;
        c->phase = F_SEND;
        c->rh_len = 0;
        attach(F, c, fd);
        return;
    }
    land(F, c);
    gate_leave(F->g, c->gate);
    __atomic_fetch_sub(&F->exchanges, 1, __ATOMIC_RELAXED);
    free(c->f->keep);
    free(c->f);
    c->f = NULL;
    if (c->reserved > 0) F->keep_used -= c->reserved;
    c->reserved = -1;
    to_python(F, c);
}

/* Queue bytes for the client and write what its socket takes. */
static int emit(conn *c, const char *p, size_t n) {
    if (c->ob_len + n > c->ob_cap) {
        size_t cap = c->ob_cap ? c->ob_cap : 4096;
        while (cap < c->ob_len + n) cap *= 2;
        char *grown = realloc(c->ob, cap);
        if (!grown) return 0;
        c->ob = grown;
        c->ob_cap = cap;
    }
    memcpy(c->ob + c->ob_len, p, n);
    c->ob_len += n;
    return 1;
}

static int complete(conn *c) {
    if (c->mode == MODE_RAW) return c->f->state == C_END;
    if (c->mode == MODE_PLAIN) return c->left == 0;
    return 0; /* MODE_FRAMED: at the engine's close */
}

/* Write what the client has not taken; the exchange ends once all is out after the body. */
static void flush_client(front *F, conn *c) {
    while (c->ob_off < c->ob_len) {
        ssize_t w = send(c->cl, c->ob + c->ob_off, c->ob_len - c->ob_off, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                c->behind = 1; /* read no more of the engine until the client catches up */
                rewatch(F, c);
                return;
            }
            ended(F, c, CLIENT_GONE);
            return;
        }
        c->ob_off += (size_t)w;
    }
    c->ob_off = c->ob_len = 0;
    if (complete(c)) {
        ended(F, c, DONE);
        return;
    }
    if (c->behind) {
        c->behind = 0;
        rewatch(F, c);
    }
}

/* The engine's body bytes [p, p+n), framed for the client; 0 when the framing broke. */
static int body_bytes(conn *c, const char *p, size_t n) {
    flow *f = c->f;
    if (c->mode == MODE_RAW) {
        ssize_t used = parse(f, p, n);
        if (used < 0) return 0;
        if ((size_t)used < n) f->extra = 1;
        return emit(c, p, (size_t)used);
    }
    if (c->mode == MODE_PLAIN) {
        size_t k = (uint64_t)n < (uint64_t)c->left ? n : (size_t)c->left;
        if (k < n) f->extra = 1;
        body(f, p, k);
        c->left -= (int64_t)k;
        return emit(c, p, k);
    }
    if (!n) return 1;
    char size[24];
    int len = snprintf(size, sizeof size, "%zx\r\n", n);
    body(f, p, n);
    return emit(c, size, (size_t)len) && emit(c, p, n) && emit(c, "\r\n", 2);
}

static void read_head(front *F, conn *c) {
    if (!c->rh && !(c->rh = malloc(HEAD_LIMIT + FRONT_READ))) {
        ended(F, c, ABORTED);
        return;
    }
    ssize_t n = recv(c->up, c->rh + c->rh_len, HEAD_LIMIT + FRONT_READ - c->rh_len, 0);
    if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n <= 0) {
        /* Before any byte of an answer: a kept-alive connection the engine closed is tried
         * once more on a new one; on a new one the request may have been what ended the engine,
         * so it is not sent again (Python's 502). */
        if (c->rh_len == 0 && !c->fresh) engine_failed(F, c);
        else {
            c->status = 502;
            ended(F, c, ENGINE_CLOSED);
        }
        return;
    }
    c->rh_len += (size_t)n;
    dated(F);
    size_t cap = c->rh_len + 1024;
    char *out = malloc(cap);
    int64_t info[RESP_INFO];
    int64_t size = out ? response_head(c->rh, (int64_t)c->rh_len, F->lines, F->date,
                                       (int64_t)F->date_len, c->closing ? 0 : CLIENT_KEEPS, out,
                                       (int64_t)cap, info)
                       : -1;
    if (size == 0) {
        free(out);
        return;
    }
    if (size < 0) { /* a head the front does not follow: Python's 502 */
        free(out);
        c->status = 502;
        ended(F, c, ENGINE_HEAD);
        return;
    }
    c->last = now(); /* idleRead counts from here */
    c->status = (int)info[RESP_STATUS];
    c->mode = (int)info[RESP_MODE];
    c->reuse = (int)info[RESP_REUSE];
    c->left = c->status == 204 || c->status == 304 || info[RESP_LENGTH] < 0 ? 0 : info[RESP_LENGTH];
    c->phase = F_BODY;
    c->answered = 1;
    int ok = emit(c, out, (size_t)info[RESP_OUT]);
    if (c->reserved >= 0) { /* the capture has the head the client got */
        c->resp = out;
        c->resp_len = (size_t)info[RESP_OUT];
    } else {
        free(out);
    }
    ok = ok && body_bytes(c, c->rh + size, c->rh_len - (size_t)size);
    free(c->rh);
    c->rh = NULL;
    c->rh_len = 0;
    if (!ok) {
        ended(F, c, BAD_FRAMING);
        return;
    }
    flush_client(F, c);
}

static void read_body(front *F, conn *c, char *buf) {
    if (c->ob_len) return; /* the client has bytes to take first */
    ssize_t n = recv(c->up, buf, FRONT_READ, 0);
    if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n <= 0) {
        if (c->mode == MODE_FRAMED) { /* the body ends at the engine's close */
            c->mode = MODE_PLAIN;
            c->left = 0;
            if (!emit(c, "0\r\n\r\n", 5)) ended(F, c, CLIENT_GONE);
            else flush_client(F, c);
        } else {
            ended(F, c, UPSTREAM_CLOSED); /* the client's connection closes mid-body */
        }
        return;
    }
    c->last = now();
    if (!body_bytes(c, buf, (size_t)n)) {
        ended(F, c, BAD_FRAMING);
        return;
    }
    flush_client(F, c);
}

static void write_engine(front *F, conn *c) {
    while (c->wr_off < c->wr_len) {
        ssize_t w = send(c->up, c->wr + c->wr_off, c->wr_len - c->wr_off, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                rewatch(F, c); /* F_SEND: for room */
                return;
            }
            engine_failed(F, c);
            return;
        }
        c->wr_off += (size_t)w;
    }
    c->phase = F_HEAD;
    c->last = now(); /* responseHeader counts from here */
    rewatch(F, c);
}

/* -- routing ---------------------------------------------------------------------------------- */

static int prefixed(const char *s, size_t n, const char *lower) {
    size_t k = strlen(lower);
    if (n < k) return 0;
    for (size_t i = 0; i < k; i++) {
        char a = s[i] >= 'A' && s[i] <= 'Z' ? (char)(s[i] + 32) : s[i];
        if (a != lower[i]) return 0;
    }
    return 1;
}

static int digit(char c) { return c >= '0' && c <= '9'; }

/* How many bytes of a Host value (no brackets) its name takes, as guard.split_host cuts it: a
 * ":port" of digits and trailing dots left out. */
static size_t host_name(const char *s, size_t n) {
    size_t name = n;
    for (size_t i = n; i > 0 && name == n; i--)
        if (s[i - 1] == ':') name = i - 1;
    if (name < n) {
        int port = name + 1 < n && !memchr(s, ':', name);
        for (size_t i = name + 1; i < n && port; i++) port = digit(s[i]);
        if (!port) name = n;
    }
    while (name && s[name - 1] == '.') name--;
    return name;
}

/* An IPv4 address as Python's ipaddress reads one: four numbers up to 255, no leading zero. */
static int ipv4(const char *s, size_t n) {
    int parts = 0;
    for (size_t i = 0; i <= n; parts++) {
        size_t j = i;
        int value = 0;
        while (j < n && digit(s[j]) && j - i < 3) value = value * 10 + (s[j++] - '0');
        if (j == i || value > 255 || (s[i] == '0' && j - i > 1) || (j < n && s[j] != '.'))
            return 0;
        i = j + 1;
    }
    return parts == 4;
}

/* A Host the browser guard (swapd.proxy.guard) lets through whatever the config says: an IPv4
 * address, [::1], localhost or a *.localhost name. Any other is looked up in the table's
 * names (allowed_host); one the front does not read as Python does is Python's. */
static int plain_host(const char *s, size_t n) {
    if (n >= 5 && !memcmp(s, "[::1]", 5)) {
        int port = n == 5 || (n > 6 && s[5] == ':');
        for (size_t i = 6; i < n && port; i++) port = digit(s[i]);
        return port;
    }
    size_t name = host_name(s, n);
    if (ipv4(s, name)) return 1;
    if (name == 9 && prefixed(s, 9, "localhost")) return 1;
    return name > 10 && prefixed(s + name - 10, 10, ".localhost");
}

/* A field only Python's rules look at (1): Sec-Fetch-Site (the guard's cross-site check),
 * X-Forwarded-Host, -Proto and the like; or (2) one of the forwarding fields swapd.edge
 * screens, which screen() follows. */
static int python_field(const char *head, size_t n) {
    int found = 0;
    for (const char *s = memchr(head, '\n', n); s && (size_t)(s - head) + 1 < n;
         s = memchr(s + 1, '\n', n - (size_t)(s + 1 - head))) {
        const char *l = s + 1;
        size_t rest = n - (size_t)(l - head);
        if (prefixed(l, rest, "x-forwarded-for:") || prefixed(l, rest, "forwarded:") ||
            prefixed(l, rest, "x-real-ip:"))
            found = 2;
        else if (prefixed(l, rest, "x-forwarded-") || prefixed(l, rest, "sec-fetch-site:"))
            return 1;
    }
    return found;
}

/* The API key a request presents, found as Python's auth.presented_key finds it: a Bearer
 * token, else the x-api-key field. *key is NULL for none, and for one the front leaves to
 * Python where keys are asked for: a Basic password, or bytes other than printable ASCII
 * (Python compares them re-encoded). */
static void presented(const char *in, const int64_t *out, const char **key, size_t *len) {
    *key = NULL;
    *len = 0;
    if (out[NOTED_AT + 2] >= 0 && out[NOTED_AT + 3] > 0) { /* authorization */
        const char *v = in + out[NOTED_AT + 2], *e = v + out[NOTED_AT + 3];
        const char *space = memchr(v, ' ', (size_t)(e - v));
        const char *scheme_end = space ? space : e;
        if (prefixed(v, (size_t)(scheme_end - v), "basic") && scheme_end - v == 5) return;
        if (prefixed(v, (size_t)(scheme_end - v), "bearer") && scheme_end - v == 6) {
            v = space ? space + 1 : e;
            while (v < e && (*v == ' ' || *v == '\t')) v++;
            *key = v;
            *len = (size_t)(e - v);
        }
    }
    if (!*key && out[NOTED_AT + 4] >= 0 && out[NOTED_AT + 5] > 0) { /* x-api-key */
        *key = in + out[NOTED_AT + 4];
        *len = (size_t)out[NOTED_AT + 5];
    }
    for (size_t i = 0; *key && i < *len; i++)
        if ((unsigned char)(*key)[i] <= ' ' || (unsigned char)(*key)[i] >= 0x7F) *key = NULL;
}

/* Whether two keys are the same, in a time that does not depend on where they differ. */
static int same_key(const char *a, size_t an, const char *b, size_t bn) {
    unsigned char d = an != bn;
    for (size_t i = 0; i < an && i < bn; i++) d |= (unsigned char)(a[i] ^ b[i]);
    return d == 0;
}

static int same_lower(const char *s, const char *lower, size_t n) {
    for (size_t i = 0; i < n; i++)
        if ((s[i] >= 'A' && s[i] <= 'Z' ? s[i] + 32 : s[i]) != lower[i]) return 0;
    return 1;
}

/* Whether the table's names take a Host value that is not a plain one, as the guard's
 * HostRule.allows does (server.allowedHosts, the names the listen address implies). */
static int allowed_host(const table *t, const char *s, size_t n) {
    if (t->any_host) return 1;
    if (n && s[0] == '[') return 0;
    size_t name = host_name(s, n);
    for (int64_t i = 0; i < t->nnames; i++)
        if (t->names[i].n == name && same_lower(s, t->names[i].p, name)) return 1;
    for (int64_t i = 0; i < t->ndomains; i++) {
        span d = t->domains[i];
        if (name >= d.n && same_lower(s + name - d.n, d.p, d.n)) return 1;
        if (name + 1 == d.n && same_lower(s, d.p + 1, name)) return 1;
    }
    return 0;
}

/* Whether an address (text, as a peer or an X-Forwarded-For hop gives it) is in one of the
 * table's trusted networks, as Edge.trusts decides (an IPv6 zone left out; not an address:
 * no). */
static int trusted(const table *t, const char *s, size_t n) {
    if (t->trust_all) return 1;
    char text[64];
    const char *zone = memchr(s, '%', n);
    if (zone) n = (size_t)(zone - s);
    if (n == 0 || n >= sizeof text) return 0;
    memcpy(text, s, n);
    text[n] = 0;
    unsigned char addr[16];
    int family = memchr(text, ':', n) ? 6 : 4;
    if (family == 4 ? !(ipv4(text, n) && inet_pton(AF_INET, text, addr) == 1)
                    : inet_pton(AF_INET6, text, addr) != 1)
        return 0;
    for (int64_t i = 0; i < t->nnets; i++) {
        const net *w = &t->nets[i];
        if (w->family != family) continue;
        int bits = w->bits, whole = bits / 8, rest = bits % 8;
        if (memcmp(addr, w->addr, (size_t)whole)) continue;
        if (rest && ((addr[whole] ^ w->addr[whole]) & (0xFF << (8 - rest)) & 0xFF)) continue;
        return 1;
    }
    return 0;
}

/* A request's forwarding fields as swapd.edge's Edge.screen leaves them, for a request with one
 * (head, n: a head scan_head vouched for; peer: the connection's). From a peer swapd does not
 * trust they are dropped: DROP_FORWARDING for request_head. From a trusted one they go on
 * unchanged (0) where screening leaves them so: at most one X-Forwarded-For and one X-Real-IP,
 * the former's hops joined by ", " with no untrusted one after the first (else -1: Python's,
 * which trims them). shown: the client's address as observer.client_ip finds it. */
static int screen(front *F, const char *head, size_t n, const char *peer, char *shown) {
    cursor e = (cursor)head + n, name, value, xff = NULL, real = NULL;
    size_t name_len, value_len, xff_len = 0, real_len = 0;
    int nxff = 0, nreal = 0;
    for (cursor s = (cursor)memchr(head, '\n', n) + 1; s < e && *s != '\r';) {
        s = field_of(s, &name, &name_len, &value, &value_len);
        if (named(name, name_len, "x-forwarded-for")) {
            xff = value;
            xff_len = value_len;
            nxff++;
        } else if (named(name, name_len, "x-real-ip")) {
            real = value;
            real_len = value_len;
            while (real_len && (real[real_len - 1] == ' ' || real[real_len - 1] == '\t'))
                real_len--; /* (the client's address is read stripped) */
            nreal++;
        }
    }
    pthread_mutex_lock(&F->lock);
    table *t = F->t;
    int believed = t && trusted(t, peer, strlen(peer));
    int verdict = believed ? 0 : DROP_FORWARDING;
    if (believed && (nxff > 1 || nreal > 1 || real_len >= 64)) verdict = -1;
    size_t first = 0; /* the first hop's length */
    for (size_t i = 0, hop = 0; believed && verdict == 0 && xff && i <= xff_len; hop++) {
        size_t j = i;
        while (j < xff_len && xff[j] != ',' && xff[j] != ' ' && xff[j] != '\t') j++;
        if (j == i || (j < xff_len && (xff[j] != ',' || j + 1 >= xff_len || xff[j + 1] != ' ')))
            verdict = -1; /* an empty hop, or not ", " between two: screening would rejoin */
        else if (hop == 0 && (first = j) >= 64)
            verdict = -1; /* longer than a record keeps */
        else if (!trusted(t, (const char *)xff + i, j - i))
            verdict = -1; /* screening would cut the hops before this one */
        i = j + 2;
    }
    pthread_mutex_unlock(&F->lock);
    const char *at = peer;
    size_t len = strlen(peer);
    if (believed && xff && first) {
        at = (const char *)xff;
        len = first;
    } else if (believed && real && real_len) {
        at = (const char *)real;
        len = real_len;
    }
    if (len >= 64) len = 63;
    memcpy(shown, at, len);
    shown[len] = 0;
    return verdict;
}

/* The table's entry for a model name (its host copied to host, HOST_MAX bytes) when the key
 * presented (key, NULL for none) may use it and the Host named (named, NULL for a plain one
 * or none) is allowed, the key's id (-1: no keys asked for), and the capture settings of the
 * moment. Every key is compared, as Python's auth.identify does. */
#define HOST_MAX 256
static int find(front *F, const char *name, size_t len, const char *key, size_t key_len,
                const char *named, size_t named_len, entry *out, char *host, int *who,
                int64_t *keep) {
    int found = 0, at = -1;
    pthread_mutex_lock(&F->lock);
    table *t = F->t;
    for (int64_t k = 0; t && key && k < t->nkeys; k++)
        if (same_key(key, key_len, t->keys[k], t->key_lens[k])) at = (int)k;
    int keyed = t && t->nkeys > 0;
    int hosted = !named || (t && allowed_host(t, named, named_len));
    for (int64_t i = 0; t && hosted && i < t->count && !found && (!keyed || at >= 0); i++) {
        if (t->e[i].name_len == len && !memcmp(t->e[i].name, name, len) &&
            t->e[i].host_len <= HOST_MAX && (!keyed || t->e[i].may[at])) {
            *out = t->e[i];
            memcpy(host, t->e[i].host, t->e[i].host_len); /* the table may go once unlocked */
            out->host = host;
            out->may = NULL;
            *who = keyed ? t->key_ids[at] : -1;
            found = 1;
        }
    }
    keep[0] = F->keep_budget;
    keep[1] = F->keep_limit;
    pthread_mutex_unlock(&F->lock);
    return found;
}

static int grow(conn *c, size_t need) {
    if (need <= c->in_cap) return 1;
    size_t cap = c->in_cap ? c->in_cap : 8192;
    while (cap < need) cap *= 2;
    char *grown = realloc(c->in, cap);
    if (!grown) return 0;
    c->in = grown;
    c->in_cap = cap;
    return 1;
}

/* The request at the start of c->in: served here, Python's, or wait for more bytes. */
static void serve_next(front *F, conn *c) {
    int64_t out[HEAD_OUT];
    int64_t h = scan_head(c->in, (int64_t)c->in_len, out);
    if (h == 0 && c->in_len < HEAD_LIMIT) return;
    int fields = h > 0 ? python_field(c->in, (size_t)h) : 0;
    if (h <= 0 || F->draining || out[METHOD_AT] != 1 || out[LENGTH_AT] < 0 ||
        out[LENGTH_AT] > F->lim.max_body || out[NOTED_AT + 6] >= 0 || out[NOTED_AT + 8] < 0 ||
        !prefixed(c->in + out[NOTED_AT + 8], (size_t)out[NOTED_AT + 9], "application/json") ||
        fields == 1) {
        to_python(F, c);
        return;
    }
    const char *target = c->in + out[TARGET_AT];
    size_t target_len = (size_t)out[TARGET_AT + 1];
    int path = -1;
    for (int i = 0; i < F->npaths && path < 0; i++)
        if (F->path_lens[i] == target_len && !memcmp(F->paths[i], target, target_len)) path = i;
    if (path < 0) {
        to_python(F, c);
        return;
    }
    size_t need = (size_t)h + (size_t)out[LENGTH_AT];
    if (c->in_len < need) {
        if (!grow(c, need)) to_python(F, c);
        return;
    }
    int64_t scanned[4], keep[2];
    entry e = {0};
    char host[HOST_MAX];
    const char *payload = c->in + h, *key;
    size_t key_len;
    int who = -1, drop = 0;
    snprintf(c->shown, sizeof c->shown, "%s", c->peer);
    if (fields == 2 &&
        (drop = screen(F, c->in, (size_t)h, c->peer, c->shown)) < 0) {
        to_python(F, c);
        return;
    }
    presented(c->in, out, &key, &key_len);
    const char *named = NULL; /* a Host that is not plain: the table's names decide */
    size_t named_len = (size_t)out[NOTED_AT + 1];
    if (out[NOTED_AT] >= 0 && !plain_host(c->in + out[NOTED_AT], named_len))
        named = c->in + out[NOTED_AT];
    if (!scan_request(payload, out[LENGTH_AT], F->lim.max_depth, scanned) || scanned[2] != 1 ||
        !find(F, payload + scanned[0], (size_t)(scanned[1] - scanned[0]), key, key_len, named,
              named_len, &e, host, &who, keep) ||
        !gate_enter(F->g, e.gate)) {
        to_python(F, c);
        return;
    }
    __atomic_fetch_add(&F->exchanges, 1, __ATOMIC_RELAXED);
    c->gate = e.gate;
    c->addr = e.addr;
    c->connect = e.connect;
    c->head = e.head;
    c->idle = e.idle;
    c->path = path;
    c->key = who;
    c->req_len = need;
    c->head_len = (size_t)h;
    c->reserved = -1; /* -1: no capture; else the response body bytes kept for one */
    if (keep[0] > 0) {
        int64_t room = keep[0] - F->keep_used;
        c->reserved = room < keep[1] ? room : keep[1];
        if (c->reserved < 0) c->reserved = 0;
        F->keep_used += c->reserved;
    }
    c->closing = (int)out[CLOSE_AT];
    c->began = now();
    c->wall = wall();
    c->status = 0;
    c->answered = c->behind = c->reuse = 0;
    c->mode = MODE_PLAIN;
    c->left = 0;
    fly(F, c); /* (once what front_inflight reads is set) */
    c->f = calloc(1, sizeof *c->f);
    size_t cap = (size_t)h + e.host_len + 512;
    c->wr = malloc(cap + (size_t)out[LENGTH_AT]);
    int64_t written = -1;
    if (c->f && c->wr)
        written = request_head(c->in, h, target, (int64_t)target_len, e.host,
                               (int64_t)e.host_len, c->peer, (int64_t)strlen(c->peer),
                               out[LENGTH_AT], drop | (who >= 0 ? DROP_CREDENTIALS : 0),
                               c->wr, (int64_t)cap);
    if (written < 0) {
        land(F, c);
        gate_leave(F->g, c->gate);
        __atomic_fetch_sub(&F->exchanges, 1, __ATOMIC_RELAXED);
        free(c->f);
        c->f = NULL;
        if (c->reserved > 0) F->keep_used -= c->reserved;
        c->reserved = -1;
        to_python(F, c);
        return;
    }
    c->f->state = C_SIZE;
    c->f->up = c->f->cl = -1;
    c->f->keep_max = c->reserved > 0 ? (size_t)c->reserved : 0;
    memcpy(c->wr + written, payload, (size_t)out[LENGTH_AT]);
    c->wr_len = (size_t)written + (size_t)out[LENGTH_AT];
    c->wr_off = 0;
    c->phase = F_SEND;
    c->last = c->began; /* connect counts from here */
    if (c->up >= 0 && (c->up_gate != c->gate || c->up_addr.sin_addr.s_addr != c->addr.sin_addr.s_addr ||
                       c->up_addr.sin_port != c->addr.sin_port)) {
        pool_put(F, c->up_gate, c->up, &c->up_addr); /* kept for another engine */
        c->up = -1;
    }
    c->fresh = 0;
    if (c->up < 0) {
        int fd = pool_take(F, c->gate, &c->addr);
        c->fresh = fd < 0;
        if (fd < 0 && (fd = dial(&c->addr)) < 0) {
            engine_failed(F, c);
            return;
        }
        attach(F, c, fd);
    }
    if (!c->fresh) write_engine(F, c); /* (a connection being made: once it has room) */
}

static void read_client(front *F, conn *c) {
    for (;;) {
        if (!grow(c, c->in_len + 4096)) {
            close_conn(F, c);
            return;
        }
        ssize_t n = recv(c->cl, c->in + c->in_len, c->in_cap - c->in_len, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            close_conn(F, c);
            return;
        }
        if (n == 0) { /* the client is done: what it sent is Python's to answer, if anything */
            if (c->in_len) to_python(F, c); else close_conn(F, c);
            return;
        }
        c->in_len += (size_t)n;
        if (c->in_len < c->in_cap) break; /* all there was */
    }
    if (!c->head_at) c->head_at = now();
    serve_next(F, c);
}

static void join(front *F, conn *c) {
    __atomic_fetch_add(&F->open, 1, __ATOMIC_RELAXED);
    c->prev = NULL;
    c->next = F->conns;
    if (F->conns) F->conns->prev = c;
    F->conns = c;
    arm(F, c->cl, c, EPOLLIN | EPOLLRDHUP, EPOLL_CTL_ADD);
}

/* At the cap (the front's connections and Python's together), a new connection goes to Python,
 * which answers it with a 503 as it answers one past the cap itself. */
static int full(front *F) {
    int64_t open = __atomic_load_n(&F->open, __ATOMIC_RELAXED) +
                   __atomic_load_n(&F->python_open, __ATOMIC_RELAXED);
    return F->lim.cap > 0 && open >= F->lim.cap;
}

/* A connection Python answers from its first byte (at the cap). */
static void hand_new(front *F, int fd) {
    record *r = calloc(1, sizeof *r);
    if (!r) {
        close(fd);
        return;
    }
    r->kind = FRONT_PYTHON;
    r->fd = fd;
    queue(F, r);
}

/* Exchanges an operator cancelled (front_cancel): Python's 503 when nothing was answered yet,
 * else the client's stream is cut; the engine's connection closes either way. */
static void cancel_asked(front *F) {
    conn *asked[EVENTS];
    int n = 0;
    pthread_mutex_lock(&F->lock);
    for (conn *c = F->flying; c && n < EVENTS; c = c->fnext)
        if (c->cancel == 1) {
            c->cancel = 2;
            asked[n++] = c;
        }
    pthread_mutex_unlock(&F->lock);
    for (int i = 0; i < n; i++) {
        conn *c = asked[i];
        if (!c->phase || !c->f) continue;
        c->status = 503;
        ended(F, c, c->answered ? ABORTED : CANCELLED);
    }
}

static void accept_all(front *F) {
    for (;;) {
        struct sockaddr_storage sa;
        socklen_t len = sizeof sa;
        int fd = accept4(F->lfd, (struct sockaddr *)&sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return; /* EAGAIN, or no fd left: the next round tries again */
        if (full(F)) {
            hand_new(F, fd);
            continue;
        }
        conn *c = calloc(1, sizeof *c);
        if (!c) {
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        c->cl = fd;
        c->up = -1;
        c->phase = F_READ;
        c->last = now();
        c->cl_events = EPOLLIN | EPOLLRDHUP;
        if (sa.ss_family == AF_INET)
            inet_ntop(AF_INET, &((struct sockaddr_in *)&sa)->sin_addr, c->peer, sizeof c->peer);
        else if (sa.ss_family == AF_INET6)
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&sa)->sin6_addr, c->peer, sizeof c->peer);
        join(F, c);
    }
}

/* A connection idle past keepAliveTimeout (headerTimeout before its first request) closes, as
 * Python's do; one whose request has taken headerTimeout goes to Python (its timers). An
 * exchange past a timeout of its model's: a connection not made yet goes to Python (which
 * reports it), a head later than responseHeader gets a 504, a body that stops for idleRead is
 * cut, as Python's relay does each. */
static void sweep(front *F) {
    double t = now();
    pool_sweep(F);
    for (conn *c = F->conns, *next; c; c = next) {
        next = c->next;
        double quiet = t - c->last;
        if (c->phase == F_READ) {
            double idle = c->served ? F->lim.keep_alive : F->lim.head_timeout;
            if (!c->in_len && (F->draining || quiet > idle)) close_conn(F, c);
            else if (c->in_len && t - c->head_at > F->lim.head_timeout) to_python(F, c);
        } else if (c->phase == F_SEND && c->fresh && c->connect > 0 && quiet > c->connect) {
            c->fresh = 1; /* no second try: Python's */
            engine_failed(F, c);
        } else if (c->phase == F_HEAD && c->head > 0 && quiet > c->head) {
            c->status = 504;
            ended(F, c, HEAD_LATE);
        } else if (c->phase == F_BODY && !c->behind && c->idle > 0 && quiet > c->idle) {
            ended(F, c, IDLE);
        }
    }
}

static void *front_run(void *arg) {
    front *F = arg;
    struct epoll_event events[EVENTS];
    char *buf = malloc(FRONT_READ);
    double swept = now();
    int wait = (int)(FRONT_SWEEP * 1000);
    for (;;) {
        int n = epoll_wait(F->ep, events, EVENTS, wait);
        if (n < 0 && errno != EINTR) break;
        for (int i = 0; i < n; i++) {
            void *p = events[i].data.ptr;
            uint32_t e = events[i].events;
            if (!p) {
                uint64_t count;
                ssize_t r = read(F->control, &count, sizeof count);
                (void)r;
                pthread_mutex_lock(&F->lock);
                int draining = F->draining;
                conn *back = F->incoming;
                F->incoming = NULL;
                if (F->lim_asked) F->lim = F->asked;
                F->lim_asked = 0;
                pthread_mutex_unlock(&F->lock);
                while (back) {
                    conn *c = back;
                    back = c->next;
                    join(F, c);
                }
                cancel_asked(F);
                if (draining && !F->closed_listener) {
                    epoll_ctl(F->ep, EPOLL_CTL_DEL, F->lfd, NULL);
                    F->closed_listener = 1;
                    swept = 0;
                }
                continue;
            }
            if (p == &LISTENER) {
                if (!F->closed_listener) accept_all(F);
                continue;
            }
            conn *c = (conn *)((uintptr_t)p & ~(uintptr_t)1);
            if (!c->phase) continue; /* closed earlier in this round */
            if ((uintptr_t)p & 1) { /* the engine's socket */
                if (c->phase == F_SEND) write_engine(F, c);
                else if (c->phase == F_HEAD) read_head(F, c);
                else if (c->phase == F_BODY && buf) read_body(F, c, buf);
                else if (c->phase == F_READ) { /* kept between two requests: it closed */
                    shut(F, c->up);
                    c->up = -1;
                }
            } else if (c->phase == F_READ) {
                if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) read_client(F, c);
            } else if (e & (EPOLLERR | EPOLLHUP | EPOLLRDHUP)) {
                if (!c->answered) c->status = 499;
                ended(F, c, CLIENT_GONE);
            } else {
                if (e & EPOLLOUT) flush_client(F, c);
                if ((e & EPOLLIN) && c->phase && c->phase != F_READ && !c->muted) {
                    c->muted = 1; /* a pipelined request: read once this exchange has ended */
                    rewatch(F, c);
                }
            }
        }
        if (now() - swept >= FRONT_SWEEP) {
            swept = now();
            sweep(F);
        }
        bury(F);
        double t = now();
        pthread_mutex_lock(&F->lock);
        int stop = F->stopping;
        int tell = F->first && !F->told && (F->urgent || t - F->pending >= FRONT_BATCH);
        if (tell) F->told = 1;
        F->urgent = 0;
        wait = (int)(FRONT_SWEEP * 1000);
        if (F->first && !F->told) wait = 1 + (int)((FRONT_BATCH - (t - F->pending)) * 1000);
        pthread_mutex_unlock(&F->lock);
        if (tell) signal_fd(F->notify);
        if (stop) break;
    }
    free(buf);
    return NULL;
}

/* -- Python's side ---------------------------------------------------------------------------- */

/* lines: the status lines (100..599); paths: the routes served here, each ending with NUL, an
 * empty one last; the rest: the server's limits (see limits). */
void *front_create(int lfd, void *gates_, const char *const *lines, const char *paths,
                   int64_t max_body, int64_t max_depth, double keep_alive, double head_timeout,
                   int64_t cap) {
    front *F = calloc(1, sizeof *F);
    if (!F) return NULL;
    F->g = gates_;
    for (int i = 0; i < 500; i++) F->lines[i] = lines[i];
    for (const char *p = paths; *p && F->npaths < FRONT_PATHS; p += strlen(p) + 1) {
        F->paths[F->npaths] = strdup(p);
        F->path_lens[F->npaths++] = strlen(p);
    }
    F->lim = (limits){max_body, max_depth, cap, keep_alive, head_timeout};
    F->pool = calloc((size_t)F->g->size * FRONT_POOL, sizeof *F->pool);
    F->pool_n = calloc((size_t)F->g->size, sizeof *F->pool_n);
    F->lfd = fcntl(lfd, F_DUPFD_CLOEXEC, 0);
    F->ep = epoll_create1(EPOLL_CLOEXEC);
    F->control = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    F->notify = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    pthread_mutex_init(&F->lock, NULL);
    int bad_start = !F->pool || !F->pool_n || F->lfd < 0 || F->ep < 0 ||
                    F->control < 0 || F->notify < 0;
    if (!bad_start) {
        fcntl(F->lfd, F_SETFL, fcntl(F->lfd, F_GETFL) | O_NONBLOCK);
        arm(F, F->control, NULL, EPOLLIN, EPOLL_CTL_ADD);
        arm(F, F->lfd, &LISTENER, EPOLLIN, EPOLL_CTL_ADD);
        bad_start = pthread_create(&F->thread, NULL, front_run, F) != 0;
    }
    if (bad_start) {
        int fds[4] = {F->lfd, F->ep, F->control, F->notify};
        for (int i = 0; i < 4; i++)
            if (fds[i] >= 0) close(fds[i]);
        for (int i = 0; i < F->npaths; i++) free(F->paths[i]);
        free(F->pool);
        free(F->pool_n);
        free(F);
        return NULL;
    }
    pthread_setname_np(F->thread, "swapd-front");
    return F;
}

int front_notify_fd(void *h) { return ((front *)h)->notify; }

/* A reader of front_table's blob: each take is bounds-checked (NULL: the blob is too short). */
typedef struct {
    const char *p;
    int64_t at, len;
} reader;

static const char *take(reader *r, int64_t n) {
    if (n < 0 || r->at + n > r->len) return NULL;
    r->at += n;
    return r->p + r->at - n;
}

static int take_u32(reader *r, uint32_t *v) {
    const char *s = take(r, 4);
    if (s) memcpy(v, s, 4);
    return s != NULL;
}

/* One name of the table (see front_table); 0 at the blob's end. */
static int entry_of(reader *r, int64_t nkeys, int64_t gates, entry *e) {
    uint32_t k, m, ip;
    uint16_t port;
    const char *s;
    if (!take_u32(r, &k) || !(e->name = take(r, k)) || !take_u32(r, &m) ||
        !(e->host = take(r, m)) || !(s = take(r, 38)) ||
        !(e->may = (const unsigned char *)take(r, nkeys)))
        return 0;
    e->name_len = k;
    e->host_len = m;
    memcpy(&e->gate, s, 8);
    memcpy(&ip, s + 8, 4);
    memcpy(&port, s + 12, 2);
    memcpy(&e->connect, s + 14, 8);
    memcpy(&e->head, s + 22, 8);
    memcpy(&e->idle, s + 30, 8);
    e->addr.sin_family = AF_INET;
    e->addr.sin_addr.s_addr = ip;
    e->addr.sin_port = htons(port);
    if (e->gate < 0 || e->gate >= gates) e->name_len = (size_t)-1; /* never found */
    return 1;
}

/* [u32 count], then each [u32 length][bytes] (NULL: no memory). */
static span *spans_of(reader *r, int64_t *count) {
    uint32_t n = 0;
    *count = 0;
    if (!take_u32(r, &n) || n > (uint32_t)(r->len - r->at)) n = 0;
    span *out = calloc((size_t)n + 1, sizeof *out);
    for (uint32_t i = 0; out && i < n; i++) {
        uint32_t k;
        if (!take_u32(r, &k) || !(out[i].p = take(r, k))) break;
        out[i].n = k;
        *count = i + 1;
    }
    return out;
}

static void table_free(table *t) {
    if (!t) return;
    free(t->names);
    free(t->domains);
    free(t->nets);
    free(t->e);
    free(t->bytes);
    free(t->keys);
    free(t->key_lens);
    free(t->key_ids);
    free(t);
}

/* The names served here, replacing the last table. The blob: [u32 count] API keys, each
 * [i32 id][u32 length][key] (none: no key is asked for); the Host names the guard allows
 * beyond plain ones: [u32 1 for any], [u32 count] names and [u32 count] domains, each
 * [u32 length][lower-case bytes]; the peers whose forwarding fields are believed: [u32 1 for
 * any], [u32 count] networks, each [u8 4 or 6][u8 prefix length][16 bytes of address]; then
 * per name [u32 length][name]
 * [u32 length][host as the engine gets it][i64 gate][u32 IPv4 address, network order]
 * [u16 port], the model's timeouts as three doubles (connect, responseHeader, idleRead; 0:
 * none), and one byte per key, 1 when that key may use the name. 0: no memory. */
int front_table(void *h, const char *blob, int64_t len) {
    front *F = h;
    table *t = calloc(1, sizeof *t);
    char *bytes = malloc((size_t)len + 1);
    uint32_t nkeys = 0;
    reader r = {bytes, 0, len};
    if (t && bytes) {
        memcpy(bytes, blob, (size_t)len);
        if (!take_u32(&r, &nkeys) || nkeys > (uint32_t)len) nkeys = 0;
    }
    if (t) {
        t->bytes = bytes;
        t->keys = calloc((size_t)nkeys + 1, sizeof *t->keys);
        t->key_lens = calloc((size_t)nkeys + 1, sizeof *t->key_lens);
        t->key_ids = calloc((size_t)nkeys + 1, sizeof *t->key_ids);
    }
    if (!t || !bytes || !t->keys || !t->key_lens || !t->key_ids) {
        if (!t) free(bytes);
        table_free(t); /* (its bytes too) */
        return 0;
    }
    for (uint32_t k = 0; k < nkeys; k++) {
        uint32_t n;
        const char *id = take(&r, 4);
        if (!id || !take_u32(&r, &n) || !(t->keys[k] = take(&r, n))) break;
        memcpy(&t->key_ids[k], id, 4);
        t->key_lens[k] = n;
        t->nkeys = k + 1;
    }
    uint32_t any = 0;
    take_u32(&r, &any);
    t->any_host = any != 0;
    t->names = spans_of(&r, &t->nnames);
    t->domains = spans_of(&r, &t->ndomains);
    uint32_t all = 0, nnets = 0;
    take_u32(&r, &all);
    t->trust_all = all != 0;
    if (!take_u32(&r, &nnets) || nnets > (uint32_t)len) nnets = 0;
    t->nets = calloc((size_t)nnets + 1, sizeof *t->nets);
    if (!t->names || !t->domains || !t->nets) {
        table_free(t);
        return 0;
    }
    for (uint32_t i = 0; i < nnets; i++) {
        const unsigned char *w = (const unsigned char *)take(&r, 18);
        if (!w) break;
        t->nets[i].family = w[0];
        t->nets[i].bits = w[1] > 128 ? 128 : w[1];
        memcpy(t->nets[i].addr, w + 2, 16);
        t->nnets = i + 1;
    }
    entry scratch;
    int64_t start = r.at, count = 0;
    while (entry_of(&r, t->nkeys, F->g->size, &scratch)) count++; /* count, then read */
    t->e = calloc((size_t)count + 1, sizeof *t->e);
    if (!t->e) {
        table_free(t);
        return 0;
    }
    r.at = start;
    for (int64_t i = 0; i < count; i++) entry_of(&r, t->nkeys, F->g->size, &t->e[i]);
    t->count = count;
    pthread_mutex_lock(&F->lock);
    table *old = F->t;
    F->t = t;
    pthread_mutex_unlock(&F->lock);
    table_free(old);
    return 1;
}

/* One queued record or connection into *out (1), or none (0). FRONT_PYTHON's data is the
 * caller's (relay_free), and so is its fd. */
int front_next(void *h, front_result *out) {
    front *F = h;
    pthread_mutex_lock(&F->lock);
    record *r = F->first;
    if (r) {
        F->first = r->next;
        if (!F->first) F->last = NULL;
    }
    if (!F->first) { /* all read: the next record starts a new batch */
        F->told = 0;
        F->pending = 0;
    }
    pthread_mutex_unlock(&F->lock);
    if (!r) return 0;
    out->kind = r->kind;
    out->id = r->id;
    out->fd = r->fd;
    out->gate = r->gate;
    out->status = r->status;
    out->path = r->path;
    out->end = r->end;
    out->key = r->key;
    out->began = r->began;
    out->wall = r->wall;
    out->ended = r->ended;
    out->data = r->data;
    out->data_len = (int64_t)r->data_len;
    out->data_head = (int64_t)r->data_head;
    out->resp = r->resp;
    out->resp_len = (int64_t)r->resp_len;
    out->keep = NULL;
    out->keep_len = 0;
    out->keep_cut = 0;
    memcpy(out->peer, r->peer, sizeof out->peer);
    out->size = out->head_len = out->tail_len = 0;
    out->first = 0;
    flow *f = r->f;
    if (f) {
        out->size = f->size;
        out->first = f->first;
        out->head_len = (int64_t)f->head_len;
        memcpy(out->head, f->head, f->head_len);
        out->tail_len = tail_of(f, out->tail);
        out->keep = f->keep; /* the caller's, as data and resp are */
        out->keep_len = (int64_t)f->keep_len;
        out->keep_cut = f->keep_cut;
        free(f);
    }
    free(r);
    return 1;
}

/* A connection Python served a request on and hands back between two requests (the fd is
 * the front's now; peer: the client's address). 0: no memory (the caller keeps the fd). */
int front_adopt(void *h, int fd, const char *peer) {
    front *F = h;
    conn *c = calloc(1, sizeof *c);
    if (!c) return 0;
    c->cl = fd;
    c->up = -1;
    c->phase = F_READ;
    c->last = now();
    c->cl_events = EPOLLIN | EPOLLRDHUP;
    c->served = 1;
    snprintf(c->peer, sizeof c->peer, "%s", peer);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    pthread_mutex_lock(&F->lock);
    c->next = F->incoming;
    F->incoming = c;
    pthread_mutex_unlock(&F->lock);
    signal_fd(F->control);
    return 1;
}

/* The config's limits from now on (a reload's): see limits. */
void front_limits(void *h, int64_t max_body, int64_t max_depth, double keep_alive,
                  double head_timeout, int64_t cap) {
    front *F = h;
    pthread_mutex_lock(&F->lock);
    F->asked = (limits){max_body, max_depth, cap, keep_alive, head_timeout};
    F->lim_asked = 1;
    pthread_mutex_unlock(&F->lock);
    signal_fd(F->control);
}

/* Connections the front has open; Python tells how many it has (the cap counts both). */
int64_t front_open(void *h) { return __atomic_load_n(&((front *)h)->open, __ATOMIC_RELAXED); }

void front_python_open(void *h, int64_t n) {
    __atomic_store_n(&((front *)h)->python_open, n, __ATOMIC_RELAXED);
}

/* Captures from now on: at most budget bytes of response bodies kept by exchanges in flight,
 * limit each (0: none, and no request is copied). */
void front_captures(void *h, int64_t budget, int64_t limit) {
    front *F = h;
    pthread_mutex_lock(&F->lock);
    F->keep_budget = budget;
    F->keep_limit = limit;
    pthread_mutex_unlock(&F->lock);
}

/* Up to max exchanges in flight into out; returns how many there are. */
int64_t front_inflight(void *h, front_flying *out, int64_t max) {
    front *F = h;
    int64_t n = 0;
    pthread_mutex_lock(&F->lock);
    for (conn *c = F->flying; c; c = c->fnext, n++) {
        if (n >= max) continue;
        front_flying *x = &out[n];
        x->id = c->xid;
        x->gate = c->gate;
        x->path = c->path;
        x->status = __atomic_load_n(&c->status, __ATOMIC_RELAXED);
        x->key = c->key;
        x->wall = c->wall;
        x->began = c->began;
        x->size = c->f ? __atomic_load_n(&c->f->size, __ATOMIC_RELAXED) : 0;
        memcpy(x->peer, c->shown, sizeof x->peer);
    }
    pthread_mutex_unlock(&F->lock);
    return n;
}

/* Ask the thread to cancel exchange id; 0: none in flight has it. */
int front_cancel(void *h, int64_t id) {
    front *F = h;
    int found = 0;
    pthread_mutex_lock(&F->lock);
    for (conn *c = F->flying; c && !found; c = c->fnext)
        if (c->xid == id) {
            found = 1;
            if (!c->cancel) c->cancel = 1;
        }
    pthread_mutex_unlock(&F->lock);
    if (found) signal_fd(F->control);
    return found;
}

/* Exchanges in flight. */
int64_t front_active(void *h) {
    return __atomic_load_n(&((front *)h)->exchanges, __ATOMIC_RELAXED);
}

/* Accept no more; each connection closes once its exchange has ended (idle ones now). */
void front_stop(void *h) {
    front *F = h;
    pthread_mutex_lock(&F->lock);
    F->draining = 1;
    pthread_mutex_unlock(&F->lock);
    signal_fd(F->control);
}

void front_destroy(void *h) {
    front *F = h;
    pthread_mutex_lock(&F->lock);
    F->stopping = 1;
    pthread_mutex_unlock(&F->lock);
    signal_fd(F->control);
    pthread_join(F->thread, NULL);
    for (conn *c = F->conns, *next; c; c = next) {
        next = c->next;
        if (c->f) {
            gate_leave(F->g, c->gate);
            free(c->f->keep);
            free(c->f);
        }
        close_conn(F, c);
    }
    bury(F);
    for (conn *c = F->incoming, *next; c; c = next) {
        next = c->next;
        close(c->cl);
        free(c);
    }
    for (int64_t g = 0; g < F->g->size; g++)
        for (int k = 0; k < F->pool_n[g]; k++) close(F->pool[g * FRONT_POOL + k].fd);
    record *r = F->first;
    while (r) {
        record *next = r->next;
        if (r->fd >= 0) close(r->fd);
        free(r->data);
        free(r->resp);
        if (r->f) {
            free(r->f->keep);
            free(r->f);
        }
        free(r);
        r = next;
    }
    table_free(F->t);
    for (int i = 0; i < F->npaths; i++) free(F->paths[i]);
    close(F->lfd);
    close(F->ep);
    close(F->control);
    close(F->notify);
    pthread_mutex_destroy(&F->lock);
    free(F->pool);
    free(F->pool_n);
    free(F);
}
