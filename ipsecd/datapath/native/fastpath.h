/* The threaded native fast path of ipsecd (docs/datapath.md, section "Fast path").
 *
 * TUN -> classify (filter table) -> outbound SA -> ESP-in-UDP (sendmmsg, UDP GSO) and
 * UDP (recvmmsg, UDP GRO) -> SPI -> inbound SA (replay, decrypt, selectors) -> TUN, in two C threads
 * that never take the GIL. Python installs SAs and filters and drains events / slow-path packets.
 * Pure C: no Python API in fp_tables.c and fp_loop.c.
 */
#ifndef IPSECD_FASTPATH_H
#define IPSECD_FASTPATH_H

#include <pthread.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "sa.h"

/* Filter actions. */
enum fp_action {
    FP_DROP = 0,    /* block: counted and dropped */
    FP_PROTECT = 1, /* through the rule's SA; no (live) SA: acquire, packet held, never sent in clear */
    FP_SLOW = 2,    /* handed to Python (the slow-path queue) */
};

/* Events (the ring Python drains). */
enum fp_event_kind {
    FP_EV_ACQUIRE = 1,     /* a = rule id: a PROTECT rule matched without a usable SA */
    FP_EV_SOFT = 2,        /* a = SA handle, b = reason (1 bytes, 2 packets, 3 seconds, 4 sequence) */
    FP_EV_HARD = 3,        /* a = SA handle, b = reason */
    FP_EV_SLOW = 4,        /* packets wait in the slow-path queue */
};

/* Slow-path queue entry kinds. */
enum fp_slow_kind {
    FP_SLOW_OUTBOUND = 1, /* a cleartext packet from the TUN for a SLOW rule / the default */
    FP_SLOW_ACQUIRE = 2,  /* a cleartext packet held while its SA is negotiated (rule id in aux) */
    FP_SLOW_INBOUND = 3,  /* a UDP payload on the ESP socket that is not ESP (IKE, non-ESP marker) */
};

/* Global counters (summed over the threads' private copies). */
enum fp_stat {
    S_TUN_RX_PACKETS = 0, S_TUN_RX_BYTES, S_TUN_RX_SUPER, S_TUN_RX_SEGMENTS, S_TUN_RX_CSUM_FIXED,
    S_TUN_RX_BAD, S_NO_RULE, S_RULE_DROP, S_ACQUIRE_EVENTS, S_ACQUIRE_QUEUED, S_SLOW_QUEUED,
    S_SLOW_DROPPED, S_PROTECT_DROPS, S_UDP_TX_DATAGRAMS, S_UDP_TX_CALLS, S_UDP_TX_GSO_MSGS,
    S_UDP_TX_ERRORS, S_UDP_RX_DATAGRAMS, S_UDP_RX_CALLS, S_UDP_RX_GRO_MSGS, S_BAD_SPI,
    S_KEEPALIVE, S_RX_MALFORMED, S_UNPROTECT_DROPS, S_TUN_TX_PACKETS, S_TUN_TX_BYTES,
    S_TUN_TX_ERRORS, S_EVENTS_DROPPED, S_GSO_FALLBACKS, S_TUN_TX_GRO, S_PRIORITY_FAILED,
    FP_NSTATS
};

#define FP_STAT_NAMES { \
    "tun_rx_packets", "tun_rx_bytes", "tun_rx_super_packets", "tun_rx_segments", "tun_rx_csum_fixed", \
    "tun_rx_bad", "no_rule_drops", "rule_drops", "acquire_events", "acquire_queued", "slow_queued", \
    "slow_dropped", "protect_drops", "udp_tx_datagrams", "udp_tx_calls", "udp_tx_gso_messages", \
    "udp_tx_errors", "udp_rx_datagrams", "udp_rx_calls", "udp_rx_gro_messages", "bad_spi_packets", \
    "nat_keepalive_packets", "rx_malformed", "unprotect_drops", "tun_tx_packets", "tun_tx_bytes", \
    "tun_tx_errors", "events_dropped", "gso_fallbacks", "tun_tx_coalesced", "priority_failed" }

struct tx_ctx;

struct fp_sa {
    struct nat_sa sa;
    uint32_t handle;
    int outbound;
    int reported;                   /* sa.events already forwarded to the ring */
    size_t strip;                   /* outer IP + UDP header bytes protect writes (the kernel adds its own) */
    union {                         /* outbound: where the ESP-in-UDP datagrams go */
        struct sockaddr sa;
        struct sockaddr_in v4;
        struct sockaddr_in6 v6;
    } peer;
    socklen_t peerlen;
    struct fp_sa *next_spi;         /* inbound SPI hash chain */
};

struct fp_rule {
    uint32_t id;
    int32_t weight;
    uint64_t order;                 /* insertion order: ties go to the older rule */
    int version;
    unsigned char src[16], dst[16]; /* masked */
    int splen, dplen;
    int proto;
    unsigned sp_lo, sp_hi, dp_lo, dp_hi;
    int action;
    uint32_t sa_handle;
    uint64_t last_acquire_ns;
    struct fp_rule *next;           /* group bucket chain, by weight descending */
    struct fp_rule *next_id;        /* id hash chain */
};

/* Rules sharing (family, source prefix length, destination prefix length): one hash table on the
 * masked addresses (tuple space search). */
struct fp_group {
    int version, splen, dplen;
    struct fp_rule **buckets;
    size_t nbuckets, count;
    int32_t max_weight;
};

