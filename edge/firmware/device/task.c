/* The TASK parser of the device; see task.h for the contract, edge/wire/control.py and edge/round_contract.py
 * for the reference it is tested equal to (tests/edge/test_firmware_device_task.py). */
#include "task.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const CODES[TF_TASK_N_ERRORS] = {
    "ok", "oversized", "bad-json", "bad-field", "unsupported-version", "bad-name", "too-many", "non-finite",
    "spec-mismatch",
};

const char *tf_task_error_code(tf_task_status_t s) { return (unsigned)s < TF_TASK_N_ERRORS ? CODES[s] : "unknown"; }

/* ------------------------------------------------------------------ strict JSON */

enum { J_STR, J_INT, J_FLOAT, J_TRUE, J_FALSE, J_NULL, J_ARRAY, J_OBJECT };

typedef struct {
    int type;
    const char *at;  /* first byte of the token (the opening quote of a string) */
    const char *end; /* one past its last byte */
    double num;      /* J_INT, J_FLOAT */
    int big;         /* J_INT beyond +-2^53 */
} jval;

typedef struct {
    const char *p, *end;
} jcur;

static void ws(jcur *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) c->p++;
}

static int hex4(const char *p, uint32_t *v) {
    *v = 0;
    for (int i = 0; i < 4; i++) {
        char h = p[i];
        uint32_t d = (h >= '0' && h <= '9') ? (uint32_t)(h - '0') : (h >= 'a' && h <= 'f') ? (uint32_t)(h - 'a' + 10)
                   : (h >= 'A' && h <= 'F') ? (uint32_t)(h - 'A' + 10) : 99u;
        if (d > 15) return 0;
        *v = *v * 16 + d;
    }
    return 1;
}

/* One UTF-8 character at p (strict: shortest form, no surrogates, <= U+10FFFF); its length, 0 if invalid. */
static int utf8(const unsigned char *p, const unsigned char *end, uint32_t *cp) {
    unsigned char b = p[0];
    int n = b < 0x80 ? 1 : (b & 0xE0) == 0xC0 ? 2 : (b & 0xF0) == 0xE0 ? 3 : (b & 0xF8) == 0xF0 ? 4 : 0;
    if (n == 0 || end - p < n) return 0;
    uint32_t v = n == 1 ? b : n == 2 ? (b & 0x1Fu) : n == 3 ? (b & 0x0Fu) : (b & 0x07u);
    for (int i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80) return 0;
        v = (v << 6) | (p[i] & 0x3Fu);
    }
    static const uint32_t MIN[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (v < MIN[n] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return n;
}

/* Next character of a validated string token (p inside the quotes): its code point, or -1 at the closing
 * quote. Escaped surrogate pairs give one character, as Python's json does. */
static long jstr_next(const char **p) {
    const char *s = *p;
    if (*s == '"') return -1;
    if (*s != '\\') {
        uint32_t cp;
        int n = utf8((const unsigned char *)s, (const unsigned char *)s + 4, &cp);
        *p = s + (n ? n : 1);
        return (long)cp;
    }
    char e = s[1];
    *p = s + 2;
    switch (e) {
        case 'b': return '\b';
        case 'f': return '\f';
        case 'n': return '\n';
        case 'r': return '\r';
        case 't': return '\t';
        case 'u': break;
        default: return (unsigned char)e; /* " \ / */
    }
    uint32_t hi, lo;
    hex4(s + 2, &hi);
    *p = s + 6;
    if (hi >= 0xD800 && hi <= 0xDBFF && s[6] == '\\' && s[7] == 'u' && hex4(s + 8, &lo) && lo >= 0xDC00 && lo <= 0xDFFF) {
        *p = s + 12;
        return (long)(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00));
    }
    return (long)hi;
}

static int jstr_equal(const jval *a, const jval *b) {
    const char *p = a->at + 1, *q = b->at + 1;
    for (;;) {
        long x = jstr_next(&p), y = jstr_next(&q);
        if (x != y) return 0;
        if (x < 0) return 1;
    }
}

static int jstr_is(const jval *v, const char *literal) {
    if (v->type != J_STR) return 0;
    const char *p = v->at + 1;
    for (;; literal++) {
        long x = jstr_next(&p);
        if (x < 0) return *literal == '\0';
        if (*literal == '\0' || x != (unsigned char)*literal) return 0;
    }
}

