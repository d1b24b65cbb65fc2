/* Python binding of the native data path: ipsecd.datapath._native.
 *
 * One Sa object per SA and direction. protect()/unprotect() take a list of packets (bytes-like),
 * keep a reference to each bytes input (or copy any other buffer) while holding the GIL, allocate
 * the result objects, release the GIL for all the crypto of the batch (the SA's own lock serialises
 * concurrent batches on one SA), then turn each result into bytes or None. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pythread.h>

#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "ipsec_native.h"
#include "sa.h"
#include "pyconv.h"
#include "rsa.h"

typedef struct {
    PyObject_HEAD
    PyThread_type_lock lock;
    struct nat_sa sa;
    int ready;
} SaObject;


static void sa_wipe(SaObject *self)
{
    if (self->ready) {
        nat_sa_free(&self->sa);
        self->ready = 0;
    }
}

static int Sa_init(SaObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"config", "encr_key", "integ_key", "iv_key", "tunnel_src", "tunnel_dst",
                             "selectors", NULL};
    PyObject *config, *sels_obj = NULL;
    Py_buffer ekv = {0}, ikv = {0}, ivv = {0}, tsv = {0}, tdv = {0};
    uint64_t cfg[NAT_CONFIG_FIELDS];
    struct nat_selector *sels = NULL;
    size_t nsels = 0;
    const char *err;
    Py_ssize_t i;

    if (self->ready) {
        PyErr_SetString(PyExc_RuntimeError, "Sa is already initialised");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!y*y*y*y*y*|O", kwlist, &PyTuple_Type, &config, &ekv, &ikv,
                                     &ivv, &tsv, &tdv, &sels_obj))
        return -1;
    if (PyTuple_GET_SIZE(config) != NAT_CONFIG_FIELDS) {
        PyErr_Format(PyExc_ValueError, "config must have %d integers", NAT_CONFIG_FIELDS);
        goto out;
    }
    for (i = 0; i < NAT_CONFIG_FIELDS; i++) {
        cfg[i] = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(config, i));
        if (cfg[i] == (uint64_t)-1 && PyErr_Occurred())
            goto out;
    }
    if ((tsv.len != 0 && tsv.len != 16) || (tdv.len != 0 && tdv.len != 16)) {
        PyErr_SetString(PyExc_ValueError, "tunnel addresses must be 16 bytes (IPv4 left-aligned)");
        goto out;
    }
    if (nat_parse_selectors(sels_obj, &sels, &nsels) != 0)
        goto out;
    if (self->lock == NULL) {
        self->lock = PyThread_allocate_lock();
        if (self->lock == NULL) {
            PyErr_NoMemory();
            goto out;
        }
    }
    err = nat_sa_init(&self->sa, cfg, ekv.buf, (size_t)ekv.len, ikv.buf, (size_t)ikv.len, ivv.buf,
                      (size_t)ivv.len, tsv.len ? tsv.buf : NULL, tdv.len ? tdv.buf : NULL, sels, nsels);
    if (err != NULL) {
        /* A static text: never key material. */
        PyErr_SetString(PyExc_ValueError, err);
        goto out;
    }
    self->ready = 1;
out:
    free(sels);
    PyBuffer_Release(&ekv);
    PyBuffer_Release(&ikv);
    PyBuffer_Release(&ivv);
    PyBuffer_Release(&tsv);
    PyBuffer_Release(&tdv);
    return self->ready ? 0 : -1;
}

