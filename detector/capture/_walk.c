/* The record chain walks of the capture reader, compiled.
 *
 * Each record's offset depends on the previous record's length, so the walk cannot be
 * vectorised; in Python it is one struct.unpack_from per record.  These functions walk the same
 * chain and stop at exactly the record where the Python walks of detector/capture/walks.py stop
 * (a damaged, oversized, zero-length or partial record, or a full batch): what to do about that
 * record (messages, resynchronising) stays in Python.
 *
 * The input is hostile: every read is checked against the buffer the caller passed, and every
 * position is a signed 64-bit number that cannot overflow (a record length is at most 2^32 - 1).
 */
#include "../_columns.h"

/* Walks shorter than this many bytes keep the interpreter lock (taking it back costs more). */
#define RELEASE_FROM (1 << 16)

static inline uint32_t
u32_at(const unsigned char *p, int big)
{
    if (big)
        return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
    return ((uint32_t)p[3] << 24) | ((uint32_t)p[2] << 16) | ((uint32_t)p[1] << 8) | p[0];
}

/* Check the walk's bounds: 0 <= pos, end <= len, 0 <= n <= stop_n <= capacity. */
static int
check_bounds(Py_ssize_t len, Py_ssize_t pos, Py_ssize_t end, Py_ssize_t n, Py_ssize_t stop_n,
             Py_ssize_t capacity)
{
    if (pos < 0 || end < 0 || end > len) {
        PyErr_Format(PyExc_ValueError, "walk from %zd to %zd is outside a buffer of %zd bytes",
                     pos, end, len);
        return -1;
    }
    if (n < 0 || stop_n < n || stop_n > capacity) {
        PyErr_Format(PyExc_ValueError, "records %zd to %zd do not fit columns of %zd", n, stop_n,
                     capacity);
        return -1;
    }
    return 0;
}

/* A pcap record header is 16 bytes (24 in the patched format): the walks read its lengths at
 * bytes 8 and 12. */
static int
check_rec_hdr(Py_ssize_t rec_hdr)
{
    if (rec_hdr < 16 || rec_hdr > 64) {
        PyErr_Format(PyExc_ValueError, "record header of %zd bytes", rec_hdr);
        return -1;
    }
    return 0;
}

/* The pcap walk proper, on checked bounds (see pcap_chain); a long one lets go of the
 * interpreter lock (the buffers stay exported, so they cannot move meanwhile). */
static void
walk_pcap(const unsigned char *data, int64_t *pos, int64_t end, int64_t rec_hdr, int64_t limit,
          int big, double unit, int64_t *row, int64_t last_row, int64_t *offsets,
          int64_t *caplen, int64_t *wirelen, double *ts)
{
    int64_t p = *pos, r = *row;
    const int64_t stop = end - rec_hdr;
    PyThreadState *state = end - p >= RELEASE_FROM ? PyEval_SaveThread() : NULL;
    while (p <= stop && r < last_row) {
        /* p + rec_hdr <= end <= the buffer's length and rec_hdr >= 16: the header is in it. */
        const unsigned char *h = data + p;
        uint32_t incl = u32_at(h + 8, big);
        int64_t nxt = p + rec_hdr + (int64_t)incl;
        if (nxt > end || (int64_t)incl > limit || incl == 0)
            break;
        uint32_t orig = u32_at(h + 12, big);
        offsets[r] = p + rec_hdr;
        caplen[r] = incl;
        wirelen[r] = orig > incl ? orig : incl;
        /* As numpy computes it (sec + frac * unit, two roundings): built without contraction
         * into a fused multiply-add, so both walks give the same bits. */
        double frac = (double)u32_at(h + 4, big) * unit;
        ts[r] = (double)u32_at(h, big) + frac;
        r++;
        p = nxt;
    }
    if (state)
        PyEval_RestoreThread(state);
    *pos = p;
    *row = r;
}

/* The pcapng walk proper, on checked bounds (see pcapng_chain). */
static void
walk_pcapng(const unsigned char *data, int64_t *pos, int64_t end, int big, int64_t max_block,
            int64_t *row, int64_t last_row, int64_t *offsets)
{
    int64_t p = *pos, r = *row;
    const int64_t last = end - 12;
    PyThreadState *state = end - p >= RELEASE_FROM ? PyEval_SaveThread() : NULL;
    while (p <= last && r < last_row) {
        /* p + 12 <= end <= the buffer's length: the block type and length are in it. */
        uint32_t btype = u32_at(data + p, big), blen = u32_at(data + p + 4, big);
        int64_t nxt = p + (int64_t)blen;
        if (btype != 6 || blen < 32 || (int64_t)blen > max_block || (blen & 3) || nxt > end)
            break;
        offsets[r++] = p;
        p = nxt;
    }
    if (state)
        PyEval_RestoreThread(state);
    *pos = p;
    *row = r;
}

PyDoc_STRVAR(pcap_chain_doc,
"pcap_chain(buf, pos, end, rec_hdr, limit, big, unit, n, stop_n, offsets, caplen, wirelen, ts)\n"
"--\n\n"
"Follow whole, sound pcap records of buf[pos:end] while fewer than stop_n rows are filled;\n"
"record k goes to row n + k of the columns (offsets of its data, captured length, original\n"
"length at least the captured one, seconds). Returns (where the walk stopped, rows filled).");

