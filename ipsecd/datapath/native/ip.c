/* IPv4/IPv6 parsing helpers of the native path (docs/datapath.md sections 2 and 6).
 * Every read is bounds-checked against the buffer length. */
#include <string.h>

#include "sa.h"

#define MAX_IPV4 65535u
#define MAX_IPV6 (65535u + 40u)

/* docs/datapath.md section 2: returns 4 or 6, or minus the drop counter index. IPv4 fragments are
 * MALFORMED unless `fragments` (tunnel-mode inner packets are carried whole). */
int nat_ip_validate(const unsigned char *p, size_t n, int fragments)
{
    unsigned version, ihl, total;
    if (n == 0)
        return -C_MALFORMED;
    version = p[0] >> 4;
    if (version == 4) {
        if (n > MAX_IPV4)
            return -C_OVERSIZED;
        if (n < 20)
            return -C_MALFORMED;
        ihl = (p[0] & 0x0Fu) * 4u;
        total = nat_get16(p + 2);
        if (ihl < 20 || ihl > total || total != n)
            return -C_MALFORMED;
        if (!fragments && ((p[6] & 0x3F) || p[7])) /* MF or fragment offset */
            return -C_MALFORMED;
        return 4;
    }
    if (version == 6) {
        unsigned plen;
        if (n > MAX_IPV6)
            return -C_OVERSIZED;
        if (n < 40)
            return -C_MALFORMED;
        plen = nat_get16(p + 4);
        if (plen + 40u != n) /* a bare 40-byte header (payload length 0) is valid */
            return -C_MALFORMED;
        return 6;
    }
    return -C_MALFORMED;
}

/* docs/datapath.md section 2.1 (RFC 4303 section 3.1.1, RFC 8200 section 4.1): where ESP/AH goes. */
int nat_ipv6_split(const unsigned char *p, size_t n, size_t *nh_off, size_t *off)
{
    size_t no = 6, o = 40;
    unsigned guard;
    for (guard = 0; guard < 65536u; guard++) {
        unsigned nh = p[no];
        size_t len;
        if (nh == 44)
            return -1; /* a Fragment header: MALFORMED */
        if (nh != 0 && nh != 43 && nh != 60)
            break;
        if (o + 8 > n)
            return -1;
        if (nh == 60 && p[o] != 43)
            break;
        len = ((size_t)p[o + 1] + 1) * 8;
        if (o + len > n)
            return -1;
        no = o;
        o += len;
    }
    *nh_off = no;
    *off = o;
    return 0;
}

uint32_t nat_ones_sum(const unsigned char *p, size_t n, uint32_t acc)
{
    uint64_t s = acc;
    size_t i;
    for (i = 0; i + 1 < n; i += 2)
        s += ((uint32_t)p[i] << 8) | p[i + 1];
    if (n & 1)
        s += (uint32_t)p[n - 1] << 8;
    while (s >> 16)
        s = (s & 0xFFFF) + (s >> 16);
    return (uint32_t)s;
}

uint16_t nat_fold(uint32_t acc)
{
    while (acc >> 16)
        acc = (acc & 0xFFFF) + (acc >> 16);
    return (uint16_t)(~acc & 0xFFFF);
}

/* RFC 791 / RFC 1071. */
void nat_ipv4_checksum(unsigned char *hdr, size_t ihl)
{
    hdr[10] = hdr[11] = 0;
    nat_put16(hdr + 10, nat_fold(nat_ones_sum(hdr, ihl, 0)));
}

void nat_upper_layer(const unsigned char *p, size_t n, int version, int *proto, size_t *off, int *nonfirst)
{
    unsigned nh;
    size_t o;
    int nf = 0, i;
    if (version == 4) {
        *proto = p[9];
        *off = (size_t)(p[0] & 0x0F) * 4;
        *nonfirst = (((p[6] & 0x1F) << 8) | p[7]) != 0;
        return;
    }
    nh = p[6];
    o = 40;
    for (i = 0; i < 64; i++) { /* bounded walk */
        size_t len;
        if ((nh != 0 && nh != 43 && nh != 44 && nh != 60 && nh != 51) || o + 8 > n)
            break;
        if (nh == 44) {
            nf = nf || (nat_get16(p + o + 2) & 0xFFF8) != 0;
            len = 8;
        } else if (nh == 51) {
            len = ((size_t)p[o + 1] + 2) * 4;
        } else {
            len = ((size_t)p[o + 1] + 1) * 8;
        }
        nh = p[o];
        o += len;
    }
    *proto = (int)nh;
    *off = o;
    *nonfirst = nf;
}