static size_t jstr_length(const jval *v) {
    size_t n = 0;
    const char *p = v->at + 1;
    while (jstr_next(&p) >= 0) n++;
    return n;
}

static int parse_string(jcur *c, jval *v) {
    v->type = J_STR;
    v->at = c->p++;
    while (c->p < c->end) {
        unsigned char ch = (unsigned char)*c->p;
        if (ch == '"') {
            v->end = ++c->p;
            return 1;
        }
        if (ch < 0x20) return 0;
        if (ch == '\\') {
            if (c->end - c->p < 2) return 0;
            char e = c->p[1];
            if (e == 'u') {
                uint32_t h;
                if (c->end - c->p < 6 || !hex4(c->p + 2, &h)) return 0;
                c->p += 6;
            } else if (e == '"' || e == '\\' || e == '/' || e == 'b' || e == 'f' || e == 'n' || e == 'r' || e == 't') {
                c->p += 2;
            } else {
                return 0;
            }
            continue;
        }
        uint32_t cp;
        int n = utf8((const unsigned char *)c->p, (const unsigned char *)c->end, &cp);
        if (!n) return 0;
        c->p += n;
    }
    return 0;
}

static int digits(jcur *c) {
    const char *start = c->p;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') c->p++;
    return c->p > start;
}

static int parse_number(jcur *c, jval *v) {
    v->at = c->p;
    if (*c->p == '-') c->p++;
    if (c->p >= c->end) return 0;
    const char *int_start = c->p;
    if (*c->p == '0') c->p++;
    else if (!digits(c)) return 0;
    size_t int_digits = (size_t)(c->p - int_start);
    v->type = J_INT;
    if (c->p < c->end && *c->p == '.') {
        c->p++;
        if (!digits(c)) return 0;
        v->type = J_FLOAT;
    }
    if (c->p < c->end && (*c->p == 'e' || *c->p == 'E')) {
        c->p++;
        if (c->p < c->end && (*c->p == '+' || *c->p == '-')) c->p++;
        if (!digits(c)) return 0;
        v->type = J_FLOAT;
    }
    v->end = c->p;
    /* the token is a valid JSON number followed by a non-number byte (the document ends with '}'),
     * so strtod reads exactly it */
    v->num = strtod(v->at, NULL);
    /* |int| <= 2^53 exactly: strtod rounds 2^53 + 1 down, so compare the digits */
    v->big = v->type == J_INT && (int_digits > 16 || (int_digits == 16 && memcmp(int_start, "9007199254740992", 16) > 0));
    return 1;
}

/* Keys of the objects being parsed, as offsets into the document, innermost object's last: each new key is
 * compared with its own object's earlier keys only (duplicates refused at any depth, as Python's json with
 * object_pairs_hook). A key takes at least 5 bytes ("":0,), so a 4 KiB document has at most 819. Static: the
 * parser is not reentrant (one TASK at a time on a device). */
static uint16_t key_at[TF_TASK_MAX_BYTES / 5 + 1];
static uint8_t key_hash[TF_TASK_MAX_BYTES / 5 + 1]; /* of the decoded key: most pairs differ here, cheaply */
static unsigned key_top;
static const char *doc_base;

static uint8_t hash_of(const jval *key) {
    uint32_t h = 2166136261u;
    const char *p = key->at + 1;
    for (long ch; (ch = jstr_next(&p)) >= 0;) h = (h ^ (uint32_t)ch) * 16777619u;
    return (uint8_t)(h ^ (h >> 8) ^ (h >> 16) ^ (h >> 24));
}

static int duplicate_key(unsigned first, const jval *key, uint8_t hash) {
    for (unsigned i = first; i < key_top; i++) {
        if (key_hash[i] != hash) continue;
        jval earlier = {J_STR, doc_base + key_at[i], NULL, 0, 0};
        if (jstr_equal(&earlier, key)) return 1;
    }
    return 0;
}

