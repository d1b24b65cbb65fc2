/* Python binding of the threaded fast path: ipsecd.datapath._fastpath (docs/datapath.md,
 * "Fast path"). The per-packet work runs in fp_loop.c's threads, which never take the GIL; the
 * methods here change the tables under the write lock (with the GIL released while waiting for it)
 * and drain the event ring and the slow-path queue.
 */
#define _GNU_SOURCE
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <linux/if.h>

#include "fastpath.h"
#include "pyconv.h"

typedef struct {
    PyObject_HEAD
    struct fastpath *fp;
} FastPathObject;

static const char *const stat_names[FP_NSTATS] = FP_STAT_NAMES;

static void wlock(struct fastpath *fp)
{
    Py_BEGIN_ALLOW_THREADS
    pthread_rwlock_wrlock(&fp->lock);
    Py_END_ALLOW_THREADS
}

static void fp_close_all(FastPathObject *self)
{
    struct fastpath *fp = self->fp;
    if (fp == NULL)
        return;
    Py_BEGIN_ALLOW_THREADS
    fp_stop(fp);
    Py_END_ALLOW_THREADS
    fp_free(fp);
    if (fp->stop_fd >= 0)
        close(fp->stop_fd);
    if (fp->event_fd >= 0)
        close(fp->event_fd);
    if (fp->tun_fd >= 0)
        close(fp->tun_fd);
    if (fp->udp_fd >= 0)
        close(fp->udp_fd);
    free(fp);
    self->fp = NULL;
}

static int check_open(FastPathObject *self)
{
    if (self->fp == NULL) {
        PyErr_SetString(PyExc_ValueError, "the fast path is closed");
        return -1;
    }
    return 0;
}

static int FastPath_init(FastPathObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"tun_fd", "udp_fd", "vnet_hdr", "offload", NULL};
    int tun_fd, udp_fd, vnet = 0;
    unsigned int offload = 0;
    const char *err;
    if (self->fp != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "FastPath is already initialised");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "ii|pI", kwlist, &tun_fd, &udp_fd, &vnet, &offload))
        return -1;
    if (tun_fd < 0 || udp_fd < 0) {
        PyErr_SetString(PyExc_ValueError, "bad file descriptor");
        return -1;
    }
    self->fp = calloc(1, sizeof(*self->fp));
    if (self->fp == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    err = fp_init(self->fp, tun_fd, udp_fd, vnet);
    if (err == NULL) {
        self->fp->feat.offload = offload;
        self->fp->event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (self->fp->event_fd < 0)
            err = "eventfd failed";
    }
    if (err != NULL) {
        /* The caller keeps its descriptors when construction fails. */
        self->fp->tun_fd = self->fp->udp_fd = -1;
        fp_close_all(self);
        PyErr_SetString(PyExc_OSError, err);
        return -1;
    }
    fp_probe_socket(self->fp);
    return 0;
}

