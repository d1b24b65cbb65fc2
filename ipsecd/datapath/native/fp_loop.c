/* The fast-path threads (docs/datapath.md, "Fast path"). Pure C, no Python API.
 *
 * TX thread: poll(TUN, stop) -> read up to `batch` packets (IFF_VNET_HDR: a virtio_net_hdr in
 * front, TCP/UDP super-packets segmented here and checksums completed) -> classify -> protect
 * through the rule's SA into an arena -> sendmmsg, runs of equal-sized datagrams to one peer
 * address and port (whatever their SAs) merged into one UDP GSO message (UDP_SEGMENT).
 * RX thread (fp_rx.c): poll(UDP, stop) -> recvmmsg (UDP_GRO: one message may carry many datagrams of
 * gso_size bytes) -> per datagram: NAT-keepalive / non-ESP marker (slow path) / ESP: SPI hash ->
 * unprotect (replay check, ICV, window commit, decrypt, selectors: sa.c) -> write to the TUN.
 *
 * virtio_net_hdr (virtio specification, network device; 10 bytes, little-endian):
 *   0        1          2                   4                   6                   8                10
 *   +--------+----------+-------------------+-------------------+-------------------+----------------+
 *   | flags  | gso_type |      hdr_len      |     gso_size      |    csum_start     |  csum_offset   |
 *   +--------+----------+-------------------+-------------------+-------------------+----------------+
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <unistd.h>

#include <linux/if.h>
#include <linux/if_tun.h>
#include <netinet/in.h>

#include "fastpath.h"

#define ARENA (1024 * 1024)
#define MAX_OUT 512
#define GSO_MAX_SEGS 64
#define GSO_MAX_BYTES 65000

/* --- checksums (RFC 1071) ------------------------------------------------------------------- */

/* The ones' complement sum of p as big-endian 16-bit words, added to acc (not complemented). */
uint32_t fp_sum(const unsigned char *p, size_t n, uint32_t acc)
{
    uint64_t s = 0, s1 = 0, s2 = 0, s3 = 0;
    while (n >= 32) { /* four independent 64-bit accumulators of 32-bit halves: no carries lost */
        uint64_t w[4];
        memcpy(w, p, 32);
        s += (w[0] & 0xFFFFFFFFu) + (w[0] >> 32);
        s1 += (w[1] & 0xFFFFFFFFu) + (w[1] >> 32);
        s2 += (w[2] & 0xFFFFFFFFu) + (w[2] >> 32);
        s3 += (w[3] & 0xFFFFFFFFu) + (w[3] >> 32);
        p += 32;
        n -= 32;
    }
    s = (s & 0xFFFFFFFFu) + (s >> 32) + (s1 & 0xFFFFFFFFu) + (s1 >> 32) + (s2 & 0xFFFFFFFFu) + (s2 >> 32)
        + (s3 & 0xFFFFFFFFu) + (s3 >> 32);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        s += (w & 0xFFFFFFFFu) + (w >> 32);
        p += 8;
        n -= 8;
    }
    while (n >= 2) {
        uint16_t w;
        memcpy(&w, p, 2);
        s += w;
        p += 2;
        n -= 2;
    }
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (n)
        s += p[0];
    while (s >> 16)
        s = (s & 0xFFFF) + (s >> 16);
    s = ((s & 0xFF) << 8) | (s >> 8); /* the sum is byte-order independent up to a swap */
#else
    if (n)
        s += (uint32_t)p[0] << 8;
#endif
    s += acc;
    while (s >> 16)
        s = (s & 0xFFFF) + (s >> 16);
    return (uint32_t)s;
}

uint32_t fp_pseudo(const unsigned char *ip, int version, int proto, size_t len)
{
    uint32_t s;
    if (version == 4) {
        s = fp_sum(ip + 12, 8, 0);
        return fp_sum((const unsigned char[]){0, (unsigned char)proto, (unsigned char)(len >> 8),
                                            (unsigned char)len},
                    4, s);
    }
    s = fp_sum(ip + 8, 32, 0);
    return fp_sum((const unsigned char[]){(unsigned char)(len >> 24), (unsigned char)(len >> 16),
                                        (unsigned char)(len >> 8), (unsigned char)len, 0, 0, 0,
                                        (unsigned char)proto},
                8, s);
}