/* depth < 0: skip a value already validated (no duplicate checks, nothing recorded) */
static int parse_value(jcur *c, jval *v, int depth) {
    ws(c);
    if (c->p >= c->end) return 0;
    if (depth > TF_TASK_MAX_DEPTH) return 0;
    char ch = *c->p;
    v->at = c->p;
    if (ch == '"') return parse_string(c, v);
    if (ch == '-' || (ch >= '0' && ch <= '9')) return parse_number(c, v);
    static const char *const WORDS[3] = {"true", "false", "null"};
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(WORDS[i]);
        if ((size_t)(c->end - c->p) >= n && memcmp(c->p, WORDS[i], n) == 0) {
            c->p += n;
            v->type = i == 0 ? J_TRUE : i == 1 ? J_FALSE : J_NULL;
            v->end = c->p;
            return 1;
        }
    }
    if (ch != '{' && ch != '[') return 0;
    int object = ch == '{';
    char close = object ? '}' : ']';
    v->type = object ? J_OBJECT : J_ARRAY;
    c->p++;
    ws(c);
    if (c->p < c->end && *c->p == close) {
        v->end = ++c->p;
        return 1;
    }
    const unsigned first = key_top; /* this object's keys start here */
    for (;;) {
        jval item;
        ws(c);
        if (object) {
            if (c->p >= c->end || *c->p != '"' || !parse_string(c, &item)) return 0;
            if (depth >= 0) {
                uint8_t hash = hash_of(&item);
                if (duplicate_key(first, &item, hash) || key_top >= sizeof key_at / sizeof key_at[0]) return 0;
                key_hash[key_top] = hash;
                key_at[key_top++] = (uint16_t)(item.at - doc_base);
            }
            ws(c);
            if (c->p >= c->end || *c->p != ':') return 0;
            c->p++;
        }
        if (!parse_value(c, &item, depth < 0 ? depth : depth + 1)) return 0;
        ws(c);
        if (c->p >= c->end) return 0;
        if (*c->p == ',') {
            c->p++;
            continue;
        }
        if (*c->p != close) return 0;
        v->end = ++c->p;
        if (depth >= 0) key_top = first; /* the object is closed: its keys leave the stack */
        return 1;
    }
}

/* Members of a validated object, one at a time: 1 and (key, value), or 0 after the last. */
typedef struct {
    jcur c;
} jmembers;

static void members_begin(jmembers *m, const jval *object) {
    m->c.p = object->at + 1;
    m->c.end = object->end;
}

static int members_next(jmembers *m, jval *key, jval *value) {
    ws(&m->c);
    if (*m->c.p == '}') return 0;
    parse_string(&m->c, key);
    ws(&m->c);
    m->c.p++;
    parse_value(&m->c, value, -1);
    ws(&m->c);
    if (*m->c.p == ',') m->c.p++;
    return 1;
}

static int find(const jval *object, const char *name, jval *value) {
    jmembers m;
    jval k;
    members_begin(&m, object);
    while (members_next(&m, &k, value))
        if (jstr_is(&k, name)) return 1;
    return 0;
}

/* ------------------------------------------------------------------ the task's fields */

static int is_number(const jval *v) { return v->type == J_INT || v->type == J_FLOAT; }

static int name_ok(const jval *key) {
    size_t n = 0;
    const char *p = key->at + 1;
    for (long ch; (ch = jstr_next(&p)) >= 0; n++)
        if (ch < 0x21 || ch > 0x7E) return 0;
    return n > 0 && n <= 32;
}

/* _scalar_map of control.py over `hyperparameters` */
static tf_task_status_t check_scalars(const jval *map) {
    jmembers m;
    jval k, v;
    unsigned n = 0;
    members_begin(&m, map);
    while (members_next(&m, &k, &v)) n++;
    if (n > 32) return TF_TASK_TOO_MANY;
    members_begin(&m, map);
    while (members_next(&m, &k, &v)) {
        if (!name_ok(&k)) return TF_TASK_BAD_NAME;
        if (v.type == J_INT && v.big) return TF_TASK_BAD_FIELD;
        if (v.type == J_FLOAT && !isfinite(v.num)) return TF_TASK_NON_FINITE;
        if (v.type == J_STR && jstr_length(&v) > 128) return TF_TASK_BAD_FIELD;
        if (v.type == J_NULL || v.type == J_ARRAY || v.type == J_OBJECT) return TF_TASK_BAD_FIELD;
    }
    return TF_TASK_OK;
}

/* _count of round_contract.py: a whole number >= minimum (3.0 counts); absent = default */
static int count(const jval *map, const char *key, uint32_t fallback, uint32_t minimum, uint32_t *out) {
    jval v;
    if (!find(map, key, &v)) {
        *out = fallback;
        return fallback >= minimum;
    }
    if (!is_number(&v) || v.num != floor(v.num) || v.num < minimum || v.num > 4294967295.0) return 0;
    *out = (uint32_t)v.num;
    return 1;
}

