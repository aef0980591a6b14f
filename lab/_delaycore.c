/* The delay line's per-frame work in C (lab.delaycore wraps it, lab.delayline drives it).
 *
 * The same forwarding as lab.delayline's Python core, frame for frame: kernel receive
 * timestamps as the time base, one heap of deadlines, loss before the queue limit, no
 * overtaking unless reorder, chained links through a two-generation table of departures,
 * a calibrated wake-up lead and a short spin. What C buys: frames are read and sent in
 * batches (recvmmsg/sendmmsg), no Python object per frame, and one epoll_pwait2 wait with a
 * nanosecond timeout for any number of sockets. Python keeps configuration, signals, reload
 * and statistics: run() returns when the signal wake-up fd is readable or its time is up.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>

#define VNET_HDR_LEN 10
#define KEY_OFFSET (VNET_HDR_LEN + 14)
#define KEY_MAX 64
#define RX_BUFFER (1 << 17)
#define RECV_BATCH 32
#define MAX_EVENTS 256
#define CONTROL_LEN 64
/* After a frame this large, read one at a time: a batch of 64 KiB GSO frames takes
 * hundreds of microseconds to copy and send, and other links' deadlines must not wait. */
#define BIG_FRAME 4096

typedef struct Link Link;

typedef struct {
    Link *link;
    int inp, out;
    int big; /* the last frame read was larger than BIG_FRAME */
    double last_due, late_sum, late_max;
    long long queued, forwarded, lost, dropped, tx_errors, truncated, before_start, chained,
        late_over;
} Dir;

struct Link {
    double delay, span, jitter, loss;
    long long limit;
    int reorder;
    Dir dir[2];
};

typedef struct {
    double deadline, due;
    uint64_t seq;
    Dir *dir;
    uint8_t *frame;
    uint32_t len;
} Item;

typedef struct {
    uint64_t hash;
    uint32_t gen;
    uint8_t keylen;
    uint8_t key[KEY_MAX];
    double due;
    Dir *dir;
} Departure;

typedef struct {
    Departure *slots;
    size_t cap, count;
    uint32_t gen;
} Table;

typedef struct {
    PyObject_HEAD
    Link **links;
    size_t nlinks, links_cap;
    Item *heap;
    size_t heap_len, heap_cap;
    uint64_t seq;
    Table departed, departed_before;
    double next_generation;
    double lead, spin_cap, chain_limit, chain_memory, late_threshold, clock_sanity;
    double forwarding_since, mono_offset;
    int drain_batch;
    int epfd;
    long long kinds[3]; /* realtime, monotonic, none */
    uint64_t rng[2];
    struct mmsghdr rx[RECV_BATCH];
    struct iovec rx_iov[RECV_BATCH];
    uint8_t *rx_buf;
    uint8_t rx_control[RECV_BATCH][CONTROL_LEN];
    struct mmsghdr tx[RECV_BATCH];
    struct iovec tx_iov[RECV_BATCH];
    double tx_due[RECV_BATCH];
} Core;

static double clock_of(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline double realtime(void) { return clock_of(CLOCK_REALTIME); }

/* xorshift128+: uniform doubles in [0, 1) for loss and jitter. */
static inline double rand01(Core *c) {
    uint64_t s1 = c->rng[0];
    const uint64_t s0 = c->rng[1];
    c->rng[0] = s0;
    s1 ^= s1 << 23;
    c->rng[1] = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
    return (double)((c->rng[1] + s0) >> 11) * (1.0 / 9007199254740992.0);
}

/* ---- departures of chained links: key -> (due, direction), open addressing ---- */

static uint64_t key_hash(const uint8_t *key, size_t len) {
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ len;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, key + i, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdULL;
        h ^= h >> 32;
    }
    for (; i < len; i++)
        h = (h ^ key[i]) * 0x100000001b3ULL;
    h ^= h >> 29;
    return h | 1;
}

static int table_init(Table *t, size_t cap) {
    t->slots = calloc(cap, sizeof(Departure));
    if (!t->slots)
        return -1;
    t->cap = cap;
    t->count = 0;
    t->gen = 1;
    return 0;
}

