/* The flow table's accounting of a batch, compiled (detector/flows/table.py): an
 * open-addressing index of 64-bit keys, and one pass over a batch's rows that looks up or adds
 * each row's flow and adds to its counters; eviction's moves and the index rebuilt from the
 * kept keys; the set of distinct hosts, an open-addressing table of the keys themselves; and
 * which payload rows the prefilters look at, by each flow's quiet count.
 *
 * The index is a numpy array of slots, each two uint64 words: a key and its id + 1 (0: an
 * empty slot).  The ids are dense (0 .. count - 1) and name the rows of the flow table's
 * columns.  The caller sizes the tables (a power of two of slots, at least twice the keys they
 * may hold after the call) from its configured budgets: a call that could fill one more than
 * half is refused, so every probe meets an empty slot, and no probe sequence is longer than
 * the slots.  Keys are salted hashes a sender cannot choose, and they are mixed once more
 * before taking the slot, so keys that share their low bits do not share slots.
 *
 * Each function gives what the numpy form beside it gives (the tests compare them): new keys are
 * numbered in the order of their first rows.  Every id and row read is checked against the
 * buffers passed.
 */
#include "../_columns.h"

#define EMPTY 0

/* Rows ahead whose memory a pass asks for while working on a row. */
#define AHEAD 8
#if defined(__GNUC__) || defined(__clang__)
#define PREFETCH(p) __builtin_prefetch(p)
#else
#define PREFETCH(p) ((void)(p))
#endif

/* The slots of a call: a buffer of uint64 pairs whose count is a power of two. */
struct slots {
    uint64_t *pair; /* pair[2 * s]: the key of slot s; pair[2 * s + 1]: its id + 1 */
    uint64_t mask;
    Py_ssize_t size;
};

static int
slots_of(Py_buffer *view, struct slots *t)
{
    Py_ssize_t size = view->len / (Py_ssize_t)(2 * sizeof(uint64_t));
    if (size < 1 || (size & (size - 1)) || view->len != size * 2 * (Py_ssize_t)sizeof(uint64_t)) {
        PyErr_SetString(PyExc_ValueError, "slots must be a power of two of uint64 pairs");
        return -1;
    }
    t->pair = view->buf;
    t->mask = (uint64_t)size - 1;
    t->size = size;
    return 0;
}

/* Whether `count` keys may be held in the slots (at most half of them taken). */
static int
fits(const struct slots *t, Py_ssize_t count)
{
    if (count < 0 || count > t->size / 2) {
        PyErr_Format(PyExc_ValueError, "%zd keys do not fit in %zd slots at most half full", count,
                     t->size);
        return 0;
    }
    return 1;
}

/* The slot of `key`, or of the empty slot where it would go.  At most half the slots are taken,
 * so one is met within t->size steps; the loop is bounded by it all the same. */
static inline uint64_t
probe(const struct slots *t, uint64_t key)
{
    uint64_t s = mix64(key) & t->mask;
    for (Py_ssize_t step = 0; step < t->size; step++) {
        const uint64_t *p = t->pair + 2 * s;
        if (p[1] == EMPTY || p[0] == key)
            return s;
        s = (s + 1) & t->mask;
    }
    return s; /* not reached: fits() keeps half the slots empty */
}

/* Ask for the memory of the slot where the probe of `key` starts. */
static inline void
ask(const struct slots *t, uint64_t key)
{
    PREFETCH(t->pair + 2 * (mix64(key) & t->mask));
}

/* The id of the key in slot s (-1 if empty), checked against the `count` ids in use. */
static inline int64_t
id_at(const struct slots *t, uint64_t s, Py_ssize_t count)
{
    uint64_t held = t->pair[2 * s + 1];
    if (held == EMPTY)
        return -1;
    if (held > (uint64_t)count)
        return -2;
    return (int64_t)(held - 1);
}

