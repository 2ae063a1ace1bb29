/* Wire payloads of the device; see update.h for the contract, edge/wire/decode.py and encode.py for the reference. */
#include "update.h"

#include <string.h>

#define TFW_HEADER 24u
#define TFW_TENSOR 24u
#define TFW_METRIC 8u
#define TFW_CRC 4u
#define TFW_MAX_RANK 4u
#define TFW_MAX_NAME 32u
#define TFW_MAX_DEVICE_ID 64u
#define TFW_MAX_TENSORS 64u
#define TFW_MAX_METRICS 16u
#define TFW_FLAG_SPARSE 0x01u
#define TFW_FLAG_INDEX16 0x02u
#define TFW_INDEX16_MAX 65536u

static const char *const CODES[TFW_N_ERRORS] = {
    "ok", "oversized", "bad-magic", "truncated", "unsupported-version", "trailing-bytes", "bad-crc",
    "unknown-kind", "bad-flags", "bad-field", "bad-device-id", "too-many", "wrong-round", "bad-name",
    "duplicate-name", "unknown-dtype", "bad-shape", "bad-indices", "non-finite", "bad-padding",
    "spec-mismatch", "oversized", "non-positive",
};

const char *tfw_error_code(tfw_status_t status) {
    return (unsigned)status < TFW_N_ERRORS ? CODES[status] : "unknown";
}

static const char *const MLP_NAMES[TF_MLP_MAX_TENSORS] = {"w0", "b0", "w1", "b1", "w2", "b2", "w3", "b3"};

const char *tfw_mlp_tensor_name(uint32_t t) { return t < TF_MLP_MAX_TENSORS ? MLP_NAMES[t] : NULL; }

static const uint8_t ITEMSIZE[7] = {0, 4, 2, 1, 1, 2, 4};

/* CRC-32 (zlib.crc32) four bits at a time: a 64-byte table in flash, ~4x the speed of the bitwise loop */
static const uint32_t CRC_NIBBLE[16] = {
    0x00000000u, 0x1db71064u, 0x3b6e20c8u, 0x26d930acu, 0x76dc4190u, 0x6b6b51f4u, 0x4db26158u, 0x5005713cu,
    0xedb88320u, 0xf00f9344u, 0xd6d6a3e8u, 0xcb61b38cu, 0x9b64c2b0u, 0x86d3d2d4u, 0xa00ae278u, 0xbdbdf21cu,
};

uint32_t tfw_crc32(const uint8_t *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    while (n--) {
        c ^= *p++;
        c = (c >> 4) ^ CRC_NIBBLE[c & 15u];
        c = (c >> 4) ^ CRC_NIBBLE[c & 15u];
    }
    return ~c;
}

static size_t pad4(size_t n) { return (n + 3u) & ~(size_t)3u; }
static uint32_t rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint16_t rd16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }

/* ------------------------------------------------------------------ decoding */

typedef struct {
    const uint8_t *name;
    uint8_t name_len, dtype, sparse, ndim;
    uint32_t shape[TFW_MAX_RANK];
    uint32_t count;
    const uint8_t *values;
} view_t;

typedef struct {
    const uint8_t *buf;
    size_t pos, end;
} reader_t;

/* bounds first (bad-shape, as Python's _Reader.take), then the bytes */
static int take(reader_t *r, uint64_t n, const uint8_t **out) {
    if (n > (uint64_t)(r->end - r->pos)) return 0;
    if (out) *out = r->buf + r->pos;
    r->pos += (size_t)n;
    return 1;
}

static tfw_status_t padding(reader_t *r, size_t used) {
    size_t pad = pad4(used) - used;
    const uint8_t *p;
    if (!pad) return TFW_OK;
    if (!take(r, pad, &p)) return TFW_BAD_SHAPE;
    while (pad--) if (*p++) return TFW_BAD_PADDING;
    return TFW_OK;
}

