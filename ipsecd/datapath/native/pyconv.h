#ifndef IPSECD_NATIVE_PYCONV_H
#define IPSECD_NATIVE_PYCONV_H
/* Python <-> C conversions shared by the two extensions (_native and _fastpath). */
#include <Python.h>
#include <stdint.h>

#include "sa.h"

/* A tuple of (version, src16, src_plen, dst16, dst_plen, proto, sp_lo, sp_hi, dp_lo, dp_hi)
 * tuples (None or () for none) into a calloc'ed array the caller frees with free(). */
int nat_parse_selectors(PyObject *obj, struct nat_selector **out, size_t *n);

/* The counters of one SA as a dict keyed by their IP Security Monitor names. */
PyObject *nat_counters_dict(const uint64_t counters[NAT_NCOUNTERS]);

#endif