static PyObject *
corrupt(Py_buffer *v)
{
    PyErr_SetString(PyExc_ValueError, "the slots name an id past the keys held");
    return release(v, NULL);
}

/* One column argument: its name, struct formats and item size. */
struct spec {
    const char *name, *kinds;
    Py_ssize_t size;
};

#define U64_COLUMN(name) {name, "QL", 8}
#define I64_COLUMN(name) {name, "ql", 8}

/* The call's arguments: `ncols` columns as `specs` says, the first one the slots (read to t,
 * if given; from writable_from on written to; the one at none_ok, if any, may be None: its
 * view stays empty and its length is -1), then `nints` integers to ints. */
static int
arguments(PyObject *args, Py_ssize_t ncols, const struct spec *specs, Py_ssize_t writable_from,
          Py_ssize_t none_ok, Py_ssize_t nints, Py_buffer *v, Py_ssize_t *len, Py_ssize_t *ints,
          struct slots *t)
{
    if (PyTuple_GET_SIZE(args) != ncols + nints) {
        PyErr_Format(PyExc_TypeError, "takes %zd arguments", ncols + nints);
        return -1;
    }
    for (Py_ssize_t i = 0; i < nints; i++) {
        ints[i] = PyLong_AsSsize_t(PyTuple_GET_ITEM(args, ncols + i));
        if (ints[i] == -1 && PyErr_Occurred())
            return -1;
    }
    for (Py_ssize_t i = 0; i < ncols; i++) {
        PyObject *obj = PyTuple_GET_ITEM(args, i);
        if (i == none_ok && obj == Py_None) {
            len[i] = -1;
            continue;
        }
        if (column(obj, &v[i], i >= writable_from, specs[i].size, specs[i].kinds, -1,
                   specs[i].name) < 0)
            return -1;
        len[i] = v[i].len / specs[i].size;
    }
    return t ? slots_of(&v[0], t) : 0;
}

/* Empty the slots, then hold `n` keys (distinct), key i with id i. */
static int
hold(struct slots *t, const uint64_t *keys, Py_ssize_t n)
{
    memset(t->pair, 0, (size_t)t->size * 2 * sizeof(uint64_t));
    for (Py_ssize_t i = 0; i < n; i++) {
        if (i + AHEAD < n)
            ask(t, keys[i + AHEAD]);
        uint64_t s = probe(t, keys[i]);
        if (t->pair[2 * s + 1] != EMPTY) {
            PyErr_SetString(PyExc_ValueError, "the keys repeat");
            return -1;
        }
        t->pair[2 * s] = keys[i];
        t->pair[2 * s + 1] = (uint64_t)i + 1;
    }
    return 0;
}

PyDoc_STRVAR(build_doc,
"build(slots, keys)\n"
"--\n\n"
"Empty the slots, then hold the keys (distinct), key i with id i.");

static PyObject *
build(PyObject *module, PyObject *args)
{
    Py_buffer v[MOST_VIEWS] = {{0}};
    Py_ssize_t len[2];
    static const struct spec specs[2] = {U64_COLUMN("slots"), U64_COLUMN("keys")};
    struct slots t;
    if (arguments(args, 2, specs, 0, -1, 0, v, len, NULL, &t) < 0 || !fits(&t, len[1]))
        return release(v, NULL);
    if (hold(&t, v[1].buf, len[1]) < 0)
        return release(v, NULL);
    return release(v, Py_NewRef(Py_None));
}

PyDoc_STRVAR(lookup_doc,
"lookup(slots, keys, out_ids, count)\n"
"--\n\n"
"The id of each key to out_ids, -1 where it is not held (`count` keys are).");