static void FastPath_dealloc(FastPathObject *self)
{
    fp_close_all(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* add_sa(outbound, config, encr_key, integ_key, iv_key, tunnel_src, tunnel_dst, selectors,
 *        peer_addr, peer_port) -> handle */
static PyObject *FastPath_add_sa(FastPathObject *self, PyObject *args)
{
    int outbound, i;
    PyObject *config, *sels_obj;
    Py_buffer ek = {0}, ik = {0}, iv = {0}, ts = {0}, td = {0}, pa = {0};
    unsigned int port;
    uint64_t cfg[NAT_CONFIG_FIELDS];
    struct nat_selector *sels = NULL;
    size_t nsels = 0;
    struct fp_sa *s = NULL;
    const char *err = NULL;
    uint32_t handle = 0;
    PyObject *result = NULL;

    if (check_open(self) != 0)
        return NULL;
    if (!PyArg_ParseTuple(args, "pO!y*y*y*y*y*Oy*I", &outbound, &PyTuple_Type, &config, &ek, &ik, &iv, &ts, &td,
                          &sels_obj, &pa, &port))
        return NULL;
    if (PyTuple_GET_SIZE(config) != NAT_CONFIG_FIELDS) {
        PyErr_Format(PyExc_ValueError, "config must have %d integers", NAT_CONFIG_FIELDS);
        goto out;
    }
    for (i = 0; i < NAT_CONFIG_FIELDS; i++) {
        cfg[i] = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(config, i));
        if (cfg[i] == (uint64_t)-1 && PyErr_Occurred())
            goto out;
    }
    if (cfg[CFG_PROTOCOL] != 50 || cfg[CFG_MODE] != 2 || cfg[CFG_ENCAP] != 1) {
        PyErr_SetString(PyExc_ValueError, "the fast path carries tunnel-mode, UDP-encapsulated ESP only");
        goto out;
    }
    if ((cfg[CFG_DIRECTION] == 2) != (outbound != 0) || ts.len != 16 || td.len != 16
        || (outbound && pa.len != 4 && pa.len != 16) || port > 65535) {
        PyErr_SetString(PyExc_ValueError, "bad SA direction, tunnel or peer address");
        goto out;
    }
    if (outbound && pa.len == 16 && self->fp->feat.family == AF_INET) {
        PyErr_SetString(PyExc_ValueError, "an IPv6 peer needs an IPv6 (dual-stack) ESP socket");
        goto out;
    }
    if (nat_parse_selectors(sels_obj, &sels, &nsels) != 0)
        goto out;
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        PyErr_NoMemory();
        goto out;
    }
    err = nat_sa_init(&s->sa, cfg, ek.buf, (size_t)ek.len, ik.buf, (size_t)ik.len, iv.buf, (size_t)iv.len,
                      ts.buf, td.buf, sels, nsels);
    if (err != NULL) {
        free(s);
        s = NULL;
        PyErr_SetString(PyExc_ValueError, err); /* a static text: never key material */
        goto out;
    }
    s->outbound = outbound;
    s->strip = (cfg[CFG_OUTER_VERSION] == 6 ? 40 : 20) + 8;
    if (outbound) {
        if (pa.len == 4 && self->fp->feat.family != AF_INET6) {
            struct sockaddr_in *sin = &s->peer.v4;
            sin->sin_family = AF_INET;
            sin->sin_port = htons((uint16_t)port);
            memcpy(&sin->sin_addr, pa.buf, 4);
            s->peerlen = sizeof(*sin);
        } else {
            struct sockaddr_in6 *sin6 = &s->peer.v6;
            sin6->sin6_family = AF_INET6;
            sin6->sin6_port = htons((uint16_t)port);
            if (pa.len == 4) { /* an IPv4 peer on a dual-stack socket: ::ffff:a.b.c.d */
                ((unsigned char *)&sin6->sin6_addr)[10] = 0xFF;
                ((unsigned char *)&sin6->sin6_addr)[11] = 0xFF;
                memcpy((unsigned char *)&sin6->sin6_addr + 12, pa.buf, 4);
            } else {
                memcpy(&sin6->sin6_addr, pa.buf, 16);
            }
            s->peerlen = sizeof(*sin6);
        }
    }
    wlock(self->fp);
    err = fp_sa_add(self->fp, s, &handle);
    pthread_rwlock_unlock(&self->fp->lock);
    if (err != NULL) {
        nat_sa_free(&s->sa);
        free(s);
        PyErr_SetString(PyExc_ValueError, err);
        goto out;
    }
    result = PyLong_FromUnsignedLong(handle);
out:
    free(sels);
    PyBuffer_Release(&ek);
    PyBuffer_Release(&ik);
    PyBuffer_Release(&iv);
    PyBuffer_Release(&ts);
    PyBuffer_Release(&td);
    PyBuffer_Release(&pa);
    return result;
}

