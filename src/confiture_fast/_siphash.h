/* SipHash-2-4 (Aumasson & Bernstein, 2012), 64- and 128-bit output: the keyed PRF of the anonymizer.
 * Written from the paper's description; checked against the published vectors in the tests. */
#ifndef CONFITURE_FAST_SIPHASH_H
#define CONFITURE_FAST_SIPHASH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline uint64_t cf_load64le(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

static inline void cf_store64le(uint8_t *p, uint64_t v) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    memcpy(p, &v, 8);
}

#define CF_ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define CF_SIPROUND                                                          \
    do {                                                                     \
        v0 += v1; v1 = CF_ROTL(v1, 13); v1 ^= v0; v0 = CF_ROTL(v0, 32);      \
        v2 += v3; v3 = CF_ROTL(v3, 16); v3 ^= v2;                            \
        v0 += v3; v3 = CF_ROTL(v3, 21); v3 ^= v0;                            \
        v2 += v1; v1 = CF_ROTL(v1, 17); v1 ^= v2; v2 = CF_ROTL(v2, 32);      \
    } while (0)

/* Hashes n bytes under the key (k0, k1) = the key's two little-endian halves.
 * out receives 8 bytes (outlen 8) or 16 bytes (outlen 16), in the reference byte order. */
static inline void cf_siphash(uint64_t k0, uint64_t k1, const uint8_t *in, size_t n,
                              uint8_t *out, int outlen) {
    uint64_t v0 = UINT64_C(0x736f6d6570736575) ^ k0;
    uint64_t v1 = UINT64_C(0x646f72616e646f6d) ^ k1;
    uint64_t v2 = UINT64_C(0x6c7967656e657261) ^ k0;
    uint64_t v3 = UINT64_C(0x7465646279746573) ^ k1;
    const uint8_t *end = in + (n & ~(size_t)7);
    uint64_t b = ((uint64_t)n) << 56;
    if (outlen == 16) v1 ^= 0xee;
    for (; in != end; in += 8) {
        uint64_t m = cf_load64le(in);
        v3 ^= m;
        CF_SIPROUND; CF_SIPROUND;
        v0 ^= m;
    }
    switch (n & 7) {
    case 7: b |= ((uint64_t)in[6]) << 48; /* fall through */
    case 6: b |= ((uint64_t)in[5]) << 40; /* fall through */
    case 5: b |= ((uint64_t)in[4]) << 32; /* fall through */
    case 4: b |= ((uint64_t)in[3]) << 24; /* fall through */
    case 3: b |= ((uint64_t)in[2]) << 16; /* fall through */
    case 2: b |= ((uint64_t)in[1]) << 8;  /* fall through */
    case 1: b |= ((uint64_t)in[0]); break;
    case 0: break;
    }
    v3 ^= b;
    CF_SIPROUND; CF_SIPROUND;
    v0 ^= b;
    v2 ^= (outlen == 16) ? 0xee : 0xff;
    CF_SIPROUND; CF_SIPROUND; CF_SIPROUND; CF_SIPROUND;
    cf_store64le(out, v0 ^ v1 ^ v2 ^ v3);
    if (outlen != 16) return;
    v1 ^= 0xdd;
    CF_SIPROUND; CF_SIPROUND; CF_SIPROUND; CF_SIPROUND;
    cf_store64le(out + 8, v0 ^ v1 ^ v2 ^ v3);
}

#undef CF_SIPROUND
#undef CF_ROTL
#endif