static PyObject *
lookup(PyObject *module, PyObject *args)
{
    Py_buffer v[MOST_VIEWS] = {{0}};
    Py_ssize_t len[3];
    static const struct spec specs[3] = {U64_COLUMN("slots"), U64_COLUMN("keys"),
                                         I64_COLUMN("out_ids")};
    Py_ssize_t count;
    struct slots t;
    if (arguments(args, 3, specs, 2, -1, 1, v, len, &count, &t) < 0 || !fits(&t, count))
        return release(v, NULL);
    if (len[2] != len[1]) {
        PyErr_SetString(PyExc_ValueError, "out_ids must have one item per key");
        return release(v, NULL);
    }
    const uint64_t *keys = v[1].buf;
    int64_t *ids = v[2].buf;
    for (Py_ssize_t i = 0; i < len[1]; i++) {
        if (i + AHEAD < len[1])
            ask(&t, keys[i + AHEAD]);
        int64_t id = id_at(&t, probe(&t, keys[i]), count);
        if (id == -2)
            return corrupt(v);
        ids[i] = id;
    }
    return release(v, Py_NewRef(Py_None));
}

/* numpy's maximum of two float64: NaN if either is. */
static inline double
maximum(double a, double b)
{
    return (a >= b || a != a) ? a : b;
}

PyDoc_STRVAR(update_doc,
"update(slots, keys, direction, proto, wire, ts, key, proto_of, quiet, first, last, seen,\n"
"       counts, out_ids, out_new, count, batch)\n"
"--\n\n"
"Account a batch's rows in a flow table of `count` flows: each row's flow key is looked up, or\n"
"added with the next id (key, proto_of, quiet, first of its first row; its counters and last\n"
"time as they are, zero); its flow's packets and bytes of the row's direction (0 or 1) grow by\n"
"one and the row's wire length, its last time becomes the latest of it and the row's, its seen\n"
"batch `batch`.  The flow columns have room for count + the rows (counts: the four columns\n"
"packets 0, packets 1, bytes 0, bytes 1 one after the other); the slots for twice that.  Each\n"
"row's id to out_ids; the rows that added a flow, in order, to out_new.  Returns how many\n"
"flows were added.");

