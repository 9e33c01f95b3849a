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

/* ---- Windows: read-only maps of a file's bytes, for reading without a copy ----
 *
 * A window maps bytes [offset, offset + length) of a regular file (fewer where the file ends
 * first), followed by `pad` readable zero bytes: an anonymous mapping of the whole span is made
 * first and the file is mapped over its start, so the bytes past the file's end are zeros,
 * never a fault.  It is a read-only buffer: numpy views of it keep it (and the map) alive.
 *
 * A file that shrinks while it is mapped (truncated by logrotate's copytruncate, say) makes a
 * read of a page past its new end raise SIGBUS.  Each window is listed where the SIGBUS handler
 * below finds it: a fault inside a window maps zero pages over the rest of that window, notes
 * where, and the read goes on (the reader checks `fault` and ends the input with an error).  A
 * fault anywhere else goes to the handler that was there before.  Where every list slot is
 * taken, or the file cannot be mapped, the window reads the bytes into its memory instead.
 */
#include <errno.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define WINDOW_SLOTS 256

/* The windows the handler looks at: start (0 for a free slot), length, and the offset from the
 * start of the first page zeroed after a fault (-1 while none). */
static struct {
    int claimed;
    uintptr_t start;
    uintptr_t length;
    int64_t fault;
} window_slots[WINDOW_SLOTS];

static struct sigaction earlier_sigbus;
static uintptr_t page_size = 4096; /* set when the module is loaded (sysconf is not for handlers) */

