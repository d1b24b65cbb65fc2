/* Packet framing of one SA direction (docs/datapath.md sections 2-8): outer headers, UDP
 * encapsulation (RFC 3948), ESP (RFC 4303) and AH (RFC 4302) in transport and tunnel mode,
 * selectors, lifetimes, counters. Mirrors ipsecd/datapath/fallback.py step by step.
 *
 * Outer IPv4 header of tunnel mode (RFC 791 section 3.1, docs/datapath.md section 2.3):
 *  0                   1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |Version=4| IHL=5| TOS (inner)  |          Total Length         |
 * |  Identification (seq & 0xFFFF)|0|DF|0|    Fragment Offset 0   |
 * |    TTL 64     | Protocol 50/51/17 |       Header Checksum     |
 * |                  Source Address (tunnel.src)                  |
 * |               Destination Address (tunnel.dst)                |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * Outer IPv6 header (RFC 8200 section 3): version 6, Traffic Class (inner), flow label 0,
 * Payload Length, Next Header 50/51/17, Hop Limit 64, tunnel.src, tunnel.dst.
 *
 * UDP encapsulation (RFC 3948 section 2.1) in front of ESP:
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |        Source Port            |      Destination Port         |
 * |           Length              |   Checksum (0 over IPv4)      |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 */
#include <stdlib.h>
#include <string.h>

#include "sa.h"

#define MAX_IPV4 65535u
#define OVERHEAD_MAX 256u

uint16_t nat_udp6_checksum(const unsigned char *p, size_t n, size_t off);

/* Scratch buffer for the AH ICV (a copy of the packet with mutable fields zeroed). */
static unsigned char *ah_scratch(struct nat_sa *sa);

const char *nat_sa_init(struct nat_sa *sa, const uint64_t cfg[NAT_CONFIG_FIELDS], const unsigned char *ekey,
                        size_t ekey_len, const unsigned char *ikey, size_t ikey_len,
                        const unsigned char *iv_key, size_t iv_key_len, const unsigned char *tsrc,
                        const unsigned char *tdst, const struct nat_selector *sels, size_t nsels)
{
    const char *err;
    memset(sa, 0, sizeof(*sa));
    if (cfg[CFG_PROTOCOL] != 50 && cfg[CFG_PROTOCOL] != 51)
        return "protocol must be ESP or AH";
    if (cfg[CFG_MODE] != 1 && cfg[CFG_MODE] != 2)
        return "bad mode";
    if (cfg[CFG_SPI] > 0xFFFFFFFFu || cfg[CFG_WINDOW] < NAT_WINDOW_MIN || cfg[CFG_WINDOW] > NAT_WINDOW_MAX)
        return "bad SPI or replay window";
    sa->esp = cfg[CFG_PROTOCOL] == 50;
    sa->tunnel = cfg[CFG_MODE] == 2;
    sa->spi = (uint32_t)cfg[CFG_SPI];
    sa->esn = cfg[CFG_ESN] != 0;
    sa->outbound = cfg[CFG_DIRECTION] == 2;
    sa->encap = cfg[CFG_ENCAP] != 0;
    sa->outer_version = (int)cfg[CFG_OUTER_VERSION];
    if (sa->tunnel && sa->outer_version != 4 && sa->outer_version != 6)
        return "tunnel mode needs outer addresses";
    if (sa->encap && !sa->esp)
        return "AH cannot be UDP-encapsulated";
    if (!sa->esp && cfg[CFG_ENC] != NAT_ENCR_NULL)
        return "AH takes no encryption algorithm";
    sa->sport = (uint16_t)cfg[CFG_SPORT];
    sa->dport = (uint16_t)cfg[CFG_DPORT];
    sa->soft_bytes = cfg[CFG_SOFT_BYTES];
    sa->hard_bytes = cfg[CFG_HARD_BYTES];
    sa->soft_packets = cfg[CFG_SOFT_PACKETS];
    sa->hard_packets = cfg[CFG_HARD_PACKETS];
    sa->seq_max = sa->esn ? UINT64_MAX : 0xFFFFFFFFu;
    sa->next_seq = cfg[CFG_INITIAL_SEQ];
    if (sa->next_seq < 1 || sa->next_seq > sa->seq_max)
        return "initial_seq out of range";
    if (tsrc != NULL)
        memcpy(sa->tun_src, tsrc, 16);
    if (tdst != NULL)
        memcpy(sa->tun_dst, tdst, 16);
    /* One direction per SA: the replay bitmap (sized to the window) only inbound, one cipher
     * context (encrypt outbound, decrypt inbound). */
    if (nat_replay_init(&sa->replay, (uint32_t)cfg[CFG_WINDOW], !sa->outbound) != 0)
        return "out of memory";
    if (nsels) {
        sa->sels = malloc(nsels * sizeof(*sels));
        if (sa->sels == NULL) {
            nat_replay_free(&sa->replay);
            return "out of memory";
        }
        memcpy(sa->sels, sels, nsels * sizeof(*sels));
        sa->nsels = nsels;
    }
    err = nat_crypto_init(&sa->crypto, sa->outbound ? NAT_DIR_ENCRYPT : NAT_DIR_DECRYPT, (int)cfg[CFG_ENC], ekey,
                          ekey_len, (int)cfg[CFG_INTEG], ikey, ikey_len, iv_key, iv_key_len);
    if (err != NULL) {
        nat_replay_free(&sa->replay);
        free(sa->sels);
        sa->sels = NULL;
        return err;
    }
    sa->confidential = sa->esp && cfg[CFG_ENC] != NAT_ENCR_NULL && cfg[CFG_ENC] != NAT_ENCR_NULL_AUTH_AES_GMAC;
    if (!sa->esp && ah_scratch(sa) == NULL) {
        nat_sa_free(sa);
        return "out of memory";
    }
    return NULL;
}

