/* Byte scanners for the rewriter's per-row fast path: 16 bytes a step with SSE2 on x86-64,
 * a plain loop elsewhere. */
#ifndef CONFITURE_FAST_SCAN_H
#define CONFITURE_FAST_SCAN_H

#include <stddef.h>
#include <stdint.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* Finds the TABs of a row (n bytes, newline excluded). Stores the first `max` offsets in pos and
 * returns how many there are. *suspect is set when a TAB or the row's end directly follows a
 * backslash: only then can a separator be escaped, and the caller takes its careful path. */
static inline size_t cf_find_tabs(const char *s, size_t n, size_t *pos, size_t max, int *suspect) {
    size_t count = 0, i = 0;
    int sus = n > 0 && s[n - 1] == '\\';
#if defined(__SSE2__)
    const __m128i tab = _mm_set1_epi8('\t'), bsl = _mm_set1_epi8('\\');
    unsigned prev_bs = 0;
    for (; i + 16 <= n; i += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(s + i));
        unsigned mt = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, tab));
        unsigned mb = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, bsl));
        if (mt & ((mb << 1) | prev_bs))
            sus = 1;
        prev_bs = mb >> 15;
        while (mt) {
            if (count < max)
                pos[count] = i + (size_t)__builtin_ctz(mt);
            count++;
            mt &= mt - 1;
        }
    }
#endif
    for (; i < n; i++) {
        if (s[i] == '\t') {
            if (i > 0 && s[i - 1] == '\\')
                sus = 1;
            if (count < max)
                pos[count] = i;
            count++;
        }
    }
    *suspect = sus;
    return count;
}

/* True when a field is plain: only ASCII, no backslash and no NUL. Such a value needs neither
 * unescaping nor UTF-8 validation. */
static inline int cf_is_plain(const char *s, size_t n) {
    size_t i = 0;
#if defined(__SSE2__)
    const __m128i bsl = _mm_set1_epi8('\\'), zero = _mm_setzero_si128();
    for (; i + 16 <= n; i += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(s + i));
        __m128i bad = _mm_or_si128(_mm_cmpeq_epi8(v, bsl), _mm_cmpeq_epi8(v, zero));
        if (_mm_movemask_epi8(_mm_or_si128(bad, v)))
            return 0;
    }
#endif
    for (; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\\' || c == 0 || c >= 0x80)
            return 0;
    }
    return 1;
}

#endif
