/* Copy matching's per-row loops, compiled: the sample of native packets with their
 * fingerprints and link addresses (detector/flows/fingerprint.py), and the size differences of the encrypted-copy
 * size test, the bytes of a batch's hosts, the rows of a few keys and a batch's bytes per open
 * bin (detector/flows/encrypted.py), and the index of the natives remembered, its look-ups
 * and additions, a batch of natives matched against it, and the merge of its two parts
 * (detector/flows/copies.py).
 *
 * Each function gives, bit for bit, what the numpy form beside it gives (the tests compare
 * them); the numpy forms stay the reference and the fallback.  The columns come from decoded
 * packets, so every row index and every window is checked against the buffers the caller
 * passed, and arithmetic on them is done in unsigned 64 bits (wrapping as numpy's does).
 */
#include "../_columns.h"

#define RANK_BITS 4
/* Bytes from the start of the L4 header that enter the fingerprint. */
#define L4_BYTES 24
/* Size differences counted at most (a bitmap of them per sampled packet). */
#define MOST_DELTAS 1024

/* The call's arguments: `count` columns (items of sizes[i] bytes, or 8 without sizes; from
 * writable_from on written to), then `extra` more arguments the caller reads. */
static int
columns(PyObject *args, Py_ssize_t count, Py_ssize_t extra, const char *const *names,
        const char *const *kinds, const Py_ssize_t *sizes, Py_ssize_t writable_from,
        Py_buffer *v, Py_ssize_t *len)
{
    if (PyTuple_GET_SIZE(args) != count + extra) {
        PyErr_Format(PyExc_TypeError, "takes %zd arguments", count + extra);
        return -1;
    }
    for (Py_ssize_t i = 0; i < count; i++)
    {
        Py_ssize_t size = sizes ? sizes[i] : 8;
        if (column(PyTuple_GET_ITEM(args, i), &v[i], i >= writable_from, size, kinds[i], -1,
                   names[i]) < 0)
            return -1;
        len[i] = v[i].len / size;
    }
    return 0;
}

/* An open-addressing table of places for `count` 64-bit keys: a power of two of slots, at
 * least four a key (2^*bits of them), every one empty (-1); NULL with MemoryError set.  The
 * slot of key h is (h * M1) >> (64 - *bits), then the next ones. */
static int64_t *
places_table(Py_ssize_t count, int *bits)
{
    *bits = 4;
    while (((Py_ssize_t)1 << *bits) < 4 * count)
        (*bits)++;
    size_t slots = (size_t)1 << *bits;
    int64_t *table = PyMem_Malloc(slots * sizeof(int64_t));
    if (!table)
        return (int64_t *)PyErr_NoMemory();
    for (size_t i = 0; i < slots; i++)
        table[i] = -1;
    return table;
}

/* The first place of `key` among the sorted `keys` (indexed by `at_of`, from index_keys), or
 * -1. */
static inline int64_t
place_of(const uint64_t *keys, const int64_t *at_of, int bits, uint64_t key)
{
    size_t slots = (size_t)1 << bits;
    size_t at = (size_t)((key * M1) >> (64 - bits));
    while (at_of[at] >= 0 && keys[at_of[at]] != key)
        at = (at + 1) & (slots - 1);
    return at_of[at];
}

/* A places_table of the sorted `keys`: each distinct key to its first place. */
static int64_t *
index_keys(const uint64_t *keys, Py_ssize_t k, int *bits)
{
    int64_t *at_of = places_table(k, bits);
    if (!at_of)
        return NULL;
    size_t slots = (size_t)1 << *bits;
    for (Py_ssize_t i = 0; i < k; i++) {
        size_t at = (size_t)((keys[i] * M1) >> (64 - *bits));
        while (at_of[at] >= 0 && keys[at_of[at]] != keys[i])
            at = (at + 1) & (slots - 1);
        if (at_of[at] < 0)
            at_of[at] = i; /* the first place of a key that repeats */
    }
    return at_of;
}

static inline uint64_t
be64(const unsigned char *p)
{
    uint64_t x = 0;
    for (int i = 0; i < 8; i++)
        x = (x << 8) | p[i];
    return x;
}

/* The destination and source MAC addresses of an Ethernet frame at `offset` in `data` (of
 * `size` bytes), each as a big-endian number, the bytes past the end of the data read as zero. */
static inline void
mac_words(const unsigned char *data, uint64_t size, uint64_t offset, int64_t *dst, int64_t *src)
{
    uint64_t words[2] = {0, 0};
    for (int b = 0; b < 12; b++) {
        uint64_t at = offset + (uint64_t)b;
        words[b / 6] = (words[b / 6] << 8) | (at < size ? data[at] : 0);
    }
    *dst = (int64_t)words[0];
    *src = (int64_t)words[1];
}

PyDoc_STRVAR(sample_doc,
"sample(rows, fragment, l4, l3, iplen, caplen, ipid, proto, src, dst, l4h, data, offsets,\n"
"       linktype, out, width, keep_below, ethernet)\n"
"--\n\n"
"Of the batch rows `rows`, those whole enough to fingerprint (not a fragment, at least 8 L4\n"
"bytes) whose rank is below keep_below, in order, to out[0], with their ranks to out[1],\n"
"their fingerprints (the L4 bytes past the packet's end read as zero) to out[2], and their\n"
"destination and source MAC addresses as big-endian numbers to out[3] and out[4] (the first\n"
"12 bytes from the row's offset in data, bytes past its end read as zero; 0 where the row's\n"
"link type is not `ethernet`). Columns have one item per batch row (src and dst four address\n"
"words, l4h `width` bytes); out is (5, len(rows)). Returns how many.");