uint16_t fp_finish(uint32_t s)
{
    return (uint16_t)(~s & 0xFFFF);
}

/* --- TX: TUN -> ESP-in-UDP ----------------------------------------------------------------- */

/* Cutting a TCP or UDP super-packet into segments of gso_size payload bytes, in place: segment k's
 * headers are written into the hl bytes just before its payload, which belong to segment k-1 (already
 * protected and copied out by then) or, for k = 0, are the original headers. */
struct seg_state {
    unsigned char *pkt;
    size_t n, iphl, l4hl, hl, payload, nseg, gso;
    int version, tcp;
    uint32_t seq0;
    uint16_t id0;
    unsigned char hdr[128]; /* the original IP + TCP/UDP header */
};

struct out_dgram {
    unsigned char *data;
    size_t len;
    struct fp_sa *sa;
};

struct tx_ctx {
    struct fastpath *fp;
    struct fp_stats *st;
    unsigned char *rbuf;   /* one TUN read */
    struct seg_state seg;
    unsigned char *arena;
    size_t arena_used;
    struct out_dgram out[MAX_OUT];
    size_t nout;
    struct mmsghdr msgs[MAX_OUT];
    struct iovec iov[MAX_OUT];
    union {
        char buf[CMSG_SPACE(sizeof(uint16_t))];
        struct cmsghdr align;
    } cm[MAX_OUT];
};

static void send_range(struct tx_ctx *c, size_t first, size_t last_excl);

/* Datagrams of a and b go to one destination (address and port): the same SA, or SAs to one peer. */
static int same_peer(const struct fp_sa *a, const struct fp_sa *b)
{
    return a == b || (a->peerlen == b->peerlen && memcmp(&a->peer, &b->peer, a->peerlen) == 0);
}

static void flush(struct tx_ctx *c)
{
    if (c->nout > 0)
        send_range(c, 0, c->nout);
    c->nout = 0;
    c->arena_used = 0;
}

