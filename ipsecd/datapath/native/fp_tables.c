/* Fast-path tables (docs/datapath.md, "Fast path"): SAs by handle, inbound SAs by SPI (a chained
 * hash table), filters by tuple space search (one hash table per (family, source prefix length,
 * destination prefix length), groups visited in descending order of their best weight), the event
 * ring and the slow-path queue. Pure C, no Python API.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "fastpath.h"

uint64_t fp_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

const char *fp_init(struct fastpath *fp, int tun_fd, int udp_fd, int vnet_hdr)
{
    pthread_rwlockattr_t attr;
    memset(fp, 0, sizeof(*fp));
    fp->tun_fd = tun_fd;
    fp->udp_fd = udp_fd;
    fp->stop_fd = fp->event_fd = -1;
    fp->feat.vnet_hdr = vnet_hdr;
    fp->default_action = FP_DROP;
    fp->unknown_spi_action = FP_DROP;
    fp->acquire_interval_ns = 1000000000u;
    fp->batch = 64;
    fp->slow_cap = 256;
    /* Writers (Python) must not starve behind the two reader threads. */
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    if (pthread_rwlock_init(&fp->lock, &attr) != 0) {
        pthread_rwlockattr_destroy(&attr);
        return "cannot create the table lock";
    }
    pthread_rwlockattr_destroy(&attr);
    if (pthread_mutex_init(&fp->qlock, NULL) != 0 || pthread_mutex_init(&fp->txmu, NULL) != 0) {
        pthread_rwlock_destroy(&fp->lock);
        return "cannot create the queue lock";
    }
    fp->spi_nbuckets = 1024;
    fp->spi_buckets = calloc(fp->spi_nbuckets, sizeof(*fp->spi_buckets));
    fp->id_nbuckets = 1024;
    fp->id_buckets = calloc(fp->id_nbuckets, sizeof(*fp->id_buckets));
    if (fp->spi_buckets == NULL || fp->id_buckets == NULL)
        return "out of memory";
    return NULL;
}

static void sa_destroy(struct fp_sa *s)
{
    nat_sa_free(&s->sa);
    OPENSSL_cleanse(s, sizeof(*s));
    free(s);
}

void fp_free(struct fastpath *fp)
{
    size_t i;
    if (fp->sas != NULL) {
        for (i = 0; i < fp->nsas_cap; i++)
            if (fp->sas[i] != NULL)
                sa_destroy(fp->sas[i]);
        free(fp->sas);
        fp->sas = NULL;
    }
    free(fp->spi_buckets);
    fp->spi_buckets = NULL;
    for (i = 0; i < fp->ngroups; i++) {
        size_t b;
        for (b = 0; b < fp->groups[i].nbuckets; b++) {
            struct fp_rule *r = fp->groups[i].buckets[b];
            while (r != NULL) {
                struct fp_rule *next = r->next;
                free(r);
                r = next;
            }
        }
        free(fp->groups[i].buckets);
    }
    free(fp->groups);
    fp->groups = NULL;
    fp->ngroups = 0;
    free(fp->id_buckets);
    fp->id_buckets = NULL;
    for (i = 0; i < FP_SLOW_CAP; i++) {
        free(fp->slow[i].data);
        fp->slow[i].data = NULL;
    }
    pthread_rwlock_destroy(&fp->lock);
    pthread_mutex_destroy(&fp->qlock);
    pthread_mutex_destroy(&fp->txmu);
}

/* --- SAs ------------------------------------------------------------------------------------- */

static size_t spi_slot(const struct fastpath *fp, uint32_t spi)
{
    uint32_t h = spi * 2654435761u; /* Knuth's multiplicative hash */
    return (size_t)(h ^ (h >> 16)) & (fp->spi_nbuckets - 1);
}

