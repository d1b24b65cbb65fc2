/* Anti-replay window: RFC 4303 section 3.4.3 and Appendix A, bitmap layout of RFC 6479. */
#include <stdlib.h>
#include <string.h>

#include "ipsec_native.h"

int nat_replay_init(struct nat_replay *r, uint32_t window, int bitmap)
{
    uint32_t need, nblocks = 1;
    memset(r, 0, sizeof(*r));
    if (window < NAT_WINDOW_MIN)
        window = NAT_WINDOW_MIN;
    if (window > NAT_WINDOW_MAX)
        window = NAT_WINDOW_MAX;
    r->window = window;
    if (!bitmap)
        return 0;
    /* RFC 6479 section 2: one redundant block beyond the window, rounded to a power of two. */
    need = (window + 31u) / 32u + 1u;
    while (nblocks < need)
        nblocks <<= 1;
    r->bits = calloc(nblocks, sizeof(*r->bits));
    if (r->bits == NULL)
        return -1;
    r->nblocks = nblocks;
    return 0;
}

void nat_replay_free(struct nat_replay *r)
{
    free(r->bits);
    r->bits = NULL;
    r->nblocks = 0;
}

/* RFC 4303 Appendix A2.2: choose Seqh so that the number lands in or right of the window. */
int nat_replay_infer(const struct nat_replay *r, uint32_t seql, int esn, uint64_t *seq)
{
    uint32_t tl, th, bl;
    if (!esn) {
        *seq = seql;
        return 0;
    }
    tl = (uint32_t)r->top;
    th = (uint32_t)(r->top >> 32);
    bl = tl - r->window + 1u; /* modulo 2^32 */
    if (tl >= r->window - 1u) {
        /* Case A: the window lies within one sequence number subspace. */
        if (seql >= bl) {
            *seq = ((uint64_t)th << 32) | seql;
            return 0;
        }
        if (th == UINT32_MAX)
            return -1; /* Seqh would be 2^32 */
        *seq = ((uint64_t)(th + 1u) << 32) | seql;
        return 0;
    }
    /* Case B: the window spans two subspaces. */
    if (seql >= bl) {
        if (th == 0)
            return -1; /* Seqh would be -1 */
        *seq = ((uint64_t)(th - 1u) << 32) | seql;
        return 0;
    }
    *seq = ((uint64_t)th << 32) | seql;
    return 0;
}

int nat_replay_check(const struct nat_replay *r, uint64_t seq)
{
    uint64_t blk;
    if (seq == 0 || r->bits == NULL)
        return 0; /* RFC 4303 section 3.3.3: the first packet has number 1; no bitmap: not inbound */
    if (seq > r->top)
        return 1;
    if (r->top - seq >= r->window)
        return 0;
    blk = (seq >> 5) & (r->nblocks - 1u);
    return (r->bits[blk] & (1u << (seq & 31u))) == 0;
}

void nat_replay_commit(struct nat_replay *r, uint64_t seq)
{
    uint64_t blk;
    if (r->bits == NULL)
        return;
    if (seq > r->top) {
        uint64_t cur = r->top >> 5, target = seq >> 5, diff = target - cur, i;
        if (diff > r->nblocks)
            diff = r->nblocks;
        for (i = 1; i <= diff; i++)
            r->bits[(cur + i) & (r->nblocks - 1u)] = 0;
        r->top = seq;
    }
    blk = (seq >> 5) & (r->nblocks - 1u);
    r->bits[blk] |= 1u << (seq & 31u);
}