/* Build messages for out[first..last_excl) and sendmmsg them. */
static void send_range(struct tx_ctx *c, size_t first, size_t last_excl)
{
    struct fastpath *fp = c->fp;
    size_t i = first, nmsg = 0, m, done;
    size_t msg_first[MAX_OUT];
    int gso = fp->feat.udp_gso;
    while (i < last_excl) {
        struct mmsghdr *mh = &c->msgs[nmsg];
        size_t j = i + 1, bytes = c->out[i].len;
        c->iov[i].iov_base = c->out[i].data;
        c->iov[i].iov_len = c->out[i].len;
        if (gso) {
            /* RFC-free kernel contract (UDP_SEGMENT): every segment but the last has the segment
             * size; all go to one destination. Which SA sealed a datagram does not matter (its
             * counters and events were settled in emit): with many tunnels to one peer, interleaved
             * datagrams of different SAs still share a message. */
            while (j < last_excl && j - i < GSO_MAX_SEGS && same_peer(c->out[j].sa, c->out[i].sa)
                   && c->out[j].len <= c->out[i].len && bytes + c->out[j].len <= GSO_MAX_BYTES) {
                c->iov[j].iov_base = c->out[j].data;
                c->iov[j].iov_len = c->out[j].len;
                bytes += c->out[j].len;
                j++;
                if (c->out[j - 1].len < c->out[i].len)
                    break;
            }
        }
        memset(mh, 0, sizeof(*mh));
        mh->msg_hdr.msg_name = &c->out[i].sa->peer;
        mh->msg_hdr.msg_namelen = c->out[i].sa->peerlen;
        mh->msg_hdr.msg_iov = &c->iov[i];
        mh->msg_hdr.msg_iovlen = j - i;
        if (j - i > 1) {
            struct cmsghdr *cmsg;
            uint16_t size = (uint16_t)c->out[i].len;
            mh->msg_hdr.msg_control = c->cm[nmsg].buf;
            mh->msg_hdr.msg_controllen = sizeof(c->cm[nmsg].buf);
            cmsg = CMSG_FIRSTHDR(&mh->msg_hdr);
            cmsg->cmsg_level = SOL_UDP;
            cmsg->cmsg_type = FP_UDP_SEGMENT;
            cmsg->cmsg_len = CMSG_LEN(sizeof(uint16_t));
            memcpy(CMSG_DATA(cmsg), &size, sizeof(size));
            c->st->v[S_UDP_TX_GSO_MSGS]++;
        }
        msg_first[nmsg] = i;
        nmsg++;
        i = j;
    }
    done = 0;
    while (done < nmsg) {
        int r = sendmmsg(fp->udp_fd, &c->msgs[done], (unsigned)(nmsg - done), 0);
        c->st->v[S_UDP_TX_CALLS]++;
        if (r > 0) {
            for (m = done; m < done + (size_t)r; m++)
                c->st->v[S_UDP_TX_DATAGRAMS] += c->msgs[m].msg_hdr.msg_iovlen;
            done += (size_t)r;
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (c->msgs[done].msg_hdr.msg_iovlen > 1
            && (errno == EIO || errno == EINVAL || errno == EOPNOTSUPP || errno == ENOPROTOOPT)) {
            /* The kernel or the route refuses UDP GSO: fall back to one datagram per message. */
            size_t from = msg_first[done];
            fp->feat.udp_gso = 0;
            c->st->v[S_GSO_FALLBACKS]++;
            send_range(c, from, last_excl);
            return;
        }
        c->st->v[S_UDP_TX_ERRORS] += c->msgs[done].msg_hdr.msg_iovlen;
        done++; /* drop this message (no route, timeout of a full socket buffer): counted */
    }
}

/* Protect one (segment of a) packet through sa and queue the datagram. */
static void emit(struct tx_ctx *c, struct fp_sa *s, const unsigned char *pkt, size_t n)
{
    size_t outlen = 0;
    int v;
    if (c->arena_used + n + 512 > ARENA || c->nout == MAX_OUT)
        flush(c);
    v = nat_sa_protect(&s->sa, pkt, n, c->arena + c->arena_used, ARENA - c->arena_used, &outlen);
    if (v != V_OK || outlen <= s->strip) {
        c->st->v[S_PROTECT_DROPS]++;
        fp_forward_sa_events(c->fp, s, c->st);
        return;
    }
    fp_forward_sa_events(c->fp, s, c->st);
    c->out[c->nout].data = c->arena + c->arena_used + s->strip;
    c->out[c->nout].len = outlen - s->strip;
    c->out[c->nout].sa = s;
    c->nout++;
    c->arena_used += (outlen + 15) & ~(size_t)15;
}

/* Returns the number of segments, 0 for a packet it cannot cut. */
static size_t seg_prepare(struct seg_state *g, unsigned char *pkt, size_t n, int gso_type, size_t gso_size)
{
    int version = pkt[0] >> 4, tcp = gso_type != GSO_UDP_L4;
    size_t iphl, l4hl;
    if (version == 4) {
        iphl = (size_t)(pkt[0] & 0x0F) * 4;
        if (n < 20 || iphl < 20 || pkt[9] != (tcp ? 6 : 17))
            return 0;
        g->id0 = nat_get16(pkt + 4);
    } else if (version == 6) {
        iphl = 40;
        if (n < 40 || pkt[6] != (tcp ? 6 : 17)) /* no extension headers in super-packets here */
            return 0;
    } else {
        return 0;
    }
    if (iphl + (tcp ? 20 : 8) > n || gso_size == 0)
        return 0;
    /* The IP length must cover exactly what was read: a truncated read must not become segments
     * with valid checksums over missing data. */
    if (version == 4 ? nat_get16(pkt + 2) != n : (size_t)nat_get16(pkt + 4) + 40 != n)
        return 0;
    l4hl = tcp ? (size_t)(pkt[iphl + 12] >> 4) * 4 : 8;
    if (l4hl < (tcp ? 20u : 8u) || iphl + l4hl > n || iphl + l4hl > sizeof(g->hdr))
        return 0;
    g->pkt = pkt;
    g->n = n;
    g->version = version;
    g->tcp = tcp;
    g->iphl = iphl;
    g->l4hl = l4hl;
    g->hl = iphl + l4hl;
    g->payload = n - g->hl;
    g->gso = gso_size;
    g->nseg = g->payload == 0 ? 1 : (g->payload + gso_size - 1) / gso_size;
    g->seq0 = tcp ? nat_get32(pkt + iphl + 4) : 0;
    memcpy(g->hdr, pkt, g->hl);
    return g->nseg;
}

/* Build segment k (in order) with fixed lengths, IPv4 ID, TCP sequence number and flags, and
 * checksums (RFC 791, RFC 9293 section 3.1, RFC 768). */
static unsigned char *seg_build(struct seg_state *g, size_t k, size_t *len)
{
    size_t plen = g->payload - k * g->gso < g->gso ? g->payload - k * g->gso : g->gso;
    size_t total = g->hl + plen, l4len = g->l4hl + plen;
    unsigned char *o = g->pkt + k * g->gso, *l4 = o + g->iphl;
    memcpy(o, g->hdr, g->hl);
    if (g->version == 4) {
        nat_put16(o + 2, (uint16_t)total);
        nat_put16(o + 4, (uint16_t)(g->id0 + k));
        o[10] = o[11] = 0;
        nat_put16(o + 10, fp_finish(fp_sum(o, g->iphl, 0)));
    } else {
        nat_put16(o + 4, (uint16_t)(total - 40));
    }
    if (g->tcp) {
        nat_put32(l4 + 4, g->seq0 + (uint32_t)(k * g->gso));
        if (k + 1 < g->nseg)
            l4[13] &= (unsigned char)~0x09; /* FIN and PSH only on the last segment */
        if (k > 0)
            l4[13] &= (unsigned char)~0x80; /* CWR only on the first */
        l4[16] = l4[17] = 0;
        nat_put16(l4 + 16, fp_finish(fp_sum(l4, l4len, fp_pseudo(o, g->version, 6, l4len))));
    } else {
        uint16_t sum;
        nat_put16(l4 + 4, (uint16_t)l4len);
        l4[6] = l4[7] = 0;
        sum = fp_finish(fp_sum(l4, l4len, fp_pseudo(o, g->version, 17, l4len)));
        nat_put16(l4 + 6, sum == 0 ? 0xFFFF : sum);
    }
    *len = total;
    return o;
}

static void acquire(struct tx_ctx *c, struct fp_rule *r, const unsigned char *pkt, size_t n)
{
    uint64_t now = fp_now_ns();
    if (r->last_acquire_ns == 0 || now - r->last_acquire_ns >= c->fp->acquire_interval_ns) {
        r->last_acquire_ns = now;
        c->st->v[S_ACQUIRE_EVENTS]++;
        fp_event(c->fp, FP_EV_ACQUIRE, r->id, 0, c->st);
    }
    if (fp_slow_push(c->fp, FP_SLOW_ACQUIRE, r->id, NULL, pkt, n) == 0)
        c->st->v[S_ACQUIRE_QUEUED]++;
    else
        c->st->v[S_SLOW_DROPPED]++;
}

static void tx_packet(struct tx_ctx *c, unsigned char *buf, size_t n, int vnet)
{
    struct fastpath *fp = c->fp;
    unsigned char *pkt = buf;
    size_t len = n, nseg = 1, k;
    int version, gso_type = GSO_NONE, action;
    struct fp_rule *r;
    struct fp_sa *s = NULL;
    if (vnet) {
        if (n < VNET_LEN) {
            c->st->v[S_TUN_RX_BAD]++;
            return;
        }
        pkt = buf + VNET_LEN;
        len = n - VNET_LEN;
        gso_type = buf[1] & 0x7F;
        if (gso_type == GSO_NONE && (buf[0] & VNET_F_NEEDS_CSUM)) {
            size_t start = (size_t)buf[6] | (size_t)buf[7] << 8, off = (size_t)buf[8] | (size_t)buf[9] << 8;
            if (start + off + 2 > len) {
                c->st->v[S_TUN_RX_BAD]++;
                return;
            }
            /* The field holds the pseudo-header sum; the device sums from csum_start on. */
            nat_put16(pkt + start + off, fp_finish(fp_sum(pkt + start, len - start, 0)));
            c->st->v[S_TUN_RX_CSUM_FIXED]++;
        }
    }
    c->st->v[S_TUN_RX_PACKETS]++;
    c->st->v[S_TUN_RX_BYTES] += len;
    version = len > 0 ? pkt[0] >> 4 : 0;
    if ((version != 4 || len < 20) && (version != 6 || len < 40)) {
        c->st->v[S_TUN_RX_BAD]++;
        return;
    }
    r = fp_classify(fp, pkt, len, version);
    action = r != NULL ? r->action : fp->default_action;
    if (r == NULL && action == FP_PROTECT)
        action = FP_DROP; /* a default cannot name an SA */
    if (action == FP_DROP) {
        c->st->v[r == NULL ? S_NO_RULE : S_RULE_DROP]++;
        return;
    }
    if (gso_type != GSO_NONE) {
        size_t gso_size = (size_t)buf[4] | (size_t)buf[5] << 8;
        if (gso_type != GSO_TCPV4 && gso_type != GSO_TCPV6 && gso_type != GSO_UDP_L4) {
            c->st->v[S_TUN_RX_BAD]++;
            return;
        }
        nseg = seg_prepare(&c->seg, pkt, len, gso_type, gso_size);
        if (nseg == 0) {
            c->st->v[S_TUN_RX_BAD]++;
            return;
        }
        c->st->v[S_TUN_RX_SUPER]++;
        c->st->v[S_TUN_RX_SEGMENTS] += nseg;
    }
    if (action == FP_PROTECT) {
        s = fp_sa_get(fp, r->sa_handle);
        if (s != NULL && (!s->outbound || s->sa.expired))
            s = NULL;
    }
    for (k = 0; k < nseg; k++) {
        size_t plen = len;
        const unsigned char *p = gso_type != GSO_NONE ? seg_build(&c->seg, k, &plen) : pkt;
        if (action == FP_SLOW) {
            if (fp_slow_push(fp, FP_SLOW_OUTBOUND, r ? r->id : 0, NULL, p, plen) == 0)
                c->st->v[S_SLOW_QUEUED]++;
            else
                c->st->v[S_SLOW_DROPPED]++;
        } else if (s == NULL) {
            acquire(c, r, p, plen); /* fail closed: held for Python, never sent in clear */
        } else {
            emit(c, s, p, plen);
        }
    }
}

/* One round of TX work: read the TUN until it is empty (or `batch` packets), protect, send.
 * Caller holds fp->txmu (the TX thread, or the RX thread when the TX thread is idle). */
void fp_tx_round(struct fastpath *fp)
{
    struct tx_ctx *c = fp->txc;
    size_t i;
    pthread_rwlock_rdlock(&fp->lock);
    for (i = 0; i < fp->batch; i++) {
        ssize_t r = read(fp->tun_fd, c->rbuf, VNET_LEN + PKT_MAX + 1);
        if (r <= 0)
            break; /* EAGAIN: drained */
        if ((size_t)r == VNET_LEN + PKT_MAX + 1) {
            c->st->v[S_TUN_RX_BAD]++; /* larger than any IP packet: truncated */
            continue;
        }
        tx_packet(c, c->rbuf, (size_t)r, fp->feat.vnet_hdr);
    }
    flush(c);
    pthread_rwlock_unlock(&fp->lock);
}

/* Python hands plain IP packets (e.g. those held for an ACQUIRE, once the SA is there) to the
 * outbound path: classified and protected like TUN packets, or, with `sa_handle` != 0, protected
 * with that outbound SA without classification (the Python router already chose it; an SA that is
 * gone, inbound or expired drops them, counted in protect_dropped). Returns how many were taken;
 * -1 when the fast path is not running. */
int fp_inject(struct fastpath *fp, unsigned char *const *pkts, const size_t *lens, size_t n, uint32_t sa_handle)
{
    size_t i;
    struct fp_sa *s = NULL;
    if (!fp->running || fp->txc == NULL)
        return -1;
    pthread_mutex_lock(&fp->txmu);
    pthread_rwlock_rdlock(&fp->lock);
    if (sa_handle != 0) {
        s = fp_sa_get(fp, sa_handle);
        if (s != NULL && (!s->outbound || s->sa.expired))
            s = NULL;
    }
    for (i = 0; i < n; i++) {
        if (lens[i] > PKT_MAX)
            continue;
        if (sa_handle == 0) {
            memcpy(fp->txc->rbuf, pkts[i], lens[i]);
            tx_packet(fp->txc, fp->txc->rbuf, lens[i], 0);
        } else if (s != NULL && lens[i] > 0 && ((pkts[i][0] >> 4) == 4 || (pkts[i][0] >> 4) == 6)) {
            emit(fp->txc, s, pkts[i], lens[i]);
        } else {
            fp->txc->st->v[S_PROTECT_DROPS]++;
        }
    }
    flush(fp->txc);
    pthread_rwlock_unlock(&fp->lock);
    pthread_mutex_unlock(&fp->txmu);
    return (int)n;
}

static void tx_ctx_free(struct tx_ctx *c)
{
    if (c == NULL)
        return;
    free(c->rbuf);
    free(c->arena);
    free(c);
}

static struct tx_ctx *tx_ctx_new(struct fastpath *fp)
{
    struct tx_ctx *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->fp = fp;
    c->st = &fp->tx_stats;
    c->rbuf = malloc(VNET_LEN + PKT_MAX + 1);
    c->arena = malloc(ARENA);
    if (c->rbuf == NULL || c->arena == NULL) {
        tx_ctx_free(c);
        return NULL;
    }
    return c;
}

/* Latency: the threads stand in for the kernel's softirq work. A real-time priority (SCHED_RR,
 * root) lets them run as soon as a packet wakes them instead of waiting for a busy CPU's time slice;
 * a negative nice value is the milder choice. Failure leaves the default, counted. */
void fp_thread_priority(struct fastpath *fp, struct fp_stats *st)
{
    if (fp->rt_priority > 0) {
        struct sched_param sp;
        memset(&sp, 0, sizeof(sp));
        sp.sched_priority = fp->rt_priority;
        if (pthread_setschedparam(pthread_self(), SCHED_RR, &sp) != 0)
            st->v[S_PRIORITY_FAILED]++;
    } else if (fp->nice != 0 && setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), fp->nice) != 0) {
        st->v[S_PRIORITY_FAILED]++;
    }
}

