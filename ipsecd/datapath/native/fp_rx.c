/* The fast path's RX thread (docs/datapath.md, "Fast path"): recvmmsg with UDP GRO -> per datagram
 * NAT-keepalive / non-ESP marker (slow path) / ESP: SPI hash -> unprotect (sa.c) -> TUN, through a
 * coalescer that merges TCP segments and UDP datagrams of one flow into vnet_hdr super-packets.
 * Pure C, no Python API.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "fastpath.h"

#define RX_MSGS 32
#define RX_HEAD 64
#define RX_BUF (65536 + RX_HEAD)
#define OUT_CAP (PKT_MAX + 256)

/* --- RX: ESP-in-UDP -> TUN ----------------------------------------------------------------- */

/* Receive-side coalescing for the TUN (IFF_VNET_HDR only): consecutive in-order TCP segments of one
 * flow (same addresses, ports, ACK number, header bytes and segment size; only ACK/PSH flags) are
 * merged into one super-packet written with gso_type TCPV4/TCPV6, so the kernel's stack handles one
 * packet instead of up to 45. */
#define GRO_SLOTS 8
#define GRO_CAP (VNET_LEN + PKT_MAX)

struct gro_slot {
    unsigned char *buf; /* vnet header room, then the packet */
    size_t len;         /* packet bytes (without the vnet header) */
    size_t hl;          /* IP + TCP header bytes */
    size_t mss;         /* payload bytes of the first segment */
    unsigned count;     /* segments merged */
    uint32_t next_seq;
    unsigned age;
    int version, proto;
    int closed;         /* the last segment was short or carried PSH: nothing may follow */
};

struct rx_ctx {
    struct fastpath *fp;
    struct fp_stats *st;
    unsigned char *bufs[RX_MSGS];
    struct mmsghdr msgs[RX_MSGS];
    struct iovec iov[RX_MSGS];
    struct sockaddr_storage from[RX_MSGS];
    union {
        char buf[CMSG_SPACE(sizeof(int)) + 64];
        struct cmsghdr align;
    } cm[RX_MSGS];
    unsigned char *out; /* VNET_LEN bytes of header room, then the inner packet */
    struct gro_slot gro[GRO_SLOTS];
    unsigned gro_clock;
};

static void tun_write(struct rx_ctx *c, unsigned char *vbuf, size_t plen)
{
    struct fastpath *fp = c->fp;
    ssize_t r;
    if (fp->feat.vnet_hdr)
        r = write(fp->tun_fd, vbuf, plen + VNET_LEN);
    else
        r = write(fp->tun_fd, vbuf + VNET_LEN, plen);
    if (r < 0) {
        c->st->v[S_TUN_TX_ERRORS]++;
    } else {
        c->st->v[S_TUN_TX_PACKETS]++;
        c->st->v[S_TUN_TX_BYTES] += plen;
    }
}

static void gro_flush(struct rx_ctx *c, struct gro_slot *g)
{
    unsigned char *v = g->buf, *p = g->buf + VNET_LEN;
    if (g->count == 0)
        return;
    memset(v, 0, VNET_LEN);
    if (g->count > 1) {
        size_t iphl = g->version == 4 ? (size_t)(p[0] & 0x0F) * 4 : 40, l4len = g->len - iphl;
        int tcp = g->proto == 6;
        if (g->version == 4) {
            nat_put16(p + 2, (uint16_t)g->len);
            p[10] = p[11] = 0;
            nat_put16(p + 10, fp_finish(fp_sum(p, iphl, 0)));
        } else {
            nat_put16(p + 4, (uint16_t)l4len);
        }
        if (!tcp)
            nat_put16(p + iphl + 4, (uint16_t)l4len);
        /* CHECKSUM_PARTIAL: the field holds the folded pseudo-header sum; the kernel adds the rest
         * for every segment it cuts. */
        nat_put16(p + iphl + (tcp ? 16 : 6), (uint16_t)fp_pseudo(p, g->version, g->proto, l4len));
        v[0] = VNET_F_NEEDS_CSUM;
        v[1] = tcp ? (g->version == 4 ? GSO_TCPV4 : GSO_TCPV6) : GSO_UDP_L4;
        v[2] = (unsigned char)g->hl;
        v[3] = (unsigned char)(g->hl >> 8);
        v[4] = (unsigned char)g->mss;
        v[5] = (unsigned char)(g->mss >> 8);
        v[6] = (unsigned char)iphl;
        v[7] = (unsigned char)(iphl >> 8);
        v[8] = tcp ? 16 : 6;
        c->st->v[S_TUN_TX_GRO]++;
    }
    tun_write(c, v, g->len);
    g->count = 0;
}