static tfw_status_t name(reader_t *r, uint8_t len, const uint8_t **out) {
    if (!take(r, len, out)) return TFW_BAD_SHAPE;
    if (len == 0 || len > TFW_MAX_NAME) return TFW_BAD_NAME;
    for (uint8_t i = 0; i < len; i++)
        if ((*out)[i] < 0x21 || (*out)[i] > 0x7E) return TFW_BAD_NAME;
    return padding(r, len);
}

static int same_name(const uint8_t *a, uint8_t na, const uint8_t *b, uint8_t nb) {
    return na == nb && memcmp(a, b, na) == 0;
}

static int finite_values(const uint8_t *v, uint32_t count, uint8_t dtype) {
    for (uint32_t i = 0; i < count; i++) {
        if (dtype == 1 && (rd32(v + 4u * i) & 0x7F800000u) == 0x7F800000u) return 0;
        if (dtype == 2 && (rd16(v + 2u * i) & 0x7C00u) == 0x7C00u) return 0;
    }
    return 1;
}

static int device_id_ok(const uint8_t *p, size_t n) {
    if (n == 0 || n > TFW_MAX_DEVICE_ID) return 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = p[i];
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
                 c == ':' || c == '-';
        if (!ok) return 0;
    }
    return 1;
}

/* read_header() of decode.py: steps 1-6 */
static tfw_status_t read_header(const uint8_t *buf, size_t len, size_t cap, tfw_info_t *h) {
    if (len > cap) return TFW_OVERSIZED;
    if (memcmp(buf, "TFWP", len < 4 ? len : 4) != 0) return TFW_BAD_MAGIC;
    if (len < TFW_HEADER + TFW_CRC) return TFW_TRUNCATED;
    uint8_t version = buf[4], flags = buf[6], reserved = buf[23];
    h->kind = buf[5];
    h->device_id_len = buf[7];
    h->total_len = rd32(buf + 8);
    h->round_id = rd32(buf + 12);
    h->num_examples = rd32(buf + 16);
    h->tensor_count = rd16(buf + 20);
    h->metric_count = buf[22];
    if (version != 1) return TFW_BAD_VERSION;
    if (h->total_len > cap) return TFW_OVERSIZED;
    if (len < h->total_len) return TFW_TRUNCATED;
    if (len > h->total_len) return TFW_TRAILING_BYTES;
    if (tfw_crc32(buf, len - TFW_CRC) != rd32(buf + len - TFW_CRC)) return TFW_BAD_CRC;
    if (h->kind < 1 || h->kind > 4) return TFW_BAD_KIND;
    if (flags) return TFW_BAD_FLAGS;
    if (reserved) return TFW_BAD_FIELD;
    if (h->device_id_len > TFW_MAX_DEVICE_ID) return TFW_BAD_DEVICE_ID;
    if (h->tensor_count > TFW_MAX_TENSORS || h->metric_count > TFW_MAX_METRICS) return TFW_TOO_MANY;
    return TFW_OK;
}

static tfw_status_t read_tensor(reader_t *r, view_t *t, uint8_t flags, const uint32_t *dims) {
    if (t->dtype < 1 || t->dtype > 6) return TFW_BAD_DTYPE;
    if (flags & ~(TFW_FLAG_SPARSE | TFW_FLAG_INDEX16)) return TFW_BAD_FLAGS;
    if (t->ndim > TFW_MAX_RANK) return TFW_BAD_SHAPE;
    uint64_t size = 1;
    for (unsigned d = 0; d < TFW_MAX_RANK; d++) {
        t->shape[d] = dims[d];
        if (d >= t->ndim) {
            if (dims[d]) return TFW_BAD_SHAPE;
        } else if (size <= 0xFFFFFFFFu || dims[d] == 0) {
            size *= dims[d]; /* saturates above 2^32 (count is a u32); a 0 dimension makes it 0 */
        }
    }
    t->sparse = (flags & TFW_FLAG_SPARSE) != 0;
    int index16 = (flags & TFW_FLAG_INDEX16) != 0;
    if (index16 && !t->sparse) return TFW_BAD_FLAGS;
    if (t->sparse && index16 != (size <= TFW_INDEX16_MAX)) return TFW_BAD_FLAGS;
    if (!t->sparse && t->count != size) return TFW_BAD_SHAPE;
    if (t->sparse && t->count > size) return TFW_BAD_INDICES;
    tfw_status_t s;
    if (t->sparse) {
        uint32_t width = index16 ? 2u : 4u;
        uint64_t ibytes = (uint64_t)width * t->count;
        const uint8_t *idx;
        if (!take(r, ibytes, &idx)) return TFW_BAD_SHAPE;
        if ((s = padding(r, (size_t)ibytes)) != TFW_OK) return s;
        uint32_t prev = 0;
        for (uint32_t k = 0; k < t->count; k++) {
            uint32_t i = index16 ? rd16(idx + 2u * k) : rd32(idx + 4u * k);
            if (i >= size || (k > 0 && i <= prev)) return TFW_BAD_INDICES;
            prev = i;
        }
    }
    uint64_t nbytes = (uint64_t)t->count * ITEMSIZE[t->dtype];
    if (!take(r, nbytes, &t->values)) return TFW_BAD_SHAPE;
    if ((s = padding(r, (size_t)nbytes)) != TFW_OK) return s;
    if (!finite_values(t->values, t->count, t->dtype)) return TFW_NON_FINITE;
    return TFW_OK;
}