static void *tx_main(void *arg)
{
    struct fastpath *fp = arg;
    fp_thread_priority(fp, &fp->tx_stats);
    while (!fp->stopping) {
        struct pollfd pfd[2] = {{fp->tun_fd, POLLIN, 0}, {fp->stop_fd, POLLIN, 0}};
        if (poll(pfd, 2, 200) <= 0 || fp->stopping)
            continue;
        if (!(pfd[0].revents & POLLIN))
            continue;
        pthread_mutex_lock(&fp->txmu);
        fp_tx_round(fp);
        pthread_mutex_unlock(&fp->txmu);
    }
    return NULL;
}

/* --- setup ---------------------------------------------------------------------------------- */

void fp_probe_socket(struct fastpath *fp)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    int one = 1, v = 0;
    socklen_t vl = sizeof(v);
    if (getsockname(fp->udp_fd, (struct sockaddr *)&ss, &sl) == 0)
        fp->feat.family = ss.ss_family;
    /* UDP_SEGMENT is readable (0) on kernels that support UDP GSO (4.18+). */
    fp->feat.udp_gso = getsockopt(fp->udp_fd, SOL_UDP, FP_UDP_SEGMENT, &v, &vl) == 0;
    fp->feat.udp_gro = setsockopt(fp->udp_fd, SOL_UDP, FP_UDP_GRO, &one, sizeof(one)) == 0;
}