static unsigned char *ah_scratch(struct nat_sa *sa)
{
    if (sa->scratch == NULL)
        sa->scratch = malloc(65575u + OVERHEAD_MAX);
    return sa->scratch;
}

void nat_sa_free(struct nat_sa *sa)
{
    nat_crypto_free(&sa->crypto);
    nat_replay_free(&sa->replay);
    free(sa->sels);
    sa->sels = NULL;
    sa->nsels = 0;
    if (sa->scratch != NULL) {
        OPENSSL_cleanse(sa->scratch, 65575u + OVERHEAD_MAX);
        free(sa->scratch);
        sa->scratch = NULL;
    }
}

size_t nat_sa_max_overhead(const struct nat_sa *sa)
{
    (void)sa;
    return OVERHEAD_MAX;
}

static void push_event(struct nat_sa *sa, int kind, int reason)
{
    if (sa->nevents < NAT_MAX_EVENTS) {
        sa->events[sa->nevents][0] = kind;
        sa->events[sa->nevents][1] = reason;
        sa->nevents++;
    }
}

void nat_sa_soft(struct nat_sa *sa, int reason)
{
    if (!sa->soft_raised && !sa->expired) {
        sa->soft_raised = 1;
        push_event(sa, 1, reason);
    }
}

void nat_sa_hard(struct nat_sa *sa, int reason)
{
    if (!sa->expired) {
        sa->expired = 1;
        push_event(sa, 2, reason);
    }
}

/* docs/datapath.md sections 7 and 8: counters and lifetimes of a delivered packet. */
static void deliver(struct nat_sa *sa, size_t inner_len)
{
    int rx = !sa->outbound;
    uint64_t *c = sa->counters;
    c[C_PACKETS_SENT + rx] += 1;
    c[C_AUTH_SENT + rx] += inner_len;
    if (sa->confidential)
        c[C_CONF_SENT + rx] += inner_len;
    c[(sa->tunnel ? C_TUNNEL_SENT : C_TRANSPORT_SENT) + rx] += inner_len;
    sa->life_bytes += inner_len;
    sa->life_packets += 1;
    if (sa->soft_bytes && sa->life_bytes >= sa->soft_bytes)
        nat_sa_soft(sa, 1);
    if (sa->soft_packets && sa->life_packets >= sa->soft_packets)
        nat_sa_soft(sa, 2);
    if (sa->hard_bytes && sa->life_bytes >= sa->hard_bytes)
        nat_sa_hard(sa, 1);
    if (sa->hard_packets && sa->life_packets >= sa->hard_packets)
        nat_sa_hard(sa, 2);
}

