/*
 * RSA signatures without a DigestInfo (EMSA-PKCS1-v1_5 block type 1 over the raw data), on
 * OpenSSL libcrypto: what IKEv1 RSA-signature authentication signs (RFC 2409 section 5.1, the
 * HASH_I/HASH_R value itself) and what IKEv2 auth method 1 needs when the caller has the hash.
 * `cryptography` cannot do this, and a Python big-integer implementation is not constant-time;
 * libcrypto's RSA uses blinding and constant-time modular exponentiation.
 */
#include <Python.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "rsa.h"

PyObject *native_rsa_sign_raw(PyObject *self, PyObject *args)
{
    Py_buffer key, data;
    PyObject *result = NULL;
    EVP_PKEY *pkey = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    unsigned char *sig = NULL;
    size_t siglen = 0;
    const unsigned char *p;
    int ok = 0;

    (void)self;
    if (!PyArg_ParseTuple(args, "y*y*:rsa_sign_raw", &key, &data))
        return NULL;
    p = key.buf;
    pkey = d2i_AutoPrivateKey(NULL, &p, (long)key.len);
    if (pkey == NULL || EVP_PKEY_get_base_id(pkey) != EVP_PKEY_RSA) {
        PyErr_SetString(PyExc_ValueError, "rsa_sign_raw: not a DER RSA private key");
        goto out;
    }
    ctx = EVP_PKEY_CTX_new(pkey, NULL);
    if (ctx == NULL || EVP_PKEY_sign_init(ctx) <= 0 || EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) <= 0
        || EVP_PKEY_sign(ctx, NULL, &siglen, data.buf, (size_t)data.len) <= 0) {
        PyErr_SetString(PyExc_ValueError, "rsa_sign_raw: the key cannot sign this data");
        goto out;
    }
    sig = OPENSSL_malloc(siglen);
    if (sig == NULL) {
        PyErr_NoMemory();
        goto out;
    }
    Py_BEGIN_ALLOW_THREADS
    ok = EVP_PKEY_sign(ctx, sig, &siglen, data.buf, (size_t)data.len) > 0;
    Py_END_ALLOW_THREADS
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "rsa_sign_raw: data too long for the RSA key");
        goto out;
    }
    result = PyBytes_FromStringAndSize((const char *)sig, (Py_ssize_t)siglen);
out:
    ERR_clear_error();
    OPENSSL_free(sig);
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(pkey); /* frees (and clears) the private key material */
    PyBuffer_Release(&key);
    PyBuffer_Release(&data);
    return result;
}