/* decode_weights() of decode.py after read_header() (h checked), up to (not including) the spec check;
 * views of every tensor into `views` */
static tfw_status_t parse(const uint8_t *buf, const tfw_info_t *h, view_t *views) {
    tfw_status_t s;
    reader_t r = {buf, TFW_HEADER, h->total_len - TFW_CRC};
    if (h->device_id_len) {
        const uint8_t *id;
        if (!take(&r, h->device_id_len, &id)) return TFW_BAD_SHAPE;
        if (!device_id_ok(id, h->device_id_len)) return TFW_BAD_DEVICE_ID;
        if ((s = padding(&r, h->device_id_len)) != TFW_OK) return s;
    }
    const uint8_t *metric_names[TFW_MAX_METRICS];
    uint8_t metric_lens[TFW_MAX_METRICS];
    for (unsigned i = 0; i < h->metric_count; i++) {
        const uint8_t *rec;
        if (!take(&r, TFW_METRIC, &rec)) return TFW_BAD_SHAPE;
        if (rec[1] | rec[2] | rec[3]) return TFW_BAD_FIELD;
        if ((s = name(&r, rec[0], &metric_names[i])) != TFW_OK) return s;
        metric_lens[i] = rec[0];
        for (unsigned j = 0; j < i; j++)
            if (same_name(metric_names[j], metric_lens[j], metric_names[i], rec[0])) return TFW_DUPLICATE_NAME;
        if (!finite_values(rec + 4, 1, 1)) return TFW_NON_FINITE;
    }
    for (unsigned i = 0; i < h->tensor_count; i++) {
        const uint8_t *rec;
        view_t *t = &views[i];
        if (!take(&r, TFW_TENSOR, &rec)) return TFW_BAD_SHAPE;
        t->name_len = rec[0];
        t->dtype = rec[1];
        t->ndim = rec[3];
        t->count = rd32(rec + 20);
        uint32_t dims[TFW_MAX_RANK];
        for (unsigned d = 0; d < TFW_MAX_RANK; d++) dims[d] = rd32(rec + 4 + 4 * d);
        if ((s = name(&r, t->name_len, &t->name)) != TFW_OK) return s;
        for (unsigned j = 0; j < i; j++)
            if (same_name(views[j].name, views[j].name_len, t->name, t->name_len)) return TFW_DUPLICATE_NAME;
        if ((s = read_tensor(&r, t, rec[2], dims)) != TFW_OK) return s;
    }
    return r.pos == r.end ? TFW_OK : TFW_TRAILING_BYTES;
}