/* _rate: finite in [0, 10] ((0, 10] if positive) */
static int rate(const jval *map, const char *key, double fallback, int positive, double *out) {
    jval v;
    if (!find(map, key, &v)) {
        *out = fallback;
        return fallback == fallback;
    }
    if (!is_number(&v) || !isfinite(v.num) || (positive ? !(v.num > 0) : !(v.num >= 0)) || v.num > 10.0) return 0;
    *out = v.num;
    return 1;
}

/* str.isspace() of Python, which str.strip() strips */
static int is_space(long ch) {
    return (ch >= 0x09 && ch <= 0x0D) || (ch >= 0x1C && ch <= 0x20) || ch == 0x85 || ch == 0xA0 || ch == 0x1680 ||
           (ch >= 0x2000 && ch <= 0x200A) || ch == 0x2028 || ch == 0x2029 || ch == 0x202F || ch == 0x205F || ch == 0x3000;
}

/* "w2, b2" -> tensor bits; parse_private_names strips each part (str.strip) and drops empty ones */
static tf_task_status_t private_names(const jval *v, uint32_t n_tensors, uint32_t *mask) {
    static const char *const NAMES[8] = {"w0", "b0", "w1", "b1", "w2", "b2", "w3", "b3"};
    const char *p = v->at + 1;
    long ch = jstr_next(&p);
    *mask = 0;
    while (ch >= 0) {
        long part[8]; /* longer than any weight name: such a part is unknown */
        size_t n = 0, kept = 0;
        for (; ch >= 0 && ch != ','; ch = jstr_next(&p)) {
            if (n == 0 && is_space(ch)) continue;
            if (n < 8) part[n] = ch;
            n++;
            if (!is_space(ch)) kept = n; /* the length once trailing spaces are stripped */
        }
        if (kept > 0) {
            uint32_t t = 0;
            for (; t < n_tensors && t < 8; t++) {
                size_t len = strlen(NAMES[t]), i = 0;
                if (kept != len) continue;
                while (i < len && part[i] == NAMES[t][i]) i++;
                if (i == len) break;
            }
            if (t == n_tensors || t == 8) return TF_TASK_SPEC_MISMATCH;
            *mask |= 1u << t;
        }
        if (ch == ',') ch = jstr_next(&p);
    }
    return TF_TASK_OK;
}