static PyObject *FastPath_del_sa(FastPathObject *self, PyObject *arg)
{
    unsigned long h = PyLong_AsUnsignedLong(arg);
    int r;
    if (h == (unsigned long)-1 && PyErr_Occurred())
        return NULL;
    if (check_open(self) != 0)
        return NULL;
    wlock(self->fp);
    r = h > 0xFFFFFFFFul ? -1 : fp_sa_del(self->fp, (uint32_t)h);
    pthread_rwlock_unlock(&self->fp->lock);
    return PyBool_FromLong(r == 0);
}

static PyObject *FastPath_expire_sa(FastPathObject *self, PyObject *args)
{
    unsigned int h;
    int kind, reason;
    struct fp_sa *s;
    if (!PyArg_ParseTuple(args, "Iii", &h, &kind, &reason) || check_open(self) != 0)
        return NULL;
    if ((kind != 1 && kind != 2) || reason < 1 || reason > 4) {
        PyErr_SetString(PyExc_ValueError, "bad expiry kind or reason");
        return NULL;
    }
    wlock(self->fp);
    s = fp_sa_get(self->fp, h);
    if (s != NULL) {
        if (kind == 1)
            nat_sa_soft(&s->sa, reason);
        else
            nat_sa_hard(&s->sa, reason);
        fp_forward_sa_events(self->fp, s, &self->fp->py_stats);
    }
    pthread_rwlock_unlock(&self->fp->lock);
    return PyBool_FromLong(s != NULL);
}

/* add_rule(id, weight, version, src, src_plen, dst, dst_plen, proto, sp_lo, sp_hi, dp_lo, dp_hi,
 *          action, sa_handle) */
static PyObject *FastPath_add_rule(FastPathObject *self, PyObject *args)
{
    struct fp_rule r;
    const char *src, *dst, *err;
    Py_ssize_t sl, dl;
    memset(&r, 0, sizeof(r));
    if (check_open(self) != 0)
        return NULL;
    if (!PyArg_ParseTuple(args, "Iiiy#iy#iiIIIIiI", &r.id, &r.weight, &r.version, &src, &sl, &r.splen, &dst, &dl,
                          &r.dplen, &r.proto, &r.sp_lo, &r.sp_hi, &r.dp_lo, &r.dp_hi, &r.action, &r.sa_handle))
        return NULL;
    if ((r.version != 4 && r.version != 6) || sl != 16 || dl != 16 || r.splen < 0 || r.dplen < 0
        || r.splen > (r.version == 4 ? 32 : 128) || r.dplen > (r.version == 4 ? 32 : 128) || r.proto < 0
        || r.proto > 255 || r.sp_lo > r.sp_hi || r.sp_hi > 65535 || r.dp_lo > r.dp_hi || r.dp_hi > 65535
        || r.action < FP_DROP || r.action > FP_SLOW) {
        PyErr_SetString(PyExc_ValueError, "bad filter");
        return NULL;
    }
    memcpy(r.src, src, 16);
    memcpy(r.dst, dst, 16);
    wlock(self->fp);
    err = fp_rule_add(self->fp, &r);
    pthread_rwlock_unlock(&self->fp->lock);
    if (err != NULL) {
        PyErr_SetString(PyExc_ValueError, err);
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *FastPath_del_rule(FastPathObject *self, PyObject *args)
{
    unsigned int id;
    int r;
    if (!PyArg_ParseTuple(args, "I", &id) || check_open(self) != 0)
        return NULL;
    wlock(self->fp);
    r = fp_rule_del(self->fp, id);
    pthread_rwlock_unlock(&self->fp->lock);
    return PyBool_FromLong(r == 0);
}

static PyObject *FastPath_bind_rule(FastPathObject *self, PyObject *args)
{
    unsigned int id, h;
    int r;
    if (!PyArg_ParseTuple(args, "II", &id, &h) || check_open(self) != 0)
        return NULL;
    wlock(self->fp);
    r = fp_rule_bind(self->fp, id, h);
    pthread_rwlock_unlock(&self->fp->lock);
    return PyBool_FromLong(r == 0);
}

static PyObject *FastPath_configure(FastPathObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"default_action", "batch",       "slow_queue",  "acquire_interval",
                             "nice",           "rt_priority", "unknown_spi", NULL};
    int action = -1, batch = -1, slow = -1, nice = 100, rt = -1, unknown = -1;
    double interval = -1.0;
    if (check_open(self) != 0)
        return NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|iiidiii", kwlist, &action, &batch, &slow, &interval, &nice,
                                     &rt, &unknown))
        return NULL;
    if ((nice != 100 && (nice < -20 || nice > 19)) || (rt != -1 && (rt < 0 || rt > 99))) {
        PyErr_SetString(PyExc_ValueError, "nice must be in -20..19, rt_priority in 0..99");
        return NULL;
    }
    if ((action != -1 && action != FP_DROP && action != FP_SLOW)
        || (unknown != -1 && unknown != FP_DROP && unknown != FP_SLOW) || (batch != -1 && (batch < 1 || batch > 4096))
        || (slow != -1 && (slow < 0 || slow > FP_SLOW_CAP)) || (interval != -1.0 && (interval < 0 || interval > 3600))) {
        PyErr_SetString(PyExc_ValueError, "bad fast-path setting");
        return NULL;
    }
    wlock(self->fp);
    if (action != -1)
        self->fp->default_action = action;
    if (unknown != -1)
        self->fp->unknown_spi_action = unknown;
    if (batch != -1)
        self->fp->batch = (size_t)batch;
    if (slow != -1)
        self->fp->slow_cap = (size_t)slow;
    if (interval != -1.0)
        self->fp->acquire_interval_ns = (uint64_t)(interval * 1e9);
    if (nice != 100)
        self->fp->nice = nice;
    if (rt != -1)
        self->fp->rt_priority = rt;
    pthread_rwlock_unlock(&self->fp->lock);
    Py_RETURN_NONE;
}