static uint32_t pseudo_sum(const unsigned char *p, int version, int proto, size_t length)
{
    unsigned char ph[40];
    if (version == 4) {
        memcpy(ph, p + 12, 8);
        ph[8] = 0;
        ph[9] = (unsigned char)proto;
        nat_put16(ph + 10, (uint16_t)length);
        return nat_ones_sum(ph, 12, 0);
    }
    memcpy(ph, p + 8, 32);
    nat_put32(ph + 32, (uint32_t)length);
    ph[36] = ph[37] = ph[38] = 0;
    ph[39] = (unsigned char)proto;
    return nat_ones_sum(ph, 40, 0);
}

/* RFC 3948 section 3.1.2: recompute a TCP/UDP checksum after NAT-T transport decapsulation. */
void nat_fix_transport_checksum(unsigned char *p, size_t n, int version)
{
    int proto, nonfirst;
    size_t off, field;
    uint16_t value;
    nat_upper_layer(p, n, version, &proto, &off, &nonfirst);
    if (nonfirst)
        return;
    if (proto == 6)
        field = off + 16;
    else if (proto == 17)
        field = off + 6;
    else
        return;
    if (field + 2 > n)
        return;
    if (proto == 17 && version == 4 && p[field] == 0 && p[field + 1] == 0)
        return; /* RFC 768: an IPv4 UDP checksum of 0 means none */
    p[field] = p[field + 1] = 0;
    value = nat_fold(nat_ones_sum(p + off, n - off, pseudo_sum(p, version, proto, n - off)));
    if (proto == 17 && value == 0)
        value = 0xFFFF;
    nat_put16(p + field, value);
}

/* UDP checksum of an IPv6 outer packet whose UDP header starts at off (RFC 8200 section 8.1). */
uint16_t nat_udp6_checksum(const unsigned char *p, size_t n, size_t off);
uint16_t nat_udp6_checksum(const unsigned char *p, size_t n, size_t off)
{
    uint16_t v = nat_fold(nat_ones_sum(p + off, n - off, pseudo_sum(p, 6, 17, n - off)));
    return v ? v : 0xFFFF;
}

static int prefix_match(const unsigned char *addr, const unsigned char *net, int plen)
{
    int full = plen / 8, rem = plen % 8;
    if (memcmp(addr, net, (size_t)full) != 0)
        return 0;
    if (rem) {
        unsigned char mask = (unsigned char)(0xFF << (8 - rem));
        if ((addr[full] & mask) != (net[full] & mask))
            return 0;
    }
    return 1;
}

/* docs/datapath.md section 6. */
int nat_selectors_match(const struct nat_selector *s, size_t ns, const unsigned char *p, size_t n,
                        int version)
{
    const unsigned char *src = version == 4 ? p + 12 : p + 8, *dst = version == 4 ? p + 16 : p + 24;
    int proto, nonfirst;
    size_t off, i;
    if (ns == 0)
        return 1;
    nat_upper_layer(p, n, version, &proto, &off, &nonfirst);
    for (i = 0; i < ns; i++) {
        const struct nat_selector *sel = &s[i];
        unsigned sport, dport;
        int full;
        if (sel->version != version)
            continue;
        if (!prefix_match(src, sel->src, sel->src_plen) || !prefix_match(dst, sel->dst, sel->dst_plen))
            continue;
        if (sel->proto && sel->proto != proto)
            continue;
        full = sel->sp_lo == 0 && sel->sp_hi == 65535 && sel->dp_lo == 0 && sel->dp_hi == 65535;
        if (full || (proto != 6 && proto != 17 && proto != 132 && proto != 136))
            return 1;
        if (nonfirst || off + 4 > n)
            continue;
        sport = nat_get16(p + off);
        dport = nat_get16(p + off + 2);
        if (sel->sp_lo <= sport && sport <= sel->sp_hi && sel->dp_lo <= dport && dport <= sel->dp_hi)
            return 1;
    }
    return 0;
}