static PyObject *
update(PyObject *module, PyObject *args)
{
    Py_buffer v[MOST_VIEWS] = {{0}};
    Py_ssize_t len[15];
    enum { SLOTS, KEYS, DIRECTION, PROTO, WIRE, TS, KEY, PROTO_OF, QUIET, FIRST, LAST, SEEN,
           COUNTS, OUT_IDS, OUT_NEW };
    static const struct spec specs[15] = {
        U64_COLUMN("slots"), U64_COLUMN("keys"), {"direction", "b", 1}, I64_COLUMN("proto"),
        I64_COLUMN("wire"), {"ts", "d", 8}, U64_COLUMN("key"), {"proto_of", "h", 2},
        {"quiet", "B", 1}, {"first", "d", 8}, {"last", "d", 8}, I64_COLUMN("seen"),
        I64_COLUMN("counts"), I64_COLUMN("out_ids"), I64_COLUMN("out_new")};
    Py_ssize_t ints[2];
    struct slots t;
    if (arguments(args, 15, specs, KEY, -1, 2, v, len, ints, &t) < 0)
        return release(v, NULL);
    Py_ssize_t count = ints[0], batch = ints[1];
    Py_ssize_t m = len[KEYS], cap = len[KEY];
    for (int i = DIRECTION; i <= TS; i++)
        if (len[i] != m)
            goto unequal;
    if (len[OUT_IDS] != m || len[OUT_NEW] != m)
        goto unequal;
    for (int i = PROTO_OF; i <= SEEN; i++)
        if (len[i] != cap)
            goto unequal;
    if (len[COUNTS] != 4 * cap)
        goto unequal;
    if (count < 0 || count > cap || m > cap - count) {
        PyErr_Format(PyExc_ValueError, "the flow columns hold %zd flows: no room for %zd + %zd",
                     cap, count, m);
        return release(v, NULL);
    }
    if (!fits(&t, count + m))
        return release(v, NULL);
    const int8_t *direction = v[DIRECTION].buf;
    for (Py_ssize_t r = 0; r < m; r++)
        if (direction[r] != 0 && direction[r] != 1) {
            PyErr_SetString(PyExc_ValueError, "a direction is neither 0 nor 1");
            return release(v, NULL);
        }
    const uint64_t *keys = v[KEYS].buf;
    const int64_t *proto = v[PROTO].buf, *wire = v[WIRE].buf;
    const double *ts = v[TS].buf;
    uint64_t *key = v[KEY].buf;
    int16_t *proto_of = v[PROTO_OF].buf;
    uint8_t *quiet = v[QUIET].buf;
    double *first = v[FIRST].buf, *last = v[LAST].buf;
    int64_t *seen = v[SEEN].buf, *counts = v[COUNTS].buf;
    int64_t *out_ids = v[OUT_IDS].buf, *out_new = v[OUT_NEW].buf;
    /* Two passes, each asking for the memory of the row AHEAD rows on while it works on this
     * one (a batch's flows are spread over tables larger than the caches): the flows' ids,
     * then their counters. */
    Py_ssize_t n = count, added = 0;
    for (Py_ssize_t r = 0; r < m; r++) {
        if (r + AHEAD < m)
            ask(&t, keys[r + AHEAD]);
        uint64_t s = probe(&t, keys[r]);
        int64_t id = id_at(&t, s, n);
        if (id == -2)
            return corrupt(v);
        if (id < 0) {
            id = n++;
            t.pair[2 * s] = keys[r];
            t.pair[2 * s + 1] = (uint64_t)id + 1;
            key[id] = keys[r];
            proto_of[id] = (int16_t)proto[r]; /* wraps as numpy's cast does */
            quiet[id] = 0;
            first[id] = ts[r];
            out_new[added++] = r;
        }
        out_ids[r] = id;
    }
    for (Py_ssize_t r = 0; r < m; r++) {
        if (r + AHEAD < m) {
            int64_t ahead = out_ids[r + AHEAD];
            int d = direction[r + AHEAD];
            PREFETCH(counts + d * cap + ahead);
            PREFETCH(counts + (2 + d) * cap + ahead);
            PREFETCH(last + ahead);
            PREFETCH(seen + ahead);
        }
        int64_t id = out_ids[r];
        int d = direction[r];
        counts[d * cap + id] += 1;
        counts[(2 + d) * cap + id] = (int64_t)((uint64_t)counts[(2 + d) * cap + id]
                                               + (uint64_t)wire[r]);
        last[id] = maximum(last[id], ts[r]);
        seen[id] = batch;
    }
    return release(v, PyLong_FromSsize_t(added));
unequal:
    PyErr_SetString(PyExc_ValueError,
                    "the row columns must have one item per key, the flow columns one per flow");
    return release(v, NULL);
}

PyDoc_STRVAR(keep_doc,
"keep(slots, rows, key, proto_of, quiet, first, last, seen, counts, count)\n"
"--\n\n"
"Keep only the flows `rows` (ascending) of a flow table of `count` flows: each moves down to\n"
"its place in rows in every column (counts: the four counter columns one after the other),\n"
"the counters and last times past them up to `count` become zero, and the slots hold the\n"
"kept keys under their new ids.");

