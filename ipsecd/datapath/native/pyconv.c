/* Python <-> C conversions shared by the two extensions (see pyconv.h). */
#define PY_SSIZE_T_CLEAN
#include "pyconv.h"

#include <stdlib.h>
#include <string.h>

#include "ipsec_native.h"

const char *const nat_counter_names[NAT_NCOUNTERS] = NAT_COUNTER_NAMES;

int nat_parse_selectors(PyObject *obj, struct nat_selector **out, size_t *n)
{
    Py_ssize_t i, count;
    *out = NULL;
    *n = 0;
    if (obj == NULL || obj == Py_None)
        return 0;
    if (!PyTuple_Check(obj)) {
        PyErr_SetString(PyExc_TypeError, "selectors must be a tuple");
        return -1;
    }
    count = PyTuple_GET_SIZE(obj);
    if (count == 0)
        return 0;
    *out = calloc((size_t)count, sizeof(**out));
    if (*out == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (i = 0; i < count; i++) {
        struct nat_selector *s = &(*out)[i];
        const char *src, *dst;
        Py_ssize_t slen, dlen;
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(obj, i), "iy#iy#iiIIII", &s->version, &src, &slen, &s->src_plen,
                              &dst, &dlen, &s->dst_plen, &s->proto, &s->sp_lo, &s->sp_hi, &s->dp_lo,
                              &s->dp_hi))
            goto fail;
        if (slen != 16 || dlen != 16 || s->src_plen < 0 || s->src_plen > 128 || s->dst_plen < 0
            || s->dst_plen > 128) {
            PyErr_SetString(PyExc_ValueError, "bad selector");
            goto fail;
        }
        memcpy(s->src, src, 16);
        memcpy(s->dst, dst, 16);
    }
    *n = (size_t)count;
    return 0;
fail:
    free(*out);
    *out = NULL;
    return -1;
}

PyObject *nat_u64_dict(const char *const *names, const uint64_t *values, int n)
{
    PyObject *d = PyDict_New();
    int i;
    if (d == NULL)
        return NULL;
    for (i = 0; i < n; i++) {
        PyObject *v = PyLong_FromUnsignedLongLong(values[i]);
        if (v == NULL || PyDict_SetItemString(d, names[i], v) != 0) {
            Py_XDECREF(v);
            Py_DECREF(d);
            return NULL;
        }
        Py_DECREF(v);
    }
    return d;
}

PyObject *nat_counters_dict(const uint64_t counters[NAT_NCOUNTERS])
{
    return nat_u64_dict(nat_counter_names, counters, NAT_NCOUNTERS);
}

PyObject *nat_name_tuple(const char *const *names, int n)
{
    PyObject *t = PyTuple_New(n);
    int i;
    if (t == NULL)
        return NULL;
    for (i = 0; i < n; i++) {
        PyObject *s = PyUnicode_FromString(names[i]);
        if (s == NULL) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, i, s);
    }
    return t;
}