/* RFC 4302 section 2.6: AH length, a multiple of 4 (IPv4) or 8 (IPv6) bytes. */
static size_t ah_length(const struct nat_sa *sa, int version)
{
    size_t align = version == 4 ? 4 : 8, raw = 12 + sa->crypto.icvlen;
    return (raw + align - 1) / align * align;
}

static size_t wrapped_len(const struct nat_sa *sa, size_t payload_len, int version)
{
    if (sa->esp)
        return (sa->encap ? 8u : 0u) + nat_esp_len(&sa->crypto, payload_len);
    return ah_length(sa, version) + payload_len;
}

static int too_big(size_t total, int version)
{
    return (version == 4 && total > MAX_IPV4) || (version == 6 && total - 40 > 0xFFFF);
}

static void set_length(unsigned char *p, int version, size_t total)
{
    if (version == 4)
        nat_put16(p + 2, (uint16_t)total);
    else
        nat_put16(p + 4, (uint16_t)(total - 40));
}

/* out[0:hlen] holds the outer header; append [UDP] + ESP, or AH, around the payload. */
static int wrap(struct nat_sa *sa, unsigned char *out, size_t hlen, int version, unsigned next_header,
                const unsigned char *payload, size_t plen, uint64_t seq, size_t total)
{
    if (sa->esp) {
        size_t udp = sa->encap ? 8 : 0;
        if (nat_esp_seal(&sa->crypto, sa->spi, seq, sa->esn, payload, plen, (unsigned char)next_header,
                         out + hlen + udp)
            != NAT_R_OK)
            return C_MALFORMED;
        if (sa->encap) {
            /* RFC 3948 section 2.1: checksum 0 over IPv4; computed over IPv6 (RFC 8200 section 8.1). */
            unsigned char *u = out + hlen;
            nat_put16(u, sa->sport);
            nat_put16(u + 2, sa->dport);
            nat_put16(u + 4, (uint16_t)(total - hlen));
            u[6] = u[7] = 0;
            if (version == 6)
                nat_put16(u + 6, nat_udp6_checksum(out, total, hlen));
        }
        return V_OK;
    } else {
        size_t alen = ah_length(sa, version);
        unsigned char *ah = out + hlen, icv[64];
        int rc;
        ah[0] = (unsigned char)next_header;
        ah[1] = (unsigned char)(alen / 4 - 2);
        ah[2] = ah[3] = 0;
        nat_put32(ah + 4, sa->spi);
        nat_put32(ah + 8, (uint32_t)seq);
        memset(ah + 12, 0, alen - 12);
        memcpy(ah + alen, payload, plen);
        rc = nat_ah_icv(&sa->crypto, out, total, version, hlen, alen, seq, sa->esn, sa->scratch, icv);
        if (rc != V_OK)
            return rc;
        memcpy(ah + 12, icv, sa->crypto.icvlen);
        return V_OK;
    }
}

/* The exact protect output length for a packet that will be accepted (0 when it cannot tell);
 * lets the binding allocate result objects of the right size and skip a resize. */
size_t nat_sa_protect_size(const struct nat_sa *sa, const unsigned char *in, size_t n)
{
    size_t nh_off, start;
    if (n < 20)
        return 0;
    if (sa->tunnel)
        return (sa->outer_version == 4 ? 20u : 40u) + wrapped_len(sa, n, sa->outer_version);
    if (in[0] >> 4 == 4) {
        start = (size_t)(in[0] & 0x0F) * 4;
        return start <= n ? start + wrapped_len(sa, n - start, 4) : 0;
    }
    if (in[0] >> 4 == 6 && n >= 40 && nat_ipv6_split(in, n, &nh_off, &start) == 0)
        return start + wrapped_len(sa, n - start, 6);
    return 0;
}

static unsigned tos_of(const unsigned char *p)
{
    if (p[0] >> 4 == 4)
        return p[1];
    return ((p[0] & 0x0Fu) << 4) | (p[1] >> 4);
}