static void gro_flush_all(struct rx_ctx *c)
{
    int i;
    for (i = 0; i < GRO_SLOTS; i++)
        gro_flush(c, &c->gro[i]);
}

/* Same flow: protocol, addresses and ports. */
static int gro_same_flow(const struct gro_slot *g, const unsigned char *p, int version, int proto, size_t iphl)
{
    const unsigned char *q = g->buf + VNET_LEN;
    size_t qiphl = g->version == 4 ? (size_t)(q[0] & 0x0F) * 4 : 40;
    if (g->count == 0 || g->version != version || g->proto != proto)
        return 0;
    if (version == 4 ? memcmp(q + 12, p + 12, 8) != 0 : memcmp(q + 8, p + 8, 32) != 0)
        return 0;
    return memcmp(q + qiphl, p + iphl, 4) == 0;
}

/* Deliver one decrypted packet (at vbuf + VNET_LEN, n bytes) through the coalescer: TCP segments
 * in sequence (only ACK/PSH, same ACK number, window and options), or UDP datagrams of one size
 * (the last may be shorter) become one GSO super-packet. */
static void rx_deliver(struct rx_ctx *c, unsigned char *vbuf, size_t n)
{
    unsigned char *p = vbuf + VNET_LEN, *th;
    struct gro_slot *g = NULL, *victim = NULL;
    int version = p[0] >> 4, proto, i, tcp;
    size_t iphl, thl, hl, payload;
    unsigned flags = 0x10;
    if (!c->fp->feat.vnet_hdr)
        goto direct;
    if (version == 4) {
        iphl = (size_t)(p[0] & 0x0F) * 4;
        proto = p[9];
        if (iphl != 20 || (nat_get16(p + 6) & 0x3FFF) != 0)
            goto direct; /* options or a fragment */
    } else {
        iphl = 40;
        proto = p[6];
    }
    tcp = proto == 6;
    if ((proto != 6 && proto != 17) || n < iphl + (tcp ? 20 : 8))
        goto direct;
    if (!tcp && !(c->fp->feat.offload & 0x60))
        goto direct; /* the kernel took no USO: it may not take UDP super-packets either */
    th = p + iphl;
    thl = tcp ? (size_t)(th[12] >> 4) * 4 : 8;
    hl = iphl + thl;
    if (tcp)
        flags = th[13];
    if (thl < (tcp ? 20u : 8u) || hl > n || (!tcp && nat_get16(th + 4) != n - iphl))
        goto direct;
    payload = n - hl;
    for (i = 0; i < GRO_SLOTS; i++)
        if (gro_same_flow(&c->gro[i], p, version, proto, iphl)) {
            g = &c->gro[i];
            break;
        }
    if (g != NULL) {
        const unsigned char *q = g->buf + VNET_LEN, *qt = q + iphl;
        int ok = !g->closed && payload > 0 && payload <= g->mss && g->hl == hl && g->len + payload <= PKT_MAX
                 && g->count < 64
                 && (version == 4 ? q[1] == p[1] && q[8] == p[8] && (q[6] & 0x40) == (p[6] & 0x40)
                                  : memcmp(q, p, 4) == 0 && q[7] == p[7]);
        if (ok && tcp)
            ok = (flags & ~0x08u) == 0x10 && nat_get32(th + 4) == g->next_seq
                 && memcmp(qt + 8, th + 8, 4) == 0          /* ACK number */
                 && memcmp(qt + 14, th + 14, 2) == 0        /* window */
                 && memcmp(qt + 20, th + 20, thl - 20) == 0; /* options (timestamps) */
        if (ok) {
            memcpy(g->buf + VNET_LEN + g->len, p + hl, payload);
            g->len += payload;
            g->count++;
            g->next_seq += (uint32_t)payload;
            if (payload < g->mss || (flags & 0x08))
                g->closed = 1;
            if (tcp)
                g->buf[VNET_LEN + iphl + 13] |= (unsigned char)(flags & 0x08);
            return;
        }
        gro_flush(c, g); /* keep the flow's order: what is held goes first */
        g = NULL;
    }
    if (payload == 0 || (flags & ~0x08u) != 0x10)
        goto direct;
    for (i = 0; g == NULL && i < GRO_SLOTS; i++)
        if (c->gro[i].count == 0)
            g = &c->gro[i];
    if (g == NULL) {
        for (i = 0; i < GRO_SLOTS; i++)
            if (victim == NULL || c->gro[i].age < victim->age)
                victim = &c->gro[i];
        gro_flush(c, victim);
        g = victim;
    }
    memcpy(g->buf + VNET_LEN, p, n);
    g->len = n;
    g->hl = hl;
    g->mss = payload;
    g->count = 1;
    g->version = version;
    g->proto = proto;
    g->next_seq = tcp ? nat_get32(th + 4) + (uint32_t)payload : 0;
    g->closed = (flags & 0x08) != 0;
    g->age = c->gro_clock++;
    return;
direct:
    tun_write(c, vbuf, n);
}