static PyObject *FastPath_start(FastPathObject *self, PyObject *unused)
{
    const char *err;
    (void)unused;
    if (check_open(self) != 0)
        return NULL;
    err = fp_start(self->fp);
    if (err != NULL) {
        PyErr_SetString(PyExc_OSError, err);
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *FastPath_stop(FastPathObject *self, PyObject *unused)
{
    (void)unused;
    if (self->fp != NULL) {
        Py_BEGIN_ALLOW_THREADS
        fp_stop(self->fp);
        Py_END_ALLOW_THREADS
    }
    Py_RETURN_NONE;
}

static PyObject *FastPath_close(FastPathObject *self, PyObject *unused)
{
    (void)unused;
    fp_close_all(self);
    Py_RETURN_NONE;
}

static PyObject *FastPath_inject(FastPathObject *self, PyObject *args)
{
    PyObject *fast, *arg;
    unsigned int sa = 0;
    Py_ssize_t n, i;
    unsigned char **pkts = NULL;
    size_t *lens = NULL;
    int r = 0;
    if (!PyArg_ParseTuple(args, "O|I", &arg, &sa) || check_open(self) != 0)
        return NULL;
    fast = PySequence_Tuple(arg);
    if (fast == NULL)
        return NULL;
    n = PyTuple_GET_SIZE(fast);
    pkts = calloc(n ? (size_t)n : 1, sizeof(*pkts));
    lens = calloc(n ? (size_t)n : 1, sizeof(*lens));
    if (pkts == NULL || lens == NULL) {
        PyErr_NoMemory();
        goto out;
    }
    for (i = 0; i < n; i++) {
        PyObject *o = PyTuple_GET_ITEM(fast, i);
        if (!PyBytes_Check(o)) {
            PyErr_SetString(PyExc_TypeError, "packets must be bytes");
            goto out;
        }
        pkts[i] = (unsigned char *)PyBytes_AS_STRING(o);
        lens[i] = (size_t)PyBytes_GET_SIZE(o);
    }
    Py_BEGIN_ALLOW_THREADS /* the tuple keeps the bytes alive */
    r = fp_inject(self->fp, pkts, lens, (size_t)n, sa);
    Py_END_ALLOW_THREADS
    if (r < 0)
        PyErr_SetString(PyExc_ValueError, "the fast path is not running");
out:
    free(pkts);
    free(lens);
    Py_DECREF(fast);
    if (PyErr_Occurred())
        return NULL;
    return PyLong_FromLong(r);
}

static PyObject *FastPath_event_fd(FastPathObject *self, PyObject *unused)
{
    (void)unused;
    if (check_open(self) != 0)
        return NULL;
    return PyLong_FromLong(self->fp->event_fd);
}

static PyObject *FastPath_drain_events(FastPathObject *self, PyObject *unused)
{
    struct fp_event evs[256];
    size_t n, i;
    uint64_t junk;
    PyObject *list;
    (void)unused;
    if (check_open(self) != 0)
        return NULL;
    list = PyList_New(0);
    if (list == NULL)
        return NULL;
    for (;;) {
        pthread_mutex_lock(&self->fp->qlock);
        n = fp_drain_events(self->fp, evs, 256);
        if (n == 0) {
            /* Everything read: re-arm the signal for the next event. */
            self->fp->signalled = 0;
            if (read(self->fp->event_fd, &junk, sizeof(junk)) < 0) {
                /* EAGAIN: nothing was pending */
            }
        }
        pthread_mutex_unlock(&self->fp->qlock);
        if (n == 0)
            break;
        for (i = 0; i < n; i++) {
            PyObject *t = Py_BuildValue("(iII)", evs[i].kind, evs[i].a, evs[i].b);
            if (t == NULL || PyList_Append(list, t) != 0) {
                Py_XDECREF(t);
                Py_DECREF(list);
                return NULL;
            }
            Py_DECREF(t);
        }
    }
    return list;
}

static PyObject *sockaddr_tuple(const struct sockaddr_storage *ss)
{
    char text[INET6_ADDRSTRLEN];
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &sin->sin_addr, text, sizeof(text));
        return Py_BuildValue("(si)", text, ntohs(sin->sin_port));
    }
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof(text));
        return Py_BuildValue("(si)", text, ntohs(sin6->sin6_port));
    }
    Py_RETURN_NONE;
}