tf_task_status_t tf_task_parse(const char *json, size_t len, uint32_t n_tensors, tf_task_t *task) {
    if (len > TF_TASK_MAX_BYTES) return TF_TASK_OVERSIZED;
    jcur c = {json, json + len};
    jval doc, v, k;
    doc_base = json;
    key_top = 0;
    if (!parse_value(&c, &doc, 0)) return TF_TASK_BAD_JSON;
    ws(&c);
    if (c.p != c.end || doc.type != J_OBJECT) return TF_TASK_BAD_JSON;

    /* _exact_keys */
    static const char *const FIELDS[6] = {"v", "type", "round_id", "deadline_s", "hyperparameters", "top_p"};
    unsigned seen = 0;
    jmembers m;
    members_begin(&m, &doc);
    while (members_next(&m, &k, &v)) {
        unsigned f = 0;
        while (f < 6 && !jstr_is(&k, FIELDS[f])) f++;
        if (f == 6) return TF_TASK_BAD_FIELD;
        seen |= 1u << f;
    }
    if ((seen & 0x1F) != 0x1F) return TF_TASK_BAD_FIELD;
    find(&doc, "v", &v);
    if (v.type != J_INT || v.num != 1) return TF_TASK_BAD_VERSION;
    find(&doc, "type", &v);
    if (!jstr_is(&v, "task")) return TF_TASK_BAD_FIELD;
    find(&doc, "round_id", &v);
    if (v.type != J_INT || v.num < 0 || v.num > 4294967295.0) return TF_TASK_BAD_FIELD;
    task->round_id = (uint32_t)v.num;
    find(&doc, "deadline_s", &v);
    if (!is_number(&v) || !isfinite(v.num) || !(v.num > 0) || v.num > 86400.0) return TF_TASK_BAD_FIELD;
    task->deadline_s = v.num;
    jval hp;
    find(&doc, "hyperparameters", &hp);
    if (hp.type != J_OBJECT) return TF_TASK_BAD_FIELD;
    tf_task_status_t s = check_scalars(&hp);
    if (s != TF_TASK_OK) return s;
    jval top;
    int has_top = find(&doc, "top_p", &top) && top.type != J_NULL;
    if (has_top && (!is_number(&top) || !isfinite(top.num) || !(top.num > 0) || top.num > 1.0)) return TF_TASK_BAD_FIELD;

    /* RoundRequest.from_hyperparameters, the task's top_p standing for the "top-p" hyperparameter */
    if (find(&hp, "message-type", &v) && !jstr_is(&v, "train") && !jstr_is(&v, "evaluate")) return TF_TASK_BAD_FIELD;
    task->evaluate = find(&hp, "message-type", &v) && jstr_is(&v, "evaluate");
    jval names;
    int has_names = find(&hp, "private-names", &names);
    if (has_names && names.type != J_STR) return TF_TASK_BAD_FIELD;
    int imprint = 0;
    if (find(&hp, "reconstruction-rule", &v)) {
        if (!jstr_is(&v, "sgd") && !jstr_is(&v, "imprint")) return TF_TASK_BAD_FIELD;
        imprint = jstr_is(&v, "imprint");
    }
    if (!has_top) {
        has_top = find(&hp, "top-p", &top);
        if (has_top && (!is_number(&top) || !(top.num > 0) || top.num > 1.0)) return TF_TASK_BAD_FIELD;
    }
    task->top_p = has_top && top.num < 1.0 ? top.num : 0.0;
    uint32_t mask = 0;
    int any_private = 0;
    if (has_names) { /* any non-empty part makes a private part, even one this firmware lacks (checked below) */
        const char *p = names.at + 1;
        for (long ch; (ch = jstr_next(&p)) >= 0;)
            if (ch != ',' && !is_space(ch)) any_private = 1;
    }
    if (!count(&hp, "server-round", 0, 0, &task->server_round) || !count(&hp, "stream-samples", 10, 0, &task->shots) ||
        !count(&hp, "local-epochs", 1, 1, &task->epochs) || !count(&hp, "probe-samples", 0, 0, &task->probe) ||
        !rate(&hp, "inner-learning-rate", 0.02, 0, &task->learning_rate))
        return TF_TASK_BAD_FIELD;
    task->reconstruction_samples = 0;
    if (any_private && !count(&hp, "reconstruction-samples", 0, 0, &task->reconstruction_samples)) return TF_TASK_BAD_FIELD;
    if (!rate(&hp, "reconstruction-lr", 0.02, 0, &task->reconstruction_lr)) return TF_TASK_BAD_FIELD;
    int step_sizes = 0; /* StepSizeRequest.from_hyperparameters: any of its keys asks, and then all three must be right */
    double base = 0.0;
    uint32_t shots = 0, query = 0;
    if (find(&hp, "step-size-base-rate", &v) || find(&hp, "step-size-shots", &v) || find(&hp, "step-size-query", &v)) {
        if (!rate(&hp, "step-size-base-rate", NAN, 1, &base) || !count(&hp, "step-size-shots", 0, 1, &shots) ||
            !count(&hp, "step-size-query", 0, 1, &query))
            return TF_TASK_BAD_FIELD;
        step_sizes = 1;
    }
    task->radio = 1;
    if (find(&hp, "radio", &v)) {
        if (v.type != J_TRUE && v.type != J_FALSE) return TF_TASK_BAD_FIELD;
        task->radio = v.type == J_TRUE;
    }
    /* shared_spec: the private names must be weights of this firmware */
    if (has_names && (s = private_names(&names, n_tensors, &mask)) != TF_TASK_OK) return s;
    task->private_mask = mask;
    /* whether the learner can imprint (a classifier's output layer, exactly) is the round's check, after the
     * MODEL's, as run_device_round makes it (check_imprintable); with no private part the rule is unused */
    task->imprint = imprint && any_private;
    /* RoundRequest.measures_step_sizes: whole-model training rounds only (TinyMetaFed and evaluation ignore them) */
    task->measures_step_sizes = step_sizes && !any_private && !task->evaluate;
    task->step_size_base_rate = step_sizes ? base : 0.0;
    task->step_size_shots = shots;
    task->step_size_query = query;
    return TF_TASK_OK;
}