static Departure *table_find(Table *t, const uint8_t *key, size_t len, uint64_t h) {
    size_t mask = t->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        Departure *d = &t->slots[i];
        if (d->gen != t->gen)
            return d;
        if (d->hash == h && d->keylen == len && memcmp(d->key, key, len) == 0)
            return d;
    }
}

static void table_grow(Table *t) {
    Table bigger;
    if (table_init(&bigger, t->cap * 2) < 0)
        return;
    for (size_t i = 0; i < t->cap; i++) {
        Departure *d = &t->slots[i];
        if (d->gen == t->gen) {
            Departure *slot = table_find(&bigger, d->key, d->keylen, d->hash);
            *slot = *d;
            slot->gen = bigger.gen;
            bigger.count++;
        }
    }
    free(t->slots);
    *t = bigger;
}

static void table_put(Table *t, const uint8_t *key, size_t len, double due, Dir *dir) {
    if ((t->count + 1) * 2 > t->cap)
        table_grow(t);
    uint64_t h = key_hash(key, len);
    Departure *d = table_find(t, key, len, h);
    if (d->gen != t->gen) {
        d->gen = t->gen;
        d->hash = h;
        d->keylen = (uint8_t)len;
        memcpy(d->key, key, len);
        t->count++;
    }
    d->due = due;
    d->dir = dir;
}

static Departure *table_get(Table *t, const uint8_t *key, size_t len) {
    Departure *d = table_find(t, key, len, key_hash(key, len));
    return d->gen == t->gen ? d : NULL;
}

static void table_clear(Table *t) {
    if (++t->gen == 0) {
        memset(t->slots, 0, t->cap * sizeof(Departure));
        t->gen = 1;
    }
    t->count = 0;
}

static inline size_t key_len(uint32_t frame_len) {
    if (frame_len <= KEY_OFFSET)
        return 0;
    size_t n = frame_len - KEY_OFFSET;
    return n < KEY_MAX ? n : KEY_MAX;
}

static inline void remember(Core *c, const uint8_t *frame, uint32_t len, double due, Dir *dir) {
    table_put(&c->departed, frame + (len > KEY_OFFSET ? KEY_OFFSET : len), key_len(len), due, dir);
}

/* ---- the heap of pending frames, ordered by (deadline, seq) ---- */

static inline int item_before(const Item *a, const Item *b) {
    return a->deadline < b->deadline || (a->deadline == b->deadline && a->seq < b->seq);
}

static int heap_push(Core *c, Item item) {
    if (c->heap_len == c->heap_cap) {
        size_t cap = c->heap_cap ? c->heap_cap * 2 : 1024;
        Item *grown = realloc(c->heap, cap * sizeof(Item));
        if (!grown)
            return -1;
        c->heap = grown;
        c->heap_cap = cap;
    }
    size_t i = c->heap_len++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!item_before(&item, &c->heap[parent]))
            break;
        c->heap[i] = c->heap[parent];
        i = parent;
    }
    c->heap[i] = item;
    return 0;
}

static Item heap_pop(Core *c) {
    Item top = c->heap[0];
    Item last = c->heap[--c->heap_len];
    size_t n = c->heap_len, i = 0;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= n)
            break;
        if (child + 1 < n && item_before(&c->heap[child + 1], &c->heap[child]))
            child++;
        if (!item_before(&c->heap[child], &last))
            break;
        c->heap[i] = c->heap[child];
        i = child;
    }
    if (n)
        c->heap[i] = last;
    return top;
}

/* ---- sending ---- */

static inline void count_late(Core *c, Dir *dir, double late) {
    dir->late_sum += late;
    if (late > dir->late_max)
        dir->late_max = late;
    if (late > c->late_threshold)
        dir->late_over++;
}

static void send_one(Core *c, Dir *dir, const uint8_t *frame, uint32_t len, double late) {
    count_late(c, dir, late);
    if (send(dir->out, frame, len, MSG_DONTWAIT) >= 0)
        dir->forwarded++;
    else
        dir->tx_errors++;
}