static PyObject *
keep(PyObject *module, PyObject *args)
{
    Py_buffer v[MOST_VIEWS] = {{0}};
    Py_ssize_t len[9];
    enum { SLOTS, ROWS, KEY, PROTO_OF, QUIET, FIRST, LAST, SEEN, COUNTS };
    static const struct spec specs[9] = {
        U64_COLUMN("slots"), I64_COLUMN("rows"), U64_COLUMN("key"), {"proto_of", "h", 2},
        {"quiet", "B", 1}, {"first", "d", 8}, {"last", "d", 8}, I64_COLUMN("seen"),
        I64_COLUMN("counts")};
    Py_ssize_t count;
    struct slots t;
    if (arguments(args, 9, specs, KEY, -1, 1, v, len, &count, &t) < 0)
        return release(v, NULL);
    Py_ssize_t k = len[ROWS], cap = len[KEY];
    for (int i = PROTO_OF; i <= SEEN; i++)
        if (len[i] != cap)
            goto unequal;
    if (len[COUNTS] != 4 * cap)
        goto unequal;
    if (count < 0 || count > cap || !fits(&t, k)) {
        PyErr_SetString(PyExc_ValueError, "the flows do not fit the columns or the slots");
        return release(v, NULL);
    }
    const int64_t *rows = v[ROWS].buf;
    for (Py_ssize_t i = 0; i < k; i++)
        if (rows[i] < (i ? rows[i - 1] + 1 : 0) || rows[i] >= count) {
            PyErr_SetString(PyExc_ValueError, "the rows kept must ascend within the flows");
            return release(v, NULL);
        }
    uint64_t *key = v[KEY].buf;
    int16_t *proto_of = v[PROTO_OF].buf;
    uint8_t *quiet = v[QUIET].buf;
    double *first = v[FIRST].buf, *last = v[LAST].buf;
    int64_t *seen = v[SEEN].buf, *counts = v[COUNTS].buf;
    /* rows[i] >= i: each flow moves down, over one already moved or evicted; column by
     * column, each one read and written in order. */
#define MOVE_DOWN(column)                          \
    for (Py_ssize_t i = 0; i < k; i++)             \
        (column)[i] = (column)[rows[i]];
    MOVE_DOWN(key);
    MOVE_DOWN(proto_of);
    MOVE_DOWN(quiet);
    MOVE_DOWN(first);
    MOVE_DOWN(last);
    MOVE_DOWN(seen);
    for (int j = 0; j < 4; j++) {
        MOVE_DOWN(counts + j * cap);
        /* Rows past them are taken by new flows, which add to their counters. */
        memset(counts + j * cap + k, 0, (size_t)(count - k) * sizeof(int64_t));
    }
#undef MOVE_DOWN
    for (Py_ssize_t i = k; i < count; i++)
        last[i] = 0.0; /* and take the latest of their times and this */
    if (hold(&t, key, k) < 0)
        return release(v, NULL);
    return release(v, Py_NewRef(Py_None));
unequal:
    PyErr_SetString(PyExc_ValueError, "the flow columns must have one item per flow");
    return release(v, NULL);
}

/* A set's table: a power of two of uint64 slots, each a key or 0 (empty; the key 0 is held
 * apart), at most half of them taken. */
struct set {
    uint64_t *slot;
    uint64_t mask;
    Py_ssize_t size;
};

static int
set_of(Py_buffer *view, struct set *t)
{
    Py_ssize_t size = view->len / (Py_ssize_t)sizeof(uint64_t);
    if (size < 2 || (size & (size - 1))) {
        PyErr_SetString(PyExc_ValueError, "a set's table must be a power of two of uint64");
        return -1;
    }
    t->slot = view->buf;
    t->mask = (uint64_t)size - 1;
    t->size = size;
    return 0;
}

PyDoc_STRVAR(add_doc,
"add(table, zero, keys, rows, count)\n"
"--\n\n"
"Add keys[rows] (all keys where rows is None) to a set of `count` keys: the keys but 0 in\n"
"`table` (a power of two of uint64 slots, 0 where empty), the key 0 in zero[0] (1 if held).\n"
"At most half the slots may be taken after the call.  Returns the count after.");

