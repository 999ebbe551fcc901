/* compile-me.c: a program for the compiler to chew on in tests/suites/40-programs.sh.
 *
 * gcc -O2 compiles it with and without libmclone preloaded; the object
 * files and the program's output must be the same.  It has enough
 * functions, loops, inlining and constant folding to keep the optimiser's
 * data structures busy, and prints a deterministic result. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- A hash table of words ---- */
struct entry {
    char *key;
    unsigned count;
    struct entry *next;
};

struct table {
    struct entry **buckets;
    size_t nbuckets, size;
};

static uint32_t hash(const char *s) {
    uint32_t h = 2166136261u;
    while (*s) h = (h ^ (unsigned char)*s++) * 16777619u;
    return h;
}

static void table_grow(struct table *t) {
    size_t n = t->nbuckets ? t->nbuckets * 2 : 64;
    struct entry **b = calloc(n, sizeof *b);
    for (size_t i = 0; i < t->nbuckets; i++) {
        struct entry *e = t->buckets[i];
        while (e) {
            struct entry *next = e->next;
            size_t k = hash(e->key) & (n - 1);
            e->next = b[k];
            b[k] = e;
            e = next;
        }
    }
    free(t->buckets);
    t->buckets = b;
    t->nbuckets = n;
}

static void table_add(struct table *t, const char *key) {
    if (t->size >= t->nbuckets * 3 / 4) table_grow(t);
    size_t k = hash(key) & (t->nbuckets - 1);
    for (struct entry *e = t->buckets[k]; e; e = e->next)
        if (strcmp(e->key, key) == 0) {
            e->count++;
            return;
        }
    struct entry *e = malloc(sizeof *e);
    e->key = strdup(key);
    e->count = 1;
    e->next = t->buckets[k];
    t->buckets[k] = e;
    t->size++;
}

static int by_count(const void *a, const void *b) {
    const struct entry *x = *(const struct entry *const *)a, *y = *(const struct entry *const *)b;
    if (x->count != y->count) return x->count < y->count ? 1 : -1;
    return strcmp(x->key, y->key);
}

/* ---- A tiny stack machine ---- */
enum op { PUSH, ADD, MUL, DUP, SWAP, ROT, JNZ, DEC, HALT };
struct insn {
    enum op op;
    long arg;
};

static long run(const struct insn *code, long input) {
    long stack[64];
    int sp = 0;
    stack[sp++] = input;
    for (int pc = 0;; pc++) {
        switch (code[pc].op) {
        case PUSH:
            stack[sp++] = code[pc].arg;
            break;
        case ADD:
            sp--;
            stack[sp - 1] += stack[sp];
            break;
        case MUL:
            sp--;
            stack[sp - 1] *= stack[sp];
            break;
        case DUP:
            stack[sp] = stack[sp - 1];
            sp++;
            break;
        case SWAP: {
            long t = stack[sp - 1];
            stack[sp - 1] = stack[sp - 2];
            stack[sp - 2] = t;
            break;
        }
        case ROT: { /* a b c -> b c a */
            long a = stack[sp - 3];
            stack[sp - 3] = stack[sp - 2];
            stack[sp - 2] = stack[sp - 1];
            stack[sp - 1] = a;
            break;
        }
        case DEC:
            stack[sp - 1]--;
            break;
        case JNZ:
            if (stack[--sp]) pc = (int)code[pc].arg - 1;
            break;
        case HALT:
            return stack[sp - 1];
        }
    }
}

/* ---- Matrices ---- */
static void matmul(int n, const double *a, const double *b, double *c) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int k = 0; k < n; k++) s += a[i * n + k] * b[k * n + j];
            c[i * n + j] = s;
        }
}

int main(void) {
    struct table t = {0};
    char word[16];
    uint32_t x = 12345;
    for (int i = 0; i < 200000; i++) {
        x = x * 1103515245u + 12345u;
        int len = 1 + (x >> 28) % 4;
        for (int k = 0; k < len; k++) {
            x = x * 1103515245u + 12345u;
            word[k] = (char)('a' + (x >> 24) % 6);
        }
        word[len] = '\0';
        table_add(&t, word);
    }
    struct entry **all = malloc(t.size * sizeof *all);
    size_t n = 0;
    for (size_t i = 0; i < t.nbuckets; i++)
        for (struct entry *e = t.buckets[i]; e; e = e->next) all[n++] = e;
    qsort(all, n, sizeof *all, by_count);
    printf("%zu distinct words; top:", n);
    for (size_t i = 0; i < 5 && i < n; i++) printf(" %s=%u", all[i]->key, all[i]->count);
    printf("\n");

    /* n! with a loop: the stack holds acc n */
    static const struct insn fact[] = {
        {PUSH, 1}, {SWAP, 0}, {DUP, 0},  {JNZ, 6}, {ADD, 0},  {HALT, 0}, {DUP, 0},
        {ROT, 0},  {MUL, 0},  {SWAP, 0}, {DEC, 0}, {PUSH, 1}, {JNZ, 2},
    };
    printf("machine: %ld %ld %ld\n", run(fact, 0), run(fact, 5), run(fact, 20));

    enum { N = 48 };
    double *a = malloc(N * N * sizeof *a), *b = malloc(N * N * sizeof *b),
           *c = malloc(N * N * sizeof *c);
    for (int i = 0; i < N * N; i++) {
        a[i] = (i % 7) - 3;
        b[i] = (i % 5) * 0.5;
    }
    matmul(N, a, b, c);
    double trace = 0;
    for (int i = 0; i < N; i++) trace += c[i * N + i];
    printf("trace: %.3f\n", trace);
    for (size_t i = 0; i < n; i++) {
        free(all[i]->key);
        free(all[i]);
    }
    free(all);
    free(t.buckets);
    free(a);
    free(b);
    free(c);
    return 0;
}