/* check_spec() of decode.py against the MLP's shared tensors; *which[i] = MLP tensor of view i */
static tfw_status_t check_spec(const tfw_info_t *h, const view_t *views, const tf_mlp *m, uint32_t shared, uint8_t *which,
                               int allow_sparse) {
    uint32_t seen = 0, expected = 0;
    for (uint32_t t = 0; t < tf_mlp_tensor_count(m); t++)
        if (shared & (1u << t)) expected |= 1u << t;
    for (unsigned i = 0; i < h->tensor_count; i++) {
        const view_t *v = &views[i];
        uint32_t t = 0;
        while (t < tf_mlp_tensor_count(m) &&
               !((expected & (1u << t)) && same_name((const uint8_t *)MLP_NAMES[t], (uint8_t)strlen(MLP_NAMES[t]), v->name, v->name_len)))
            t++;
        if (t == tf_mlp_tensor_count(m)) return TFW_SPEC_MISMATCH; /* unexpected name (or a private one) */
        uint32_t layer = t / 2;
        uint32_t want_ndim = (t % 2 == 0) ? 2u : 1u;
        uint32_t want[2] = {t % 2 == 0 ? m->sizes[layer] : m->sizes[layer + 1], m->sizes[layer + 1]};
        if ((v->sparse && !allow_sparse) || v->dtype != 1 || v->ndim != want_ndim) return TFW_SPEC_MISMATCH;
        for (uint32_t d = 0; d < want_ndim; d++)
            if (v->shape[d] != want[d]) return TFW_SPEC_MISMATCH;
        seen |= 1u << t;
        which[i] = (uint8_t)t;
    }
    return seen == expected ? TFW_OK : TFW_SPEC_MISMATCH; /* a missing name */
}

tfw_status_t tfw_read_model(const uint8_t *buf, size_t len, size_t cap, uint32_t round_id, tf_mlp *m, uint32_t shared,
                            tfw_info_t *info) {
    tfw_info_t h;
    view_t views[TFW_MAX_TENSORS];
    uint8_t which[TFW_MAX_TENSORS];
    tfw_status_t s = read_header(buf, len, cap, &h);
    if (s == TFW_OK && h.kind != TFW_KIND_MODEL) s = TFW_BAD_KIND; /* expected_kind, as read_header checks it */
    if (s == TFW_OK && h.round_id != round_id) s = TFW_WRONG_ROUND;
    if (s == TFW_OK) s = parse(buf, &h, views);
    if (s == TFW_OK) s = check_spec(&h, views, m, shared, which, 0);
    if (s == TFW_OK)
        for (unsigned i = 0; i < h.tensor_count; i++) h.order[i] = which[i];
    if (info) *info = h;
    if (s != TFW_OK) return s;
    for (unsigned i = 0; i < h.tensor_count; i++) {
        uint32_t n;
        float *dst = tf_mlp_tensor(m, which[i], &n);
        memcpy(dst, views[i].values, (size_t)n * sizeof(float));
    }
    return TFW_OK;
}

tfw_status_t tfw_model_shapes(const uint8_t *buf, size_t len, size_t cap, tfw_tensor_shape *out, uint16_t max,
                              uint16_t *count) {
    tfw_info_t h;
    view_t views[TFW_MAX_TENSORS];
    tfw_status_t s = read_header(buf, len, cap, &h);
    if (s == TFW_OK && h.kind != TFW_KIND_MODEL) s = TFW_BAD_KIND;
    if (s == TFW_OK) s = parse(buf, &h, views);
    if (s == TFW_OK && h.tensor_count > max) s = TFW_TOO_MANY;
    if (s != TFW_OK) return s;
    for (unsigned i = 0; i < h.tensor_count; i++) {
        memcpy(out[i].name, views[i].name, views[i].name_len);
        out[i].name[views[i].name_len] = '\0';
        out[i].ndim = views[i].ndim;
        memcpy(out[i].shape, views[i].shape, sizeof out[i].shape);
    }
    *count = h.tensor_count;
    return TFW_OK;
}