/* Send the frames collected in c->tx (all out of one direction) with as few calls as
 * possible; a frame the kernel refuses is counted and skipped, as send() would. */
static void flush_tx(Core *c, Dir *dir, int count) {
    int done = 0;
    while (done < count) {
        int n = sendmmsg(dir->out, c->tx + done, count - done, MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            dir->tx_errors++;
            done++;
        } else {
            dir->forwarded += n;
            done += n;
        }
    }
    for (int i = 0; i < count; i++) {
        const uint8_t *frame = c->tx_iov[i].iov_base;
        remember(c, frame, (uint32_t)c->tx_iov[i].iov_len, c->tx_due[i], dir);
    }
}

/* ---- receiving: lab.delayline's DelayLine._drain, frame for frame ---- */

static double frame_stamp(Core *c, struct msghdr *msg, double now) {
    struct cmsghdr *cm = msg->msg_controllen ? CMSG_FIRSTHDR(msg) : NULL;
    if (!cm) {
        c->kinds[2]++;
        return now;
    }
    int64_t sec_nsec[2];
    memcpy(sec_nsec, CMSG_DATA(cm), sizeof sec_nsec);
    double stamp = (double)sec_nsec[0] + (double)sec_nsec[1] * 1e-9;
    if (stamp < now - c->clock_sanity) {
        /* An skb delivery time (TCP's EDT) that survived the veth: CLOCK_MONOTONIC. */
        stamp += c->mono_offset;
        c->kinds[1]++;
        if (!(now - c->clock_sanity < stamp && stamp <= now))
            stamp = now;
    } else {
        c->kinds[0]++;
    }
    return stamp;
}