static PyObject *
sample(PyObject *module, PyObject *args)
{
    Py_buffer v[MOST_VIEWS] = {{0}};
    Py_ssize_t len[15];
    static const char *const names[15] = {"rows",  "fragment", "l4",   "l3",      "iplen",
                                          "caplen", "ipid",    "proto", "src",    "dst",
                                          "l4h",   "data",     "offsets", "linktype", "out"};
    static const Py_ssize_t sizes[15] = {8, 1, 8, 8, 8, 8, 8, 8, 4, 4, 1, 1, 8, 4, 8};
    static const char *const kinds[15] = {"ql", "?B", "ql", "ql", "ql", "ql", "ql", "ql",
                                          "IL", "IL", "B",  "B",  "ql", "il", "QL"};
    if (columns(args, 15, 3, names, kinds, sizes, 14, v, len) < 0)
        return release(v, NULL);
    Py_ssize_t width = PyLong_AsSsize_t(PyTuple_GET_ITEM(args, 15));
    Py_ssize_t keep_below = PyLong_AsSsize_t(PyTuple_GET_ITEM(args, 16));
    long ethernet = PyLong_AsLong(PyTuple_GET_ITEM(args, 17));
    if (PyErr_Occurred())
        return release(v, NULL);
    Py_ssize_t k = len[0];
    if (width < L4_BYTES || len[10] % width != 0) {
        PyErr_SetString(PyExc_ValueError, "l4h rows must hold at least 24 bytes");
        return release(v, NULL);
    }
    Py_ssize_t n = len[10] / width;
    for (int i = 1; i <= 7; i++)
        if (len[i] != n) {
            PyErr_Format(PyExc_ValueError, "%s has %zd items for %zd rows", names[i], len[i], n);
            return release(v, NULL);
        }
    if (len[8] != 4 * n || len[9] != 4 * n || len[12] != n || len[13] != n || len[14] != 5 * k) {
        PyErr_SetString(PyExc_ValueError, "address, link or output columns do not fit the rows");
        return release(v, NULL);
    }
    const int64_t *rows = v[0].buf, *l4 = v[2].buf, *l3 = v[3].buf, *iplen = v[4].buf;
    const int64_t *caplen = v[5].buf, *ipid = v[6].buf, *proto = v[7].buf;
    const int64_t *offsets = v[12].buf;
    const int32_t *linktype = v[13].buf;
    const unsigned char *fragment = v[1].buf, *l4h = v[10].buf, *data = v[11].buf;
    const uint32_t *src = v[8].buf, *dst = v[9].buf;
    uint64_t *out = v[14].buf;
    int64_t *out_rows = (int64_t *)out;
    uint64_t *out_ranks = out + k, *out_fps = out + 2 * k;
    int64_t *out_dst = (int64_t *)(out + 3 * k), *out_src = (int64_t *)(out + 4 * k);
    uint64_t size = (uint64_t)len[11];
    Py_ssize_t m = 0;
    for (Py_ssize_t i = 0; i < k; i++) {
        int64_t r = rows[i];
        if (r < 0 || r >= n) {
            PyErr_Format(PyExc_IndexError, "row %lld is outside a batch of %zd rows",
                         (long long)r, n);
            return release(v, NULL);
        }
        /* The rank first: most rows are not in the sample, and need nothing else read. */
        const unsigned char *w = l4h + r * width;
        const uint32_t *s = src + 4 * r, *d = dst + 4 * r;
        uint64_t x = be64(w) ^ s[3] ^ ((uint64_t)d[3] << 32) ^ (uint64_t)ipid[r];
        uint64_t rank = (x * M1) >> (64 - RANK_BITS);
        if (rank >= (uint64_t)keep_below || fragment[r] || l4[r] < 0)
            continue;
        uint64_t end = (uint64_t)l3[r] + (uint64_t)iplen[r];
        if ((int64_t)end > caplen[r])
            end = (uint64_t)caplen[r];
        int64_t l4len = (int64_t)(end - (uint64_t)l4[r]);
        if (l4len < 8)
            continue;
        if (offsets[r] < 0) {
            PyErr_Format(PyExc_IndexError, "row %lld starts before the batch's data",
                         (long long)r);
            return release(v, NULL);
        }
        if (linktype[r] == ethernet)
            mac_words(data, size, (uint64_t)offsets[r], &out_dst[m], &out_src[m]);
        else
            out_dst[m] = out_src[m] = 0;
        uint64_t h = mix64(((uint64_t)s[0] << 32) | s[1]);
        h = mix64(h ^ (((uint64_t)s[2] << 32) | s[3]));
        h = mix64(h ^ (((uint64_t)d[0] << 32) | d[1]));
        h = mix64(h ^ (((uint64_t)d[2] << 32) | d[3]));
        h = mix64(h ^ (((uint64_t)proto[r] << 16) | (uint64_t)ipid[r]));
        for (int word = 0; word < L4_BYTES / 8; word++) {
            int64_t kept = l4len - 8 * word;
            uint64_t mask = kept >= 8 ? ~0ULL : kept <= 0 ? 0 : ~0ULL << (64 - 8 * kept);
            h = mix64(h ^ (be64(w + 8 * word) & mask) * M1);
        }
        out_rows[m] = r;
        out_ranks[m] = rank;
        out_fps[m] = h;
        m++;
    }
    return release(v, PyLong_FromSsize_t(m));
}

PyDoc_STRVAR(eligible_doc,
"eligible(rows, proto, direction, fids, counters, opaque, out, min_packets, min_bytes)\n"
"--\n\n"
"The places i of the batch rows `rows` whose IP protocol (proto, one per batch row) is one of\n"
"`opaque` (256 flags) and whose flow fids[i] has sent, in the row's direction (0 or 1), at\n"
"least min_packets packets and min_bytes bytes, in order, to out. counters: the flows'\n"
"counters column by column (packets, packets back, bytes, bytes back). Returns how many.");

static PyObject *
eligible(PyObject *module, PyObject *args)
{
    Py_buffer v[MOST_VIEWS] = {{0}};
    Py_ssize_t len[7];
    static const char *const names[7] = {"rows", "proto", "direction", "fids",
                                         "counters", "opaque", "out"};
    static const Py_ssize_t sizes[7] = {8, 8, 1, 8, 8, 1, 8};
    static const char *const kinds[7] = {"ql", "ql", "bB", "ql", "ql", "?B", "ql"};
    if (columns(args, 7, 2, names, kinds, sizes, 6, v, len) < 0)
        return release(v, NULL);
    int64_t min_packets = PyLong_AsLongLong(PyTuple_GET_ITEM(args, 7));
    int64_t min_bytes = PyLong_AsLongLong(PyTuple_GET_ITEM(args, 8));
    if (PyErr_Occurred())
        return release(v, NULL);
    Py_ssize_t k = len[0], n = len[1], flows = len[4] / 4;
    if (len[2] != k || len[3] != k || len[4] != 4 * flows || len[5] != 256 || len[6] < k) {
        PyErr_SetString(PyExc_ValueError, "columns do not fit the rows or the flows");
        return release(v, NULL);
    }
    const int64_t *rows = v[0].buf, *proto = v[1].buf, *fids = v[3].buf, *counters = v[4].buf;
    const signed char *direction = v[2].buf;
    const unsigned char *opaque = v[5].buf;
    int64_t *out = v[6].buf;
    Py_ssize_t m = 0;
    for (Py_ssize_t i = 0; i < k; i++) {
        int64_t r = rows[i], fid = fids[i];
        if (r < 0 || r >= n || fid < 0 || fid >= flows) {
            PyErr_Format(PyExc_IndexError, "row %lld or flow %lld is outside the columns",
                         (long long)r, (long long)fid);
            return release(v, NULL);
        }
        if (proto[r] < 0 || proto[r] > 255 || (direction[i] != 0 && direction[i] != 1)) {
            PyErr_SetString(PyExc_ValueError, "an IP protocol or a direction out of range");
            return release(v, NULL);
        }
        const int64_t *sent = counters + direction[i] * flows + fid;
        if (opaque[proto[r]] && sent[0] >= min_packets && sent[2 * flows] >= min_bytes)
            out[m++] = i;
    }
    return release(v, PyLong_FromSsize_t(m));
}

PyDoc_STRVAR(spread_doc,
"spread(values, out_distinct, out_group)\n"
"--\n\n"
"The distinct values (sorted) to out_distinct and each one's group (its place among them) to\n"
"out_group, as numpy.unique(values, return_inverse=True) gives them, by a table over their\n"
"range: only for values within 4 * len(values) + 64 of each other (time bins of a batch);\n"
"-1 for others (nothing written), else how many distinct values.");

