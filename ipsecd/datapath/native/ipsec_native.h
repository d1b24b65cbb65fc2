/* Native ESP/AH data path of ipsecd: shared declarations.
 *
 * Clean-room implementation from RFC 4301-4303, 4106, 4543, 7634, 3948, 6479 and the OpenSSL 3
 * EVP documentation. See docs/datapath.md, section "Native path".
 */
#ifndef IPSECD_NATIVE_H
#define IPSECD_NATIVE_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

/* Encryption transforms (names follow the IKEv2 registry, RFC 7296 section 3.3.2). */
enum nat_encr {
    NAT_ENCR_3DES = 3,
    NAT_ENCR_NULL = 11,
    NAT_ENCR_AES_CBC = 12,
    NAT_ENCR_AES_GCM_16 = 20,
    NAT_ENCR_NULL_AUTH_AES_GMAC = 21,
    NAT_ENCR_CHACHA20_POLY1305 = 28,
};

/* Integrity transforms. */
enum nat_integ {
    NAT_AUTH_NONE = 0,
    NAT_AUTH_HMAC_MD5_96 = 1,
    NAT_AUTH_HMAC_SHA1_96 = 2,
    NAT_AUTH_HMAC_SHA2_256_128 = 12,
    NAT_AUTH_HMAC_SHA2_384_192 = 13,
    NAT_AUTH_HMAC_SHA2_512_256 = 14,
};

/* RFC 6479 replay window: a bitmap of NBLOCKS 32-bit words, one more word than the window needs,
 * so sliding the window only ever clears whole words. The bitmap is allocated with the window and
 * sized to it (2 words for W = 32 up to 256 for W = 4096); outbound SAs have none. */
#define NAT_WINDOW_MIN 32u
#define NAT_WINDOW_MAX 4096u
#define NAT_REPLAY_BLOCKS_MAX 256u /* power of two >= 4096 / 32 + 1 */

struct nat_replay {
    uint64_t top;     /* highest sequence number committed (64-bit with ESN), 0 = none */
    uint32_t window;  /* W, 32..4096 */
    uint32_t nblocks; /* power of two, > W / 32; 0 without a bitmap */
    uint32_t *bits;   /* nblocks words, or NULL (no bitmap: check refuses everything, commit is a no-op) */
};

/* bitmap = 0: the window bookkeeping only (outbound SAs). Returns -1 when the bitmap cannot be
 * allocated (r is then left without one). */
int nat_replay_init(struct nat_replay *r, uint32_t window, int bitmap);
/* Frees the bitmap; r keeps no bitmap afterwards. */
void nat_replay_free(struct nat_replay *r);
/* Infer the 64-bit sequence number from its low 32 bits (RFC 4303 Appendix A2.2); non-ESN SAs
 * give seql. Returns -1 when the high half would be -1 or 2^32, else 0 with *seq set. */
int nat_replay_infer(const struct nat_replay *r, uint32_t seql, int esn, uint64_t *seq);
/* Pre-check: 1 when seq may be accepted (not zero, not seen, not left of the window). */
int nat_replay_check(const struct nat_replay *r, uint64_t seq);
/* Commit after the ICV verified. */
void nat_replay_commit(struct nat_replay *r, uint64_t seq);

/* Directions a crypto state is keyed for: a cipher context exists only for each direction asked for
 * (an SA is used in one direction; the other context would cost about 1.2 KB for AES-GCM). */
#define NAT_DIR_ENCRYPT 1
#define NAT_DIR_DECRYPT 2