struct fp_slow {
    int kind;
    uint32_t aux;
    struct sockaddr_storage from;
    size_t len;
    unsigned char *data;
};

#define FP_SLOW_CAP 1024
#define FP_EVENT_CAP 4096

struct fp_event {
    int kind;
    uint32_t a, b;
};

struct fp_features {
    int vnet_hdr;       /* the TUN fd carries virtio_net_hdr (set by the caller who opened it) */
    unsigned offload;   /* TUNSETOFFLOAD flags accepted */
    int udp_gso;        /* UDP_SEGMENT usable on the socket */
    int udp_gro;        /* UDP_GRO enabled on the socket */
    int family;         /* of the UDP socket */
};

struct fp_stats {
    uint64_t v[FP_NSTATS];
};

struct fastpath {
    int tun_fd, udp_fd, stop_fd, event_fd;
    struct fp_features feat;
    int default_action;
    int unknown_spi_action;         /* FP_DROP (counted) or FP_SLOW: to Python as an INBOUND datagram */
    uint64_t acquire_interval_ns;
    size_t batch;
    int nice;                       /* applied to both threads at start when not 0 */
    int rt_priority;                /* SCHED_RR priority of both threads when > 0 (then nice is unused) */
    /* Tables, guarded by lock: the threads hold it for reading per batch, Python writes. */
    pthread_rwlock_t lock;
    struct fp_sa **sas;             /* by handle (index), NULL = free */
    uint32_t nsas_cap, nsas, next_handle_hint;
    struct fp_sa **spi_buckets;
    size_t spi_nbuckets;
    struct fp_group *groups;        /* sorted by max_weight descending */
    size_t ngroups;
    struct fp_rule **id_buckets;
    size_t id_nbuckets, nrules;
    uint64_t rule_order;
    /* Event ring and slow-path queue, each under its own mutex. */
    pthread_mutex_t qlock;
    struct fp_event events[FP_EVENT_CAP];
    size_t ev_head, ev_count;
    struct fp_slow slow[FP_SLOW_CAP];
    size_t slow_head, slow_count, slow_cap;
    int signalled;
    /* Threads. */
    pthread_t tx, rx;
    struct tx_ctx *txc;             /* TX state: used under txmu by the TX thread or, idle, the RX thread */
    pthread_mutex_t txmu;
    int running;
    volatile int stopping;
    struct fp_stats tx_stats, rx_stats, py_stats;
};

/* fp_tables.c */
const char *fp_init(struct fastpath *fp, int tun_fd, int udp_fd, int vnet_hdr);
void fp_free(struct fastpath *fp);
const char *fp_sa_add(struct fastpath *fp, struct fp_sa *s, uint32_t *handle); /* takes s */
int fp_sa_del(struct fastpath *fp, uint32_t handle);
struct fp_sa *fp_sa_get(struct fastpath *fp, uint32_t handle);
struct fp_sa *fp_spi_lookup(struct fastpath *fp, uint32_t spi);
const char *fp_rule_add(struct fastpath *fp, const struct fp_rule *tmpl);
int fp_rule_del(struct fastpath *fp, uint32_t id);
int fp_rule_bind(struct fastpath *fp, uint32_t id, uint32_t sa_handle);
struct fp_rule *fp_classify(struct fastpath *fp, const unsigned char *p, size_t n, int version);
void fp_event(struct fastpath *fp, int kind, uint32_t a, uint32_t b, struct fp_stats *st);
void fp_forward_sa_events(struct fastpath *fp, struct fp_sa *s, struct fp_stats *st);
int fp_slow_push(struct fastpath *fp, int kind, uint32_t aux, const struct sockaddr_storage *from,
                 const unsigned char *data, size_t len);
size_t fp_drain_events(struct fastpath *fp, struct fp_event *out, size_t max);
void fp_stats_sum(struct fastpath *fp, uint64_t out[FP_NSTATS]);
uint64_t fp_now_ns(void);

/* fp_loop.c */
void fp_probe_socket(struct fastpath *fp);
unsigned fp_tun_offload(int fd, int want);
const char *fp_start(struct fastpath *fp);
void fp_stop(struct fastpath *fp);
int fp_inject(struct fastpath *fp, unsigned char *const *pkts, const size_t *lens, size_t n, uint32_t sa_handle);
int fp_open_tun(const char *name, int vnet_hdr, int multi_queue, char *ifname_out);

/* Shared by fp_loop.c (TX, setup) and fp_rx.c (RX). */
#ifndef SOL_UDP
#define SOL_UDP 17
#endif
#define FP_UDP_SEGMENT 103 /* <linux/udp.h> */
#define FP_UDP_GRO 104
#define VNET_LEN 10        /* struct virtio_net_hdr */
#define VNET_F_NEEDS_CSUM 1
#define GSO_NONE 0
#define GSO_TCPV4 1
#define GSO_TCPV6 4
#define GSO_UDP_L4 5
#define PKT_MAX 65535

/* fp_loop.c: checksums (RFC 1071; fp_sum returns the folded sum, not complemented) and TX. */
uint32_t fp_sum(const unsigned char *p, size_t n, uint32_t acc);
uint32_t fp_pseudo(const unsigned char *ip, int version, int proto, size_t len);
uint16_t fp_finish(uint32_t s);
void fp_tx_round(struct fastpath *fp);
void fp_thread_priority(struct fastpath *fp, struct fp_stats *st);
/* fp_rx.c */
void *fp_rx_main(void *arg);

#endif