tfw_status_t tfw_read_step_sizes(const uint8_t *buf, size_t len, size_t cap, uint32_t round_id, const tf_mlp *m,
                                 float *scales) {
    tfw_info_t h;
    view_t views[TFW_MAX_TENSORS];
    uint8_t which[TFW_MAX_TENSORS];
    tfw_status_t s = read_header(buf, len, cap, &h);
    if (s == TFW_OK && h.kind != TFW_KIND_STEP_SIZES) s = TFW_BAD_KIND;
    if (s == TFW_OK && h.round_id != round_id) s = TFW_WRONG_ROUND;
    if (s == TFW_OK) s = parse(buf, &h, views);
    /* check_spec() passes a sparse tensor of the right shape; _dense_float32 then refuses it (bad-flags) */
    if (s == TFW_OK) s = check_spec(&h, views, m, (1u << tf_mlp_tensor_count(m)) - 1u, which, 1);
    for (unsigned i = 0; s == TFW_OK && i < h.tensor_count; i++) { /* _dense_float32(positive=True), wire order */
        if (views[i].sparse) { s = TFW_BAD_FLAGS; break; }
        for (uint32_t k = 0; k < views[i].count; k++) {
            float f;
            memcpy(&f, views[i].values + 4u * k, 4);
            if (!(f > 0.0f)) { s = TFW_NON_POSITIVE; break; }
        }
    }
    if (s != TFW_OK) return s;
    for (unsigned i = 0; i < h.tensor_count; i++) {
        uint32_t n;
        const float *p = tf_mlp_tensor(m, which[i], &n);
        memcpy(scales + (p - m->params), views[i].values, (size_t)n * sizeof(float));
    }
    return TFW_OK;
}

/* ------------------------------------------------------------------ encoding */

static uint8_t *room(tfw_writer *w, size_t n) {
    if (w->status != TFW_OK) return NULL;
    if (n > w->cap - w->pos) {
        w->status = TFW_NO_ROOM;
        return NULL;
    }
    uint8_t *p = w->buf + w->pos;
    memset(p, 0, n);
    w->pos += n;
    return p;
}

static void wr32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }

static int name_ok(const char *s, size_t n) {
    if (n == 0 || n > TFW_MAX_NAME) return 0;
    for (size_t i = 0; i < n; i++)
        if ((uint8_t)s[i] < 0x21 || (uint8_t)s[i] > 0x7E) return 0;
    return 1;
}

static void put_name(tfw_writer *w, const char *s) {
    size_t n = strlen(s);
    uint8_t *p = room(w, pad4(n));
    if (p) memcpy(p, s, n);
}

void tfw_begin(tfw_writer *w, uint8_t *buf, size_t cap, uint8_t kind, uint32_t round_id, uint32_t num_examples,
               const char *device_id, uint8_t metric_count, uint16_t tensor_count) {
    w->buf = buf;
    w->cap = cap;
    w->pos = 0;
    w->tensors = w->metrics = 0;
    w->tensors_declared = tensor_count;
    w->metrics_declared = metric_count;
    w->status = TFW_OK;
    size_t id_len = device_id ? strlen(device_id) : 0;
    if (kind < 1 || kind > 4) w->status = TFW_BAD_KIND;
    else if (id_len && !device_id_ok((const uint8_t *)device_id, id_len)) w->status = TFW_BAD_DEVICE_ID;
    else if (metric_count > TFW_MAX_METRICS || tensor_count > TFW_MAX_TENSORS) w->status = TFW_TOO_MANY;
    uint8_t *h = room(w, TFW_HEADER);
    if (!h) return;
    memcpy(h, "TFWP", 4);
    h[4] = 1;
    h[5] = kind;
    h[7] = (uint8_t)id_len;
    wr32(h + 12, round_id);
    wr32(h + 16, num_examples);
    h[20] = (uint8_t)(tensor_count & 0xFF);
    h[21] = (uint8_t)(tensor_count >> 8);
    h[22] = metric_count;
    if (id_len) put_name(w, device_id);
}

void tfw_metric(tfw_writer *w, const char *metric, float value) {
    if (w->status != TFW_OK) return;
    size_t n = strlen(metric);
    if (w->tensors || w->metrics >= w->metrics_declared) { w->status = TFW_TOO_MANY; return; }
    if (!name_ok(metric, n)) { w->status = TFW_BAD_NAME; return; }
    if (!finite_values((const uint8_t *)&value, 1, 1)) { w->status = TFW_NON_FINITE; return; }
    uint8_t *p = room(w, TFW_METRIC);
    if (!p) return;
    p[0] = (uint8_t)n;
    memcpy(p + 4, &value, 4);
    put_name(w, metric);
    w->metrics++;
}