static PyObject *
spread(PyObject *module, PyObject *args)
{
    Py_buffer v[MOST_VIEWS] = {{0}};
    Py_ssize_t len[3];
    static const char *const names[3] = {"values", "out_distinct", "out_group"};
    static const char *const kinds[3] = {"ql", "ql", "ql"};
    if (columns(args, 3, 0, names, kinds, NULL, 1, v, len) < 0)
        return release(v, NULL);
    Py_ssize_t n = len[0];
    if (len[1] < n || len[2] < n) {
        PyErr_SetString(PyExc_ValueError, "output columns do not fit the values");
        return release(v, NULL);
    }
    if (!n)
        return release(v, PyLong_FromSsize_t(0));
    const int64_t *values = v[0].buf;
    int64_t *distinct = v[1].buf, *group = v[2].buf;
    int64_t lo = values[0], hi = values[0];
    for (Py_ssize_t i = 1; i < n; i++) {
        lo = values[i] < lo ? values[i] : lo;
        hi = values[i] > hi ? values[i] : hi;
    }
    uint64_t span = (uint64_t)hi - (uint64_t)lo; /* less one; no overflow */
    if (span >= (uint64_t)(4 * n + 64))
        return release(v, PyLong_FromSsize_t(-1));
    int64_t *place = PyMem_Calloc((size_t)span + 1, sizeof(int64_t));
    if (!place)
        return release(v, PyErr_NoMemory());
    for (Py_ssize_t i = 0; i < n; i++)
        place[(uint64_t)values[i] - (uint64_t)lo] = 1;
    Py_ssize_t k = 0;
    for (uint64_t d = 0; d <= span; d++)
        if (place[d]) {
            distinct[k] = (int64_t)((uint64_t)lo + d);
            place[d] = k++;
        }
    for (Py_ssize_t i = 0; i < n; i++)
        group[i] = place[(uint64_t)values[i] - (uint64_t)lo];
    PyMem_Free(place);
    return release(v, PyLong_FromSsize_t(k));
}

PyDoc_STRVAR(size_deltas_doc,
"size_deltas(lengths, sizes, lo, hi, hist)\n"
"--\n\n"
"For each sampled packet i, the differences d = sizes[i] - lengths[j] over j in\n"
"[lo[i], hi[i]) with 0 <= d < len(hist), each counted once: hist[d] += 1.");

static PyObject *
size_deltas(PyObject *module, PyObject *args)
{
    Py_buffer v[MOST_VIEWS] = {{0}};
    Py_ssize_t len[5];
    static const char *const names[5] = {"lengths", "sizes", "lo", "hi", "hist"};
    static const char *const kinds[5] = {"ql", "ql", "ql", "ql", "ql"};
    if (columns(args, 5, 0, names, kinds, NULL, 4, v, len) < 0)
        return release(v, NULL);
    if (len[2] != len[1] || len[3] != len[1] || len[4] > MOST_DELTAS) {
        PyErr_SetString(PyExc_ValueError, "sizes, lo and hi differ in length, or hist is long");
        return release(v, NULL);
    }
    const int64_t *lengths = v[0].buf, *sizes = v[1].buf, *lo = v[2].buf, *hi = v[3].buf;
    int64_t *hist = v[4].buf;
    uint64_t deltas = (uint64_t)len[4];
    for (Py_ssize_t i = 0; i < len[1]; i++) {
        if (lo[i] < 0 || hi[i] > len[0]) {
            PyErr_Format(PyExc_IndexError, "window %lld..%lld is outside %zd lengths",
                         (long long)lo[i], (long long)hi[i], len[0]);
            return release(v, NULL);
        }
        uint64_t seen[MOST_DELTAS / 64] = {0};
        uint64_t size = (uint64_t)sizes[i];
        for (int64_t j = lo[i]; j < hi[i]; j++) {
            uint64_t d = size - (uint64_t)lengths[j];
            if (d < deltas)
                seen[d >> 6] |= 1ULL << (d & 63);
        }
        for (uint64_t d = 0; d < deltas; d++)
            hist[d] += (seen[d >> 6] >> (d & 63)) & 1;
    }
    return release(v, Py_NewRef(Py_None));
}

PyDoc_STRVAR(host_bytes_doc,
"host_bytes(src, dst, size, out_hosts, out_first, out_bytes, expect)\n"
"--\n\n"
"The distinct hosts of [src, dst] (64-bit hashes, each row's pair) in the order first seen,\n"
"each with that place in [src, dst] and the sum of size over its places (row i's size for\n"
"place i and place n + i). Returns how many. `expect` (how many hosts there may be, say the\n"
"previous batch's) sizes the table at first; what comes out is the same whatever it is.");

static PyObject *
host_bytes(PyObject *module, PyObject *args)
{
    Py_buffer v[MOST_VIEWS] = {{0}};
    Py_ssize_t len[6];
    static const char *const names[6] = {"src",       "dst",       "size",
                                         "out_hosts", "out_first", "out_bytes"};
    static const char *const kinds[6] = {"QL", "QL", "ql", "QL", "ql", "d"};
    if (columns(args, 6, 1, names, kinds, NULL, 3, v, len) < 0)
        return release(v, NULL);
    Py_ssize_t expect = PyLong_AsSsize_t(PyTuple_GET_ITEM(args, 6));
    if (PyErr_Occurred())
        return release(v, NULL);
    Py_ssize_t n = len[0];
    if (len[1] != n || len[2] != n || len[3] < 2 * n || len[4] < 2 * n || len[5] < 2 * n) {
        PyErr_SetString(PyExc_ValueError, "columns do not fit the rows");
        return release(v, NULL);
    }
    /* Open addressing, each slot holding a host and its id (its bytes are summed in place in
     * out_bytes).  The table starts with room for the hosts expected (three slots a host) and
     * doubles whenever it is half full: a batch holds far fewer hosts than places, and a table
     * sized for every place to differ would be reached mostly outside the cache, while one
     * that grows from small spends its time in long probes and moves.  The hashes are salted:
     * no sender can choose hosts that collide here. */
    struct slot {
        uint64_t host;
        int64_t id;
    };
    if (expect > 2 * n)
        expect = 2 * n;
    int bits = 10;
    while (bits < 40 && ((Py_ssize_t)1 << bits) < 3 * expect)
        bits++;
    size_t slots = (size_t)1 << bits;
    struct slot *table = PyMem_Malloc(slots * sizeof(struct slot));
    if (!table)
        return release(v, PyErr_NoMemory());
    for (size_t i = 0; i < slots; i++)
        table[i].id = -1;
    const uint64_t *src = v[0].buf, *dst = v[1].buf;
    const int64_t *size = v[2].buf;
    uint64_t *hosts = v[3].buf;
    int64_t *first = v[4].buf;
    double *bytes = v[5].buf;
    Py_ssize_t k = 0;
    for (Py_ssize_t x = 0; x < 2 * n; x++) {
        uint64_t host = x < n ? src[x] : dst[x - n];
        size_t at = (size_t)((host * M1) >> (64 - bits));
        while (table[at].id >= 0 && table[at].host != host)
            at = (at + 1) & (slots - 1);
        if (table[at].id < 0) {
            if ((size_t)(k + 1) > slots / 2) {
                /* Half full: move every host to a table twice the size, then look again. */
                int wider_bits = bits + 1;
                size_t wider = (size_t)1 << wider_bits;
                struct slot *grown = PyMem_Malloc(wider * sizeof(struct slot));
                if (!grown) {
                    PyMem_Free(table);
                    return release(v, PyErr_NoMemory());
                }
                for (size_t i = 0; i < wider; i++)
                    grown[i].id = -1;
                for (size_t i = 0; i < slots; i++) {
                    if (table[i].id < 0)
                        continue;
                    size_t to = (size_t)((table[i].host * M1) >> (64 - wider_bits));
                    while (grown[to].id >= 0)
                        to = (to + 1) & (wider - 1);
                    grown[to] = table[i];
                }
                PyMem_Free(table);
                table = grown;
                bits = wider_bits;
                slots = wider;
                at = (size_t)((host * M1) >> (64 - bits));
                while (table[at].id >= 0)
                    at = (at + 1) & (slots - 1);
            }
            table[at] = (struct slot){host, k};
            bytes[k] = 0.0;
            hosts[k] = host;
            first[k] = x;
            k++;
        }
        bytes[table[at].id] += (double)size[x < n ? x : x - n];
    }
    PyMem_Free(table);
    return release(v, PyLong_FromSsize_t(k));
}