static void Sa_dealloc(SaObject *self)
{
    sa_wipe(self);
    if (self->lock != NULL)
        PyThread_free_lock(self->lock);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

struct batch_item {
    PyObject *ref;              /* bytes input kept alive, or NULL when copied */
    unsigned char *copy;        /* copy of a non-bytes input */
    const unsigned char *in;
    size_t inlen;
    PyObject *out;              /* result bytes, written without the GIL */
    size_t cap;                 /* bytes allocated in out */
    size_t outlen;
    int verdict;
};

static void free_items(struct batch_item *items, Py_ssize_t n)
{
    Py_ssize_t i;
    for (i = 0; i < n; i++) {
        Py_XDECREF(items[i].ref);
        Py_XDECREF(items[i].out);
        PyMem_Free(items[i].copy);
    }
    PyMem_Free(items);
}

static PyObject *run_batch(SaObject *self, PyObject *packets, int outbound)
{
    PyObject *fast, *result = NULL;
    struct batch_item *items;
    Py_ssize_t n, i;
    int closed = 0;
    size_t overhead = outbound ? nat_sa_max_overhead(&self->sa) : 0;

    if (!self->ready) {
        PyErr_SetString(PyExc_ValueError, "the SA is closed");
        return NULL;
    }
    /* A private tuple: nothing (a finaliser run by an allocation below, another thread) can change
     * the caller's list under us. */
    fast = PySequence_Tuple(packets);
    if (fast == NULL)
        return NULL;
    n = PyTuple_GET_SIZE(fast);
    items = PyMem_Calloc(n ? (size_t)n : 1, sizeof(*items));
    if (items == NULL) {
        Py_DECREF(fast);
        return PyErr_NoMemory();
    }
    for (i = 0; i < n; i++) {
        PyObject *obj = PyTuple_GET_ITEM(fast, i);
        struct batch_item *it = &items[i];
        if (PyBytes_CheckExact(obj)) {
            Py_INCREF(obj);
            it->ref = obj;
            it->in = (const unsigned char *)PyBytes_AS_STRING(obj);
            it->inlen = (size_t)PyBytes_GET_SIZE(obj);
        } else {
            Py_buffer view;
            if (PyObject_GetBuffer(obj, &view, PyBUF_SIMPLE) != 0) {
                PyErr_Format(PyExc_TypeError, "packet %zd is not bytes-like", i);
                goto fail;
            }
            it->copy = PyMem_Malloc(view.len ? (size_t)view.len : 1);
            if (it->copy == NULL) {
                PyBuffer_Release(&view);
                PyErr_NoMemory();
                goto fail;
            }
            memcpy(it->copy, view.buf, (size_t)view.len);
            it->in = it->copy;
            it->inlen = (size_t)view.len;
            PyBuffer_Release(&view);
        }
        /* Outbound results are longer than their input by a bounded overhead (usually known
         * exactly beforehand); inbound results are never longer than their input. */
        it->cap = it->inlen + overhead;
        if (outbound) {
            size_t exact = nat_sa_protect_size(&self->sa, it->in, it->inlen);
            if (exact != 0 && exact <= it->cap)
                it->cap = exact;
        }
        it->out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)it->cap);
        if (it->out == NULL)
            goto fail;
    }
    Py_DECREF(fast);
    fast = NULL;

    Py_BEGIN_ALLOW_THREADS
    PyThread_acquire_lock(self->lock, WAIT_LOCK);
    closed = !self->ready; /* close() may have run while this batch waited for the lock */
    for (i = 0; i < n && !closed; i++) {
        struct batch_item *it = &items[i];
        unsigned char *out = (unsigned char *)PyBytes_AS_STRING(it->out);
        if (outbound)
            it->verdict = nat_sa_protect(&self->sa, it->in, it->inlen, out, it->cap, &it->outlen);
        else
            it->verdict = nat_sa_unprotect(&self->sa, it->in, it->inlen, out, it->cap, &it->outlen);
    }
    PyThread_release_lock(self->lock);
    Py_END_ALLOW_THREADS

    if (closed) {
        PyErr_SetString(PyExc_ValueError, "the SA is closed");
        goto fail;
    }
    result = PyList_New(n);
    if (result == NULL)
        goto fail;
    for (i = 0; i < n; i++) {
        struct batch_item *it = &items[i];
        if (it->verdict == V_OK) {
            if ((Py_ssize_t)it->outlen != PyBytes_GET_SIZE(it->out)
                && _PyBytes_Resize(&it->out, (Py_ssize_t)it->outlen) != 0) {
                it->out = NULL;
                Py_CLEAR(result);
                goto fail;
            }
            PyList_SET_ITEM(result, i, it->out);
            it->out = NULL;
        } else {
            Py_INCREF(Py_None);
            PyList_SET_ITEM(result, i, Py_None);
        }
    }
    free_items(items, n);
    return result;
fail:
    Py_XDECREF(fast);
    free_items(items, n);
    return NULL;
}

static PyObject *Sa_protect(SaObject *self, PyObject *packets)
{
    return run_batch(self, packets, 1);
}

static PyObject *Sa_unprotect(SaObject *self, PyObject *packets)
{
    return run_batch(self, packets, 0);
}