static PyObject *
pcap_chain(PyObject *module, PyObject *args)
{
    Py_buffer views[MOST_VIEWS] = {{0}};
    Py_ssize_t pos, end, rec_hdr, limit, n, stop_n, capacity = PY_SSIZE_T_MAX;
    int big;
    double unit;
    PyObject *cols[4];
    static const char *names[4] = {"offsets", "caplen", "wirelen", "ts"};
    if (!PyArg_ParseTuple(args, "y*nnnnpdnnOOOO:pcap_chain", &views[0], &pos, &end, &rec_hdr,
                          &limit, &big, &unit, &n, &stop_n, &cols[0], &cols[1], &cols[2],
                          &cols[3]))
        return NULL;
    for (int i = 0; i < 4; i++) {
        if (column(cols[i], &views[i + 1], 1, 8, i == 3 ? "d" : "ql", -1, names[i]) < 0)
            return release(views, NULL);
        Py_ssize_t items = views[i + 1].len / 8;
        if (items < capacity)
            capacity = items;
    }
    if (check_rec_hdr(rec_hdr) < 0)
        return release(views, NULL);
    if (check_bounds(views[0].len, pos, end, n, stop_n, capacity) < 0)
        return release(views, NULL);
    int64_t p = pos, row = n;
    walk_pcap(views[0].buf, &p, end, rec_hdr, limit, big, unit, &row, stop_n, views[1].buf,
              views[2].buf, views[3].buf, views[4].buf);
    return release(views, Py_BuildValue("nn", (Py_ssize_t)p, (Py_ssize_t)row));
}

PyDoc_STRVAR(pcapng_chain_doc,
"pcapng_chain(buf, pos, end, big, max_block, n, stop_n, offsets)\n--\n\n"
"pcap_chain for the enhanced packet blocks of pcapng (32 to max_block bytes, a multiple of 4):\n"
"only where each block starts goes to offsets.");

static PyObject *
pcapng_chain(PyObject *module, PyObject *args)
{
    Py_buffer views[MOST_VIEWS] = {{0}};
    Py_ssize_t pos, end, max_block, n, stop_n, capacity;
    int big;
    PyObject *offsets;
    if (!PyArg_ParseTuple(args, "y*nnpnnnO:pcapng_chain", &views[0], &pos, &end, &big,
                          &max_block, &n, &stop_n, &offsets))
        return NULL;
    if (column(offsets, &views[1], 1, 8, "ql", -1, "offsets") < 0)
        return release(views, NULL);
    capacity = views[1].len / 8;
    if (check_bounds(views[0].len, pos, end, n, stop_n, capacity) < 0)
        return release(views, NULL);
    int64_t p = pos, row = n;
    walk_pcapng(views[0].buf, &p, end, big, max_block, &row, stop_n, views[1].buf);
    return release(views, Py_BuildValue("nn", (Py_ssize_t)p, (Py_ssize_t)row));
}

/* The captured length of the pcap record whose header starts at p if the header is plausible
 * (the whole header before end, 0 < captured <= limit, captured <= original <= max_orig),
 * else -1; the caller keeps end within the buffer. */
static int64_t
plausible(const unsigned char *data, int64_t p, int64_t end, int64_t rec_hdr, int64_t limit,
          int64_t max_orig, int big)
{
    if (p + rec_hdr > end)
        return -1;
    int64_t incl = u32_at(data + p + 8, big), orig = u32_at(data + p + 12, big);
    return 0 < incl && incl <= limit && incl <= orig && orig <= max_orig ? incl : -1;
}

PyDoc_STRVAR(pcap_resync_doc,
"pcap_resync(buf, start, end, rec_hdr, limit, big, max_orig)\n--\n\n"
"The first offset from start on where a plausible record header is followed by another (or\n"
"by end), -1 if there is none before end - 2 * rec_hdr: where a broken chain picks up.");

static PyObject *
pcap_resync(PyObject *module, PyObject *args)
{
    Py_buffer views[MOST_VIEWS] = {{0}};
    Py_ssize_t start, end, rec_hdr, limit, max_orig;
    int big;
    if (!PyArg_ParseTuple(args, "y*nnnnpn:pcap_resync", &views[0], &start, &end, &rec_hdr,
                          &limit, &big, &max_orig))
        return NULL;
    if (check_rec_hdr(rec_hdr) < 0)
        return release(views, NULL);
    if (check_bounds(views[0].len, start, end, 0, 0, 0) < 0)
        return release(views, NULL);
    const unsigned char *data = views[0].buf;
    int64_t found = -1, stop = (int64_t)end - 2 * rec_hdr;
    PyThreadState *state = stop - start >= RELEASE_FROM ? PyEval_SaveThread() : NULL;
    for (int64_t p = start; p < stop; p++) {
        int64_t incl = plausible(data, p, end, rec_hdr, limit, max_orig, big);
        if (incl < 0)
            continue;
        int64_t nxt = p + rec_hdr + incl;
        if (nxt == end || plausible(data, nxt, end, rec_hdr, limit, max_orig, big) >= 0) {
            found = p;
            break;
        }
    }
    if (state)
        PyEval_RestoreThread(state);
    return release(views, PyLong_FromLongLong(found));
}

static PyMethodDef methods[] = {
    {"pcap_chain", pcap_chain, METH_VARARGS, pcap_chain_doc},
    {"pcapng_chain", pcapng_chain, METH_VARARGS, pcapng_chain_doc},
    {"pcap_resync", pcap_resync, METH_VARARGS, pcap_resync_doc},
    {NULL, NULL, 0, NULL},
};

static PyModuleDef_Slot slots[] = {
#ifdef Py_mod_multiple_interpreters
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
    {0, NULL},
};

static struct PyModuleDef walk_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "detector.capture._walk",
    .m_doc = "The record chain walks of the capture reader, compiled (see walks.py).",
    .m_size = 0,
    .m_methods = methods,
    .m_slots = slots,
};

PyMODINIT_FUNC
PyInit__walk(void)
{
    return PyModuleDef_Init(&walk_module);
}