static PyObject *
add(PyObject *module, PyObject *args)
{
    Py_buffer v[MOST_VIEWS] = {{0}};
    Py_ssize_t len[4];
    static const struct spec specs[4] = {U64_COLUMN("table"), {"zero", "B", 1},
                                         U64_COLUMN("keys"), I64_COLUMN("rows")};
    Py_ssize_t count;
    struct set t;
    if (arguments(args, 4, specs, 0, 3, 1, v, len, &count, NULL) < 0 || set_of(&v[0], &t) < 0)
        return release(v, NULL);
    Py_ssize_t nkeys = len[2], m = len[3] < 0 ? nkeys : len[3];
    if (len[1] != 1 || count < 0 || count > t.size / 2 || m > t.size / 2 - count) {
        PyErr_Format(PyExc_ValueError, "%zd + %zd keys do not fit in %zd slots at most half full",
                     count, m, t.size);
        return release(v, NULL);
    }
    uint8_t *zero = v[1].buf;
    const uint64_t *keys = v[2].buf;
    const int64_t *rows = len[3] < 0 ? NULL : v[3].buf;
    for (Py_ssize_t i = 0; rows && i < m; i++)
        if (rows[i] < 0 || rows[i] >= nkeys) {
            PyErr_Format(PyExc_IndexError, "row %lld is not one of the %zd keys",
                         (long long)rows[i], nkeys);
            return release(v, NULL);
        }
    for (Py_ssize_t i = 0; i < m; i++) {
        if (i + AHEAD < m)
            PREFETCH(t.slot + (mix64(keys[rows ? rows[i + AHEAD] : i + AHEAD]) & t.mask));
        uint64_t key = keys[rows ? rows[i] : i];
        if (key == 0) {
            count += !*zero;
            *zero = 1;
            continue;
        }
        /* Half the slots are empty: one is met within t.size steps. */
        uint64_t s = mix64(key) & t.mask;
        for (Py_ssize_t step = 0; step < t.size && t.slot[s] && t.slot[s] != key; step++)
            s = (s + 1) & t.mask;
        if (!t.slot[s]) {
            t.slot[s] = key;
            count++;
        }
    }
    return release(v, PyLong_FromSsize_t(count));
}

/* ---- which payload rows of a batch the prefilters look at (engine._prefiltered) ------------ */

/* The rows' flow ids, each checked against the `flows` flows, and their number against the
 * int32 counts of the scratch column: -1 with an exception set where one does not fit. */
static int
flows_in(const int64_t *fids, Py_ssize_t m, Py_ssize_t flows)
{
    if (m > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "too many rows for one call");
        return -1;
    }
    for (Py_ssize_t i = 0; i < m; i++)
        if (fids[i] < 0 || fids[i] >= flows) {
            PyErr_Format(PyExc_IndexError, "flow id %lld is not one of the %zd flows",
                         (long long)fids[i], flows);
            return -1;
        }
    return 0;
}

PyDoc_STRVAR(quiet_looks_doc,
"quiet_looks(fids, after, probes, quiet, scratch, out_look, out_young)\n"
"--\n\n"
"Of a batch's payload rows (flow ids fids, in row order): a row is young where its flow's\n"
"quiet count is below the row's `after`, and looked at where it is one of the first\n"
"after - quiet young rows of its flow in the batch; every other row is looked at where probes\n"
"is set.  out_look and out_young (bool, one per row) get both.  scratch (int32, one per flow)\n"
"is zero before and after the call.  Returns the number of young rows.");

