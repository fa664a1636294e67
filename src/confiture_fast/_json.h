/* JSON pieces for the json strategy: strings (read and written the way PostgreSQL writes them),
 * numbers and white space. tests/anon_ref.py has the Python definitions these must match. */
#ifndef CONFITURE_FAST_JSON_H
#define CONFITURE_FAST_JSON_H

#include <stddef.h>
#include <stdint.h>

#define CF_JSON_BAD ((size_t)-1)

static inline size_t cf_json_ws(const uint8_t *s, size_t n, size_t i) {
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
        i++;
    return i;
}

static int cf_json_hex4(const uint8_t *s, size_t n, size_t i, unsigned *out) {
    unsigned v = 0;
    if (i + 4 > n)
        return -1;
    for (size_t k = i; k < i + 4; k++) {
        uint8_t c = s[k];
        int h = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (h < 0)
            return -1;
        v = v * 16 + (unsigned)h;
    }
    *out = v;
    return 0;
}

/* Reads the JSON string at s[i] == '"'. Returns the index after its closing quote, or CF_JSON_BAD.
 * With dst (n bytes of room), the unescaped bytes go there and their count to *dlen. */
static size_t cf_json_string(const uint8_t *s, size_t n, size_t i, char *dst, size_t *dlen) {
    size_t o = 0;
    for (i++;;) {
        if (i >= n || s[i] < 0x20)
            return CF_JSON_BAD;
        uint8_t c = s[i];
        if (c == '"')
            break;
        if (c != '\\') {
            if (dst)
                dst[o] = (char)c;
            o++;
            i++;
            continue;
        }
        if (i + 1 >= n)
            return CF_JSON_BAD;
        uint8_t e = s[i + 1];
        uint8_t simple = e == 'b' ? 8 : e == 'f' ? 12 : e == 'n' ? 10 : e == 'r' ? 13 : e == 't' ? 9
                       : (e == '"' || e == '\\' || e == '/') ? e : 0;
        if (simple) {
            if (dst)
                dst[o] = (char)simple;
            o++;
            i += 2;
            continue;
        }
        unsigned code, low;
        if (e != 'u' || cf_json_hex4(s, n, i + 2, &code) < 0)
            return CF_JSON_BAD;
        i += 6;
        if (code >= 0xD800 && code < 0xDC00) {
            if (i + 1 >= n || s[i] != '\\' || s[i + 1] != 'u' || cf_json_hex4(s, n, i + 2, &low) < 0 ||
                low < 0xDC00 || low >= 0xE000)
                return CF_JSON_BAD;
            i += 6;
            code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
        } else if ((code >= 0xDC00 && code < 0xE000) || code == 0) {
            return CF_JSON_BAD;
        }
        /* UTF-8: never longer than the 6 or 12 escape bytes it came from */
        if (dst) {
            if (code < 0x80) {
                dst[o] = (char)code;
            } else if (code < 0x800) {
                dst[o] = (char)(0xC0 | (code >> 6));
                dst[o + 1] = (char)(0x80 | (code & 0x3F));
            } else if (code < 0x10000) {
                dst[o] = (char)(0xE0 | (code >> 12));
                dst[o + 1] = (char)(0x80 | ((code >> 6) & 0x3F));
                dst[o + 2] = (char)(0x80 | (code & 0x3F));
            } else {
                dst[o] = (char)(0xF0 | (code >> 18));
                dst[o + 1] = (char)(0x80 | ((code >> 12) & 0x3F));
                dst[o + 2] = (char)(0x80 | ((code >> 6) & 0x3F));
                dst[o + 3] = (char)(0x80 | (code & 0x3F));
            }
        }
        o += code < 0x80 ? 1 : code < 0x800 ? 2 : code < 0x10000 ? 3 : 4;
    }
    if (dlen)
        *dlen = o;
    return i + 1;
}

/* The end of the JSON number at s[i], or CF_JSON_BAD: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
static size_t cf_json_number(const uint8_t *s, size_t n, size_t i) {
#define CF_D(k) ((k) < n && s[k] >= '0' && s[k] <= '9')
    if (i < n && s[i] == '-')
        i++;
    if (!CF_D(i))
        return CF_JSON_BAD;
    if (s[i] == '0')
        i++;
    else
        while (CF_D(i))
            i++;
    if (i < n && s[i] == '.' && CF_D(i + 1))
        for (i++; CF_D(i); i++) {}
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        size_t k = i + 1;
        if (k < n && (s[k] == '+' || s[k] == '-'))
            k++;
        if (CF_D(k))
            for (i = k; CF_D(i); i++) {}
    }
    return i;
#undef CF_D
}

/* Writes s as a JSON string the way PostgreSQL's json output does; dst needs 6 * n + 2 bytes. */
static size_t cf_json_quote(const char *s, size_t n, char *dst) {
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    dst[o++] = '"';
    for (size_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)s[i];
        char e = c == '"' ? '"' : c == '\\' ? '\\' : c == 8 ? 'b' : c == 12 ? 'f' : c == 10 ? 'n'
               : c == 13 ? 'r' : c == 9 ? 't' : 0;
        if (e) {
            dst[o++] = '\\';
            dst[o++] = e;
        } else if (c < 0x20) {
            dst[o++] = '\\';
            dst[o++] = 'u';
            dst[o++] = '0';
            dst[o++] = '0';
            dst[o++] = hex[c >> 4];
            dst[o++] = hex[c & 15];
        } else {
            dst[o++] = (char)c;
        }
    }
    dst[o++] = '"';
    return o;
}

#endif
