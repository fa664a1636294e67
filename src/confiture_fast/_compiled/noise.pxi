# The compiled part of the noise strategy (strategies/typed.py). Included by _anon.pyx.

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