static int protect_one(struct nat_sa *sa, const unsigned char *in, size_t n, unsigned char *out, size_t cap,
                       size_t *outlen)
{
    int version, rc;
    uint64_t seq;
    size_t total;
    unsigned proto = sa->esp ? (sa->encap ? 17u : 50u) : 51u;

    if (!sa->outbound)
        return C_MALFORMED; /* an inbound SA has no encrypt context: refused, counted */
    if (sa->expired)
        return C_EXPIRED;
    version = nat_ip_validate(in, n, sa->tunnel);
    if (version < 0)
        return -version;
    if (!nat_selectors_match(sa->sels, sa->nsels, in, n, version))
        return C_SELECTOR;
    if (sa->seq_exhausted) {
        nat_sa_hard(sa, 4);
        return C_EXPIRED;
    }
    seq = sa->next_seq;
    if (sa->tunnel) {
        /* docs/datapath.md section 2.3, RFC 4301 section 5.1.2. */
        int over = sa->outer_version;
        size_t hl = over == 4 ? 20 : 40;
        unsigned tos = tos_of(in);
        total = hl + wrapped_len(sa, n, over);
        if (too_big(total, over) || total > cap)
            return C_OVERSIZED;
        if (over == 4) {
            int df = version == 4 ? (in[6] & 0x40) != 0 : 1;
            out[0] = 0x45;
            out[1] = (unsigned char)tos;
            nat_put16(out + 2, (uint16_t)total);
            nat_put16(out + 4, (uint16_t)(seq & 0xFFFF));
            nat_put16(out + 6, df ? 0x4000 : 0);
            out[8] = 64;
            out[9] = (unsigned char)proto;
            memcpy(out + 12, sa->tun_src, 4);
            memcpy(out + 16, sa->tun_dst, 4);
            nat_ipv4_checksum(out, 20);
        } else {
            nat_put32(out, (6u << 28) | (tos << 20));
            nat_put16(out + 4, (uint16_t)(total - 40));
            out[6] = (unsigned char)proto;
            out[7] = 64;
            memcpy(out + 8, sa->tun_src, 16);
            memcpy(out + 24, sa->tun_dst, 16);
        }
        rc = wrap(sa, out, hl, over, version == 4 ? 4u : 41u, in, n, seq, total);
    } else {
        size_t nh_off, start;
        unsigned next_header;
        if (version == 4) {
            nh_off = 9;
            start = (size_t)(in[0] & 0x0F) * 4;
        } else if (nat_ipv6_split(in, n, &nh_off, &start) != 0) {
            return C_MALFORMED;
        }
        total = start + wrapped_len(sa, n - start, version);
        if (too_big(total, version) || total > cap)
            return C_OVERSIZED;
        memcpy(out, in, start);
        next_header = out[nh_off];
        out[nh_off] = (unsigned char)proto;
        set_length(out, version, total);
        if (version == 4)
            nat_ipv4_checksum(out, start);
        rc = wrap(sa, out, start, version, next_header, in + start, n - start, seq, total);
    }
    if (rc != V_OK)
        return rc;
    if (seq == sa->seq_max)
        sa->seq_exhausted = 1;
    else
        sa->next_seq = seq + 1;
    *outlen = total;
    deliver(sa, n);
    return V_OK;
}

static int replay_check(struct nat_sa *sa, uint32_t seql, uint64_t *seq)
{
    if (sa->expired)
        return C_EXPIRED;
    if (nat_replay_infer(&sa->replay, seql, sa->esn, seq) != 0 || !nat_replay_check(&sa->replay, *seq))
        return C_REPLAY;
    return V_OK;
}

