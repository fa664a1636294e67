# The compiled part of the date_shift strategy (strategies/typed.py). Included by _anon.pyx.

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