static void drain(Core *c, Dir *dir) {
    Link *link = dir->link;
    int budget = c->drain_batch;
    while (budget > 0) {
        int want = dir->big ? 1 : budget < RECV_BATCH ? budget : RECV_BATCH;
        for (int i = 0; i < want; i++) {
            c->rx[i].msg_hdr.msg_controllen = CONTROL_LEN;
            c->rx[i].msg_hdr.msg_flags = 0;
        }
        int n = recvmmsg(dir->inp, c->rx, want, MSG_DONTWAIT, NULL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        budget -= n;
        double now = realtime();
        int ntx = 0;
        for (int i = 0; i < n; i++) {
            struct msghdr *msg = &c->rx[i].msg_hdr;
            uint8_t *frame = c->rx_iov[i].iov_base;
            uint32_t len = c->rx[i].msg_len;
            dir->big = len > BIG_FRAME;
            if (msg->msg_flags & MSG_TRUNC) {
                dir->truncated++;
                continue;
            }
            if (link->loss && rand01(c) < link->loss) {
                dir->lost++;
                continue;
            }
            if (dir->queued >= link->limit) {
                dir->dropped++;
                continue;
            }
            double stamp = frame_stamp(c, msg, now);
            if (stamp < c->forwarding_since) {
                dir->before_start++;
                stamp = now;
            }
            double due = stamp + link->delay;
            if (link->jitter)
                due += link->jitter * (2.0 * rand01(c) - 1.0);
            if (!link->reorder) {
                if (due < dir->last_due)
                    due = dir->last_due;
                dir->last_due = due;
            }
            if (link->span) {
                size_t klen = key_len(len);
                const uint8_t *key = frame + (len > KEY_OFFSET ? KEY_OFFSET : len);
                Departure *came = table_get(&c->departed, key, klen);
                if (!came)
                    came = table_get(&c->departed_before, key, klen);
                if (came && came->dir != dir && came->due <= stamp) {
                    double shift = came->due + link->span - stamp - link->delay;
                    double limit = c->chain_limit;
                    due += (-limit <= shift && shift <= limit) ? shift : (shift > 0 ? limit : -limit);
                    dir->chained++;
                }
            }
            double deadline = due > stamp ? due : stamp;
            if (deadline <= now && !dir->queued) {
                count_late(c, dir, now - deadline);
                c->tx_iov[ntx].iov_base = frame;
                c->tx_iov[ntx].iov_len = len;
                c->tx_due[ntx] = due;
                ntx++;
            } else {
                uint8_t *copy = malloc(len ? len : 1);
                if (!copy) {
                    dir->dropped++;
                    continue;
                }
                memcpy(copy, frame, len);
                Item item = {deadline, due, c->seq++, dir, copy, len};
                if (heap_push(c, item) < 0) {
                    free(copy);
                    dir->dropped++;
                    continue;
                }
                dir->queued++;
            }
        }
        if (ntx)
            flush_tx(c, dir, ntx);
        if (c->heap_len && c->heap[0].deadline - c->lead <= now)
            return;
        if (n < want)
            return;
    }
}

/* Send every frame whose deadline has come; spin briefly for one that is close. */
static void send_due(Core *c) {
    double now = realtime();
    while (c->heap_len) {
        double deadline = c->heap[0].deadline;
        if (deadline > now) {
            now = realtime();
            if (deadline - now > c->spin_cap)
                return;
            while (deadline > now)
                now = realtime();
        }
        Item item = heap_pop(c);
        item.dir->queued--;
        send_one(c, item.dir, item.frame, item.len, now - deadline);
        remember(c, item.frame, item.len, item.due, item.dir);
        free(item.frame);
    }
}

static int wait_events(Core *c, struct epoll_event *events, double timeout) {
    struct timespec ts;
    if (timeout < 0)
        timeout = 0;
    ts.tv_sec = (time_t)timeout;
    ts.tv_nsec = (long)((timeout - (double)ts.tv_sec) * 1e9);
    return epoll_pwait2(c->epfd, events, MAX_EVENTS, &ts, NULL);
}

/* ---- the Python type ---- */

static void Core_dealloc(Core *c) {
    for (size_t i = 0; i < c->heap_len; i++)
        free(c->heap[i].frame);
    free(c->heap);
    for (size_t i = 0; i < c->nlinks; i++)
        free(c->links[i]);
    free(c->links);
    free(c->departed.slots);
    free(c->departed_before.slots);
    free(c->rx_buf);
    if (c->epfd > 0)
        close(c->epfd);
    Py_TYPE(c)->tp_free((PyObject *)c);
}

static int Core_init(Core *c, PyObject *args, PyObject *kwds) {
    static char *names[] = {"chain_limit", "chain_memory", "late_threshold", "clock_sanity",
                            "drain_batch", NULL};
    c->lead = 40e-6;
    c->spin_cap = 100e-6;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "ddddi", names, &c->chain_limit, &c->chain_memory, &c->late_threshold,
                                     &c->clock_sanity, &c->drain_batch))
        return -1;
    if (c->drain_batch < 1) {
        PyErr_SetString(PyExc_ValueError, "drain_batch must be >= 1");
        return -1;
    }
    c->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (c->epfd < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    c->rx_buf = malloc((size_t)RECV_BATCH * RX_BUFFER);
    if (!c->rx_buf || table_init(&c->departed, 4096) < 0 || table_init(&c->departed_before, 4096) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    for (int i = 0; i < RECV_BATCH; i++) {
        c->rx_iov[i].iov_base = c->rx_buf + (size_t)i * RX_BUFFER;
        c->rx_iov[i].iov_len = RX_BUFFER;
        c->rx[i].msg_hdr.msg_iov = &c->rx_iov[i];
        c->rx[i].msg_hdr.msg_iovlen = 1;
        c->rx[i].msg_hdr.msg_control = c->rx_control[i];
        c->tx[i].msg_hdr.msg_iov = &c->tx_iov[i];
        c->tx[i].msg_hdr.msg_iovlen = 1;
    }
    if (getrandom(c->rng, sizeof c->rng, 0) != sizeof c->rng || !(c->rng[0] | c->rng[1])) {
        c->rng[0] = (uint64_t)(realtime() * 1e9);
        c->rng[1] = 0x9e3779b97f4a7c15ULL;
    }
    c->forwarding_since = 1e300;
    c->mono_offset = realtime() - clock_of(CLOCK_MONOTONIC);
    return 0;
}

static Link *link_at(Core *c, Py_ssize_t index) {
    if (index < 0 || (size_t)index >= c->nlinks) {
        PyErr_SetString(PyExc_IndexError, "no such link");
        return NULL;
    }
    return c->links[index];
}

static PyObject *Core_add_link(Core *c, PyObject *args) {
    int fd_a, fd_b;
    if (!PyArg_ParseTuple(args, "ii", &fd_a, &fd_b))
        return NULL;
    if (c->nlinks == c->links_cap) {
        size_t cap = c->links_cap ? c->links_cap * 2 : 64;
        Link **grown = realloc(c->links, cap * sizeof(Link *));
        if (!grown)
            return PyErr_NoMemory();
        c->links = grown;
        c->links_cap = cap;
    }
    Link *link = calloc(1, sizeof(Link));
    if (!link)
        return PyErr_NoMemory();
    link->limit = 1000;
    link->dir[0] = (Dir){.link = link, .inp = fd_a, .out = fd_b};
    link->dir[1] = (Dir){.link = link, .inp = fd_b, .out = fd_a};
    for (int d = 0; d < 2; d++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &link->dir[d]};
        if (epoll_ctl(c->epfd, EPOLL_CTL_ADD, link->dir[d].inp, &ev) < 0) {
            int err = errno;
            if (d == 1)
                epoll_ctl(c->epfd, EPOLL_CTL_DEL, fd_a, NULL);
            free(link);
            errno = err;
            return PyErr_SetFromErrno(PyExc_OSError);
        }
    }
    c->links[c->nlinks] = link;
    return PyLong_FromSize_t(c->nlinks++);
}