PyDoc_STRVAR(find_doc,
"find(keys, values, out_rows, out_at)\n"
"--\n\n"
"The places i of values found among keys (64-bit keys, sorted), in order, to out_rows, each\n"
"with the first place of its value among the keys to out_at. Returns how many.");

static PyObject *
find(PyObject *module, PyObject *args)
{
    Py_buffer v[MOST_VIEWS] = {{0}};
    Py_ssize_t len[4];
    static const char *const names[4] = {"keys", "values", "out_rows", "out_at"};
    static const char *const kinds[4] = {"QL", "QL", "ql", "ql"};
    if (columns(args, 4, 0, names, kinds, NULL, 2, v, len) < 0)
        return release(v, NULL);
    Py_ssize_t k = len[0], n = len[1];
    if (len[2] < n || len[3] < n) {
        PyErr_SetString(PyExc_ValueError, "output columns do not fit the values");
        return release(v, NULL);
    }
    /* A value probes at most as many slots as there are keys, whatever they are. */
    const uint64_t *keys = v[0].buf, *values = v[1].buf;
    int bits;
    int64_t *at_of = index_keys(keys, k, &bits);
    if (!at_of)
        return release(v, NULL);
    int64_t *out_rows = v[2].buf, *out_at = v[3].buf;
    Py_ssize_t m = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t at = place_of(keys, at_of, bits, values[i]);
        if (at >= 0) {
            out_rows[m] = i;
            out_at[m] = at;
            m++;
        }
    }
    PyMem_Free(at_of);
    return release(v, PyLong_FromSsize_t(m));
}

/* The slots (a bit each) of the candidates one of whose endpoints is `host`. */
static inline uint64_t
owners(const uint64_t *hosts, const int64_t *host_slots, Py_ssize_t h, const int64_t *at_of,
       int bits, uint64_t host)
{
    uint64_t mask = 0;
    for (int64_t i = place_of(hosts, at_of, bits, host); i >= 0 && i < h && hosts[i] == host; i++)
        mask |= 1ULL << host_slots[i];
    return mask;
}

/* Whether the 4096-bit `filter` has the bit of the low 12 bits of `x`. */
#define MAY_HOLD(filter, x) (((filter)[((x) >> 6) & 63] >> ((x) & 63)) & 1)

PyDoc_STRVAR(series_doc,
"series(inv, size, src, dst, dkey, keys, key_slots, hosts, host_slots, native, own, excl,\n"
"       slot, candidates, buckets)\n"
"--\n\n"
"The bytes of one batch's rows per open bin (row i in bin inv[i]): to native[bin] (series 0\n"
"all, then 1 + the bucket of each of its hosts, once per bucket), and for the candidates: each\n"
"row's slot (that of its directed key among the sorted keys, -1 for none) to slot, its bytes\n"
"to own[bin, slot], and to excl[bin, s] (series as native's) for every candidate s one of\n"
"whose endpoints (sorted hosts) is its source or destination. Buckets: the low bits of a\n"
"host. Sums of whole bytes, exact in any order. Returns how many (row, candidate) pairs went\n"
"to excl.");

static PyObject *
series(PyObject *module, PyObject *args)
{
    Py_buffer v[MOST_VIEWS] = {{0}};
    Py_ssize_t len[13];
    static const char *const names[13] = {"inv",  "size",       "src",    "dst", "dkey",
                                          "keys", "key_slots",  "hosts",  "host_slots",
                                          "native", "own",      "excl",   "slot"};
    static const char *const kinds[13] = {"ql", "ql", "QL", "QL", "QL", "QL", "ql",
                                          "QL", "ql", "d",  "d",  "d",  "ql"};
    if (columns(args, 13, 2, names, kinds, NULL, 9, v, len) < 0)
        return release(v, NULL);
    Py_ssize_t cands = PyLong_AsSsize_t(PyTuple_GET_ITEM(args, 13));
    Py_ssize_t buckets = PyLong_AsSsize_t(PyTuple_GET_ITEM(args, 14));
    if (PyErr_Occurred())
        return release(v, NULL);
    if (cands < 1 || cands > 64 || buckets < 1 || (buckets & (buckets - 1))) {
        PyErr_SetString(PyExc_ValueError, "1-64 candidates and a power of two of buckets");
        return release(v, NULL);
    }
    Py_ssize_t n = len[0], k = len[5], h = len[7], width = 1 + buckets;
    Py_ssize_t bins = len[9] / width;
    if (len[1] != n || len[2] != n || len[3] != n || len[4] != n || len[12] != n ||
        len[6] != k || len[8] != h || len[9] != bins * width || len[10] != bins * cands ||
        len[11] != bins * cands * width) {
        PyErr_SetString(PyExc_ValueError, "columns do not fit the rows, bins or candidates");
        return release(v, NULL);
    }
    const int64_t *inv = v[0].buf, *size = v[1].buf, *key_slots = v[6].buf;
    const int64_t *host_slots = v[8].buf;
    const uint64_t *src = v[2].buf, *dst = v[3].buf, *dkey = v[4].buf, *keys = v[5].buf;
    const uint64_t *hosts = v[7].buf;
    double *native = v[9].buf, *own = v[10].buf, *excl = v[11].buf;
    int64_t *slot = v[12].buf;
    for (Py_ssize_t i = 0; i < k; i++)
        if (key_slots[i] < 0 || key_slots[i] >= cands || (i && keys[i] < keys[i - 1])) {
            PyErr_SetString(PyExc_ValueError, "keys unsorted or a slot out of range");
            return release(v, NULL);
        }
    for (Py_ssize_t i = 0; i < h; i++)
        if (host_slots[i] < 0 || host_slots[i] >= cands || (i && hosts[i] < hosts[i - 1])) {
            PyErr_SetString(PyExc_ValueError, "hosts unsorted or a slot out of range");
            return release(v, NULL);
        }
    int key_bits, host_bits;
    int64_t *key_at = index_keys(keys, k, &key_bits);
    if (!key_at)
        return release(v, NULL);
    int64_t *host_at = index_keys(hosts, h, &host_bits);
    if (!host_at) {
        PyMem_Free(key_at);
        return release(v, NULL);
    }
    /* Most rows are of no candidate: a bit per low 12 bits of the (salted) keys and hosts
     * tells them apart before any probing. */
    uint64_t key_filter[64] = {0}, host_filter[64] = {0};
    for (Py_ssize_t i = 0; i < k; i++)
        key_filter[(keys[i] >> 6) & 63] |= 1ULL << (keys[i] & 63);
    for (Py_ssize_t i = 0; i < h; i++)
        host_filter[(hosts[i] >> 6) & 63] |= 1ULL << (hosts[i] & 63);
    uint64_t low = (uint64_t)buckets - 1;
    Py_ssize_t touched = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t b = inv[i];
        if (b < 0 || b >= bins) {
            PyErr_Format(PyExc_IndexError, "bin %lld is outside %zd bins", (long long)b, bins);
            touched = -1;
            break;
        }
        double w = (double)size[i];
        Py_ssize_t bs = 1 + (Py_ssize_t)(src[i] & low), bd = 1 + (Py_ssize_t)(dst[i] & low);
        double *row = native + b * width;
        row[0] += w;
        row[bs] += w;
        if (bd != bs)
            row[bd] += w;
        int64_t s = -1;
        if (MAY_HOLD(key_filter, dkey[i])) {
            int64_t at = place_of(keys, key_at, key_bits, dkey[i]);
            if (at >= 0) {
                s = key_slots[at];
                own[b * cands + s] += w;
            }
        }
        slot[i] = s;
        uint64_t mask = 0;
        if (MAY_HOLD(host_filter, src[i]))
            mask = owners(hosts, host_slots, h, host_at, host_bits, src[i]);
        if (MAY_HOLD(host_filter, dst[i]))
            mask |= owners(hosts, host_slots, h, host_at, host_bits, dst[i]);
        for (; mask; mask &= mask - 1) {
            double *e = excl + (b * cands + __builtin_ctzll(mask)) * width;
            e[0] += w;
            e[bs] += w;
            if (bd != bs)
                e[bd] += w;
            touched++;
        }
    }
    PyMem_Free(key_at);
    PyMem_Free(host_at);
    if (touched < 0)
        return release(v, NULL);
    return release(v, PyLong_FromSsize_t(touched));
}