static PyObject *
quiet_looks(PyObject *module, PyObject *args)
{
    Py_buffer v[MOST_VIEWS] = {{0}};
    Py_ssize_t len[7];
    enum { FIDS, AFTER, PROBES, QUIET, SCRATCH, OUT_LOOK, OUT_YOUNG };
    static const struct spec specs[7] = {
        I64_COLUMN("fids"), I64_COLUMN("after"), {"probes", "?B", 1}, {"quiet", "B", 1},
        {"scratch", "i", 4}, {"out_look", "?B", 1}, {"out_young", "?B", 1}};
    if (arguments(args, 7, specs, SCRATCH, -1, 0, v, len, NULL, NULL) < 0)
        return release(v, NULL);
    const Py_ssize_t m = len[FIDS], flows = len[QUIET];
    if (len[AFTER] != m || len[PROBES] != m || len[OUT_LOOK] != m || len[OUT_YOUNG] != m
        || len[SCRATCH] != flows) {
        PyErr_SetString(PyExc_ValueError,
                        "the row columns must have one item per row, scratch one per flow");
        return release(v, NULL);
    }
    const int64_t *fids = v[FIDS].buf, *after = v[AFTER].buf;
    const uint8_t *probes = v[PROBES].buf, *quiet = v[QUIET].buf;
    int32_t *scratch = v[SCRATCH].buf;
    uint8_t *look = v[OUT_LOOK].buf, *young = v[OUT_YOUNG].buf;
    if (flows_in(fids, m, flows) < 0)
        return release(v, NULL);
    int64_t *touched = PyMem_Malloc((size_t)(m ? m : 1) * sizeof(int64_t));
    if (!touched)
        return release(v, PyErr_NoMemory());
    Py_ssize_t young_rows = 0, flows_seen = 0;
    for (Py_ssize_t i = 0; i < m; i++) {
        const int64_t f = fids[i], q = quiet[f];
        young[i] = q < after[i];
        look[i] = probes[i] != 0;
        if (!young[i])
            continue;
        young_rows++;
        /* scratch[f]: the flow's young rows before this one (its rank). */
        if (scratch[f] == 0)
            touched[flows_seen++] = f;
        if (scratch[f]++ < after[i] - q)
            look[i] = 1;
    }
    for (Py_ssize_t j = 0; j < flows_seen; j++)
        scratch[touched[j]] = 0;
    PyMem_Free(touched);
    return release(v, PyLong_FromSsize_t(young_rows));
}

PyDoc_STRVAR(quiet_more_doc,
"quiet_more(fids, young, look, hit, scratch, out_more)\n"
"--\n\n"
"The young rows not looked at of the flows with a young row hit (a payload some prefilter\n"
"accepted) to out_more (bool, one per row).  scratch (int32, one per flow) is zero before and\n"
"after the call.  Returns their number.");

static PyObject *
quiet_more(PyObject *module, PyObject *args)
{
    Py_buffer v[MOST_VIEWS] = {{0}};
    Py_ssize_t len[6];
    enum { FIDS, YOUNG, LOOK, HIT, SCRATCH, OUT_MORE };
    static const struct spec specs[6] = {
        I64_COLUMN("fids"), {"young", "?B", 1}, {"look", "?B", 1}, {"hit", "?B", 1},
        {"scratch", "i", 4}, {"out_more", "?B", 1}};
    if (arguments(args, 6, specs, SCRATCH, -1, 0, v, len, NULL, NULL) < 0)
        return release(v, NULL);
    const Py_ssize_t m = len[FIDS], flows = len[SCRATCH];
    if (len[YOUNG] != m || len[LOOK] != m || len[HIT] != m || len[OUT_MORE] != m) {
        PyErr_SetString(PyExc_ValueError, "the row columns must have one item per row");
        return release(v, NULL);
    }
    const int64_t *fids = v[FIDS].buf;
    const uint8_t *young = v[YOUNG].buf, *look = v[LOOK].buf, *hit = v[HIT].buf;
    int32_t *scratch = v[SCRATCH].buf;
    uint8_t *more = v[OUT_MORE].buf;
    if (flows_in(fids, m, flows) < 0)
        return release(v, NULL);
    int64_t *touched = PyMem_Malloc((size_t)(m ? m : 1) * sizeof(int64_t));
    if (!touched)
        return release(v, PyErr_NoMemory());
    Py_ssize_t flows_hit = 0;
    for (Py_ssize_t i = 0; i < m; i++)
        if (young[i] && hit[i] && !scratch[fids[i]]) {
            scratch[fids[i]] = 1;
            touched[flows_hit++] = fids[i];
        }
    Py_ssize_t n = 0;
    for (Py_ssize_t i = 0; i < m; i++) {
        more[i] = flows_hit && young[i] && !look[i] && scratch[fids[i]];
        n += more[i];
    }
    for (Py_ssize_t j = 0; j < flows_hit; j++)
        scratch[touched[j]] = 0;
    PyMem_Free(touched);
    return release(v, PyLong_FromSsize_t(n));
}