static void rx_datagram(struct rx_ctx *c, unsigned char *d, size_t n, const struct sockaddr_storage *from)
{
    struct fastpath *fp = c->fp;
    struct fp_sa *s;
    unsigned char *h = d - 28;
    size_t outlen = 0;
    int v;
    /* RFC 3948 sections 2.2 and 2.3. */
    if (n == 1 && d[0] == 0xFF) {
        c->st->v[S_KEEPALIVE]++;
        return;
    }
    if (n >= 4 && nat_get32(d) == 0) {
        if (fp_slow_push(fp, FP_SLOW_INBOUND, 0, from, d, n) == 0)
            c->st->v[S_SLOW_QUEUED]++;
        else
            c->st->v[S_SLOW_DROPPED]++;
        return;
    }
    if (n < 8 || n > PKT_MAX - 28) {
        c->st->v[S_RX_MALFORMED]++;
        return;
    }
    s = fp_spi_lookup(fp, nat_get32(d));
    if (s == NULL) {
        c->st->v[S_BAD_SPI]++;
        /* Not ours: an SA the Python router keeps (e.g. transport mode), or garbage it counts. */
        if (fp->unknown_spi_action == FP_SLOW) {
            if (fp_slow_push(fp, FP_SLOW_INBOUND, 0, from, d, n) == 0)
                c->st->v[S_SLOW_QUEUED]++;
            else
                c->st->v[S_SLOW_DROPPED]++;
        }
        return;
    }
    /* sa.c unprotects a whole outer packet: put an IPv4 + UDP header in the 28 bytes in front of
     * the datagram (headroom for the first, the already processed previous datagram otherwise).
     * Tunnel mode does not look at the outer addresses (docs/datapath.md section 2.3). */
    memset(h, 0, 28);
    h[0] = 0x45;
    nat_put16(h + 2, (uint16_t)(n + 28));
    h[8] = 64;
    h[9] = 17;
    nat_put16(h + 20, 4500);
    nat_put16(h + 22, 4500);
    nat_put16(h + 24, (uint16_t)(n + 8));
    v = nat_sa_unprotect(&s->sa, h, n + 28, c->out + VNET_LEN, OUT_CAP, &outlen);
    fp_forward_sa_events(fp, s, c->st);
    if (v != V_OK) {
        c->st->v[S_UNPROTECT_DROPS]++;
        return;
    }
    memset(c->out, 0, VNET_LEN);
    rx_deliver(c, c->out, outlen);
}