static PyObject *FastPath_drain_slow(FastPathObject *self, PyObject *args)
{
    int max = 256, i;
    PyObject *list;
    if (!PyArg_ParseTuple(args, "|i", &max) || check_open(self) != 0)
        return NULL;
    list = PyList_New(0);
    if (list == NULL)
        return NULL;
    for (i = 0; i < max; i++) {
        struct fp_slow e;
        PyObject *from, *t;
        pthread_mutex_lock(&self->fp->qlock);
        if (self->fp->slow_count == 0) {
            pthread_mutex_unlock(&self->fp->qlock);
            break;
        }
        e = self->fp->slow[self->fp->slow_head];
        self->fp->slow[self->fp->slow_head].data = NULL;
        self->fp->slow_head = (self->fp->slow_head + 1) % FP_SLOW_CAP;
        self->fp->slow_count--;
        pthread_mutex_unlock(&self->fp->qlock);
        from = sockaddr_tuple(&e.from);
        t = from == NULL ? NULL : Py_BuildValue("(iINy#)", e.kind, e.aux, from, (const char *)e.data, (Py_ssize_t)e.len);
        free(e.data);
        if (t == NULL || PyList_Append(list, t) != 0) {
            Py_XDECREF(t);
            Py_DECREF(list);
            return NULL;
        }
        Py_DECREF(t);
    }
    return list;
}