/* Where `key` is, or would go, among the sorted `keys[0:n]` (the first place). */
static inline Py_ssize_t
lower_bound(const uint64_t *keys, Py_ssize_t n, uint64_t key);

/* lower_bound of `key` among keys[at:n], for keys looked up in ascending order from where the
 * one before went: strides that double from `at`, then a binary search within the last one
 * (a batch's keys land a few places apart in a large index, and stay near in the cache). */
static inline Py_ssize_t
lower_bound_from(const uint64_t *keys, Py_ssize_t n, Py_ssize_t at, uint64_t key)
{
    Py_ssize_t step = 1, lo = at;
    while (lo + step <= n && keys[lo + step - 1] < key) {
        lo += step;
        step *= 2;
    }
    Py_ssize_t hi = lo + step - 1 < n ? lo + step - 1 : n;
    return lo + lower_bound(keys + lo, hi - lo, key);
}

static inline Py_ssize_t
lower_bound(const uint64_t *keys, Py_ssize_t n, uint64_t key)
{
    Py_ssize_t lo = 0, hi = n;
    while (lo < hi) {
        Py_ssize_t mid = lo + (hi - lo) / 2;
        if (keys[mid] < key)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The id of `key` in a two-part index (settled keys and ids, the recent part's ids counting
 * from s), or -1: keys looked up in ascending order search each part from where the one before
 * was found (*p, *at). */
static inline int64_t
index_find(const uint64_t *settled, const int64_t *settled_ids, Py_ssize_t s,
           const uint64_t *recent, const int64_t *recent_ids, Py_ssize_t r, uint64_t key,
           Py_ssize_t *p, Py_ssize_t *at)
{
    *p = lower_bound_from(settled, s, *p, key);
    if (*p < s && settled[*p] == key)
        return settled_ids[*p];
    *at = lower_bound_from(recent, r, *at, key);
    if (*at < r && recent[*at] == key)
        return recent_ids[*at] + s;
    return -1;
}

/* The recent part (r keys beside their ids) with the new keys merged in, to merged and
 * merged_ids: the new keys are keys[i] for the n rows where `taken` is set (every row without
 * it), ascending and absent from the part, their ids r, r + 1, ... in that order.  Returns the
 * merged length. */
static Py_ssize_t
merge_recent(const uint64_t *recent, const int64_t *recent_ids, Py_ssize_t r,
             const uint64_t *keys, const unsigned char *taken, Py_ssize_t n, uint64_t *merged,
             int64_t *merged_ids)
{
    Py_ssize_t a = 0, o = 0, j = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (taken && !taken[i])
            continue;
        for (; a < r && recent[a] < keys[i]; a++, o++) {
            merged[o] = recent[a];
            merged_ids[o] = recent_ids[a];
        }
        merged[o] = keys[i];
        merged_ids[o] = r + j;
        o++;
        j++;
    }
    for (; a < r; a++, o++) {
        merged[o] = recent[a];
        merged_ids[o] = recent_ids[a];
    }
    return o;
}

PyDoc_STRVAR(index_add_doc,
"index_add(settled_keys, settled_ids, recent_keys, recent_ids, keys, out_ids, out_added,\n"
"          out_keys, out_recent_ids)\n"
"--\n\n"
"Look up the sorted distinct `keys` in a two-part index (each part sorted keys beside their\n"
"ids; the recent part's ids count from len(settled_keys)), adding the absent ones to the\n"
"recent part with the next ids in key order: each key's id to out_ids and whether it was\n"
"added to out_added, the recent part with the added keys merged in to out_keys and\n"
"out_recent_ids. Returns the recent part's new length.");

static PyObject *
index_add(PyObject *module, PyObject *args)
{
    Py_buffer v[MOST_VIEWS] = {{0}};
    Py_ssize_t len[9];
    static const char *const names[9] = {"settled_keys", "settled_ids", "recent_keys",
                                         "recent_ids",   "keys",        "out_ids",
                                         "out_added",    "out_keys",    "out_recent_ids"};
    static const char *const kinds[9] = {"QL", "ql", "QL", "ql", "QL", "ql", "?B", "QL", "ql"};
    static const Py_ssize_t sizes[9] = {8, 8, 8, 8, 8, 8, 1, 8, 8};
    if (columns(args, 9, 0, names, kinds, sizes, 5, v, len) < 0)
        return release(v, NULL);
    Py_ssize_t s = len[0], r = len[2], n = len[4];
    if (len[1] != s || len[3] != r || len[5] != n || len[6] != n || len[7] < r + n ||
        len[8] < r + n) {
        PyErr_SetString(PyExc_ValueError, "columns do not fit the index or the keys");
        return release(v, NULL);
    }
    const uint64_t *settled = v[0].buf, *recent = v[2].buf, *keys = v[4].buf;
    const int64_t *settled_ids = v[1].buf, *recent_ids = v[3].buf;
    int64_t *ids = v[5].buf, *merged_ids = v[8].buf;
    unsigned char *added = v[6].buf;
    uint64_t *merged = v[7].buf;
    for (Py_ssize_t i = 1; i < n; i++)
        if (keys[i] <= keys[i - 1]) {
            PyErr_SetString(PyExc_ValueError, "keys must be sorted and distinct");
            return release(v, NULL);
        }
    /* The keys ascend: each is searched for in both parts from where the one before it was. */
    Py_ssize_t m = 0;
    for (Py_ssize_t i = 0, at = 0, p = 0; i < n; i++) {
        const int64_t id = index_find(settled, settled_ids, s, recent, recent_ids, r, keys[i],
                                      &p, &at);
        added[i] = id < 0;
        ids[i] = id < 0 ? s + r + m++ : id;
    }
    const Py_ssize_t o = merge_recent(recent, recent_ids, r, keys, added, n, merged, merged_ids);
    return release(v, PyLong_FromSsize_t(o));
}

PyDoc_STRVAR(natives_match_doc,
"natives_match(fps, order, ts, l2dst, settled_keys, settled_ids, recent_keys, recent_ids,\n"
"              mem_ts, mem_l2dst, out_keys, out_ids, out_first, out_recent_keys,\n"
"              out_recent_ids, out_pairs, tee_window)\n"
"--\n\n"
"One batch of sampled natives (fingerprints fps, times ts, L2 destinations l2dst; order: a\n"
"stable argsort of fps) against the two-part index of those remembered (as index_add; mem_ts\n"
"and mem_l2dst are theirs by id): the fingerprints new to it, ascending, to out_keys with\n"
"their ids (the next ones, in order) to out_ids and their first rows to out_first; the recent\n"
"part with them merged in to out_recent_keys and out_recent_ids.  The sightings that may be\n"
"copies (another L2 destination, not 0, within tee_window seconds after) go to out_pairs\n"
"(int64, two a pair): first (row, id) of the rows that repeat one remembered, in row order,\n"
"then (row, first row) of the later rows of a new one the batch holds more than once, by\n"
"fingerprint then row.  Returns (new, recent length, pairs of the first kind, of the second).");

static PyObject *
natives_match(PyObject *module, PyObject *args)
{
    Py_buffer v[MOST_VIEWS] = {{0}};
    Py_ssize_t len[16];
    enum { FPS, ORDER, TS, L2DST, SKEYS, SIDS, RKEYS, RIDS, MEM_TS, MEM_L2DST, OUT_KEYS,
           OUT_IDS, OUT_FIRST, OUT_RKEYS, OUT_RIDS, OUT_PAIRS };
    static const char *const names[16] = {
        "fps", "order", "ts", "l2dst", "settled_keys", "settled_ids", "recent_keys",
        "recent_ids", "mem_ts", "mem_l2dst", "out_keys", "out_ids", "out_first",
        "out_recent_keys", "out_recent_ids", "out_pairs"};
    static const char *const kinds[16] = {"QL", "ql", "d", "ql", "QL", "ql", "QL", "ql",
                                          "d",  "ql", "QL", "ql", "ql", "QL", "ql", "ql"};
    if (columns(args, 16, 1, names, kinds, NULL, OUT_KEYS, v, len) < 0)
        return release(v, NULL);
    const double tee = PyFloat_AsDouble(PyTuple_GET_ITEM(args, 16));
    if (tee == -1.0 && PyErr_Occurred())
        return release(v, NULL);
    const Py_ssize_t k = len[FPS], s = len[SKEYS], r = len[RKEYS], held = len[MEM_TS];
    if (len[ORDER] != k || len[TS] != k || len[L2DST] != k || len[SIDS] != s || len[RIDS] != r
        || len[MEM_L2DST] != held || len[OUT_KEYS] != k || len[OUT_IDS] != k
        || len[OUT_FIRST] != k || len[OUT_RKEYS] < r + k || len[OUT_RIDS] < r + k
        || len[OUT_PAIRS] != 4 * k) {
        PyErr_SetString(PyExc_ValueError, "columns do not fit the natives or the index");
        return release(v, NULL);
    }
    const uint64_t *fps = v[FPS].buf, *settled = v[SKEYS].buf, *recent = v[RKEYS].buf;
    const int64_t *order = v[ORDER].buf, *l2dst = v[L2DST].buf, *mem_l2dst = v[MEM_L2DST].buf;
    const int64_t *settled_ids = v[SIDS].buf, *recent_ids = v[RIDS].buf;
    const double *ts = v[TS].buf, *mem_ts = v[MEM_TS].buf;
    uint64_t *out_keys = v[OUT_KEYS].buf, *merged = v[OUT_RKEYS].buf;
    int64_t *out_ids = v[OUT_IDS].buf, *out_first = v[OUT_FIRST].buf;
    int64_t *merged_ids = v[OUT_RIDS].buf, *pairs = v[OUT_PAIRS].buf;
    for (Py_ssize_t i = 0; i < k; i++) {
        if (order[i] < 0 || order[i] >= k) {
            PyErr_SetString(PyExc_IndexError, "order names a row past the natives");
            return release(v, NULL);
        }
        if (i && (fps[order[i]] < fps[order[i - 1]]
                  || (fps[order[i]] == fps[order[i - 1]] && order[i] <= order[i - 1]))) {
            PyErr_SetString(PyExc_ValueError, "order must sort the fingerprints, stably");
            return release(v, NULL);
        }
    }
    /* Each row's remembered id, -1 for a fingerprint new to the index. */
    int64_t *known = PyMem_Malloc((size_t)(k ? k : 1) * sizeof(int64_t));
    if (!known)
        return release(v, PyErr_NoMemory());
    int64_t *now = pairs + 2 * k; /* the second kind's pairs, moved after the first's below */
    Py_ssize_t added = 0, first_kind = 0, second_kind = 0;
    for (Py_ssize_t a = 0, p = 0, at = 0; a < k;) {
        const uint64_t key = fps[order[a]];
        Py_ssize_t z = a + 1;
        while (z < k && fps[order[z]] == key)
            z++;
        const int64_t id = index_find(settled, settled_ids, s, recent, recent_ids, r, key, &p,
                                      &at);
        if (id >= held || id < -1) {
            PyMem_Free(known);
            PyErr_SetString(PyExc_ValueError, "the index names an id past the natives held");
            return release(v, NULL);
        }
        for (Py_ssize_t j = a; j < z; j++)
            known[order[j]] = id;
        if (id < 0) {
            /* New: its first sighting is kept; the later ones are compared with it. */
            const int64_t r0 = order[a];
            out_keys[added] = key;
            out_ids[added] = s + r + added;
            out_first[added] = r0;
            added++;
            for (Py_ssize_t j = a + 1; j < z; j++) {
                const int64_t row = order[j];
                if (l2dst[row] != l2dst[r0] && l2dst[row] != 0 && ts[row] - ts[r0] <= tee) {
                    now[2 * second_kind] = row;
                    now[2 * second_kind + 1] = r0;
                    second_kind++;
                }
            }
        }
        a = z;
    }
    for (Py_ssize_t row = 0; row < k; row++) {
        const int64_t id = known[row];
        if (id >= 0 && l2dst[row] != mem_l2dst[id] && l2dst[row] != 0
            && ts[row] - mem_ts[id] <= tee) {
            pairs[2 * first_kind] = row;
            pairs[2 * first_kind + 1] = id;
            first_kind++;
        }
    }
    PyMem_Free(known);
    memmove(pairs + 2 * first_kind, now, (size_t)second_kind * 2 * sizeof(int64_t));
    const Py_ssize_t o =
        merge_recent(recent, recent_ids, r, out_keys, NULL, added, merged, merged_ids);
    return release(v, Py_BuildValue("nnnn", added, o, first_kind, second_kind));
}

PyDoc_STRVAR(index_merge_doc,
"index_merge(settled_keys, settled_ids, recent_keys, recent_ids, out_keys, out_ids)\n"
"--\n\n"
"The two parts of an index (each sorted keys beside their ids; the recent part's ids count\n"
"from len(settled_keys), none of its keys in the settled part) as one: the keys merged in\n"
"order to out_keys, each beside its id to out_ids (a settled key before an equal recent one).");

static PyObject *
index_merge(PyObject *module, PyObject *args)
{
    Py_buffer v[MOST_VIEWS] = {{0}};
    Py_ssize_t len[6];
    static const char *const names[6] = {"settled_keys", "settled_ids", "recent_keys",
                                         "recent_ids",   "out_keys",    "out_ids"};
    static const char *const kinds[6] = {"QL", "ql", "QL", "ql", "QL", "ql"};
    if (columns(args, 6, 0, names, kinds, NULL, 4, v, len) < 0)
        return release(v, NULL);
    Py_ssize_t s = len[0], r = len[2];
    if (len[1] != s || len[3] != r || len[4] != s + r || len[5] != s + r) {
        PyErr_SetString(PyExc_ValueError, "columns do not fit the two parts");
        return release(v, NULL);
    }
    const uint64_t *settled = v[0].buf, *recent = v[2].buf;
    const int64_t *settled_ids = v[1].buf, *recent_ids = v[3].buf;
    uint64_t *merged = v[4].buf;
    int64_t *merged_ids = v[5].buf;
    Py_ssize_t a = 0, b = 0, o = 0;
    while (a < s || b < r) {
        if (b >= r || (a < s && settled[a] <= recent[b])) {
            merged[o] = settled[a];
            merged_ids[o++] = settled_ids[a++];
        } else {
            merged[o] = recent[b];
            merged_ids[o++] = recent_ids[b++] + s;
        }
    }
    return release(v, Py_NewRef(Py_None));
}

/* numpy's pairwise summation of `n` doubles (what it gives for the sum of a contiguous row):
 * fewer than eight one after the other, up to 128 in eight running sums joined in pairs (the
 * rest added after), more as two halves summed apart. */
static double
pairwise_sum(const double *a, Py_ssize_t n)
{
    if (n < 8) {
        double res = 0.0;
        for (Py_ssize_t i = 0; i < n; i++)
            res += a[i];
        return res;
    }
    if (n <= 128) {
        double r[8];
        for (int j = 0; j < 8; j++)
            r[j] = a[j];
        Py_ssize_t i;
        for (i = 8; i < n - (n % 8); i += 8)
            for (int j = 0; j < 8; j++)
                r[j] += a[i + j];
        double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++)
            res += a[i];
        return res;
    }
    Py_ssize_t half = n / 2;
    half -= half % 8;
    return pairwise_sum(a, half) + pairwise_sum(a + half, n - half);
}