static int unprotect_one(struct nat_sa *sa, const unsigned char *in, size_t n, unsigned char *out,
                         size_t cap, size_t *outlen)
{
    int version, inner_version, rc;
    size_t nh_off, off, pos, inner_len, result_len;
    unsigned proto, inner_proto;
    unsigned char *inner;
    uint64_t seq;

    if (sa->outbound)
        return C_BAD_SPI; /* not an inbound SA (no decrypt context, no replay window): counted */
    version = nat_ip_validate(in, n, 0);
    if (version < 0)
        return -version;
    if (version == 4) {
        nh_off = 9;
        off = (size_t)(in[0] & 0x0F) * 4;
    } else if (nat_ipv6_split(in, n, &nh_off, &off) != 0) {
        return C_MALFORMED;
    }
    if (cap < n)
        return C_OVERSIZED;
    proto = in[nh_off];
    /* Tunnel results start at out[0]; transport results keep the outer header in front. */
    inner = sa->tunnel ? out : out + off;
    if (sa->esp) {
        unsigned char nh;
        pos = off;
        if (sa->encap) {
            size_t plen;
            if (proto != 17 || pos + 8 > n)
                return C_MALFORMED;
            if (nat_get16(in + pos + 4) != n - pos)
                return C_MALFORMED;
            pos += 8;
            plen = n - pos;
            /* RFC 3948 section 2.2 / 2.3 (udpencap.classify). */
            if (plen == 1 && in[pos] == 0xFF)
                return C_KEEPALIVE;
            if (plen >= 4 && nat_get32(in + pos) == 0)
                return C_NON_ESP;
            if (plen < 8)
                return C_MALFORMED;
        } else if (proto != 50) {
            return C_MALFORMED;
        }
        if (n - pos < 8 + sa->crypto.ivlen + sa->crypto.icvlen + 2)
            return C_MALFORMED;
        if (nat_get32(in + pos) != sa->spi)
            return C_BAD_SPI;
        rc = replay_check(sa, nat_get32(in + pos + 4), &seq);
        if (rc != V_OK)
            return rc;
        switch (nat_esp_open(&sa->crypto, &sa->replay, seq, sa->esn, in + pos, n - pos, inner, &inner_len, &nh)) {
        case NAT_R_OK:
            break;
        case NAT_R_NOT_DECRYPTED:
            return C_NOT_DECRYPTED;
        default:
            return C_NOT_AUTH;
        }
        if (nh == 59)
            return C_DUMMY; /* RFC 4303 section 2.6: dummy packet */
        inner_proto = nh;
    } else {
        size_t alen = ah_length(sa, version);
        unsigned char icv[64];
        if (proto != 51 || off + 12 > n)
            return C_MALFORMED;
        if (((size_t)in[off + 1] + 2) * 4 != alen || off + alen > n)
            return C_MALFORMED;
        if (nat_get32(in + off + 4) != sa->spi)
            return C_BAD_SPI;
        rc = replay_check(sa, nat_get32(in + off + 8), &seq);
        if (rc != V_OK)
            return rc;
        rc = nat_ah_icv(&sa->crypto, in, n, version, off, alen, seq, sa->esn, sa->scratch, icv);
        if (rc != V_OK)
            return rc;
        if (CRYPTO_memcmp(icv, in + off + 12, sa->crypto.icvlen) != 0)
            return C_NOT_AUTH;
        nat_replay_commit(&sa->replay, seq);
        inner_proto = in[off];
        inner_len = n - off - alen;
        memcpy(inner, in + off + alen, inner_len);
    }
    if (sa->tunnel) {
        if (inner_proto != 4 && inner_proto != 41)
            return C_NOT_DECRYPTED;
        inner_version = nat_ip_validate(inner, inner_len, 1);
        if (inner_version != (inner_proto == 4 ? 4 : 6))
            return C_NOT_DECRYPTED;
        result_len = inner_len;
    } else {
        inner_version = version;
        memcpy(out, in, off);
        out[nh_off] = (unsigned char)inner_proto;
        result_len = off + inner_len;
        set_length(out, version, result_len);
        if (version == 4)
            nat_ipv4_checksum(out, off);
        if (sa->encap)
            nat_fix_transport_checksum(out, result_len, version);
    }
    if (!nat_selectors_match(sa->sels, sa->nsels, out, result_len, inner_version))
        return C_SELECTOR;
    *outlen = result_len;
    deliver(sa, result_len);
    return V_OK;
}

/* Each dropped packet moves exactly one counter (docs/datapath.md section 8). */
int nat_sa_protect(struct nat_sa *sa, const unsigned char *in, size_t n, unsigned char *out, size_t cap,
                   size_t *outlen)
{
    int v = protect_one(sa, in, n, out, cap, outlen);
    if (v != V_OK)
        sa->counters[v]++;
    return v;
}

int nat_sa_unprotect(struct nat_sa *sa, const unsigned char *in, size_t n, unsigned char *out, size_t cap,
                     size_t *outlen)
{
    int v = unprotect_one(sa, in, n, out, cap, outlen);
    if (v != V_OK)
        sa->counters[v]++;
    return v;
}