static PyObject *FastPath_stats(FastPathObject *self, PyObject *unused)
{
    uint64_t v[FP_NSTATS];
    (void)unused;
    if (check_open(self) != 0)
        return NULL;
    fp_stats_sum(self->fp, v);
    return nat_u64_dict(stat_names, v, FP_NSTATS);
}

static PyObject *FastPath_sa_counters(FastPathObject *self, PyObject *args)
{
    unsigned int h;
    uint64_t c[NAT_NCOUNTERS];
    uint64_t next_seq = 0, top = 0;
    int expired = 0, found = 0;
    struct fp_sa *s;
    PyObject *d;
    if (!PyArg_ParseTuple(args, "I", &h) || check_open(self) != 0)
        return NULL;
    wlock(self->fp);
    s = fp_sa_get(self->fp, h);
    if (s != NULL) {
        found = 1;
        memcpy(c, s->sa.counters, sizeof(c));
        next_seq = s->sa.next_seq;
        top = s->sa.replay.top;
        expired = s->sa.expired;
    }
    pthread_rwlock_unlock(&self->fp->lock);
    if (!found)
        Py_RETURN_NONE;
    d = nat_counters_dict(c);
    if (d == NULL)
        return NULL;
    return Py_BuildValue("(NKKi)", d, (unsigned long long)next_seq, (unsigned long long)top, expired);
}

static PyObject *FastPath_features(FastPathObject *self, PyObject *unused)
{
    struct fp_features f;
    (void)unused;
    if (check_open(self) != 0)
        return NULL;
    f = self->fp->feat;
    return Py_BuildValue("{s:O,s:I,s:O,s:O,s:i}", "vnet_hdr", f.vnet_hdr ? Py_True : Py_False, "tun_offload",
                         f.offload, "udp_gso", f.udp_gso ? Py_True : Py_False, "udp_gro",
                         f.udp_gro ? Py_True : Py_False, "socket_family", f.family);
}

/* Counts and sizes: sa_entry_bytes is the fixed entry of either direction (cipher contexts are
 * OpenSSL's allocations, not counted); an inbound SA also has its replay bitmap (window / 32 + 1
 * words rounded up to a power of two), replay_bitmap_bytes is their sum over the installed SAs. */
static PyObject *FastPath_table_sizes(FastPathObject *self, PyObject *unused)
{
    size_t nsas = 0, nrules = 0, bitmaps = 0, i;
    (void)unused;
    if (check_open(self) != 0)
        return NULL;
    wlock(self->fp);
    nsas = self->fp->nsas;
    nrules = self->fp->nrules;
    for (i = 0; i < self->fp->nsas_cap; i++)
        if (self->fp->sas[i] != NULL)
            bitmaps += self->fp->sas[i]->sa.replay.nblocks * sizeof(*self->fp->sas[i]->sa.replay.bits);
    pthread_rwlock_unlock(&self->fp->lock);
    return Py_BuildValue("{s:n,s:n,s:n,s:n,s:n}", "sas", (Py_ssize_t)nsas, "rules", (Py_ssize_t)nrules,
                         "sa_entry_bytes", (Py_ssize_t)sizeof(struct fp_sa), "replay_bitmap_bytes",
                         (Py_ssize_t)bitmaps, "rule_entry_bytes", (Py_ssize_t)sizeof(struct fp_rule));
}