static int spi_grow(struct fastpath *fp)
{
    size_t n = fp->spi_nbuckets * 2, i;
    struct fp_sa **old = fp->spi_buckets, **nb = calloc(n, sizeof(*nb));
    size_t oldn = fp->spi_nbuckets;
    if (nb == NULL)
        return -1;
    fp->spi_buckets = nb;
    fp->spi_nbuckets = n;
    for (i = 0; i < oldn; i++) {
        struct fp_sa *s = old[i];
        while (s != NULL) {
            struct fp_sa *next = s->next_spi;
            size_t slot = spi_slot(fp, s->sa.spi);
            s->next_spi = nb[slot];
            nb[slot] = s;
            s = next;
        }
    }
    free(old);
    return 0;
}

/* Caller holds the write lock. Handles start at 1 (0 means "no SA" in a rule). */
const char *fp_sa_add(struct fastpath *fp, struct fp_sa *s, uint32_t *handle)
{
    uint32_t h;
    if (!s->outbound && fp_spi_lookup(fp, s->sa.spi) != NULL)
        return "an inbound SA with this SPI is already installed";
    if (fp->nsas + 2 > fp->nsas_cap) {
        uint32_t ncap = fp->nsas_cap ? fp->nsas_cap * 2 : 1024;
        struct fp_sa **n = realloc(fp->sas, ncap * sizeof(*n));
        if (n == NULL)
            return "out of memory";
        memset(n + fp->nsas_cap, 0, (ncap - fp->nsas_cap) * sizeof(*n));
        fp->sas = n;
        fp->nsas_cap = ncap;
    }
    h = fp->next_handle_hint;
    if (h == 0 || h >= fp->nsas_cap)
        h = 1;
    while (fp->sas[h] != NULL)
        h = h + 1 < fp->nsas_cap ? h + 1 : 1;
    fp->next_handle_hint = h + 1;
    s->handle = h;
    fp->sas[h] = s;
    fp->nsas++;
    if (!s->outbound) {
        size_t slot;
        if (fp->nsas > fp->spi_nbuckets && spi_grow(fp) != 0) {
            fp->sas[h] = NULL;
            fp->nsas--;
            return "out of memory";
        }
        slot = spi_slot(fp, s->sa.spi);
        s->next_spi = fp->spi_buckets[slot];
        fp->spi_buckets[slot] = s;
    }
    *handle = h;
    return NULL;
}

struct fp_sa *fp_sa_get(struct fastpath *fp, uint32_t handle)
{
    if (handle == 0 || handle >= fp->nsas_cap)
        return NULL;
    return fp->sas[handle];
}

struct fp_sa *fp_spi_lookup(struct fastpath *fp, uint32_t spi)
{
    struct fp_sa *s = fp->spi_buckets[spi_slot(fp, spi)];
    while (s != NULL && s->sa.spi != spi)
        s = s->next_spi;
    return s;
}

/* Caller holds the write lock. Returns 0, or -1 when there is no such SA. */
int fp_sa_del(struct fastpath *fp, uint32_t handle)
{
    struct fp_sa *s = fp_sa_get(fp, handle);
    if (s == NULL)
        return -1;
    if (!s->outbound) {
        struct fp_sa **pp = &fp->spi_buckets[spi_slot(fp, s->sa.spi)];
        while (*pp != NULL && *pp != s)
            pp = &(*pp)->next_spi;
        if (*pp == s)
            *pp = s->next_spi;
    }
    fp->sas[handle] = NULL;
    fp->nsas--;
    sa_destroy(s);
    return 0;
}

/* --- filters ------------------------------------------------------------------------------- */

static void mask_addr(unsigned char *a, int plen, int bytes)
{
    int i;
    for (i = 0; i < bytes; i++) {
        int bits = plen - i * 8;
        if (bits >= 8)
            continue;
        a[i] = bits <= 0 ? 0 : (unsigned char)(a[i] & (0xFF00u >> bits));
    }
}