static PyObject *Core_set_params(Core *c, PyObject *args) {
    Py_ssize_t index;
    double delay, span, jitter, loss;
    long long limit;
    int reorder;
    if (!PyArg_ParseTuple(args, "nddddLp", &index, &delay, &span, &jitter, &loss, &limit, &reorder))
        return NULL;
    Link *link = link_at(c, index);
    if (!link)
        return NULL;
    link->delay = delay;
    link->span = span;
    link->jitter = jitter;
    link->loss = loss;
    link->limit = limit;
    link->reorder = reorder;
    Py_RETURN_NONE;
}

static PyObject *Core_counters(Core *c, PyObject *args) {
    Py_ssize_t index;
    int d;
    if (!PyArg_ParseTuple(args, "ni", &index, &d))
        return NULL;
    Link *link = link_at(c, index);
    if (!link)
        return NULL;
    Dir *dir = &link->dir[d ? 1 : 0];
    return Py_BuildValue("{s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:d,s:d,s:L}", "forwarded", dir->forwarded,
                         "lost", dir->lost, "dropped", dir->dropped, "tx_errors", dir->tx_errors,
                         "truncated", dir->truncated, "queued", dir->queued, "before_start",
                         dir->before_start, "chained", dir->chained, "late_sum", dir->late_sum,
                         "late_max", dir->late_max, "late_over", dir->late_over);
}

static PyObject *Core_clock_kinds(Core *c, PyObject *unused) {
    return Py_BuildValue("{s:L,s:L,s:L}", "realtime", c->kinds[0], "monotonic", c->kinds[1], "none",
                         c->kinds[2]);
}