static PyMethodDef FastPath_methods[] = {
    {"add_sa", (PyCFunction)FastPath_add_sa, METH_VARARGS, "Install an SA; returns its handle."},
    {"del_sa", (PyCFunction)FastPath_del_sa, METH_O, "Remove an SA (its keys are wiped)."},
    {"expire_sa", (PyCFunction)FastPath_expire_sa, METH_VARARGS, "Soft (1) or hard (2) expiry by time."},
    {"add_rule", (PyCFunction)FastPath_add_rule, METH_VARARGS, "Install a filter."},
    {"del_rule", (PyCFunction)FastPath_del_rule, METH_VARARGS, "Remove a filter."},
    {"bind_rule", (PyCFunction)FastPath_bind_rule, METH_VARARGS, "Point a PROTECT filter at an SA handle."},
    {"configure", (PyCFunction)(void (*)(void))FastPath_configure, METH_VARARGS | METH_KEYWORDS, "Settings."},
    {"start", (PyCFunction)FastPath_start, METH_NOARGS, "Start the threads."},
    {"stop", (PyCFunction)FastPath_stop, METH_NOARGS, "Stop and join the threads."},
    {"close", (PyCFunction)FastPath_close, METH_NOARGS, "Stop, free the tables, close every fd."},
    {"inject", (PyCFunction)FastPath_inject, METH_VARARGS,
     "inject(packets, sa=0): plain IP packets through the outbound path (sa: that SA, unclassified)."},
    {"event_fd", (PyCFunction)FastPath_event_fd, METH_NOARGS, "The eventfd signalled on new events."},
    {"drain_events", (PyCFunction)FastPath_drain_events, METH_NOARGS, "[(kind, a, b)]"},
    {"drain_slow", (PyCFunction)FastPath_drain_slow, METH_VARARGS, "[(kind, aux, from, data)]"},
    {"stats", (PyCFunction)FastPath_stats, METH_NOARGS, "Global counters."},
    {"sa_counters", (PyCFunction)FastPath_sa_counters, METH_VARARGS, "(counters, next_seq, replay_top, expired)"},
    {"features", (PyCFunction)FastPath_features, METH_NOARGS, "What the kernel and the fds offer."},
    {"table_sizes", (PyCFunction)FastPath_table_sizes, METH_NOARGS, "Table counts and entry sizes."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject FastPathType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "ipsecd.datapath._fastpath.FastPath",
    .tp_basicsize = sizeof(FastPathObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)FastPath_init,
    .tp_dealloc = (destructor)FastPath_dealloc,
    .tp_methods = FastPath_methods,
};

static PyObject *mod_open_tun(PyObject *mod, PyObject *args)
{
    const char *name;
    int vnet = 1, mq = 0, fd;
    unsigned offload = 0;
    char ifname[IFNAMSIZ];
    (void)mod;
    if (!PyArg_ParseTuple(args, "s|pp", &name, &vnet, &mq))
        return NULL;
    if (strlen(name) >= IFNAMSIZ) {
        PyErr_SetString(PyExc_ValueError, "interface name too long");
        return NULL;
    }
    fd = fp_open_tun(name, vnet, mq, ifname);
    if (fd < 0 && vnet) { /* no IFF_VNET_HDR: plain packets */
        vnet = 0;
        fd = fp_open_tun(name, 0, mq, ifname);
    }
    if (fd < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    if (vnet)
        offload = fp_tun_offload(fd, 1);
    return Py_BuildValue("(isOI)", fd, ifname, vnet ? Py_True : Py_False, offload);
}

static PyMethodDef module_methods[] = {
    {"open_tun", mod_open_tun, METH_VARARGS, "open_tun(name, vnet_hdr=True, multi_queue=False)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "ipsecd.datapath._fastpath", "The threaded native fast path.", -1, module_methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fastpath(void)
{
    PyObject *m, *names;
    if (PyType_Ready(&FastPathType) < 0)
        return NULL;
    m = PyModule_Create(&moduledef);
    if (m == NULL)
        return NULL;
    Py_INCREF(&FastPathType);
    if (PyModule_AddObject(m, "FastPath", (PyObject *)&FastPathType) < 0)
        goto fail;
    names = nat_name_tuple(stat_names, FP_NSTATS);
    if (names == NULL)
        goto fail;
    if (PyModule_AddObject(m, "STATS", names) < 0) {
        Py_DECREF(names);
        goto fail;
    }
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