PyDoc_STRVAR(quiet_missed_doc,
"quiet_missed(fids, young, looked, hit, quiet, scratch)\n"
"--\n\n"
"Each flow's quiet count grows by its young rows looked at in vain (looked, not hit), up to\n"
"255.  scratch (int32, one per flow) is zero before and after the call.");

static PyObject *
quiet_missed(PyObject *module, PyObject *args)
{
    Py_buffer v[MOST_VIEWS] = {{0}};
    Py_ssize_t len[6];
    enum { FIDS, YOUNG, LOOKED, HIT, QUIET, SCRATCH };
    static const struct spec specs[6] = {
        I64_COLUMN("fids"), {"young", "?B", 1}, {"looked", "?B", 1}, {"hit", "?B", 1},
        {"quiet", "B", 1}, {"scratch", "i", 4}};
    if (arguments(args, 6, specs, QUIET, -1, 0, v, len, NULL, NULL) < 0)
        return release(v, NULL);
    const Py_ssize_t m = len[FIDS], flows = len[QUIET];
    if (len[YOUNG] != m || len[LOOKED] != m || len[HIT] != m || len[SCRATCH] != flows) {
        PyErr_SetString(PyExc_ValueError,
                        "the row columns must have one item per row, scratch one per flow");
        return release(v, NULL);
    }
    const int64_t *fids = v[FIDS].buf;
    const uint8_t *young = v[YOUNG].buf, *looked = v[LOOKED].buf, *hit = v[HIT].buf;
    uint8_t *quiet = v[QUIET].buf;
    int32_t *scratch = v[SCRATCH].buf;
    if (flows_in(fids, m, flows) < 0)
        return release(v, NULL);
    int64_t *touched = PyMem_Malloc((size_t)(m ? m : 1) * sizeof(int64_t));
    if (!touched)
        return release(v, PyErr_NoMemory());
    Py_ssize_t flows_missed = 0;
    for (Py_ssize_t i = 0; i < m; i++)
        if (young[i] && looked[i] && !hit[i] && scratch[fids[i]]++ == 0)
            touched[flows_missed++] = fids[i];
    for (Py_ssize_t j = 0; j < flows_missed; j++) {
        const int64_t f = touched[j], q = quiet[f] + (int64_t)scratch[f];
        quiet[f] = (uint8_t)(q < 255 ? q : 255);
        scratch[f] = 0;
    }
    PyMem_Free(touched);
    return release(v, Py_NewRef(Py_None));
}

static PyMethodDef methods[] = {
    {"build", build, METH_VARARGS, build_doc},
    {"lookup", lookup, METH_VARARGS, lookup_doc},
    {"update", update, METH_VARARGS, update_doc},
    {"keep", keep, METH_VARARGS, keep_doc},
    {"add", add, METH_VARARGS, add_doc},
    {"quiet_looks", quiet_looks, METH_VARARGS, quiet_looks_doc},
    {"quiet_more", quiet_more, METH_VARARGS, quiet_more_doc},
    {"quiet_missed", quiet_missed, METH_VARARGS, quiet_missed_doc},
    {NULL, NULL, 0, NULL},
};

static PyModuleDef_Slot module_slots[] = {
#ifdef Py_mod_multiple_interpreters
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
    {0, NULL},
};

static struct PyModuleDef table_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "detector.flows._table",
    .m_doc = "The flow table's and host set's hash index and batch accounting, compiled "
             "(see table.py).",
    .m_size = 0,
    .m_methods = methods,
    .m_slots = module_slots,
};

PyMODINIT_FUNC
PyInit__table(void)
{
    return PyModuleDef_Init(&table_module);
}