static PyObject *Sa_counters(SaObject *self, PyObject *Py_UNUSED(ignored))
{
    uint64_t snap[NAT_NCOUNTERS];
    if (self->lock == NULL) {
        PyErr_SetString(PyExc_ValueError, "the SA is not initialised");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    PyThread_acquire_lock(self->lock, WAIT_LOCK);
    memcpy(snap, self->sa.counters, sizeof(snap));
    PyThread_release_lock(self->lock);
    Py_END_ALLOW_THREADS
    return nat_counters_dict(snap);
}

static PyObject *Sa_state(SaObject *self, PyObject *Py_UNUSED(ignored))
{
    unsigned long long next, top;
    int expired;
    if (self->lock == NULL) {
        PyErr_SetString(PyExc_ValueError, "the SA is not initialised");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    PyThread_acquire_lock(self->lock, WAIT_LOCK);
    next = self->sa.next_seq;
    top = self->sa.replay.top;
    expired = self->sa.expired;
    PyThread_release_lock(self->lock);
    Py_END_ALLOW_THREADS
    return Py_BuildValue("(KKi)", next, top, expired);
}

/* Events raised since the last call, as (kind, reason) pairs (sa.h). */
static PyObject *Sa_drain_events(SaObject *self, PyObject *Py_UNUSED(ignored))
{
    int ev[NAT_MAX_EVENTS][2], n, i;
    PyObject *list;
    if (self->lock == NULL) {
        PyErr_SetString(PyExc_ValueError, "the SA is not initialised");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    PyThread_acquire_lock(self->lock, WAIT_LOCK);
    n = self->sa.nevents;
    memcpy(ev, self->sa.events, sizeof(ev));
    self->sa.nevents = 0;
    PyThread_release_lock(self->lock);
    Py_END_ALLOW_THREADS
    list = PyList_New(n);
    if (list == NULL)
        return NULL;
    for (i = 0; i < n; i++) {
        PyObject *t = Py_BuildValue("(ii)", ev[i][0], ev[i][1]);
        if (t == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, t);
    }
    return list;
}

/* Lifetime events from the clock (tick): kind 1 soft, 2 hard, with a reason code. */
static PyObject *Sa_expire(SaObject *self, PyObject *args)
{
    int kind, reason;
    if (!PyArg_ParseTuple(args, "ii", &kind, &reason))
        return NULL;
    if (self->lock == NULL) {
        PyErr_SetString(PyExc_ValueError, "the SA is not initialised");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    PyThread_acquire_lock(self->lock, WAIT_LOCK);
    if (kind == 1)
        nat_sa_soft(&self->sa, reason);
    else
        nat_sa_hard(&self->sa, reason);
    PyThread_release_lock(self->lock);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyObject *Sa_close(SaObject *self, PyObject *Py_UNUSED(ignored))
{
    if (self->lock != NULL) {
        Py_BEGIN_ALLOW_THREADS
        PyThread_acquire_lock(self->lock, WAIT_LOCK);
        Py_END_ALLOW_THREADS
    }
    sa_wipe(self);
    if (self->lock != NULL)
        PyThread_release_lock(self->lock);
    Py_RETURN_NONE;
}

static PyObject *Sa_debug_keys_wiped(SaObject *self, PyObject *Py_UNUSED(ignored))
{
    /* Reads the SA's own key copies (still allocated: the object lives); true after close(). */
    return PyBool_FromLong(nat_crypto_keys_wiped(&self->sa.crypto));
}

static PyObject *Sa_repr(SaObject *self)
{
    /* Never the keys. */
    return PyUnicode_FromFormat("<_native.Sa spi=0x%08x %s>", (unsigned)self->sa.spi,
                                self->ready ? "open" : "closed");
}

static PyMethodDef Sa_methods[] = {
    {"protect", (PyCFunction)Sa_protect, METH_O, "Protect a list of packets; None for each drop."},
    {"unprotect", (PyCFunction)Sa_unprotect, METH_O, "Check and decrypt a list of packets; None for each drop."},
    {"counters", (PyCFunction)Sa_counters, METH_NOARGS, "Snapshot of the counters as a dict."},
    {"state", (PyCFunction)Sa_state, METH_NOARGS, "(next outbound sequence number, replay window top)."},
    {"drain_events", (PyCFunction)Sa_drain_events, METH_NOARGS, "[(kind, reason), ...] since the last call."},
    {"expire", (PyCFunction)Sa_expire, METH_VARARGS, "Raise a soft (1) or hard (2) expiry with a reason code."},
    {"close", (PyCFunction)Sa_close, METH_NOARGS, "Free the contexts and wipe the keys."},
    {"_debug_keys_wiped", (PyCFunction)Sa_debug_keys_wiped, METH_NOARGS, "Test accessor."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject SaType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ipsecd.datapath._native.Sa",
    .tp_basicsize = sizeof(SaObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One ESP/AH SA in one direction, with its keyed libcrypto contexts.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Sa_init,
    .tp_dealloc = (destructor)Sa_dealloc,
    .tp_methods = Sa_methods,
    .tp_repr = (reprfunc)Sa_repr,
};

/* ReplayWindow: the C anti-replay window (replay.c) on its own, with the API of
 * ipsecd.datapath.replay.ReplayWindow, so the fallback's window tests run against it too. */
typedef struct {
    PyObject_HEAD
    struct nat_replay r;
    int esn;
} ReplayObject;

static int Replay_init(ReplayObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"size", "esn", NULL};
    long size;
    int esn = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "l|p", kwlist, &size, &esn))
        return -1;
    if (size < (long)NAT_WINDOW_MIN || size > (long)NAT_WINDOW_MAX || size % 32 != 0) {
        PyErr_SetString(PyExc_ValueError, "replay window must be a multiple of 32 in 32..4096");
        return -1;
    }
    nat_replay_free(&self->r); /* __init__ called again */
    if (nat_replay_init(&self->r, (uint32_t)size, 1) != 0) {
        PyErr_NoMemory();
        return -1;
    }
    self->esn = esn;
    return 0;
}

static void Replay_dealloc(ReplayObject *self)
{
    nat_replay_free(&self->r);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Replay_infer(ReplayObject *self, PyObject *arg)
{
    unsigned long low = PyLong_AsUnsignedLong(arg);
    uint64_t seq;
    if (low == (unsigned long)-1 && PyErr_Occurred())
        return NULL;
    if (low > 0xFFFFFFFFul) {
        PyErr_SetString(PyExc_ValueError, "a 32-bit sequence number is expected");
        return NULL;
    }
    if (nat_replay_infer(&self->r, (uint32_t)low, self->esn, &seq) != 0)
        Py_RETURN_NONE; /* no valid high half */
    return PyLong_FromUnsignedLongLong(seq);
}

static PyObject *Replay_check(ReplayObject *self, PyObject *arg)
{
    unsigned long long seq = PyLong_AsUnsignedLongLong(arg);
    if (seq == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    return PyBool_FromLong(nat_replay_check(&self->r, seq));
}

static PyObject *Replay_commit(ReplayObject *self, PyObject *arg)
{
    unsigned long long seq = PyLong_AsUnsignedLongLong(arg);
    if (seq == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    nat_replay_commit(&self->r, seq);
    Py_RETURN_NONE;
}

static PyObject *Replay_get_top(ReplayObject *self, void *Py_UNUSED(closure))
{
    return PyLong_FromUnsignedLongLong(self->r.top);
}

static int Replay_set_top(ReplayObject *self, PyObject *value, void *Py_UNUSED(closure))
{
    /* Tests only: move the window to `value` with nothing received in it. */
    unsigned long long top;
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "top cannot be deleted");
        return -1;
    }
    top = PyLong_AsUnsignedLongLong(value);
    if (top == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    if (self->r.bits != NULL)
        memset(self->r.bits, 0, self->r.nblocks * sizeof(*self->r.bits));
    self->r.top = top;
    return 0;
}

static PyObject *Replay_get_size(ReplayObject *self, void *Py_UNUSED(closure))
{
    return PyLong_FromUnsignedLong(self->r.window);
}

static PyMethodDef Replay_methods[] = {
    {"infer", (PyCFunction)Replay_infer, METH_O, "Full sequence number of a low half, or None."},
    {"check", (PyCFunction)Replay_check, METH_O, "True when the sequence number may be accepted."},
    {"commit", (PyCFunction)Replay_commit, METH_O, "Record an authenticated sequence number."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Replay_getset[] = {
    {"top", (getter)Replay_get_top, (setter)Replay_set_top, "Highest committed sequence number.", NULL},
    {"size", (getter)Replay_get_size, NULL, "Window size W.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject ReplayType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ipsecd.datapath._native.ReplayWindow",
    .tp_basicsize = sizeof(ReplayObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The C anti-replay window (RFC 4303 Appendix A, RFC 6479 bitmap).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Replay_init,
    .tp_dealloc = (destructor)Replay_dealloc,
    .tp_methods = Replay_methods,
    .tp_getset = Replay_getset,
};

static PyMethodDef native_functions[] = {
    {"rsa_sign_raw", native_rsa_sign_raw, METH_VARARGS,
     "PKCS#1 v1.5 block type 1 signature of raw data (no DigestInfo) with a DER RSA private key."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT, "_native", "Native ESP/AH batches on OpenSSL libcrypto.", -1, native_functions,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__native(void)
{
    PyObject *m, *names;
    if (PyType_Ready(&SaType) < 0 || PyType_Ready(&ReplayType) < 0)
        return NULL;
    m = PyModule_Create(&native_module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&SaType);
    if (PyModule_AddObject(m, "Sa", (PyObject *)&SaType) < 0) {
        Py_DECREF(&SaType);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&ReplayType);
    if (PyModule_AddObject(m, "ReplayWindow", (PyObject *)&ReplayType) < 0) {
        Py_DECREF(&ReplayType);
        Py_DECREF(m);
        return NULL;
    }
    names = nat_name_tuple(nat_counter_names, NAT_NCOUNTERS);
    if (names == NULL) {
        Py_DECREF(m);
        return NULL;
    }
    if (PyModule_AddObject(m, "COUNTERS", names) < 0
        || PyModule_AddIntConstant(m, "CONFIG_FIELDS", NAT_CONFIG_FIELDS) < 0
        || PyModule_AddStringConstant(m, "OPENSSL_VERSION", OpenSSL_version(OPENSSL_VERSION)) < 0) {
        Py_DECREF(names);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
