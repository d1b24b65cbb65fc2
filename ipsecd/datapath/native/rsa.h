#ifndef IPSECD_NATIVE_RSA_H
#define IPSECD_NATIVE_RSA_H
#include <Python.h>

/* rsa_sign_raw(der_private_key: bytes, data: bytes) -> bytes (see rsa.c). */
PyObject *native_rsa_sign_raw(PyObject *self, PyObject *args);

#endif
