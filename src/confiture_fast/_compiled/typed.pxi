# The compiled part of the typed strategies (strategies/typed.py): date_shift, noise and ip, which read
# and write the text form of particular types. Included by _anon.pyx.

# -- date_shift ------------------------------------------------------------------------------------
cdef extern from *:
    r"""
    #include <stdio.h>
    #include <string.h>
    #include "_compiled/_text.h"

    /* Negative results: the value is not of the form date_shift reads. */
    #define CF_BAD_DATE (-2)
    #define CF_BAD_CALENDAR (-3)

    /* Proleptic Gregorian calendar <-> days since 1970-01-01, for any year (H. Hinnant's method). */
    static long long cf_days_from_civil(long long y, int m, int d) {
        y -= m <= 2;
        long long era = (y >= 0 ? y : y - 399) / 400;
        long long yoe = y - era * 400;
        long long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
        long long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        return era * 146097 + doe - 719468;
    }

    static void cf_civil_from_days(long long z, long long *y, int *m, int *d) {
        z += 719468;
        long long era = (z >= 0 ? z : z - 146096) / 146097;
        long long doe = z - era * 146097;
        long long yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
        long long doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        long long mp = (5 * doy + 2) / 153;
        *d = (int)(doy - (153 * mp + 2) / 5 + 1);
        *m = (int)(mp < 10 ? mp + 3 : mp - 9);
        *y = yoe + era * 400 + (*m <= 2);
    }

    static int cf_days_in_month(long long y, int m) {
        static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
        int leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
        return m == 2 ? 28 + leap : days[m - 1];
    }

    /* date_shift: moves the date of an ISO date/timestamp[tz] text by `shift` days; the time, zone and
     * the infinities stay. out: n + 16 bytes. */
    static long cf_date_shift(const uint8_t *v, size_t n, long long shift, char *out) {
        size_t i = 0, end = n;
        long long year = 0, y2;
        int month, day, m2, d2, bc = 0;
        if ((n == 8 && memcmp(v, "infinity", 8) == 0) || (n == 9 && memcmp(v, "-infinity", 9) == 0)) {
            memcpy(out, v, n);
            return (long)n;
        }
        for (; i < n && cf_digit(v[i]); i++) {
            if (i == 7)
                return CF_BAD_DATE;
            year = year * 10 + (v[i] - '0');
        }
        if (i < 4 || n - i < 6 || v[i] != '-' || !cf_digit(v[i + 1]) || !cf_digit(v[i + 2]) || v[i + 3] != '-' ||
            !cf_digit(v[i + 4]) || !cf_digit(v[i + 5]))
            return CF_BAD_DATE;
        month = (v[i + 1] - '0') * 10 + (v[i + 2] - '0');
        day = (v[i + 4] - '0') * 10 + (v[i + 5] - '0');
        i += 6;
        if (end - i >= 3 && memcmp(v + end - 3, " BC", 3) == 0) {
            bc = 1;
            end -= 3;
        }
        if (i < end) {  /* the time and zone: [ T][0-9:.+-]* */
            if (v[i] != ' ' && v[i] != 'T')
                return CF_BAD_DATE;
            for (size_t j = i + 1; j < end; j++)
                if (!cf_digit(v[j]) && v[j] != ':' && v[j] != '.' && v[j] != '+' && v[j] != '-')
                    return CF_BAD_DATE;
        }
        if (bc)
            year = 1 - year;  /* astronomical numbering: 1 BC is year 0 */
        if (month < 1 || month > 12 || day < 1 || day > cf_days_in_month(year, month))
            return CF_BAD_CALENDAR;
        cf_civil_from_days(cf_days_from_civil(year, month, day) + shift, &y2, &m2, &d2);
        int o = sprintf(out, "%04lld-%02d-%02d", y2 <= 0 ? 1 - y2 : y2, m2, d2);
        memcpy(out + o, v + i, end - i);
        o += (int)(end - i);
        if (y2 <= 0) {
            memcpy(out + o, " BC", 3);
            o += 3;
        }
        return o;
    }
    """
    int CF_BAD_DATE, CF_BAD_CALENDAR
    long cf_date_shift(const uint8_t* v, size_t n, long long shift, char* out) nogil


cdef int date_shift_apply(const FieldSpec* spec, const uint8_t* v, size_t vn, const uint8_t* h, OutBuf* tmp,
                          OutBuf* dst) noexcept nogil:
    """A shift in [-days, -1] or [1, days]: never 0, so no date keeps its true value."""
    cdef uint64_t x = cf_load64le(h) % <uint64_t>(2 * spec.a)
    cdef long long shift = <long long>x - spec.a if <long long>x < spec.a else <long long>x - spec.a + 1
    cdef long r = cf_date_shift(v, vn, shift, dst.data + dst.len)
    if r < 0:
        return <int>r
    dst.len += r
    return 0


cdef int date_shift_setup(Rewriter rw, FieldSpec* spec, rule) except -1:
    spec.a = rule.params.days
    return 0


