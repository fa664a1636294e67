# The compiled part of the ip strategy (strategies/typed.py). Included by _anon.pyx.

cdef extern from *:
    r"""
    #include <stdio.h>
    #include <string.h>
    #include "_compiled/_text.h"

    /* Negative result: not an address ip reads. */
    #define CF_BAD_IP (-6)

    /* IPv4 dotted quad as Python's ipaddress reads it: 4 decimal octets, no leading zeros. */
    static int cf_parse_ipv4(const uint8_t *s, size_t n, uint32_t *out) {
        uint32_t value = 0;
        size_t i = 0;
        for (int part = 0; part < 4; part++) {
            size_t start = i;
            unsigned octet = 0;
            for (; i < n && cf_digit(s[i]) && i - start < 3; i++)
                octet = octet * 10 + (s[i] - '0');
            if (i == start || octet > 255 || (s[start] == '0' && i - start > 1))
                return -1;
            value = (value << 8) | octet;
            if (part < 3) {
                if (i >= n || s[i] != '.')
                    return -1;
                i++;
            }
        }
        if (i != n)
            return -1;
        *out = value;
        return 0;
    }

    static int cf_hex(uint8_t c) {
        if (cf_digit(c)) return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    }

    /* IPv6 text as Python's ipaddress reads it (one '::' at most, optional dotted-quad tail). */
    static int cf_parse_ipv6(const uint8_t *s, size_t n, uint16_t groups[8]) {
        size_t start[12], len[12], nparts = 0, i, p;
        uint16_t vals[12];
        for (i = 0, p = 0; i <= n; i++) {
            if (i == n || s[i] == ':') {
                if (nparts == 12)
                    return -1;
                start[nparts] = p;
                len[nparts++] = i - p;
                p = i + 1;
            }
        }
        if (nparts < 3)
            return -1;
        size_t last = nparts - 1;
        int has_v4 = memchr(s + start[last], '.', len[last]) != NULL;
        for (i = 0; i < nparts; i++) {
            if (has_v4 && i == last)
                break;
            unsigned v = 0;
            if (len[i] > 4)
                return -1;
            for (size_t k = 0; k < len[i]; k++) {
                int h = cf_hex(s[start[i] + k]);
                if (h < 0)
                    return -1;
                v = v * 16 + (unsigned)h;
            }
            vals[i] = (uint16_t)v;
        }
        if (has_v4) {
            uint32_t v4;
            if (cf_parse_ipv4(s + start[last], len[last], &v4) < 0)
                return -1;
            vals[last] = (uint16_t)(v4 >> 16);
            vals[nparts] = (uint16_t)(v4 & 0xFFFF);
            len[last] = len[nparts] = 1;
            nparts++;
        }
        if (nparts > 9)
            return -1;
        size_t skip = 0, hi, lo, skipped;
        for (i = 1; i + 1 < nparts; i++) {
            if (len[i] == 0) {
                if (skip)
                    return -1;
                skip = i;
            }
        }
        if (skip) {
            hi = skip;
            lo = nparts - skip - 1;
            if (len[0] == 0 && --hi)
                return -1;
            if (len[nparts - 1] == 0 && --lo)
                return -1;
            if (hi + lo >= 8)
                return -1;
            skipped = 8 - hi - lo;
        } else {
            if (nparts != 8 || len[0] == 0 || len[nparts - 1] == 0)
                return -1;
            hi = 8;
            lo = skipped = 0;
        }
        for (i = 0; i < hi; i++) {
            if (len[i] == 0)
                return -1;
            groups[i] = vals[i];
        }
        for (i = 0; i < skipped; i++)
            groups[hi + i] = 0;
        for (i = 0; i < lo; i++) {
            if (len[nparts - lo + i] == 0)
                return -1;
            groups[hi + skipped + i] = vals[nparts - lo + i];
        }
        return 0;
    }

    /* ip: keeps the first `keep` bits (prefix / prefix_v6) and replaces the rest of the address with
     * digest bits; a network address (zero bits after its /mask) stays a network address. out: 64 bytes. */
    static long cf_ip(const uint8_t *v, size_t n, const uint8_t *digest, int keep4, int keep6, char *out) {
        const uint8_t *slash = memchr(v, '/', n);
        size_t alen = slash ? (size_t)(slash - v) : n;
        uint8_t addr[16];
        int bits, mask;
        uint32_t v4;
        uint16_t g[8];
        if (memchr(v, '%', n))
            return CF_BAD_IP;
        if (cf_parse_ipv4(v, alen, &v4) == 0) {
            bits = 32;
            for (int k = 0; k < 4; k++)
                addr[k] = (uint8_t)(v4 >> (24 - 8 * k));
        } else if (cf_parse_ipv6(v, alen, g) == 0) {
            bits = 128;
            for (int k = 0; k < 8; k++) {
                addr[2 * k] = (uint8_t)(g[k] >> 8);
                addr[2 * k + 1] = (uint8_t)g[k];
            }
        } else {
            return CF_BAD_IP;
        }
        mask = bits;
        if (slash) {
            size_t mlen = n - alen - 1;
            if (mlen < 1 || mlen > 3)
                return CF_BAD_IP;
            mask = 0;
            for (size_t k = 0; k < mlen; k++) {
                if (!cf_digit(slash[1 + k]))
                    return CF_BAD_IP;
                mask = mask * 10 + (slash[1 + k] - '0');
            }
            if (mask > bits)
                return CF_BAD_IP;
        }
        int end = bits;
        if (slash) {
            int zero_after = 1;
            for (int b = mask; b < bits; b++)
                if (addr[b >> 3] & (0x80 >> (b & 7)))
                    zero_after = 0;
            if (zero_after)
                end = mask;
        }
        int keep = bits == 32 ? keep4 : keep6;
        /* Bit b (from the top) of the address takes bit (end - 1 - b) (from the bottom) of the digest,
         * read as one big-endian 128-bit number. */
        for (int b = keep; b < end; b++) {
            int from_bottom = end - 1 - b;
            int bit = (digest[15 - (from_bottom >> 3)] >> (from_bottom & 7)) & 1;
            uint8_t m = (uint8_t)(0x80 >> (b & 7));
            addr[b >> 3] = (uint8_t)(bit ? addr[b >> 3] | m : addr[b >> 3] & ~m);
        }
        int o = 0;
        if (bits == 32) {
            o = sprintf(out, "%u.%u.%u.%u", addr[0], addr[1], addr[2], addr[3]);
        } else {
            int best = -1, best_len = 1;
            for (int k = 0; k < 8; k++)
                g[k] = (uint16_t)((addr[2 * k] << 8) | addr[2 * k + 1]);
            for (int k = 0; k < 8;) {
                int j = k;
                while (j < 8 && g[j] == 0)
                    j++;
                if (j - k > best_len) {
                    best = k;
                    best_len = j - k;
                }
                k = j == k ? k + 1 : j;
            }
            for (int k = 0; k < 8; k++) {
                if (k == best) {
                    o += sprintf(out + o, "::");
                    k += best_len - 1;
                    continue;
                }
                if (k > 0 && k != best + best_len)
                    out[o++] = ':';
                o += sprintf(out + o, "%x", g[k]);
            }
        }
        if (slash)
            o += sprintf(out + o, "/%d", mask);
        return o;
    }
    """
    int CF_BAD_IP
    long cf_ip(const uint8_t* v, size_t n, const uint8_t* digest, int keep4, int keep6, char* out) nogil


cdef int ip_apply(const FieldSpec* spec, const uint8_t* v, size_t vn, const uint8_t* h, OutBuf* tmp,
                  OutBuf* dst) noexcept nogil:
    cdef long r = cf_ip(v, vn, h, <int>spec.a, <int>spec.b, dst.data + dst.len)
    if r < 0:
        return <int>r
    dst.len += r
    return 0


cdef int ip_setup(Rewriter rw, FieldSpec* spec, rule) except -1:
    spec.a, spec.b = rule.params.prefix, rule.params.prefix_v6
    return 0


problem(CF_BAD_IP, "not an IP address")
register("ip", 0, ip_apply, ip_setup, NULL)
