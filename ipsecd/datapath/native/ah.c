/* AH ICV computation (RFC 4302 section 3.3.3), docs/datapath.md section 4.
 *
 *  0                   1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * | Next Header   |  Payload Len  |          RESERVED             |
 * |                 Security Parameters Index (SPI)               |
 * |                    Sequence Number (low 32 bits)              |
 * |                ICV + zero padding (variable)                  |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 */
#include <string.h>

#include "sa.h"

/* RFC 4302 section 3.3.3.1.1.1-2: TOS, flags + offset, TTL, checksum and mutable options zeroed. */
static int zero_ipv4(unsigned char *b)
{
    size_t end = (size_t)(b[0] & 0x0F) * 4, i = 20;
    b[1] = 0;
    b[6] = b[7] = 0;
    b[8] = 0;
    b[10] = b[11] = 0;
    while (i < end) {
        unsigned kind = b[i], len;
        if (kind == 0) /* end of option list: the rest is left as it is */
            return 0;
        if (kind == 1) {
            i++;
            continue;
        }
        if (i + 1 >= end || b[i + 1] < 2 || i + b[i + 1] > end || kind == 131 || kind == 137)
            return -1; /* truncated option or source routing */
        len = b[i + 1];
        if (kind != 130 && kind != 133 && kind != 134 && kind != 148 && kind != 149)
            memset(b + i, 0, len);
        i += len;
    }
    return 0;
}

/* RFC 8200 section 4.2: zero the data of options whose type has the "may change" bit. */
static int zero_ipv6_options(unsigned char *b, size_t start, size_t end)
{
    size_t i = start;
    while (i < end) {
        unsigned kind = b[i];
        size_t len;
        if (kind == 0) { /* Pad1 */
            i++;
            continue;
        }
        if (i + 1 >= end || i + 2 + b[i + 1] > end)
            return -1;
        len = b[i + 1];
        if (kind & 0x20)
            memset(b + i + 2, 0, len);
        i += 2 + len;
    }
    return 0;
}

/* RFC 4302 section 3.3.3.1.2: Traffic Class, Flow Label, Hop Limit, mutable option data. */
static int zero_ipv6(unsigned char *b, size_t ah_off)
{
    unsigned nh = b[6];
    size_t off = 40;
    b[0] &= 0xF0;
    b[1] = b[2] = b[3] = 0;
    b[7] = 0;
    while (off < ah_off) { /* only 0, 43 and 60 precede AH (nat_ipv6_split checked the bounds) */
        size_t len = ((size_t)b[off + 1] + 1) * 8;
        if (nh == 0 || nh == 60) {
            if (zero_ipv6_options(b, off + 2, off + len) != 0)
                return -1;
        } else if (nh == 43 && b[off + 3] != 0) {
            return -1; /* segments left != 0: source routing not supported */
        }
        nh = b[off];
        off += len;
    }
    return 0;
}

int nat_ah_icv(struct nat_crypto *c, const unsigned char *pkt, size_t n, int version, size_t ah_off,
               size_t ah_len, uint64_t seq, int esn, unsigned char *scratch, unsigned char *icv)
{
    unsigned char seqhi[4];
    memcpy(scratch, pkt, n);
    memset(scratch + ah_off + 12, 0, ah_len - 12);
    if ((version == 4 ? zero_ipv4(scratch) : zero_ipv6(scratch, ah_off)) != 0)
        return C_MALFORMED;
    /* RFC 4302 section 2.5.1: the high-order 32 bits are appended for the ICV only. */
    nat_put32(seqhi, (uint32_t)(seq >> 32));
    if (nat_hmac(c, scratch, n, seqhi, esn ? 4 : 0, NULL, 0, icv) != 0)
        return C_NOT_AUTH;
    return V_OK;
}