static void
on_sigbus(int sig, siginfo_t *info, void *context)
{
    uintptr_t at = (uintptr_t)info->si_addr;
    if (info->si_code > 0) { /* sent by the kernel for a fault, not by kill() */
        for (int i = 0; i < WINDOW_SLOTS; i++) {
            uintptr_t start = __atomic_load_n(&window_slots[i].start, __ATOMIC_ACQUIRE);
            uintptr_t length = window_slots[i].length;
            if (!start || at < start || at >= start + length)
                continue;
            uintptr_t page = at & ~(page_size - 1);
            void *zeros = mmap((void *)page, start + length - page, PROT_READ,
                               MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
            if (zeros == MAP_FAILED)
                break;
            int64_t off = (int64_t)(page - start), seen = -1;
            while (!__atomic_compare_exchange_n(&window_slots[i].fault, &seen,
                                                seen >= 0 && seen < off ? seen : off, 0,
                                                __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
                ;
            return;
        }
    }
    /* Not ours: what was there before handles it. */
    if (earlier_sigbus.sa_flags & SA_SIGINFO) {
        earlier_sigbus.sa_sigaction(sig, info, context);
    }
    else if (earlier_sigbus.sa_handler == SIG_DFL || earlier_sigbus.sa_handler == SIG_IGN) {
        /* The faulting read runs again and takes the default action (a fault cannot be
         * ignored). */
        sigaction(SIGBUS, &earlier_sigbus, NULL);
    }
    else {
        earlier_sigbus.sa_handler(sig);
    }
}

/* Put on_sigbus first in line (again, if something installed a handler since). */
static int
guard_sigbus(void)
{
    struct sigaction now, ours;
    if (sigaction(SIGBUS, NULL, &now) < 0)
        return -1;
    if ((now.sa_flags & SA_SIGINFO) && now.sa_sigaction == on_sigbus)
        return 0;
    memset(&ours, 0, sizeof ours);
    ours.sa_sigaction = on_sigbus;
    ours.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
    sigemptyset(&ours.sa_mask);
    earlier_sigbus = now;
    return sigaction(SIGBUS, &ours, NULL);
}

typedef struct {
    PyObject_HEAD
    char *base;         /* the whole mapping, page aligned */
    Py_ssize_t span;    /* its length */
    Py_ssize_t skip;    /* where the window's bytes start in it */
    Py_ssize_t length;  /* the file's bytes in the window */
    Py_ssize_t pad;     /* zero bytes after them */
    long long size;     /* the file's size when the window was made */
    int slot;           /* the handler's list slot, -1 if none (the bytes were read) */
} Window;

static int
claim_slot(uintptr_t start, uintptr_t length)
{
    for (int i = 0; i < WINDOW_SLOTS; i++) {
        int free_slot = 0;
        if (!__atomic_compare_exchange_n(&window_slots[i].claimed, &free_slot, 1, 0,
                                         __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            continue;
        window_slots[i].length = length;
        __atomic_store_n(&window_slots[i].fault, -1, __ATOMIC_RELEASE);
        __atomic_store_n(&window_slots[i].start, start, __ATOMIC_RELEASE);
        return i;
    }
    return -1;
}

static void
free_slot(int slot)
{
    if (slot < 0)
        return;
    __atomic_store_n(&window_slots[slot].start, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&window_slots[slot].claimed, 0, __ATOMIC_RELEASE);
}

/* Read file bytes [offset, offset + length) to `into` (the fallback where mapping fails):
 * how many there were, or -1 with errno set. */
static Py_ssize_t
read_span(int fd, char *into, Py_ssize_t length, long long offset)
{
    Py_ssize_t done = 0;
    while (done < length) {
        ssize_t got = pread(fd, into + done, (size_t)(length - done), (off_t)(offset + done));
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return -1;
        if (got == 0)
            break;
        done += got;
    }
    return done;
}

static PyObject *
window_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"fd", "offset", "length", "pad", NULL};
    int fd;
    long long offset;
    Py_ssize_t length, pad;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "iLnn:Window", keywords, &fd, &offset,
                                     &length, &pad))
        return NULL;
    if (offset < 0 || length < 0 || pad < 0 || length > ((Py_ssize_t)1 << 40) ||
        pad > (1 << 20)) {
        PyErr_Format(PyExc_ValueError, "window of %zd bytes at %lld (pad %zd)", length, offset,
                     pad);
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    if (!S_ISREG(st.st_mode)) {
        PyErr_SetString(PyExc_ValueError, "only a regular file is mapped");
        return NULL;
    }
    long long in_file = (long long)st.st_size - offset;
    if (in_file < 0)
        in_file = 0;
    if (in_file < length)
        length = (Py_ssize_t)in_file;
    const Py_ssize_t page = (Py_ssize_t)page_size;
    const long long first = offset - offset % page; /* mappings start on a page */
    const Py_ssize_t skip = (Py_ssize_t)(offset - first);
    const Py_ssize_t file_span = (skip + length + page - 1) / page * page;
    const Py_ssize_t span = (skip + length + pad + page - 1) / page * page;
    Window *self = (Window *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->slot = -1;
    self->skip = skip;
    self->length = length;
    self->pad = pad;
    self->size = (long long)st.st_size;
    if (span == 0) {
        self->base = NULL;
        self->span = 0;
        return (PyObject *)self;
    }
    char *base = mmap(NULL, (size_t)span, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED) {
        Py_DECREF(self);
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    self->base = base;
    self->span = span;
    int mapped = 0;
    if (length > 0 && guard_sigbus() == 0) {
        self->slot = claim_slot((uintptr_t)base, (uintptr_t)span);
        if (self->slot >= 0) {
            void *over = mmap(base, (size_t)file_span, PROT_READ, MAP_SHARED | MAP_FIXED, fd,
                              (off_t)first);
            mapped = over != MAP_FAILED;
            if (!mapped) {
                free_slot(self->slot);
                self->slot = -1;
            }
        }
    }
    if (!mapped && length > 0) {
        Py_ssize_t got;
        Py_BEGIN_ALLOW_THREADS
        got = read_span(fd, base + skip, length, offset);
        Py_END_ALLOW_THREADS
        if (got < 0) {
            Py_DECREF(self);
            return PyErr_SetFromErrno(PyExc_OSError);
        }
        self->length = got;
    }
    return (PyObject *)self;
}

static void
window_dealloc(Window *self)
{
    free_slot(self->slot); /* before the unmap: the handler must not touch a stale range */
    if (self->base)
        munmap(self->base, (size_t)self->span);
    PyTypeObject *type = Py_TYPE(self);
    type->tp_free((PyObject *)self);
    Py_DECREF(type);
}

static int
window_getbuffer(Window *self, Py_buffer *view, int flags)
{
    static char empty[1];
    char *start = self->base ? self->base + self->skip : empty;
    return PyBuffer_FillInfo(view, (PyObject *)self, start, self->length + self->pad, 1, flags);
}

static PyObject *
window_fault(Window *self, void *closure)
{
    if (self->slot < 0)
        return PyLong_FromLong(-1);
    int64_t fault = __atomic_load_n(&window_slots[self->slot].fault, __ATOMIC_ACQUIRE);
    if (fault < 0)
        return PyLong_FromLong(-1);
    fault -= self->skip;
    return PyLong_FromLongLong(fault > 0 ? fault : 0);
}

static PyObject *
window_length(Window *self, void *closure)
{
    return PyLong_FromSsize_t(self->length);
}

static PyObject *
window_size(Window *self, void *closure)
{
    return PyLong_FromLongLong(self->size);
}

static PyObject *
window_mapped(Window *self, void *closure)
{
    return PyBool_FromLong(self->slot >= 0);
}

static PyObject *
window_forget(Window *self, PyObject *unused)
{
    /* The pages of a file map are dropped from the process (its resident memory) and read
     * again from the file if looked at: views of the window stay sound. */
    if (self->slot >= 0)
        (void)madvise(self->base, (size_t)self->span, MADV_DONTNEED); /* advice: may be refused */
    Py_RETURN_NONE;
}

static PyGetSetDef window_getset[] = {
    {"length", (getter)window_length, NULL, "Bytes of the file in the window.", NULL},
    {"size", (getter)window_size, NULL, "The file's size when the window was made.", NULL},
    {"mapped", (getter)window_mapped, NULL, "Whether the file is mapped (not read).", NULL},
    {"fault", (getter)window_fault, NULL,
     "-1, or where zeros replace bytes the file lost while mapped (from there on).", NULL},
    {NULL},
};

static PyMethodDef window_methods[] = {
    {"forget", (PyCFunction)window_forget, METH_NOARGS,
     "Give back the resident pages of the window (they are read again if looked at)."},
    {NULL, NULL, 0, NULL},
};

PyDoc_STRVAR(window_doc,
"Window(fd, offset, length, pad)\n--\n\n"
"A read-only buffer of bytes [offset, offset + length) of the regular file fd (fewer where\n"
"the file ends first; `length` says how many), followed by `pad` zero bytes: a map of the\n"
"file where it can be mapped, else a copy.");

static PyType_Slot window_slots_spec[] = {
    {Py_tp_new, window_new},
    {Py_tp_dealloc, window_dealloc},
    {Py_tp_getset, window_getset},
    {Py_tp_methods, window_methods},
    {Py_tp_doc, (void *)window_doc},
    {Py_bf_getbuffer, window_getbuffer},
    {0, NULL},
};

static PyType_Spec window_spec = {
    .name = "detector.capture._walk.Window",
    .basicsize = sizeof(Window),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = window_slots_spec,
};

static int
walk_exec(PyObject *module)
{
    long page = sysconf(_SC_PAGESIZE);
    if (page > 0)
        page_size = (uintptr_t)page;
    PyObject *type = PyType_FromModuleAndSpec(module, &window_spec, NULL);
    if (type == NULL)
        return -1;
    int added = PyModule_AddObjectRef(module, "Window", type);
    Py_DECREF(type);
    return added;
}

static PyMethodDef methods[] = {
    {"pcap_chain", pcap_chain, METH_VARARGS, pcap_chain_doc},
    {"pcapng_chain", pcapng_chain, METH_VARARGS, pcapng_chain_doc},
    {"pcap_resync", pcap_resync, METH_VARARGS, pcap_resync_doc},
    {NULL, NULL, 0, NULL},
};

static PyModuleDef_Slot slots[] = {
    {Py_mod_exec, walk_exec},
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
