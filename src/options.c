/* options.c: run-time options.  Each has a default, an environment variable
 * MCLONE_<NAME> read once at start-up straight from environ (getenv may not
 * be safe this early, and must not be called from inside malloc), and
 * mc_option_get/mc_option_set for programs. */
#include <limits.h>
#include <strings.h>

#include "internal.h"

typedef struct {
    const char *name; /* after the MCLONE_ prefix */
    long def, min, max;
} mc_option_desc_t;

static const mc_option_desc_t option_desc[MC_OPTION_COUNT] = {
    [MC_OPTION_PURGE_DELAY_MS] = {"PURGE_DELAY_MS", MC_PURGE_DELAY_MS_DEFAULT, -1, 3600 * 1000},
    [MC_OPTION_PURGE_MADV_FREE] = {"PURGE_MADV_FREE", 0, 0, 1},
    [MC_OPTION_SEGMENT_CACHE] = {"SEGMENT_CACHE", MC_SEGMENT_CACHE_DEFAULT, 0, 1024},
    [MC_OPTION_VERBOSE] = {"VERBOSE", 0, 0, 1},
    [MC_OPTION_SHOW_STATS] = {"SHOW_STATS", 0, 0, 2},
    [MC_OPTION_ABORT_ON_ERROR] = {"ABORT_ON_ERROR", 1, 0, 1},
    [MC_OPTION_QUARANTINE_KB] = {"QUARANTINE_KB", MC_QUARANTINE_KB_DEFAULT, 0, 1 << 20},
};

long _mc_options[MC_OPTION_COUNT] = {
    [MC_OPTION_PURGE_DELAY_MS] = MC_PURGE_DELAY_MS_DEFAULT,
    [MC_OPTION_SEGMENT_CACHE] = MC_SEGMENT_CACHE_DEFAULT,
    [MC_OPTION_ABORT_ON_ERROR] = 1,
    [MC_OPTION_QUARANTINE_KB] = MC_QUARANTINE_KB_DEFAULT,
};

/* A decimal integer (optionally negative), or yes/no, true/false, on/off. */
static bool parse_value(const char *s, long *out) {
    static const struct {
        const char *word;
        long value;
    } words[] = {{"yes", 1}, {"true", 1}, {"on", 1}, {"no", 0}, {"false", 0}, {"off", 0}};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
        size_t n = strlen(words[i].word);
        if (strncasecmp(s, words[i].word, n) == 0 && s[n] == '\0') {
            *out = words[i].value;
            return true;
        }
    }
    bool neg = *s == '-';
    if (neg) s++;
    if (*s == '\0') return false;
    long v = 0;
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9' || v > (LONG_MAX - 9) / 10) return false;
        v = v * 10 + (*s - '0');
    }
    *out = neg ? -v : v;
    return true;
}

void _mc_options_init(void) {
    char **env = _mc_os_environ();
    if (env == NULL) return;
    for (; *env != NULL; env++) {
        const char *e = *env;
        if (strncmp(e, "MCLONE_", 7) != 0) continue;
        e += 7;
        for (int o = 0; o < MC_OPTION_COUNT; o++) {
            size_t n = strlen(option_desc[o].name);
            if (strncmp(e, option_desc[o].name, n) != 0 || e[n] != '=') continue;
            long v;
            if (parse_value(e + n + 1, &v) && v >= option_desc[o].min && v <= option_desc[o].max)
                _mc_options[o] = v;
            else
                _mc_message("mclone: ignoring MCLONE_%s=%s (expected a number from %d to %d)",
                            option_desc[o].name, e + n + 1, (int)option_desc[o].min,
                            (int)option_desc[o].max);
        }
    }
}

mc_export long mc_option_get(mc_option_t option) {
    if ((unsigned)option >= MC_OPTION_COUNT) return -1;
    return _mc_options[option];
}

mc_export int mc_option_set(mc_option_t option, long value) {
    if ((unsigned)option >= MC_OPTION_COUNT) return EINVAL;
    if (value < option_desc[option].min || value > option_desc[option].max) return EINVAL;
    __atomic_store_n(&_mc_options[option], value, __ATOMIC_RELAXED);
    return 0;
}