/* The first of `n` bins a, a + 1, ... that is at least first + offset (n if none), without
 * overflow whatever the bin numbers. */
static Py_ssize_t
first_taken(int64_t first, int64_t offset, int64_t a, Py_ssize_t n)
{
    if (first >= a) {
        uint64_t ahead = (uint64_t)first - (uint64_t)a;
        if (ahead >= (uint64_t)n || (uint64_t)offset >= (uint64_t)n - ahead)
            return n;
        return (Py_ssize_t)(ahead + (uint64_t)offset);
    }
    uint64_t behind = (uint64_t)a - (uint64_t)first;
    return behind >= (uint64_t)offset ? 0 : (Py_ssize_t)((uint64_t)offset - behind);
}

/* Add bins i0 .. n - 1 of a candidate's bytes y and lagged series x(i, series, lag) (read
 * from `series`: row `top + i - lag`) to its running sums and counts, as numpy does: each sum
 * over the bins one bin after the other, then added to the running one; the bytes' sums
 * pairwise. `part` holds 3 * width * lags doubles, `squares` n. */
static void
add_bins(const double *y, const double *series, Py_ssize_t top, Py_ssize_t i0, Py_ssize_t n,
         Py_ssize_t width, Py_ssize_t lags, double *sums, double *counts, double *part,
         double *squares)
{
    Py_ssize_t cells = width * lags;
    double *sx = part, *sxx = part + cells, *sxy = part + 2 * cells;
    for (Py_ssize_t c = 0; c < 3 * cells; c++)
        part[c] = 0.0;
    Py_ssize_t active = 0;
    for (Py_ssize_t i = i0; i < n; i++) {
        double yi = y[i];
        active += yi > 0;
        squares[i - i0] = yi * yi;
        for (Py_ssize_t lag = 0; lag < lags; lag++) {
            const double *row = series + (top + i - lag) * width;
            for (Py_ssize_t j = 0; j < width; j++) {
                double x = row[j];
                Py_ssize_t c = j * lags + lag;
                sx[c] += x;
                sxx[c] += x * x;
                sxy[c] += yi * x;
            }
        }
    }
    for (Py_ssize_t c = 0; c < 3 * cells; c++)
        sums[c] += part[c];
    counts[0] += (double)(n - i0);
    counts[1] += (double)active;
    counts[2] += pairwise_sum(y + i0, n - i0);
    counts[3] += pairwise_sum(squares, n - i0);
}