static uint8_t *tensor_record(tfw_writer *w, const char *tensor, uint8_t flags, uint8_t ndim, const uint32_t *shape,
                              uint32_t count, uint64_t *size) {
    if (w->status != TFW_OK) return NULL;
    size_t n = strlen(tensor);
    if (w->metrics != w->metrics_declared || w->tensors >= w->tensors_declared) { w->status = TFW_TOO_MANY; return NULL; }
    if (!name_ok(tensor, n)) { w->status = TFW_BAD_NAME; return NULL; }
    if (ndim > TFW_MAX_RANK) { w->status = TFW_BAD_SHAPE; return NULL; }
    *size = 1;
    for (uint8_t d = 0; d < ndim; d++) *size *= shape[d];
    uint8_t *p = room(w, TFW_TENSOR);
    if (!p) return NULL;
    p[0] = (uint8_t)n;
    p[1] = 1; /* float32 */
    p[2] = flags;
    p[3] = ndim;
    for (uint8_t d = 0; d < ndim; d++) wr32(p + 4 + 4 * d, shape[d]);
    wr32(p + 20, count);
    put_name(w, tensor);
    w->tensors++;
    return p;
}

void tfw_dense_f32(tfw_writer *w, const char *tensor, uint8_t ndim, const uint32_t *shape, const float *values) {
    uint64_t size;
    uint32_t count = 1;
    for (uint8_t d = 0; d < ndim && d < TFW_MAX_RANK; d++) count *= shape[d];
    if (!tensor_record(w, tensor, 0, ndim, shape, count, &size)) return;
    if (!finite_values((const uint8_t *)values, count, 1)) { w->status = TFW_NON_FINITE; return; }
    uint8_t *p = room(w, (size_t)count * 4u);
    if (p) memcpy(p, values, (size_t)count * 4u);
}

void tfw_sparse_f32(tfw_writer *w, const char *tensor, uint8_t ndim, const uint32_t *shape, uint32_t count,
                    const uint32_t *indices, const float *values) {
    uint64_t size = 1;
    for (uint8_t d = 0; d < ndim && d < TFW_MAX_RANK; d++) size *= shape[d];
    int index16 = size <= TFW_INDEX16_MAX;
    if (!tensor_record(w, tensor, (uint8_t)(TFW_FLAG_SPARSE | (index16 ? TFW_FLAG_INDEX16 : 0)), ndim, shape, count, &size))
        return;
    if (count > size) { w->status = TFW_BAD_INDICES; return; }
    for (uint32_t k = 0; k < count; k++)
        if (indices[k] >= size || (k > 0 && indices[k] <= indices[k - 1])) { w->status = TFW_BAD_INDICES; return; }
    if (!finite_values((const uint8_t *)values, count, 1)) { w->status = TFW_NON_FINITE; return; }
    uint8_t *p = room(w, pad4((size_t)count * (index16 ? 2u : 4u)));
    if (!p) return;
    for (uint32_t k = 0; k < count; k++) {
        if (index16) { uint16_t i16 = (uint16_t)indices[k]; memcpy(p + 2u * k, &i16, 2); }
        else wr32(p + 4u * k, indices[k]);
    }
    p = room(w, (size_t)count * 4u);
    if (p) memcpy(p, values, (size_t)count * 4u);
}

size_t tfw_finish(tfw_writer *w) {
    if (w->status == TFW_OK && (w->tensors != w->tensors_declared || w->metrics != w->metrics_declared)) w->status = TFW_TOO_MANY;
    uint8_t *crc = room(w, TFW_CRC);
    if (!crc) return 0;
    wr32(w->buf + 8, (uint32_t)w->pos);
    wr32(crc, tfw_crc32(w->buf, w->pos - TFW_CRC));
    return w->pos;
}