problem(CF_BAD_DATE, "not an ISO date or timestamp (set DateStyle to ISO)")
problem(CF_BAD_CALENDAR, "not a valid calendar date")
register("date_shift", 0, date_shift_apply, date_shift_setup, NULL)


# -- noise -----------------------------------------------------------------------------------------
cdef extern from *:
    r"""
    #include <math.h>
    #include <stdio.h>
    #include <stdlib.h>
    #include <string.h>
    #include "_compiled/_text.h"
    #include "_siphash.h"

    /* Negative results: not a number noise reads, or no room for the result. */
    #define CF_BAD_NUMBER (-4)
    #define CF_TOO_LARGE (-5)

    /* noise: value + bound * r with r uniform in [-1, 1) from the digest, printed with the input's
     * number of decimals. The result never needs more integer digits than the input, and an integer
     * stays within the smallest of the int2/int4/int8 ranges that holds it, so the value still fits its
     * column: past the limit the noise goes the other way, and is clamped if that is out too.
     * NaN and the infinities stay. tmp: n + 2 bytes; out: n + 400 bytes. */
    static long cf_noise(const uint8_t *v, size_t n, const uint8_t *digest, int relative, double param,
                         char *tmp, char *out, size_t cap) {
        static const double int_limits[3] = {32767.0, 2147483647.0, 9223372036854774784.0};
        size_t i = 0, first, scale = 0, int_digits;
        if ((n == 3 && memcmp(v, "NaN", 3) == 0) || (n == 8 && memcmp(v, "Infinity", 8) == 0) ||
            (n == 9 && memcmp(v, "-Infinity", 9) == 0)) {
            memcpy(out, v, n);
            return (long)n;
        }
        if (i < n && v[i] == '-')
            i++;
        for (first = i; i < n && cf_digit(v[i]); i++) {}
        if (i == first)
            return CF_BAD_NUMBER;
        int_digits = i - first;
        while (int_digits > 1 && v[first] == '0') {
            first++;
            int_digits--;
        }
        if (i < n && v[i] == '.') {
            size_t start = ++i;
            for (; i < n && cf_digit(v[i]); i++) {}
            scale = i - start;
            if (scale == 0)
                return CF_BAD_NUMBER;
        }
        if (i != n)
            return CF_BAD_NUMBER;
        memcpy(tmp, v, n);
        tmp[n] = '\0';
        double x = strtod(tmp, NULL);
        /* The largest magnitude with the input's digits: 99...9.99...9 */
        memset(tmp, '9', int_digits + 1 + scale);
        tmp[int_digits] = '.';
        tmp[int_digits + 1 + scale] = '\0';
        double limit = strtod(tmp, NULL);
        if (scale == 0)
            for (int k = 0; k < 3; k++)
                if (fabs(x) <= int_limits[k]) {
                    limit = fmin(limit, int_limits[k]);
                    break;
                }
        double r = (double)(cf_load64le(digest) >> 11) / 4503599627370496.0 - 1.0;
        double bound = relative ? fabs(x) * param : param;
        volatile double delta = bound * r;  /* no fused multiply-add: the Python reference has none */
        double y = x + delta;
        if (fabs(y) > limit)
            y = x - delta;
        if (fabs(y) > limit)
            y = copysign(limit, y);
        if (!isfinite(y))
            return CF_TOO_LARGE;
        int len = snprintf(out, cap, "%.*f", (int)scale, y);
        if (len < 0 || (size_t)len >= cap)
            return CF_TOO_LARGE;
        if (out[0] == '-' && strspn(out + 1, "0.") == (size_t)(len - 1)) {  /* no negative zero */
            memmove(out, out + 1, (size_t)len);
            len--;
        }
        return len;
    }
    """
    int CF_BAD_NUMBER, CF_TOO_LARGE
    long cf_noise(const uint8_t* v, size_t n, const uint8_t* digest, int relative, double param, char* tmp,
                  char* out, size_t cap) nogil


cdef int noise_apply(const FieldSpec* spec, const uint8_t* v, size_t vn, const uint8_t* h, OutBuf* tmp,
                     OutBuf* dst) noexcept nogil:
    cdef long r
    if outbuf_reserve(tmp, vn + 2) < 0:
        return OUT_NOMEM
    r = cf_noise(v, vn, h, <int>spec.b, spec.x, tmp.data, dst.data + dst.len, vn + 400)
    if r < 0:
        return <int>r
    dst.len += r
    return 0


cdef int noise_setup(Rewriter rw, FieldSpec* spec, rule) except -1:
    p = rule.params
    spec.b = p.relative is not None
    spec.x = p.relative if p.relative is not None else p.absolute
    return 0


problem(CF_BAD_NUMBER, "not a plain decimal number")
problem(CF_TOO_LARGE, "value too large for noise")
register("noise", F_NUMBER, noise_apply, noise_setup, NULL)


# -- ip --------------------------------------------------------------------------------------------
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