PyDoc_STRVAR(fold_doc,
"fold(full, floats, excl_new, y_new, slots, first, a, ring, wide, lags, width)\n"
"--\n\n"
"Fold n closed bins a .. a + n - 1 into the rows of `floats` (one a slot) of the candidates\n"
"`slots`. full: the native bytes per series (width of them) of the ring - 1 bins before and of\n"
"these, (ring - 1 + n, width); excl_new and y_new: per slot, the bins' bytes of its endpoints'\n"
"traffic per series and its own, (slots, n, width) and (slots, n). A slot's row holds its\n"
"endpoints' ring (ring, width) and its own bytes' (wide - 1), then the running sums x, x*x\n"
"and y*x of the 0.1 s bins and of the sliding windows of `wide` bins, each (width, lags),\n"
"then the counts (bins, bins with bytes, sum of y, of y*y) of each. x at lag k is the native\n"
"bytes less the endpoints' (not below zero) k bins before; a candidate's bins count from its\n"
"bin `first`, its windows' from its bin first + wide - 1. The same sums, added in the same\n"
"order, as the numpy form.");

static PyObject *
fold(PyObject *module, PyObject *args)
{
    Py_buffer v[MOST_VIEWS] = {{0}};
    Py_ssize_t len[6];
    static const char *const names[6] = {"full", "floats", "excl_new", "y_new", "slots",
                                         "first"};
    static const char *const kinds[6] = {"d", "d", "d", "d", "ql", "ql"};
    if (columns(args, 6, 5, names, kinds, NULL, 1, v, len) < 0)
        return release(v, NULL);
    int64_t a = PyLong_AsLongLong(PyTuple_GET_ITEM(args, 6));
    Py_ssize_t ring = PyLong_AsSsize_t(PyTuple_GET_ITEM(args, 7));
    Py_ssize_t wide = PyLong_AsSsize_t(PyTuple_GET_ITEM(args, 8));
    Py_ssize_t lags = PyLong_AsSsize_t(PyTuple_GET_ITEM(args, 9));
    Py_ssize_t width = PyLong_AsSsize_t(PyTuple_GET_ITEM(args, 10));
    if (PyErr_Occurred())
        return release(v, NULL);
    /* The lags reach back into the ring, and so do the windows (ring = lags - 1 + wide). */
    if (width < 1 || width > 1024 || wide < 2 || lags < 1 || lags > 1024 ||
        ring != lags - 1 + wide || len[0] % width != 0 || len[0] / width < ring) {
        PyErr_SetString(PyExc_ValueError, "the ring, lags, windows or series do not fit");
        return release(v, NULL);
    }
    Py_ssize_t t = len[0] / width, n = t - (ring - 1), cells = width * lags;
    Py_ssize_t row = ring * width + (wide - 1) + 6 * cells + 8;
    Py_ssize_t slots = len[1] / row, k = len[4];
    if (len[1] != slots * row || len[2] != slots * n * width || len[3] != slots * n ||
        len[5] != k) {
        PyErr_SetString(PyExc_ValueError, "columns do not fit the slots or the bins");
        return release(v, NULL);
    }
    const double *full = v[0].buf, *excl_new = v[2].buf, *y_new = v[3].buf;
    double *floats = v[1].buf;
    const int64_t *slot_of = v[4].buf, *first = v[5].buf;
    for (Py_ssize_t c = 0; c < k; c++)
        if (slot_of[c] < 0 || slot_of[c] >= slots) {
            PyErr_Format(PyExc_IndexError, "slot %lld is outside %zd slots",
                         (long long)slot_of[c], slots);
            return release(v, NULL);
        }
    /* Per candidate: its endpoints' series over the ring and the bins (then the natives less
     * them), their running sums (t + 1) and the windows' (t + 1 - wide), its own bytes over its
     * ring and the bins and their running sums, the windows', the sums over the bins, y*y. */
    Py_ssize_t scratch = 2 * t * width + 2 * (t + 1) * width + (wide - 1 + n) + (wide + n) + n +
                         3 * cells + n;
    double *work = PyMem_Malloc((size_t)scratch * sizeof(double));
    if (!work)
        return release(v, PyErr_NoMemory());
    double *excl = work, *d = excl + t * width, *cs = d + t * width, *dw = cs + (t + 1) * width;
    double *yfull = dw + (t + 1) * width, *ycs = yfull + (wide - 1 + n), *yw = ycs + (wide + n);
    double *part = yw + n, *squares = part + 3 * cells;
    for (Py_ssize_t c = 0; c < k; c++) {
        double *mine = floats + slot_of[c] * row;
        double *excl_ring = mine, *y_ring = mine + ring * width;
        double *sums = y_ring + (wide - 1), *counts = sums + 6 * cells;
        /* The rings move on by n bins. */
        memcpy(excl, excl_ring + width, (size_t)((ring - 1) * width) * sizeof(double));
        memcpy(excl + (ring - 1) * width, excl_new + slot_of[c] * n * width,
               (size_t)(n * width) * sizeof(double));
        memcpy(excl_ring, excl + (t - ring) * width, (size_t)(ring * width) * sizeof(double));
        memcpy(yfull, y_ring, (size_t)(wide - 1) * sizeof(double));
        memcpy(yfull + wide - 1, y_new + slot_of[c] * n, (size_t)n * sizeof(double));
        memcpy(y_ring, yfull + n, (size_t)(wide - 1) * sizeof(double));
        Py_ssize_t fine_from = first_taken(first[c], 0, a, n);
        if (fine_from >= n)
            continue; /* no bin of its own yet (nor any window) */
        for (Py_ssize_t i = 0; i < t * width; i++) {
            double x = full[i] - excl[i];
            d[i] = x > 0.0 ? x : 0.0;
        }
        const double *y = yfull + (wide - 1);
        add_bins(y, d, ring - 1, fine_from, n, width, lags, sums, counts, part, squares);
        Py_ssize_t wide_from = first_taken(first[c], wide - 1, a, n);
        if (wide_from >= n)
            continue;
        /* Windows of `wide` bins as differences of running sums, as numpy's cumsum gives. */
        for (Py_ssize_t j = 0; j < width; j++)
            cs[j] = 0.0;
        for (Py_ssize_t i = 0; i < t; i++)
            for (Py_ssize_t j = 0; j < width; j++)
                cs[(i + 1) * width + j] = cs[i * width + j] + d[i * width + j];
        for (Py_ssize_t i = 0; i + wide <= t; i++)
            for (Py_ssize_t j = 0; j < width; j++)
                dw[i * width + j] = cs[(i + wide) * width + j] - cs[i * width + j];
        ycs[0] = 0.0;
        for (Py_ssize_t i = 0; i < wide - 1 + n; i++)
            ycs[i + 1] = ycs[i] + yfull[i];
        for (Py_ssize_t i = 0; i < n; i++)
            yw[i] = ycs[i + wide] - ycs[i];
        add_bins(yw, dw, lags - 1, wide_from, n, width, lags, sums + 3 * cells, counts + 4,
                 part, squares);
    }
    PyMem_Free(work);
    return release(v, Py_NewRef(Py_None));
}