/* Crypto state of one SA: contexts keyed once, reused for every packet. */
struct nat_crypto {
    int encr;
    int integ;
    size_t key_len;   /* encryption key bytes (without the salt) */
    size_t block;     /* padding alignment of the ESP trailer */
    size_t ivlen;     /* IV bytes on the wire */
    size_t icvlen;    /* ICV bytes on the wire */
    size_t hmac_key_len;
    int aead;         /* GCM, GMAC, ChaCha20-Poly1305 */
    int dirs;         /* NAT_DIR_* this state serves: seal / open in another direction fail */
    EVP_CIPHER_CTX *enc;   /* bulk cipher, encrypt direction (NULL unless dirs has NAT_DIR_ENCRYPT) */
    EVP_CIPHER_CTX *dec;   /* bulk cipher, decrypt direction (NULL unless dirs has NAT_DIR_DECRYPT) */
    EVP_CIPHER_CTX *ivgen; /* AES-128-ECB under the IV key (CBC IVs) */
    /* HMAC (RFC 2104) as two keyed digest states: the hash context after absorbing key ^ ipad and
     * the one after key ^ opad, copied into hm_work for every packet. */
    EVP_MD_CTX *hm_in, *hm_out, *hm_work;
    unsigned char salt[4];
    /* Our own copies of the keys, wiped with OPENSSL_cleanse by nat_crypto_free. */
    unsigned char enc_key[32];
    unsigned char integ_key[64];
    unsigned char iv_key[16];
};

/* dirs: NAT_DIR_ENCRYPT, NAT_DIR_DECRYPT or both. Returns NULL on success, else a static error text. */
const char *nat_crypto_init(struct nat_crypto *c, int dirs, int encr, const unsigned char *ekey, size_t ekey_len,
                            int integ, const unsigned char *ikey, size_t ikey_len,
                            const unsigned char *iv_key, size_t iv_key_len);
void nat_crypto_free(struct nat_crypto *c);
/* 1 when all key copies are zero (debug accessor for the key-wipe test). */
int nat_crypto_keys_wiped(const struct nat_crypto *c);

/* HMAC over up to three pieces, truncated to c->icvlen. Returns 0 on success. */
int nat_hmac(struct nat_crypto *c, const unsigned char *a, size_t alen, const unsigned char *b,
             size_t blen, const unsigned char *d, size_t dlen, unsigned char *out);

/* Bytes of the ESP trailer padding for a payload of n bytes (RFC 4303 section 2.4). */
size_t nat_esp_padlen(const struct nat_crypto *c, size_t n);
/* Total ESP length (SPI .. ICV) for a payload of n bytes. */
size_t nat_esp_len(const struct nat_crypto *c, size_t n);

/* Seal (returns NAT_R_OK or NAT_R_INTERNAL, also for a state not keyed to encrypt): out receives SPI | seq | IV | ciphertext(payload | pad | pad len | next header) | ICV.
 * out must hold nat_esp_len(c, plen) bytes and must not overlap payload. */
int nat_esp_seal(struct nat_crypto *c, uint32_t spi, uint64_t seq, int esn, const unsigned char *payload,
                 size_t plen, unsigned char next_header, unsigned char *out);

/* Open: esp is SPI .. ICV (len bytes, at least 8 + ivlen + icvlen + 2), seq the inferred 64-bit
 * sequence number. Verifies the ICV (returns NAT_R_NOT_AUTH, nothing committed), commits seq to the
 * window r, then decrypts and checks the trailer (NAT_R_NOT_DECRYPTED). On NAT_R_OK, out (len bytes
 * of room) holds the payload, *plen its length, *nh the next header. A state not keyed to decrypt
 * returns NAT_R_INTERNAL before anything is read or committed. */
enum { NAT_R_OK = 0, NAT_R_NOT_AUTH = 1, NAT_R_NOT_DECRYPTED = 2, NAT_R_INTERNAL = 3 };
int nat_esp_open(struct nat_crypto *c, struct nat_replay *r, uint64_t seq, int esn, const unsigned char *esp,
                 size_t len, unsigned char *out, size_t *plen, unsigned char *nh);

static inline void nat_put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static inline uint32_t nat_get32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static inline void nat_put16(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
}

static inline uint16_t nat_get16(const unsigned char *p)
{
    return (uint16_t)(((unsigned)p[0] << 8) | (unsigned)p[1]);
}

#endif