void *fp_rx_main(void *arg)
{
    struct fastpath *fp = arg;
    struct rx_ctx *c = calloc(1, sizeof(*c));
    int i;
    if (c == NULL)
        return NULL;
    c->fp = fp;
    c->st = &fp->rx_stats;
    fp_thread_priority(fp, c->st);
    c->out = malloc(VNET_LEN + OUT_CAP);
    if (c->out == NULL)
        goto out;
    for (i = 0; i < GRO_SLOTS; i++) {
        c->gro[i].buf = malloc(GRO_CAP);
        if (c->gro[i].buf == NULL)
            goto out;
    }
    for (i = 0; i < RX_MSGS; i++) {
        c->bufs[i] = malloc(RX_BUF);
        if (c->bufs[i] == NULL)
            goto out;
    }
    while (!fp->stopping) {
        struct pollfd pfd[2] = {{fp->udp_fd, POLLIN, 0}, {fp->stop_fd, POLLIN, 0}};
        int r, m, rounds;
        if (poll(pfd, 2, 200) <= 0 || fp->stopping)
            continue;
        if (!(pfd[0].revents & POLLIN))
            continue;
        for (rounds = 0; rounds < 8; rounds++) {
            for (i = 0; i < RX_MSGS; i++) {
                memset(&c->msgs[i], 0, sizeof(c->msgs[i]));
                c->iov[i].iov_base = c->bufs[i] + RX_HEAD;
                c->iov[i].iov_len = RX_BUF - RX_HEAD;
                c->msgs[i].msg_hdr.msg_iov = &c->iov[i];
                c->msgs[i].msg_hdr.msg_iovlen = 1;
                c->msgs[i].msg_hdr.msg_name = &c->from[i];
                c->msgs[i].msg_hdr.msg_namelen = sizeof(c->from[i]);
                c->msgs[i].msg_hdr.msg_control = c->cm[i].buf;
                c->msgs[i].msg_hdr.msg_controllen = sizeof(c->cm[i].buf);
            }
            r = recvmmsg(fp->udp_fd, c->msgs, RX_MSGS, MSG_DONTWAIT, NULL);
            c->st->v[S_UDP_RX_CALLS]++;
            if (r <= 0)
                break;
            pthread_rwlock_rdlock(&fp->lock);
            for (m = 0; m < r; m++) {
                struct msghdr *mh = &c->msgs[m].msg_hdr;
                struct cmsghdr *cmsg;
                size_t len = c->msgs[m].msg_len, seg = len, off;
                for (cmsg = CMSG_FIRSTHDR(mh); cmsg != NULL; cmsg = CMSG_NXTHDR(mh, cmsg)) {
                    if (cmsg->cmsg_level == SOL_UDP && cmsg->cmsg_type == FP_UDP_GRO) {
                        int g;
                        memcpy(&g, CMSG_DATA(cmsg), sizeof(g));
                        if (g > 0 && (size_t)g < len) {
                            seg = (size_t)g;
                            c->st->v[S_UDP_RX_GRO_MSGS]++;
                        }
                    }
                }
                if (mh->msg_flags & MSG_TRUNC) {
                    c->st->v[S_RX_MALFORMED]++;
                    continue;
                }
                for (off = 0; off < len; off += seg) {
                    size_t dl = len - off < seg ? len - off : seg;
                    c->st->v[S_UDP_RX_DATAGRAMS]++;
                    rx_datagram(c, c->bufs[m] + RX_HEAD + off, dl, &c->from[m]);
                }
            }
            gro_flush_all(c);
            pthread_rwlock_unlock(&fp->lock);
            /* What the packets just written provoked (an echo reply, TCP ACKs) is usually in the
             * TUN queue already: send it from here when the TX thread is idle, saving its wake-up. */
            if (pthread_mutex_trylock(&fp->txmu) == 0) {
                fp_tx_round(fp);
                pthread_mutex_unlock(&fp->txmu);
            }
            if (r < RX_MSGS)
                break;
        }
    }
out:
    for (i = 0; i < RX_MSGS; i++)
        free(c->bufs[i]);
    for (i = 0; i < GRO_SLOTS; i++)
        free(c->gro[i].buf);
    free(c->out);
    free(c);
    return NULL;
}