static PyMethodDef methods[] = {
    {"sample", sample, METH_VARARGS, sample_doc},
    {"eligible", eligible, METH_VARARGS, eligible_doc},
    {"spread", spread, METH_VARARGS, spread_doc},
    {"size_deltas", size_deltas, METH_VARARGS, size_deltas_doc},
    {"host_bytes", host_bytes, METH_VARARGS, host_bytes_doc},
    {"find", find, METH_VARARGS, find_doc},
    {"series", series, METH_VARARGS, series_doc},
    {"index_add", index_add, METH_VARARGS, index_add_doc},
    {"natives_match", natives_match, METH_VARARGS, natives_match_doc},
    {"index_merge", index_merge, METH_VARARGS, index_merge_doc},
    {"fold", fold, METH_VARARGS, fold_doc},
    {NULL, NULL, 0, NULL},
};

static PyModuleDef_Slot slots[] = {
#ifdef Py_mod_multiple_interpreters
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
    {0, NULL},
};

static struct PyModuleDef copies_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "detector.flows._copies",
    .m_doc = "Copy matching's per-row loops, compiled (see fingerprint.py and encrypted.py).",
    .m_size = 0,
    .m_methods = methods,
    .m_slots = slots,
};

PyMODINIT_FUNC
PyInit__copies(void)
{
    return PyModuleDef_Init(&copies_module);
}