unsigned fp_tun_offload(int fd, int want)
{
    /* Most to least: TSO and USO, TSO only, checksum only, nothing. */
    static const unsigned tries[] = {TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | 0x20 | 0x40,
                                     TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6, TUN_F_CSUM};
    size_t i;
    if (!want)
        return 0;
    for (i = 0; i < sizeof(tries) / sizeof(tries[0]); i++)
        if (ioctl(fd, TUNSETOFFLOAD, (unsigned long)tries[i]) == 0)
            return tries[i];
    return 0;
}

int fp_open_tun(const char *name, int vnet_hdr, int multi_queue, char *ifname_out)
{
    struct ifreq ifr;
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return -1;
    memset(&ifr, 0, sizeof(ifr));
    strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
    ifr.ifr_flags = (short)(IFF_TUN | IFF_NO_PI | (vnet_hdr ? IFF_VNET_HDR : 0)
                            | (multi_queue ? IFF_MULTI_QUEUE : 0));
    if (ioctl(fd, TUNSETIFF, &ifr) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    if (vnet_hdr) {
        int sz = VNET_LEN;
        if (ioctl(fd, TUNSETVNETHDRSZ, &sz) != 0) {
            int e = errno;
            close(fd);
            errno = e;
            return -1;
        }
    }
    memcpy(ifname_out, ifr.ifr_name, IFNAMSIZ);
    ifname_out[IFNAMSIZ - 1] = 0;
    return fd;
}

const char *fp_start(struct fastpath *fp)
{
    struct timeval tv = {0, 100000};
    int fl;
    if (fp->running)
        return "the fast path is already running";
    fp->stopping = 0;
    if (fp->stop_fd < 0) {
        fp->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (fp->stop_fd < 0)
            return "eventfd failed";
    }
    /* The TUN is read until EAGAIN; the socket sends block (back-pressure) at most 100 ms. */
    fl = fcntl(fp->tun_fd, F_GETFL);
    if (fl < 0 || fcntl(fp->tun_fd, F_SETFL, fl | O_NONBLOCK) != 0)
        return "cannot make the TUN fd non-blocking";
    fl = fcntl(fp->udp_fd, F_GETFL);
    if (fl < 0 || fcntl(fp->udp_fd, F_SETFL, fl & ~O_NONBLOCK) != 0)
        return "cannot configure the UDP socket";
    setsockopt(fp->udp_fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (fp->txc == NULL) {
        fp->txc = tx_ctx_new(fp);
        if (fp->txc == NULL)
            return "out of memory";
    }
    if (pthread_create(&fp->tx, NULL, tx_main, fp) != 0)
        return "cannot start the TX thread";
    if (pthread_create(&fp->rx, NULL, fp_rx_main, fp) != 0) {
        fp->stopping = 1;
        pthread_join(fp->tx, NULL);
        return "cannot start the RX thread";
    }
    fp->running = 1;
    return NULL;
}

void fp_stop(struct fastpath *fp)
{
    uint64_t one = 1;
    if (!fp->running) {
        tx_ctx_free(fp->txc);
        fp->txc = NULL;
        return;
    }
    fp->stopping = 1;
    if (write(fp->stop_fd, &one, sizeof(one)) < 0) {
        /* the threads also wake up every 200 ms and see `stopping` */
    }
    pthread_join(fp->tx, NULL);
    pthread_join(fp->rx, NULL);
    fp->running = 0;
    tx_ctx_free(fp->txc);
    fp->txc = NULL;
}
