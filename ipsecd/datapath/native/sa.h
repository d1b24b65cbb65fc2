/* One SA direction of the native data path: framing, selectors, lifetimes, counters
 * (docs/datapath.md sections 2-8). Pure C, no Python API: callable without the GIL. */
#ifndef IPSECD_NATIVE_SA_H
#define IPSECD_NATIVE_SA_H

#include "ipsec_native.h"

/* Counter indexes: the field order of ipsecd.datapath.counters.Counters. */
enum nat_counter {
    C_CONF_SENT = 0, C_CONF_RECV, C_AUTH_SENT, C_AUTH_RECV, C_TRANSPORT_SENT, C_TRANSPORT_RECV,
    C_TUNNEL_SENT, C_TUNNEL_RECV, C_PACKETS_SENT, C_PACKETS_RECV,
    C_BAD_SPI, C_NOT_DECRYPTED, C_NOT_AUTH, C_REPLAY, C_MALFORMED, C_OVERSIZED, C_SELECTOR,
    C_EXPIRED, C_KEEPALIVE, C_NON_ESP, C_DUMMY,
    NAT_NCOUNTERS
};

#define NAT_COUNTER_NAMES { \
    "confidential_bytes_sent", "confidential_bytes_received", "authenticated_bytes_sent", \
    "authenticated_bytes_received", "transport_bytes_sent", "transport_bytes_received", \
    "tunnel_bytes_sent", "tunnel_bytes_received", "packets_sent", "packets_received", \
    "bad_spi_packets", "packets_not_decrypted", "packets_not_authenticated", \
    "packets_with_replay_detection", "malformed_packets", "oversized_packets", \
    "selector_mismatch_packets", "expired_sa_packets", "nat_keepalive_packets", \
    "non_esp_marker_packets", "dummy_packets" }

/* Verdict of one packet: 0 delivered, else the counter index of the drop. */
#define V_OK 0

/* Events (docs/datapath.md section 7): kind 1 soft, 2 hard; reason 1 bytes, 2 packets, 3 seconds,
 * 4 sequence. Each kind is raised at most once per SA, so four slots suffice. */
#define NAT_MAX_EVENTS 4

struct nat_selector {
    int version;
    unsigned char src[16], dst[16];
    int src_plen, dst_plen;
    int proto;
    unsigned sp_lo, sp_hi, dp_lo, dp_hi;
};

enum {
    CFG_PROTOCOL = 0, CFG_MODE, CFG_ENC, CFG_INTEG, CFG_SPI, CFG_ESN, CFG_WINDOW, CFG_DIRECTION,
    CFG_INITIAL_SEQ, CFG_ENCAP, CFG_SPORT, CFG_DPORT, CFG_OUTER_VERSION, CFG_SOFT_BYTES,
    CFG_HARD_BYTES, CFG_SOFT_PACKETS, CFG_HARD_PACKETS,
    NAT_CONFIG_FIELDS
};

struct nat_sa {
    struct nat_crypto crypto;
    struct nat_replay replay;
    uint64_t soft_bytes, hard_bytes, soft_packets, hard_packets; /* lifetime limits, 0 = none */
    uint32_t spi;
    uint16_t sport, dport;      /* UDP encapsulation ports (RFC 3948) */
    int esp, tunnel, esn, outbound, encap, outer_version, confidential;
    unsigned char tun_src[16], tun_dst[16];
    uint64_t next_seq, seq_max;
    int seq_exhausted;
    int expired, soft_raised;
    uint64_t life_bytes, life_packets;
    uint64_t counters[NAT_NCOUNTERS];
    int events[NAT_MAX_EVENTS][2];
    int nevents;
    struct nat_selector *sels;
    size_t nsels;
    unsigned char *scratch; /* AH only: a packet copy with mutable fields zeroed */
};

/* sels is copied. Returns NULL or a static error text (never key material). */
const char *nat_sa_init(struct nat_sa *sa, const uint64_t cfg[NAT_CONFIG_FIELDS], const unsigned char *ekey,
                        size_t ekey_len, const unsigned char *ikey, size_t ikey_len,
                        const unsigned char *iv_key, size_t iv_key_len, const unsigned char *tsrc,
                        const unsigned char *tdst, const struct nat_selector *sels, size_t nsels);
void nat_sa_free(struct nat_sa *sa);
/* Upper bound of protect's growth (outer header, UDP, ESP/AH overhead). */
size_t nat_sa_max_overhead(const struct nat_sa *sa);
size_t nat_sa_protect_size(const struct nat_sa *sa, const unsigned char *in, size_t n);
/* An SA has the crypto of its own direction only: protect on an inbound SA drops the packet as
 * malformed_packets, unprotect on an outbound one as bad_spi_packets (each counted, nothing else
 * touched). */
int nat_sa_protect(struct nat_sa *sa, const unsigned char *in, size_t n, unsigned char *out, size_t cap,
                   size_t *outlen);
int nat_sa_unprotect(struct nat_sa *sa, const unsigned char *in, size_t n, unsigned char *out, size_t cap,
                     size_t *outlen);
void nat_sa_soft(struct nat_sa *sa, int reason);
void nat_sa_hard(struct nat_sa *sa, int reason);

/* ah.c: the AH ICV over pkt (len n) whose AH header starts at ah_off and is ah_len bytes long.
 * Returns V_OK or C_MALFORMED (mutable-field rules refused the packet) or C_NOT_AUTH on libcrypto
 * failure. scratch must hold n bytes. */
int nat_ah_icv(struct nat_crypto *c, const unsigned char *pkt, size_t n, int version, size_t ah_off,
               size_t ah_len, uint64_t seq, int esn, unsigned char *scratch, unsigned char *icv);

/* ip.c helpers */
int nat_ip_validate(const unsigned char *p, size_t n, int fragments); /* 4, 6, or -(counter index) */
int nat_ipv6_split(const unsigned char *p, size_t n, size_t *nh_off, size_t *off); /* 0 or -1 */
uint32_t nat_ones_sum(const unsigned char *p, size_t n, uint32_t acc);
uint16_t nat_fold(uint32_t acc);
void nat_ipv4_checksum(unsigned char *hdr, size_t ihl);
void nat_upper_layer(const unsigned char *p, size_t n, int version, int *proto, size_t *off, int *nonfirst);
void nat_fix_transport_checksum(unsigned char *p, size_t n, int version);
int nat_selectors_match(const struct nat_selector *s, size_t ns, const unsigned char *p, size_t n,
                        int version);

#endif
