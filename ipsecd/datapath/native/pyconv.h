#ifndef IPSECD_NATIVE_PYCONV_H
#define IPSECD_NATIVE_PYCONV_H
/* Python <-> C conversions shared by the two extensions (_native and _fastpath). */
#include <Python.h>
#include <stdint.h>

#include "sa.h"

/* A tuple of (version, src16, src_plen, dst16, dst_plen, proto, sp_lo, sp_hi, dp_lo, dp_hi)
 * tuples (None or () for none) into a calloc'ed array the caller frees with free(). */
int nat_parse_selectors(PyObject *obj, struct nat_selector **out, size_t *n);

/* {names[i]: values[i]} for i < n. */
PyObject *nat_u64_dict(const char *const *names, const uint64_t *values, int n);

/* The counters of one SA as a dict keyed by their IP Security Monitor names. */
PyObject *nat_counters_dict(const uint64_t counters[NAT_NCOUNTERS]);

/* A tuple of the n names (a module's STATS / COUNTERS constant); NULL with an exception set. */
PyObject *nat_name_tuple(const char *const *names, int n);

/* The counter names of NAT_COUNTER_NAMES, for nat_name_tuple. */
extern const char *const nat_counter_names[NAT_NCOUNTERS];

#endif