static PyObject *Core_set_lead(Core *c, PyObject *args) {
    if (!PyArg_ParseTuple(args, "dd", &c->lead, &c->spin_cap))
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *Core_lead(Core *c, void *closure) { return PyFloat_FromDouble(c->lead); }

static PyGetSetDef Core_getset[] = {
    {"lead", (getter)Core_lead, NULL, "how long before a deadline the loop wakes (s)", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyObject *Core_start(Core *c, PyObject *args) {
    if (!PyArg_ParseTuple(args, "d", &c->forwarding_since))
        return NULL;
    c->next_generation = c->forwarding_since;
    Py_RETURN_NONE;
}

static PyObject *Core_wait(Core *c, PyObject *args) {
    double timeout;
    struct epoll_event events[MAX_EVENTS];
    if (!PyArg_ParseTuple(args, "d", &timeout))
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    wait_events(c, events, timeout);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* Forward until `until` (CLOCK_REALTIME seconds) or until wake_fd is readable (a signal:
 * lab.delayline drains it and handles the signal's flag). */
static PyObject *Core_run(Core *c, PyObject *args) {
    double until;
    int wake_fd;
    if (!PyArg_ParseTuple(args, "di", &until, &wake_fd))
        return NULL;
    struct epoll_event wake_ev = {.events = EPOLLIN, .data.ptr = NULL};
    if (wake_fd >= 0 && epoll_ctl(c->epfd, EPOLL_CTL_ADD, wake_fd, &wake_ev) < 0 && errno != EEXIST)
        return PyErr_SetFromErrno(PyExc_OSError);
    struct epoll_event events[MAX_EVENTS];
    Py_BEGIN_ALLOW_THREADS
    c->mono_offset = realtime() - clock_of(CLOCK_MONOTONIC);
    for (;;) {
        double now = realtime();
        if (now >= c->next_generation) {
            Table swap = c->departed_before;
            c->departed_before = c->departed;
            c->departed = swap;
            table_clear(&c->departed);
            c->next_generation = now + c->chain_memory;
        }
        if (now >= until)
            break;
        double timeout = until - now;
        if (c->heap_len) {
            double t = c->heap[0].deadline - now - c->lead;
            if (t < timeout)
                timeout = t < 0 ? 0 : t;
        }
        int n = wait_events(c, events, timeout);
        if (n < 0) {
            if (errno == EINTR)
                break;
            n = 0;
        }
        int woken = 0;
        for (int i = 0; i < n; i++) {
            if (events[i].data.ptr == NULL)
                woken = 1;
            else
                drain(c, events[i].data.ptr);
        }
        send_due(c);
        if (woken)
            break;
    }
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyMethodDef Core_methods[] = {
    {"add_link", (PyCFunction)Core_add_link, METH_VARARGS,
     "add_link(fd_a, fd_b) -> index: forward between two packet sockets"},
    {"set_params", (PyCFunction)Core_set_params, METH_VARARGS,
     "set_params(index, delay, span, jitter, loss, limit, reorder): seconds and fractions"},
    {"counters", (PyCFunction)Core_counters, METH_VARARGS,
     "counters(index, direction) -> dict (direction 0: a to b, 1: b to a)"},
    {"clock_kinds", (PyCFunction)Core_clock_kinds, METH_NOARGS, "timestamps seen, by clock"},
    {"set_lead", (PyCFunction)Core_set_lead, METH_VARARGS,
     "set_lead(lead, spin_cap): wake `lead` before a deadline, spin at most `spin_cap`"},
    {"start", (PyCFunction)Core_start, METH_VARARGS,
     "start(since): frames stamped before `since` are delayed from their reading"},
    {"wait", (PyCFunction)Core_wait, METH_VARARGS, "wait(seconds) as the loop waits (calibration)"},
    {"run", (PyCFunction)Core_run, METH_VARARGS,
     "run(until, wake_fd): forward until `until` or wake_fd is readable"},
    {NULL, NULL, 0, NULL}};

static PyTypeObject CoreType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "lab._delaycore.Core",
    .tp_basicsize = sizeof(Core),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The links, the heap of pending frames and the forwarding loop.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Core_init,
    .tp_dealloc = (destructor)Core_dealloc,
    .tp_methods = Core_methods,
    .tp_getset = Core_getset,
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_delaycore",
                                    "The delay line's compiled forwarding core.", -1, NULL};

PyMODINIT_FUNC PyInit__delaycore(void) {
    if (PyType_Ready(&CoreType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m)
        return NULL;
    Py_INCREF(&CoreType);
    if (PyModule_AddObject(m, "Core", (PyObject *)&CoreType) < 0) {
        Py_DECREF(&CoreType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