static uint64_t addr_hash(const unsigned char *src, const unsigned char *dst, int bytes)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    int i;
    for (i = 0; i < bytes; i++)
        h = (h ^ src[i]) * 1099511628211ull;
    for (i = 0; i < bytes; i++)
        h = (h ^ dst[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

static size_t id_slot(const struct fastpath *fp, uint32_t id)
{
    uint32_t h = id * 2654435761u;
    return (size_t)(h ^ (h >> 16)) & (fp->id_nbuckets - 1);
}

static struct fp_rule *rule_by_id(struct fastpath *fp, uint32_t id)
{
    struct fp_rule *r = fp->id_buckets[id_slot(fp, id)];
    while (r != NULL && r->id != id)
        r = r->next_id;
    return r;
}

static int better(const struct fp_rule *a, const struct fp_rule *b)
{
    return a->weight > b->weight || (a->weight == b->weight && a->order < b->order);
}

static void sort_groups(struct fastpath *fp)
{
    size_t i, j;
    for (i = 1; i < fp->ngroups; i++) { /* few groups: insertion sort */
        struct fp_group g = fp->groups[i];
        for (j = i; j > 0 && fp->groups[j - 1].max_weight < g.max_weight; j--)
            fp->groups[j] = fp->groups[j - 1];
        fp->groups[j] = g;
    }
}

static int group_grow(struct fp_group *g)
{
    size_t n = g->nbuckets * 2, i;
    int bytes = g->version == 4 ? 4 : 16;
    struct fp_rule **nb = calloc(n, sizeof(*nb));
    if (nb == NULL)
        return -1;
    for (i = 0; i < g->nbuckets; i++) {
        struct fp_rule *r = g->buckets[i];
        while (r != NULL) {
            struct fp_rule *next = r->next, **pp;
            pp = &nb[addr_hash(r->src, r->dst, bytes) & (n - 1)];
            while (*pp != NULL && better(*pp, r))
                pp = &(*pp)->next;
            r->next = *pp;
            *pp = r;
            r = next;
        }
    }
    free(g->buckets);
    g->buckets = nb;
    g->nbuckets = n;
    return 0;
}

/* Caller holds the write lock. */
const char *fp_rule_add(struct fastpath *fp, const struct fp_rule *tmpl)
{
    struct fp_group *g = NULL;
    struct fp_rule *r, **pp;
    size_t i;
    int bytes = tmpl->version == 4 ? 4 : 16;
    if (rule_by_id(fp, tmpl->id) != NULL)
        return "a filter with this id is already installed";
    for (i = 0; i < fp->ngroups; i++)
        if (fp->groups[i].version == tmpl->version && fp->groups[i].splen == tmpl->splen
            && fp->groups[i].dplen == tmpl->dplen)
            g = &fp->groups[i];
    if (g == NULL) {
        struct fp_group *n = realloc(fp->groups, (fp->ngroups + 1) * sizeof(*n));
        if (n == NULL)
            return "out of memory";
        fp->groups = n;
        g = &fp->groups[fp->ngroups];
        memset(g, 0, sizeof(*g));
        g->version = tmpl->version;
        g->splen = tmpl->splen;
        g->dplen = tmpl->dplen;
        g->nbuckets = 16;
        g->max_weight = tmpl->weight;
        g->buckets = calloc(g->nbuckets, sizeof(*g->buckets));
        if (g->buckets == NULL)
            return "out of memory";
        fp->ngroups++;
    }
    if (g->count + 1 > g->nbuckets && group_grow(g) != 0)
        return "out of memory";
    r = malloc(sizeof(*r));
    if (r == NULL)
        return "out of memory";
    *r = *tmpl;
    mask_addr(r->src, r->splen, bytes);
    mask_addr(r->dst, r->dplen, bytes);
    r->order = fp->rule_order++;
    r->last_acquire_ns = 0;
    pp = &g->buckets[addr_hash(r->src, r->dst, bytes) & (g->nbuckets - 1)];
    while (*pp != NULL && better(*pp, r))
        pp = &(*pp)->next;
    r->next = *pp;
    *pp = r;
    g->count++;
    if (r->weight > g->max_weight)
        g->max_weight = r->weight;
    r->next_id = fp->id_buckets[id_slot(fp, r->id)];
    fp->id_buckets[id_slot(fp, r->id)] = r;
    fp->nrules++;
    sort_groups(fp);
    return NULL;
}

/* Caller holds the write lock. 0, or -1 when no such rule. */
int fp_rule_del(struct fastpath *fp, uint32_t id)
{
    struct fp_rule *r = rule_by_id(fp, id), **pp;
    size_t i;
    if (r == NULL)
        return -1;
    pp = &fp->id_buckets[id_slot(fp, id)];
    while (*pp != r)
        pp = &(*pp)->next_id;
    *pp = r->next_id;
    for (i = 0; i < fp->ngroups; i++) {
        struct fp_group *g = &fp->groups[i];
        int bytes = g->version == 4 ? 4 : 16;
        if (g->version != r->version || g->splen != r->splen || g->dplen != r->dplen)
            continue;
        pp = &g->buckets[addr_hash(r->src, r->dst, bytes) & (g->nbuckets - 1)];
        while (*pp != NULL && *pp != r)
            pp = &(*pp)->next;
        if (*pp == r)
            *pp = r->next;
        g->count--;
        /* max_weight stays an upper bound: it only prunes the search. */
        break;
    }
    fp->nrules--;
    free(r);
    return 0;
}

int fp_rule_bind(struct fastpath *fp, uint32_t id, uint32_t sa_handle)
{
    struct fp_rule *r = rule_by_id(fp, id);
    if (r == NULL)
        return -1;
    r->sa_handle = sa_handle;
    r->last_acquire_ns = 0;
    return 0;
}

static int ports_match(const struct fp_rule *r, int proto, const unsigned char *p, size_t n, size_t off,
                       int nonfirst)
{
    unsigned sp, dp;
    if (proto != 6 && proto != 17 && proto != 132 && proto != 136)
        return 1;
    if (r->sp_lo == 0 && r->sp_hi == 65535 && r->dp_lo == 0 && r->dp_hi == 65535)
        return 1;
    if (nonfirst || off + 4 > n)
        return 0;
    sp = nat_get16(p + off);
    dp = nat_get16(p + off + 2);
    return sp >= r->sp_lo && sp <= r->sp_hi && dp >= r->dp_lo && dp <= r->dp_hi;
}

/* Caller holds the read lock. The best (highest weight, then oldest) matching rule, or NULL. */
struct fp_rule *fp_classify(struct fastpath *fp, const unsigned char *p, size_t n, int version)
{
    struct fp_rule *best = NULL;
    unsigned char src[16], dst[16];
    int bytes = version == 4 ? 4 : 16, proto, nonfirst;
    size_t i, off;
    nat_upper_layer(p, n, version, &proto, &off, &nonfirst);
    for (i = 0; i < fp->ngroups; i++) {
        struct fp_group *g = &fp->groups[i];
        struct fp_rule *r;
        if (best != NULL && g->max_weight < best->weight)
            break; /* groups are sorted by their best weight */
        if (g->version != version || g->count == 0)
            continue;
        memcpy(src, p + (version == 4 ? 12 : 8), (size_t)bytes);
        memcpy(dst, p + (version == 4 ? 16 : 24), (size_t)bytes);
        mask_addr(src, g->splen, bytes);
        mask_addr(dst, g->dplen, bytes);
        for (r = g->buckets[addr_hash(src, dst, bytes) & (g->nbuckets - 1)]; r != NULL; r = r->next) {
            if (best != NULL && !better(r, best))
                break; /* chains are sorted: nothing better follows */
            if (memcmp(r->src, src, (size_t)bytes) != 0 || memcmp(r->dst, dst, (size_t)bytes) != 0)
                continue;
            if (r->proto != 0 && r->proto != proto)
                continue;
            if (!ports_match(r, proto, p, n, off, nonfirst))
                continue;
            best = r;
            break;
        }
    }
    return best;
}

/* --- events and the slow-path queue ------------------------------------------------------------ */

static void signal_locked(struct fastpath *fp)
{
    if (!fp->signalled && fp->event_fd >= 0) {
        uint64_t one = 1;
        fp->signalled = 1;
        if (write(fp->event_fd, &one, sizeof(one)) < 0) {
            /* eventfd full (cannot happen below 2^64 - 1): the reader is signalled already */
        }
    }
}

void fp_event(struct fastpath *fp, int kind, uint32_t a, uint32_t b, struct fp_stats *st)
{
    pthread_mutex_lock(&fp->qlock);
    if (fp->ev_count < FP_EVENT_CAP) {
        struct fp_event *e = &fp->events[(fp->ev_head + fp->ev_count) % FP_EVENT_CAP];
        e->kind = kind;
        e->a = a;
        e->b = b;
        fp->ev_count++;
    } else {
        st->v[S_EVENTS_DROPPED]++;
    }
    signal_locked(fp);
    pthread_mutex_unlock(&fp->qlock);
}

/* Called by the thread that owns the SA after a packet: new soft/hard expiry events go out. */
void fp_forward_sa_events(struct fastpath *fp, struct fp_sa *s, struct fp_stats *st)
{
    while (s->reported < s->sa.nevents) {
        int kind = s->sa.events[s->reported][0], reason = s->sa.events[s->reported][1];
        fp_event(fp, kind == 1 ? FP_EV_SOFT : FP_EV_HARD, s->handle, (uint32_t)reason, st);
        s->reported++;
    }
}

/* 0 queued, -1 dropped (queue full or no memory). */
int fp_slow_push(struct fastpath *fp, int kind, uint32_t aux, const struct sockaddr_storage *from,
                 const unsigned char *data, size_t len)
{
    struct fp_slow *e;
    unsigned char *copy;
    pthread_mutex_lock(&fp->qlock);
    if (fp->slow_count >= fp->slow_cap) {
        pthread_mutex_unlock(&fp->qlock);
        return -1;
    }
    pthread_mutex_unlock(&fp->qlock);
    copy = malloc(len ? len : 1);
    if (copy == NULL)
        return -1;
    memcpy(copy, data, len);
    pthread_mutex_lock(&fp->qlock);
    if (fp->slow_count >= fp->slow_cap) {
        pthread_mutex_unlock(&fp->qlock);
        free(copy);
        return -1;
    }
    e = &fp->slow[(fp->slow_head + fp->slow_count) % FP_SLOW_CAP];
    e->kind = kind;
    e->aux = aux;
    if (from != NULL)
        e->from = *from;
    else
        memset(&e->from, 0, sizeof(e->from));
    e->len = len;
    e->data = copy;
    fp->slow_count++;
    if (fp->slow_count == 1 && fp->ev_count < FP_EVENT_CAP) {
        struct fp_event *ev = &fp->events[(fp->ev_head + fp->ev_count) % FP_EVENT_CAP];
        ev->kind = FP_EV_SLOW;
        ev->a = ev->b = 0;
        fp->ev_count++;
    }
    signal_locked(fp);
    pthread_mutex_unlock(&fp->qlock);
    return 0;
}

/* Caller holds qlock. */
size_t fp_drain_events(struct fastpath *fp, struct fp_event *out, size_t max)
{
    size_t n = 0;
    while (n < max && fp->ev_count > 0) {
        out[n++] = fp->events[fp->ev_head];
        fp->ev_head = (fp->ev_head + 1) % FP_EVENT_CAP;
        fp->ev_count--;
    }
    return n;
}

void fp_stats_sum(struct fastpath *fp, uint64_t out[FP_NSTATS])
{
    int i;
    for (i = 0; i < FP_NSTATS; i++)
        out[i] = __atomic_load_n(&fp->tx_stats.v[i], __ATOMIC_RELAXED)
                 + __atomic_load_n(&fp->rx_stats.v[i], __ATOMIC_RELAXED) + fp->py_stats.v[i];
}
