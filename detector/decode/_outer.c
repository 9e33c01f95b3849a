/* The outer header decode of a batch and its row hashes, compiled.
 *
 * decode_headers in headers.py walks a batch of packets link layer -> shims -> IP -> transport
 * with numpy, one column operation per step over every row; this module walks each row once,
 * giving the same columns bit for bit.  The layouts it interprets (link headers, shims, IPv6
 * extension headers, transport header lengths) are not written here: headers.py builds them
 * from detector/decode/layers.py into a table object (tables()) handed to every call.
 *
 * The input is hostile: every byte is read through at() or clamped_at(), which never read
 * outside the buffer the caller passed, and every position is a signed 64-bit number bounded
 * by the batch's own lengths (checked on entry), so no sum overflows.
 *
 * It also holds the carried-packet tests of the payload prefilters that look at every UDP
 * payload (li_common.carried_bits, unknown_encap.carried_within): each window is read once
 * instead of once per numpy column operation.  Their windows are fixed-width rows whose width
 * is checked against every offset read.
 */
#include "../_columns.h"

/* Batches of fewer rows keep the interpreter lock (taking it back costs more). */
#define RELEASE_FROM 1024
/* How many rows ahead the walk asks for a row's first bytes. */
#define PREFETCH_AHEAD 24
#define MOST_LAYOUTS 64
#define MOST_SHIMS 16
/* Offsets within a table entry (a link header, a shim) above this are refused. */
#define MOST_FIELD 256
#define CAPSULE "detector.decode._outer.tables"

/* How a link header or a shim names what follows (the TypeSpace and NextSpace of layers.py). */
enum space { SPACE_ETHERTYPE = 0, SPACE_PPP = 1, SPACE_FAMILY = 2, SPACE_IP = 3, SPACE_MPLS = 4 };

typedef struct {
    int64_t linktype, hdlc_prefix, header, type_at, space;
} layout_t;

typedef struct {
    int64_t length, next_at, space, max_depth;
} shim_t;

typedef struct {
    int nlayouts, nshims;
    layout_t layouts[MOST_LAYOUTS];  /* one per link type */
    shim_t shims[MOST_SHIMS + 1];    /* by shim number (1..nshims) */
    uint8_t shim_number[65536];      /* EtherType -> shim number, 0 for none */
    uint8_t ip_type[65536];          /* EtherType -> 1 for an IP header */
    uint16_t ppp[65536];             /* PPP protocol -> EtherType, 0 for none */
    uint16_t nibble[16];             /* version nibble after MPLS -> EtherType */
    uint8_t family[256];             /* BSD address family -> 1 for IP */
    uint8_t ports[256];              /* IP protocol -> 1 for 16-bit ports first */
    int64_t transport_header[256];   /* IP protocol -> fixed header length */
    uint8_t ext_on[256];             /* next header -> 1 for an extension header stepped over */
    int64_t ext_base[256], ext_unit[256];  /* its length: base + length byte * unit */
    int64_t max_shim_steps, max_ipv6_ext, ipv6_ext_min, ipv6_fragment, ipv4_type;
    int64_t tcp_data_offset_at, tcp_header_min, proto_tcp, proto_udp, proto_gre;
} tables_t;

/* The byte at p as a gather reads it: 0 past the buffer's end (p >= 0 always). */
static inline unsigned
at(const uint8_t *d, int64_t len, int64_t p)
{
    return p < len ? d[p] : 0;
}

/* The byte at p as headers._byte reads it: the buffer's last byte past its end. */
static inline unsigned
clamped_at(const uint8_t *d, int64_t len, int64_t p)
{
    return len ? d[p < len ? p : len - 1] : 0;
}

static inline unsigned
be16(const uint8_t *d, int64_t len, int64_t p)
{
    return (at(d, len, p) << 8) | at(d, len, p + 1);
}

static inline uint32_t
be32(const uint8_t *d, int64_t len, int64_t p)
{
    return ((uint32_t)be16(d, len, p) << 16) | be16(d, len, p + 2);
}

/* ---- the tables ---------------------------------------------------------------------------- */

static void
free_tables(PyObject *capsule)
{
    PyMem_Free(PyCapsule_GetPointer(capsule, CAPSULE));
}

/* A bytes object of exactly `size` bytes copied to `dest`. */
static int
copy_table(PyObject *obj, void *dest, Py_ssize_t size, const char *name)
{
    if (!PyBytes_Check(obj) || PyBytes_GET_SIZE(obj) != size) {
        PyErr_Format(PyExc_ValueError, "%s must be %zd bytes", name, size);
        return -1;
    }
    memcpy(dest, PyBytes_AS_STRING(obj), (size_t)size);
    return 0;
}

/* The items of a sequence of `width`-tuples of integers, each within [0, most]. */
static int
int_rows(PyObject *seq, int width, int64_t *out, Py_ssize_t max_rows, int64_t most,
         const char *name, Py_ssize_t *rows)
{
    PyObject *fast = PySequence_Fast(seq, name);
    if (!fast)
        return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    if (n > max_rows) {
        PyErr_Format(PyExc_ValueError, "more than %zd %s", max_rows, name);
        Py_DECREF(fast);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *row = PySequence_Fast_GET_ITEM(fast, i);
        if (!PyTuple_Check(row) || PyTuple_GET_SIZE(row) != width) {
            PyErr_Format(PyExc_ValueError, "%s: each entry is a tuple of %d integers", name,
                         width);
            Py_DECREF(fast);
            return -1;
        }
        for (int k = 0; k < width; k++) {
            long long v = PyLong_AsLongLong(PyTuple_GET_ITEM(row, k));
            if (v == -1 && PyErr_Occurred()) {
                Py_DECREF(fast);
                return -1;
            }
            if (v < 0 || v > most) {
                PyErr_Format(PyExc_ValueError, "%s: %lld is outside 0..%lld", name, v,
                             (long long)most);
                Py_DECREF(fast);
                return -1;
            }
            out[i * width + k] = v;
        }
    }
    Py_DECREF(fast);
    *rows = n;
    return 0;
}

PyDoc_STRVAR(tables_doc,
"tables(layouts, shims, shim_number, ip_type, ppp, nibble, family, ports, transport_header,\n"
"       extensions, scalars)\n--\n\n"
"The layouts decode() interprets, checked and packed once.  layouts: (linktype, hdlc_prefix,\n"
"header, type_at, space) per link type; shims: (length, next_at, space, max_depth) per shim\n"
"number from 1; the lookup tables as bytes of native uint8 (shim_number, ip_type: 65536;\n"
"family, ports: 256), uint16 (ppp: 65536, nibble: 16) and int64 (transport_header: 256);\n"
"extensions: (next_header, base, unit) per IPv6 extension header stepped over (its length is\n"
"base + length byte * unit); scalars: (max_shim_steps, max_ipv6_ext, ipv6_ext_min,\n"
"ipv6_fragment, ipv4_type, tcp_data_offset_at, tcp_header_min, proto_tcp, proto_udp,\n"
"proto_gre).");

static PyObject *
tables(PyObject *module, PyObject *args)
{
    PyObject *layouts, *shims, *shim_number, *ip_type, *ppp, *nibble, *family, *ports,
        *transport, *extensions, *scalars;
    if (!PyArg_ParseTuple(args, "OOOOOOOOOOO:tables", &layouts, &shims, &shim_number, &ip_type,
                          &ppp, &nibble, &family, &ports, &transport, &extensions, &scalars))
        return NULL;
    tables_t *t = PyMem_Calloc(1, sizeof(tables_t));
    if (!t)
        return PyErr_NoMemory();
    int64_t rows[MOST_LAYOUTS * 5], ext[256 * 3], sc[10];
    Py_ssize_t n;
    if (int_rows(layouts, 5, rows, MOST_LAYOUTS, INT32_MAX, "layouts", &n) < 0)
        goto fail;
    t->nlayouts = (int)n;
    for (Py_ssize_t i = 0; i < n; i++) {
        layout_t *l = &t->layouts[i];
        *l = (layout_t){rows[5 * i], rows[5 * i + 1], rows[5 * i + 2], rows[5 * i + 3],
                        rows[5 * i + 4]};
        if (l->header > MOST_FIELD || l->type_at > MOST_FIELD || l->space > SPACE_IP) {
            PyErr_SetString(PyExc_ValueError, "layouts: a link header out of range");
            goto fail;
        }
    }
    if (int_rows(shims, 4, rows, MOST_SHIMS, MOST_FIELD, "shims", &n) < 0)
        goto fail;
    t->nshims = (int)n;
    for (Py_ssize_t i = 0; i < n; i++) {
        shim_t *s = &t->shims[i + 1];
        *s = (shim_t){rows[4 * i], rows[4 * i + 1], rows[4 * i + 2], rows[4 * i + 3]};
        if (s->space != SPACE_ETHERTYPE && s->space != SPACE_PPP && s->space != SPACE_MPLS) {
            PyErr_SetString(PyExc_ValueError, "shims: unknown next space");
            goto fail;
        }
    }
    if (copy_table(shim_number, t->shim_number, 65536, "shim_number") < 0 ||
        copy_table(ip_type, t->ip_type, 65536, "ip_type") < 0 ||
        copy_table(ppp, t->ppp, 65536 * 2, "ppp") < 0 ||
        copy_table(nibble, t->nibble, 16 * 2, "nibble") < 0 ||
        copy_table(family, t->family, 256, "family") < 0 ||
        copy_table(ports, t->ports, 256, "ports") < 0 ||
        copy_table(transport, t->transport_header, 256 * 8, "transport_header") < 0)
        goto fail;
    for (int i = 0; i < 65536; i++)
        if (t->shim_number[i] > t->nshims) {
            PyErr_SetString(PyExc_ValueError, "shim_number names no shim");
            goto fail;
        }
    /* Type 0 stands for "no next layer": it must be neither a shim nor IP. */
    if (t->shim_number[0] || t->ip_type[0]) {
        PyErr_SetString(PyExc_ValueError, "type 0 must be neither a shim nor IP");
        goto fail;
    }
    for (int i = 0; i < 256; i++)
        if (t->transport_header[i] < 0 || t->transport_header[i] > MOST_FIELD) {
            PyErr_SetString(PyExc_ValueError, "transport_header out of range");
            goto fail;
        }
    if (int_rows(extensions, 3, ext, 256, 1 << 16, "extensions", &n) < 0)
        goto fail;
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t nh = ext[3 * i];
        if (nh > 255) {
            PyErr_SetString(PyExc_ValueError, "extensions: next header above 255");
            goto fail;
        }
        t->ext_on[nh] = 1;
        t->ext_base[nh] = ext[3 * i + 1];
        t->ext_unit[nh] = ext[3 * i + 2];
    }
    PyObject *one = PyTuple_Pack(1, scalars);
    if (!one)
        goto fail;
    int bad = int_rows(one, 10, sc, 1, 65535, "scalars", &n);
    Py_DECREF(one);
    if (bad < 0)
        goto fail;
    if (n != 1) {
        PyErr_SetString(PyExc_ValueError, "scalars: one tuple");
        goto fail;
    }
    t->max_shim_steps = sc[0];
    t->max_ipv6_ext = sc[1];
    t->ipv6_ext_min = sc[2];
    t->ipv6_fragment = sc[3];
    t->ipv4_type = sc[4];
    t->tcp_data_offset_at = sc[5];
    t->tcp_header_min = sc[6];
    t->proto_tcp = sc[7];
    t->proto_udp = sc[8];
    t->proto_gre = sc[9];
    PyObject *capsule = PyCapsule_New(t, CAPSULE, free_tables);
    if (!capsule)
        goto fail;
    return capsule;
fail:
    PyMem_Free(t);
    return NULL;
}

/* ---- the decode ---------------------------------------------------------------------------- */

/* The integer columns, in the order of the rows of the int64 block decode() fills. */
enum { C_L3, C_PROTO, C_TTL, C_IPLEN, C_IPID, C_L4, C_SPORT, C_DPORT, C_TCPFLAGS, C_TCPSEQ,
       C_UDPSUM, C_PAY, C_PAYLEN, N_INTS };
/* The byte columns, in the order of the rows of the uint8 block. */
enum { F_IPVER, F_SLOW, F_UNKNOWN_LINK, F_FRAGMENT, N_FLAGS };

typedef struct {
    const uint8_t *d;
    int64_t len;           /* bytes in d */
    int64_t first, n;      /* the rows decoded: first .. n - 1 */
    int64_t stride;        /* rows the output blocks hold (at least n) */
    const int64_t *offsets, *caplen;
    const int32_t *linktype;
    int64_t *ints;         /* N_INTS rows of stride */
    uint8_t *flags;        /* N_FLAGS rows of stride */
    uint32_t *addrs;       /* src (stride, 4) then dst (stride, 4) */
    uint8_t *l4h;          /* (stride, window) */
    int64_t window;
} batch_t;

/* (position after the link header or -1, type in EtherType space) of a frame of layout `lay`
 * starting at `start`: the twin of headers._link_start. */
static void
link_start(const tables_t *t, const layout_t *lay, const uint8_t *d, int64_t len, int64_t start,
           int64_t cap, int64_t *pos, int64_t *etype)
{
    *pos = -1;
    *etype = 0;
    if (!lay)
        return;
    int64_t base = 0;
    if (lay->hdlc_prefix && cap >= 2 && clamped_at(d, len, start) == 0xFF &&
        clamped_at(d, len, start + 1) == 0x03)
        base = 2;
    if (cap < base + lay->header)
        return;
    *pos = base + lay->header;
    int64_t a = start + base + lay->type_at;
    if (lay->space == SPACE_IP) {
        *etype = t->ipv4_type;
    } else if (lay->space == SPACE_FAMILY) {
        unsigned fam = clamped_at(d, len, a);
        if (!fam)
            fam = clamped_at(d, len, a + 3);  /* host byte order of the writer */
        *etype = t->family[fam] ? t->ipv4_type : 0;
    } else {
        unsigned ty = (clamped_at(d, len, a) << 8) | clamped_at(d, len, a + 1);
        *etype = lay->space == SPACE_PPP ? t->ppp[ty] : ty;
    }
}

/* Step over shims from `*pos`: the twin of headers._walk_shims. */
static void
walk_shims(const tables_t *t, const uint8_t *d, int64_t len, int64_t start, int64_t cap,
           int64_t *pos, int64_t *etype)
{
    int64_t p = *pos, ty = *etype, run = 0;
    unsigned prev = 0;
    for (int64_t step = 0; step < t->max_shim_steps; step++) {
        unsigned number = t->shim_number[ty];
        if (!number)
            break;
        const shim_t *s = &t->shims[number];
        run = number == prev ? run : 0;
        int64_t room = cap - p;
        if (room < s->length || run >= s->max_depth)
            break;
        int64_t q = start + p;
        if (s->space == SPACE_ETHERTYPE) {
            ty = be16(d, len, q + s->next_at);
        } else if (s->space == SPACE_PPP) {
            ty = t->ppp[be16(d, len, q + s->next_at)];
        } else if (at(d, len, q + s->next_at) & 1) {  /* MPLS bottom of stack */
            ty = room > s->length ? t->nibble[at(d, len, q + s->length) >> 4] : 0;
        }
        p += s->length;
        run++;
        prev = number;
    }
    *pos = p;
    *etype = ty;
}

static void
decode_row(const tables_t *t, const batch_t *b, int64_t i, const layout_t *lay)
{
    const uint8_t *d = b->d;
    const int64_t len = b->len, n = b->stride, start = b->offsets[i], cap = b->caplen[i];
    int64_t pos, etype;
    link_start(t, lay, d, len, start, cap, &pos, &etype);
    if (t->shim_number[etype])
        walk_shims(t, d, len, start, cap, &pos, &etype);

    /* IP (headers._ip_layer) */
    int64_t l3 = t->ip_type[etype] ? pos : -1;
    const int64_t ip = start + (l3 > 0 ? l3 : 0);
    const unsigned b0 = at(d, len, ip), nib = b0 >> 4;
    const int64_t room3 = l3 >= 0 ? cap - l3 : 0, ihl = (int64_t)(b0 & 0x0F) * 4;
    const int64_t total = be16(d, len, ip + 2);
    const int v4 = nib == 4 && room3 >= 20 && ihl >= 20 && room3 >= ihl && total >= ihl;
    const int v6 = !v4 && nib == 6 && room3 >= 40;
    int64_t iplen = 0, proto = 0, l4 = -1, ttl = 0, ipid = 0;
    unsigned flags = 0;
    uint32_t *src = b->addrs + 4 * i, *dst = b->addrs + 4 * (n + i);
    memset(src, 0, 16);
    memset(dst, 0, 16);
    if (v4) {
        iplen = total;
        ipid = be16(d, len, ip + 4);
        flags = be16(d, len, ip + 6);
        ttl = at(d, len, ip + 8);
        proto = at(d, len, ip + 9);
        l4 = l3 + ihl;
        src[3] = be32(d, len, ip + 12);
        dst[3] = be32(d, len, ip + 16);
    } else if (v6) {
        iplen = (int64_t)be16(d, len, ip + 4) + 40;
        proto = at(d, len, ip + 6);
        ttl = at(d, len, ip + 7);
        l4 = l3 + 40;
        for (int k = 0; k < 4; k++) {
            src[k] = be32(d, len, ip + 8 + 4 * k);
            dst[k] = be32(d, len, ip + 24 + 4 * k);
        }
    } else {
        l3 = -1;
    }
    int nonfirst = (flags & 0x1FFF) != 0, more = (flags & 0x2000) != 0;

    /* IPv6 extension headers (headers._ipv6_extensions): one cut short leaves no protocol
     * and no transport. */
    if (v6 && t->ext_on[proto]) {
        for (int64_t k = 0; k < t->max_ipv6_ext; k++) {
            const int64_t p = l4;
            if (cap < p + t->ipv6_ext_min) {
                proto = 0;
                l4 = -1;
                break;
            }
            const int64_t q = start + p;
            if (proto == t->ipv6_fragment) {
                nonfirst = (be16(d, len, q + 2) & 0xFFF8) != 0;
                more = at(d, len, q + 3) & 1;
            }
            const int64_t size = t->ext_base[proto] + (int64_t)at(d, len, q + 1) * t->ext_unit[proto];
            proto = at(d, len, q);
            l4 = p + size;
            if (!t->ext_on[proto])
                break;
        }
    }

    /* Transport (headers._transport_layer) */
    const int64_t l4at = start + (l4 > 0 ? l4 : 0);
    uint8_t *w = b->l4h + b->window * i;
    if (l4at + b->window <= len) {
        memcpy(w, d + l4at, (size_t)b->window);
    } else {
        for (int64_t k = 0; k < b->window; k++)
            w[k] = (uint8_t)at(d, len, l4at + k);
    }
    const int64_t room = cap - l4;
    const int has_l4 = l4 >= 0 && !nonfirst;
    const int has_ports = has_l4 && room >= 4;
    const int ports = has_ports && t->ports[proto];
    const int gre = has_ports && proto == t->proto_gre;
    const int tcp = has_l4 && proto == t->proto_tcp;
    const int full_tcp = tcp && room >= 20;
    const int udp = has_l4 && proto == t->proto_udp && room >= 8;
    int64_t pay = -1, paylen = 0;
    if (has_l4) {
        int64_t hlen = t->transport_header[proto];
        if (tcp)
            hlen = room > t->tcp_data_offset_at
                       ? (int64_t)(at(d, len, l4at + t->tcp_data_offset_at) >> 4) * 4
                       : t->tcp_header_min;
        pay = l4 + hlen;
        const int64_t end = cap < l3 + iplen ? cap : l3 + iplen;
        paylen = end - pay > 0 ? end - pay : 0;
    }
    int64_t *c = b->ints;
    c[C_L3 * n + i] = l3;
    c[C_PROTO * n + i] = proto;
    c[C_TTL * n + i] = ttl;
    c[C_IPLEN * n + i] = iplen;
    c[C_IPID * n + i] = ipid;
    c[C_L4 * n + i] = l4;
    c[C_SPORT * n + i] = ports ? be16(d, len, l4at) : 0;
    c[C_DPORT * n + i] = ports || gre ? be16(d, len, l4at + 2) : 0;
    c[C_TCPFLAGS * n + i] = full_tcp ? at(d, len, l4at + 13) : 0;
    c[C_TCPSEQ * n + i] = full_tcp ? be32(d, len, l4at + 4) : 0;
    c[C_UDPSUM * n + i] = udp ? (int64_t)be16(d, len, l4at + 6) : -1;
    c[C_PAY * n + i] = pay;
    c[C_PAYLEN * n + i] = paylen;
    uint8_t *f = b->flags;
    f[F_IPVER * n + i] = v4 ? 4 : v6 ? 6 : 0;
    f[F_SLOW * n + i] = f[F_FRAGMENT * n + i] = nonfirst || more;
    f[F_UNKNOWN_LINK * n + i] = lay == NULL;
}

static const layout_t *
layout_of(const tables_t *t, int64_t linktype)
{
    for (int k = 0; k < t->nlayouts; k++)
        if (t->layouts[k].linktype == linktype)
            return &t->layouts[k];
    return NULL;
}

static void
decode_rows(const tables_t *t, const batch_t *b)
{
    int64_t last_type = -1;
    const layout_t *lay = NULL;
    for (int64_t i = b->first; i < b->n; i++) {
        if (i + PREFETCH_AHEAD < b->n) {
            /* The headers of a row a few rows on, fetched while this one is walked (the rows
             * of a batch lie far apart, beyond what the hardware guesses). */
            const uint8_t *next = b->d + b->offsets[i + PREFETCH_AHEAD];
            __builtin_prefetch(next);
            __builtin_prefetch(next + 64);
        }
        if (b->linktype[i] != last_type) {
            last_type = b->linktype[i];
            lay = layout_of(t, last_type);
        }
        decode_row(t, b, i, lay);
    }
}

PyDoc_STRVAR(decode_doc,
"decode(tables, data, offsets, caplen, linktype, ints, flags, addrs, l4h, first=0, stop=n)\n--\n\n"
"Decode the outer headers of every packet data[offsets[i] : offsets[i] + caplen[i]] (of link\n"
"type linktype[i]: int64, int64, int32 columns of n rows) into the columns headers.Headers\n"
"holds: ints, an int64 (13, m) block (l3, proto, ttl, iplen, ipid, l4, sport, dport,\n"
"tcpflags, tcpseq, udpsum, pay, paylen); flags, a uint8 (4, m) block (ipver, slow,\n"
"unknown_link, fragment); addrs, a uint32 (2, m, 4) block (src, dst); l4h, a uint8 (m, w)\n"
"block of the bytes from the transport header on (bytes past data's end read as 0).  Only\n"
"the rows first .. stop - 1 are decoded (and written); the blocks hold m >= stop rows, m = n\n"
"when first and stop are not given.");

static PyObject *
decode(PyObject *module, PyObject *args)
{
    Py_buffer views[MOST_VIEWS] = {{0}};
    PyObject *capsule, *data, *offsets, *caplen, *linktype, *ints, *flags, *addrs, *l4h;
    Py_ssize_t first = 0, stop = -1;
    if (!PyArg_ParseTuple(args, "OOOOOOOOO|nn:decode", &capsule, &data, &offsets, &caplen,
                          &linktype, &ints, &flags, &addrs, &l4h, &first, &stop))
        return NULL;
    const int ranged = PyTuple_GET_SIZE(args) > 9;
    const tables_t *t = PyCapsule_GetPointer(capsule, CAPSULE);
    if (!t)
        return NULL;
    if (PyObject_GetBuffer(data, &views[0], PyBUF_C_CONTIGUOUS) < 0)
        return NULL;
    if (column(offsets, &views[1], 0, 8, "ql", -1, "offsets") < 0)
        return release(views, NULL);
    Py_ssize_t n = views[1].len / 8;
    if (column(caplen, &views[2], 0, 8, "ql", n, "caplen") < 0 ||
        column(linktype, &views[3], 0, 4, "i", n, "linktype") < 0 ||
        column(ints, &views[4], 1, 8, "ql", ranged ? -1 : N_INTS * n, "ints") < 0)
        return release(views, NULL);
    /* Rows the output blocks hold: n, or as many as ints holds for a range of rows. */
    const Py_ssize_t m = ranged ? views[4].len / 8 / N_INTS : n;
    if (column(flags, &views[5], 1, 1, "B?b", N_FLAGS * m, "flags") < 0 ||
        column(addrs, &views[6], 1, 4, "I", 8 * m, "addrs") < 0)
        return release(views, NULL);
    if (PyObject_GetBuffer(l4h, &views[7], PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0)
        return release(views, NULL);
    if (!ranged || stop < 0)
        stop = n;
    if (views[4].len != N_INTS * 8 * m || first < 0 || stop < first || stop > n || stop > m) {
        PyErr_Format(PyExc_ValueError, "rows %zd to %zd are not within %zd rows and blocks of %zd",
                     first, stop, n, m);
        return release(views, NULL);
    }
    batch_t b = {
        .d = views[0].buf, .len = views[0].len, .first = first, .n = stop, .stride = m,
        .offsets = views[1].buf, .caplen = views[2].buf, .linktype = views[3].buf,
        .ints = views[4].buf, .flags = views[5].buf, .addrs = views[6].buf,
        .l4h = views[7].buf, .window = m ? views[7].len / m : 0,
    };
    if (m && views[7].len != b.window * m) {
        PyErr_SetString(PyExc_ValueError, "l4h must hold the same number of bytes per row");
        return release(views, NULL);
    }
    /* The batch's promise (PacketBatch): each packet lies within data.  It also bounds every
     * position the walk computes far below overflow. */
    for (Py_ssize_t i = first; i < stop; i++) {
        int64_t o = b.offsets[i], c = b.caplen[i];
        if (o < 0 || c < 0 || o > b.len || c > b.len - o) {
            PyErr_Format(PyExc_ValueError,
                         "packet %zd (%lld bytes at %lld) lies outside %lld bytes of data", i,
                         (long long)c, (long long)o, (long long)b.len);
            return release(views, NULL);
        }
    }
    PyThreadState *state = stop - first >= RELEASE_FROM ? PyEval_SaveThread() : NULL;
    decode_rows(t, &b);
    if (state)
        PyEval_RestoreThread(state);
    return release(views, Py_NewRef(Py_None));
}

/* ---- row hashes ---------------------------------------------------------------------------- */

static inline uint64_t
address_hash(const uint32_t *w, uint64_t salt)
{
    uint64_t hi = ((uint64_t)w[0] << 32) | w[1], lo = ((uint64_t)w[2] << 32) | w[3];
    return mix64(mix64(hi ^ salt) ^ lo * M1);
}

PyDoc_STRVAR(row_keys_doc,
"row_keys(salt, rows, src, dst, sport, dport, proto, keys, direction)\n--\n\n"
"The hashes of table.row_keys for the rows `rows` (int64 (m), each below n; None: all n\n"
"rows in order) of src and dst (uint32 (n, 4)), sport, dport and proto (int64 (n)): keys gets\n"
"a uint64 (4, m) block (src host, dst host, flow, directed), direction int8 (m).");

static PyObject *
row_keys(PyObject *module, PyObject *args)
{
    Py_buffer views[MOST_VIEWS] = {{0}};
    unsigned long long salt;
    PyObject *rows, *src, *dst, *sport, *dport, *proto, *keys, *direction;
    if (!PyArg_ParseTuple(args, "KOOOOOOOO:row_keys", &salt, &rows, &src, &dst, &sport, &dport,
                          &proto, &keys, &direction))
        return NULL;
    if (column(sport, &views[2], 0, 8, "ql", -1, "sport") < 0)
        return release(views, NULL);
    Py_ssize_t n = views[2].len / 8, m = n;
    if (rows != Py_None) {
        if (column(rows, &views[7], 0, 8, "ql", -1, "rows") < 0)
            return release(views, NULL);
        m = views[7].len / 8;
    }
    if (column(src, &views[0], 0, 4, "I", 4 * n, "src") < 0 ||
        column(dst, &views[1], 0, 4, "I", 4 * n, "dst") < 0 ||
        column(dport, &views[3], 0, 8, "ql", n, "dport") < 0 ||
        column(proto, &views[4], 0, 8, "ql", n, "proto") < 0 ||
        column(keys, &views[5], 1, 8, "QL", 4 * m, "keys") < 0 ||
        column(direction, &views[6], 1, 1, "b", m, "direction") < 0)
        return release(views, NULL);
    const int64_t *at_rows = views[7].buf;
    for (Py_ssize_t j = 0; at_rows && j < m; j++)
        if (at_rows[j] < 0 || at_rows[j] >= n) {
            PyErr_Format(PyExc_IndexError, "row %lld of %zd rows", (long long)at_rows[j], n);
            return release(views, NULL);
        }
    const uint32_t *s = views[0].buf, *dd = views[1].buf;
    const int64_t *sp = views[2].buf, *dp = views[3].buf, *pr = views[4].buf;
    uint64_t *k = views[5].buf;
    int8_t *dir = views[6].buf;
    PyThreadState *state = m >= RELEASE_FROM ? PyEval_SaveThread() : NULL;
    for (Py_ssize_t j = 0; j < m; j++) {
        const int64_t i = at_rows ? at_rows[j] : j;
        uint64_t hs = address_hash(s + 4 * i, salt), hd = address_hash(dd + 4 * i, salt);
        uint64_t a = mix64(hs ^ (uint64_t)sp[i]), b = mix64(hd ^ (uint64_t)dp[i]);
        uint64_t p = (uint64_t)pr[i], lo = a < b ? a : b, hi = a < b ? b : a;
        k[j] = hs;
        k[m + j] = hd;
        k[2 * m + j] = mix64(mix64(lo) ^ (hi * M1) ^ p);
        k[3 * m + j] = mix64((a * M1) ^ b ^ p);
        dir[j] = a > b;
    }
    if (state)
        PyEval_RestoreThread(state);
    return release(views, Py_NewRef(Py_None));
}

/* ---- payload heads ------------------------------------------------------------------------- */

/* Parses (data, starts, lengths, out) by `format`: the batch's bytes and its rows' payload
 * starts and lengths (views 0-2) and the output array (*out); the number of rows, or -1 with an
 * exception set. */
static Py_ssize_t
payload_columns(PyObject *args, const char *format, Py_buffer *views, PyObject **out)
{
    PyObject *data, *starts, *lengths;
    if (!PyArg_ParseTuple(args, format, &data, &starts, &lengths, out))
        return -1;
    if (PyObject_GetBuffer(data, &views[0], PyBUF_C_CONTIGUOUS) < 0)
        return -1;
    if (column(starts, &views[1], 0, 8, "ql", -1, "starts") < 0)
        return -1;
    const Py_ssize_t m = views[1].len / 8;
    return column(lengths, &views[2], 0, 8, "ql", m, "lengths") < 0 ? -1 : m;
}

/* The rows' payloads lie far apart in the batch: the one PREFETCH_AHEAD rows on is asked for
 * while row i is read. */
static inline void
prefetch_ahead(const uint8_t *d, int64_t len, const int64_t *st, Py_ssize_t m, Py_ssize_t i)
{
    if (i + PREFETCH_AHEAD < m && st[i + PREFETCH_AHEAD] >= 0 && st[i + PREFETCH_AHEAD] < len)
        __builtin_prefetch(d + st[i + PREFETCH_AHEAD]);
}

/* A payload window: the first `width` bytes of data from s on, zeroed from the payload's length
 * ln on, past data's end, or all of it for a negative start. */
static inline void
window(uint8_t *row, int64_t width, const uint8_t *d, int64_t len, int64_t s, int64_t ln)
{
    int64_t keep = ln < width ? ln : width;
    if (keep <= 0 || s < 0) {
        memset(row, 0, (size_t)width);
        return;
    }
    if (s <= len - keep) {
        memcpy(row, d + s, (size_t)keep);
    } else {
        for (int64_t k = 0; k < keep; k++)
            row[k] = s < len - k ? d[s + k] : 0;
    }
    memset(row + keep, 0, (size_t)(width - keep));
}

/* A payload's first two bytes as one big-endian number, as its window holds them. */
static inline int64_t
lead_of(const uint8_t *d, int64_t len, int64_t s, int64_t ln)
{
    unsigned first = 0, second = 0;
    if (s >= 0) {
        if (ln >= 1)
            first = at(d, len, s);
        if (ln >= 2)
            second = at(d, len, s + 1);
    }
    return (int64_t)((first << 8) | second);
}

PyDoc_STRVAR(payload_heads_doc,
"payload_heads(data, starts, lengths, head)\n--\n\n"
"Row i of head (uint8 (m, w)) gets the first w bytes of data from starts[i] on, zeroed from\n"
"lengths[i] on (starts, lengths: int64 (m); rows with lengths[i] <= 0 are all zero).");

static PyObject *
payload_heads(PyObject *module, PyObject *args)
{
    Py_buffer views[MOST_VIEWS] = {{0}};
    PyObject *head;
    const Py_ssize_t m = payload_columns(args, "OOOO:payload_heads", views, &head);
    if (m < 0)
        return release(views, NULL);
    if (PyObject_GetBuffer(head, &views[3], PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0)
        return release(views, NULL);
    const int64_t width = m ? views[3].len / m : 0;
    if (m && views[3].len != width * m) {
        PyErr_SetString(PyExc_ValueError, "head must hold the same number of bytes per row");
        return release(views, NULL);
    }
    const uint8_t *d = views[0].buf;
    const int64_t len = views[0].len, *st = views[1].buf, *ln = views[2].buf;
    uint8_t *out = views[3].buf;
    for (Py_ssize_t i = 0; i < m; i++) {
        prefetch_ahead(d, len, st, m, i);
        window(out + width * i, width, d, len, st[i], ln[i]);
    }
    return release(views, Py_NewRef(Py_None));
}

/* The routes of word w that row i may take: by its lead, and by its ports where a route has
 * ports of its own (by_port NULL: no route has). */
static inline uint64_t
route_bits(const uint64_t *by_lead, const uint64_t *by_port, const uint64_t *free_of,
           Py_ssize_t w, int64_t lead, const int64_t *sp, const int64_t *dp, Py_ssize_t i)
{
    uint64_t bits = by_lead[w * 65536 + lead];
    if (by_port)
        bits &= free_of[w] | by_port[w * 65536 + sp[i]] | by_port[w * 65536 + dp[i]];
    return bits;
}

PyDoc_STRVAR(route_windows_doc,
"route_windows(data, starts, lengths, sport, dport, leads, ports, port_free, routes, width,\n"
"              heads, cuts)\n--\n\n"
"The payload windows each prefilter route is given (prefilter_route.PrefilterRoute.hits_in):\n"
"row i's window is its first `width` bytes of data from starts[i] on, as payload_heads reads\n"
"it, and its lead the window's first two bytes; it may take route r where that route's bit\n"
"(bit r % 64 of word r // 64) is set in leads[word * 65536 + lead] and in port_free[word] |\n"
"ports[word * 65536 + sport[i]] | ports[word * 65536 + dport[i]] (ports None: in every port).\n"
"heads (uint8 (m, width)) gets every row's window, unless None.  Returns, route after route\n"
"(each's rows ascending), the rows (bytes of int64), their windows (a bytearray of `width`\n"
"bytes a row; None with heads where the routes take more than two rows a row) and their\n"
"lengths (bytes of int64); cuts (int64 (routes+1)) gets where each route's rows begin.\n"
"starts, lengths, sport, dport: int64 (m), the ports in [0, 65535].");

static PyObject *
route_windows(PyObject *module, PyObject *args)
{
    Py_buffer views[MOST_VIEWS] = {{0}};
    PyObject *data, *starts, *lengths, *sport, *dport, *leads, *ports, *port_free, *heads, *cuts;
    Py_ssize_t routes, width;
    if (!PyArg_ParseTuple(args, "OOOOOOOOnnOO:route_windows", &data, &starts, &lengths, &sport,
                          &dport, &leads, &ports, &port_free, &routes, &width, &heads, &cuts))
        return NULL;
    if (PyObject_GetBuffer(data, &views[0], PyBUF_C_CONTIGUOUS) < 0
        || column(starts, &views[1], 0, 8, "ql", -1, "starts") < 0)
        return release(views, NULL);
    const Py_ssize_t m = views[1].len / 8;
    if (column(lengths, &views[2], 0, 8, "ql", m, "lengths") < 0
        || column(port_free, &views[5], 0, 8, "QL", -1, "port_free") < 0)
        return release(views, NULL);
    const Py_ssize_t words = views[5].len / 8;
    if (routes < 0 || routes > words * 64 || width < 2 || width > 4096) {
        PyErr_SetString(PyExc_ValueError, "no such number of routes, or of bytes a window");
        return release(views, NULL);
    }
    const int by_ports = ports != Py_None, every_row = heads != Py_None;
    if ((by_ports
         && (column(sport, &views[3], 0, 8, "ql", m, "sport") < 0
             || column(dport, &views[4], 0, 8, "ql", m, "dport") < 0
             || column(ports, &views[6], 0, 8, "QL", words * 65536, "ports") < 0))
        || column(leads, &views[7], 0, 8, "QL", words * 65536, "leads") < 0
        || (every_row && column(heads, &views[8], 1, 1, "B", m * width, "heads") < 0)
        || column(cuts, &views[9], 1, 8, "ql", routes + 1, "cuts") < 0)
        return release(views, NULL);
    const uint8_t *d = views[0].buf;
    const int64_t len = views[0].len, *st = views[1].buf, *ln = views[2].buf;
    const int64_t *sp = views[3].buf, *dp = views[4].buf;
    const uint64_t *by_lead = views[7].buf, *by_port = by_ports ? views[6].buf : NULL;
    const uint64_t *free_of = views[5].buf;
    uint8_t *all = every_row ? views[8].buf : NULL;
    int64_t *cut = views[9].buf;
    for (Py_ssize_t i = 0; by_port && i < m; i++)
        if (sp[i] < 0 || sp[i] > 0xFFFF || dp[i] < 0 || dp[i] > 0xFFFF) {
            PyErr_SetString(PyExc_ValueError, "a port is not a 16-bit value");
            return release(views, NULL);
        }
    /* Each row's lead, kept for the second pass (which places the rows) to look up again. */
    uint16_t *lead = PyMem_Malloc((size_t)(m ? m : 1) * sizeof(uint16_t));
    int64_t *next = PyMem_Malloc((size_t)(routes + 1) * sizeof(int64_t));
    PyObject *ids = NULL, *wins = NULL, *lens = NULL;
    if (!lead || !next) {
        PyErr_NoMemory();
        goto done;
    }
    memset(cut, 0, (size_t)(routes + 1) * 8);
    for (Py_ssize_t i = 0; i < m; i++) {
        prefetch_ahead(d, len, st, m, i);
        if (every_row) {
            uint8_t *row = all + width * i;
            window(row, width, d, len, st[i], ln[i]);
            lead[i] = (uint16_t)((row[0] << 8) | row[1]);
        } else {
            lead[i] = (uint16_t)lead_of(d, len, st[i], ln[i]);
        }
        for (Py_ssize_t w = 0; w < words; w++)
            for (uint64_t bits = route_bits(by_lead, by_port, free_of, w, lead[i], sp, dp, i);
                 bits; bits &= bits - 1) {
                const Py_ssize_t r = w * 64 + __builtin_ctzll(bits);
                if (r < routes)
                    cut[r + 1]++;
            }
    }
    for (Py_ssize_t r = 0; r < routes; r++)
        cut[r + 1] += cut[r];
    const Py_ssize_t total = (Py_ssize_t)cut[routes];
    /* Rows that many routes may take (a payload crafted to look like many formats at once)
     * would have their window written once a route: past two a row on average, the caller
     * takes each route's windows from heads instead, so that memory stays that of heads. */
    const int own_windows = !every_row || total <= 2 * m;
    ids = PyBytes_FromStringAndSize(NULL, total * 8);
    lens = PyBytes_FromStringAndSize(NULL, total * 8);
    wins = own_windows ? PyByteArray_FromStringAndSize(NULL, total * width) : Py_NewRef(Py_None);
    if (!ids || !lens || !wins)
        goto done;
    int64_t *out_ids = (int64_t *)PyBytes_AS_STRING(ids);
    int64_t *out_lens = (int64_t *)PyBytes_AS_STRING(lens);
    uint8_t *out_wins = own_windows ? (uint8_t *)PyByteArray_AS_STRING(wins) : NULL;
    memcpy(next, cut, (size_t)(routes + 1) * 8);
    for (Py_ssize_t i = 0; i < m; i++)
        for (Py_ssize_t w = 0; w < words; w++)
            for (uint64_t bits = route_bits(by_lead, by_port, free_of, w, lead[i], sp, dp, i);
                 bits; bits &= bits - 1) {
                const Py_ssize_t r = w * 64 + __builtin_ctzll(bits);
                if (r >= routes)
                    continue;
                const int64_t place = next[r]++;
                out_ids[place] = i;
                out_lens[place] = ln[i];
                if (!own_windows)
                    continue;
                if (every_row)
                    memcpy(out_wins + width * place, all + width * i, (size_t)width);
                else
                    window(out_wins + width * place, width, d, len, st[i], ln[i]);
            }
    PyMem_Free(lead);
    PyMem_Free(next);
    return release(views, Py_BuildValue("NNN", ids, wins, lens));
done:
    PyMem_Free(lead);
    PyMem_Free(next);
    Py_XDECREF(ids);
    Py_XDECREF(wins);
    Py_XDECREF(lens);
    return release(views, NULL);
}

/* ---- the carried-packet tests of the payload prefilters --------------------------------------- */

/* A prefilter window matrix and its rows' payload lengths: m rows of `width` bytes (m the
 * number of lengths, returned; -1 with an exception set on a mismatch). */
static Py_ssize_t
windows(PyObject *head, PyObject *lengths, Py_ssize_t width, Py_buffer *head_view,
        Py_buffer *length_view)
{
    if (column(lengths, length_view, 0, 8, "ql", -1, "lengths") < 0)
        return -1;
    const Py_ssize_t m = length_view->len / 8;
    if (column(head, head_view, 0, 1, "B", -1, "head") < 0)
        return -1;
    if (width < 0 || head_view->len != m * width) {
        PyErr_SetString(PyExc_ValueError, "head must hold width bytes for each length");
        return -1;
    }
    return m;
}

static inline unsigned
row16(const uint8_t *row, int64_t p)
{
    return ((unsigned)row[p] << 8) | row[p + 1];
}

PyDoc_STRVAR(carried_at_doc,
"carried_at(head, width, lengths, offsets, ipv4_start, ethertypes, ether_room, out)\n--\n\n"
"For each row i of head (uint8, width bytes a row, lengths int64 (m)) and offset o = offsets[j]\n"
"(int64 (k), 0 <= o <= width - 14), out[i * k + j] (uint8) gets bit 0 where an IPv4 header\n"
"(first byte in ipv4_start, bool (256)) whose total length, or an IPv6 header whose payload\n"
"length and 40, is lengths[i] - o starts at o; bit 1 where an Ethernet header with a unicast\n"
"source and an EtherType in ethertypes (bool (65536)) starts at o, with lengths[i] - o >=\n"
"ether_room (li_common.ip_fills_mask and ether_ip_mask).");

static PyObject *
carried_at(PyObject *module, PyObject *args)
{
    Py_buffer views[MOST_VIEWS] = {{0}};
    PyObject *head, *lengths, *offsets, *ipv4_start, *ethertypes, *out;
    Py_ssize_t width;
    long long ether_room;
    if (!PyArg_ParseTuple(args, "OnOOOOLO:carried_at", &head, &width, &lengths, &offsets,
                          &ipv4_start, &ethertypes, &ether_room, &out))
        return NULL;
    const Py_ssize_t m = windows(head, lengths, width, &views[2], &views[0]);
    if (m < 0 || column(offsets, &views[1], 0, 8, "ql", -1, "offsets") < 0)
        return release(views, NULL);
    const Py_ssize_t k = views[1].len / 8;
    if (column(ipv4_start, &views[3], 0, 1, "?B", 256, "ipv4_start") < 0
        || column(ethertypes, &views[4], 0, 1, "?B", 65536, "ethertypes") < 0
        || column(out, &views[5], 1, 1, "?B", m * k, "out") < 0)
        return release(views, NULL);
    const int64_t *len = views[0].buf, *offs = views[1].buf;
    for (Py_ssize_t j = 0; j < k; j++)
        if (offs[j] < 0 || offs[j] > width - 14) {
            PyErr_SetString(PyExc_ValueError, "an offset leaves no room for an Ethernet header");
            return release(views, NULL);
        }
    const uint8_t *h = views[2].buf, *v4 = views[3].buf, *eth = views[4].buf;
    uint8_t *o = views[5].buf;
    for (Py_ssize_t i = 0; i < m; i++) {
        const uint8_t *row = h + width * i;
        for (Py_ssize_t j = 0; j < k; j++) {
            const int64_t off = offs[j], rest = len[i] - off;
            const unsigned first = row[off];
            unsigned bits = 0;
            if ((v4[first] && (int64_t)row16(row, off + 2) == rest)
                || ((first >> 4) == 6 && (int64_t)row16(row, off + 4) + 40 == rest))
                bits |= 1;
            if ((row[off + 6] & 1) == 0 && eth[row16(row, off + 12)] && rest >= ether_room)
                bits |= 2;
            o[i * k + j] = (uint8_t)bits;
        }
    }
    return release(views, Py_NewRef(Py_None));
}

PyDoc_STRVAR(ip_within_doc,
"ip_within(head, width, lengths, most_offset, ipv4_start, next_headers, out)\n--\n\n"
"out[i] (bool (m)) is True where some offset o <= most_offset (most_offset + 20 <= width) of\n"
"row i of head (uint8, width bytes a row) starts an IPv4 header (first byte in ipv4_start,\n"
"bool (256)) with a right checksum whose total length is lengths[i] - o, or an IPv6 header\n"
"(next header in next_headers, bool (256), hop limit above 0) whose payload length, 8 or\n"
"more, and 40 are lengths[i] - o; lengths[i] - o is 20 or more (the unknown-encapsulation\n"
"prefilter).");

static PyObject *
ip_within(PyObject *module, PyObject *args)
{
    Py_buffer views[MOST_VIEWS] = {{0}};
    PyObject *head, *lengths, *ipv4_start, *next_headers, *out;
    Py_ssize_t width, most;
    if (!PyArg_ParseTuple(args, "OnOnOOO:ip_within", &head, &width, &lengths, &most, &ipv4_start,
                          &next_headers, &out))
        return NULL;
    const Py_ssize_t m = windows(head, lengths, width, &views[1], &views[0]);
    if (m < 0
        || column(ipv4_start, &views[2], 0, 1, "?B", 256, "ipv4_start") < 0
        || column(next_headers, &views[3], 0, 1, "?B", 256, "next_headers") < 0
        || column(out, &views[4], 1, 1, "?B", m, "out") < 0)
        return release(views, NULL);
    if (most < 0 || most > width - 20) {
        PyErr_SetString(PyExc_ValueError, "most_offset leaves no room for an IPv4 header");
        return release(views, NULL);
    }
    const int64_t *len = views[0].buf;
    const uint8_t *h = views[1].buf, *v4 = views[2].buf, *next = views[3].buf;
    uint8_t *o = views[4].buf;
    for (Py_ssize_t i = 0; i < m; i++) {
        const uint8_t *row = h + width * i;
        const int64_t length = len[i];
        /* What is left from the last offset searched is 20 bytes or more. */
        const int64_t last = length - 20 < most ? length - 20 : most;
        uint8_t found = 0;
        for (int64_t off = 0; off <= last && !found; off++) {
            const unsigned first = row[off];
            const int64_t rest = length - off, field = row16(row, off + 4);
            /* The length fields first: they rarely match, and then the rest is read. */
            const int maybe4 = (int64_t)row16(row, off + 2) == rest && v4[first];
            const int maybe6 = field + 40 == rest && (first >> 4) == 6;
            if (__builtin_expect(maybe4, 0)) {
                uint32_t sum = 0;
                for (int w = 0; w < 20; w += 2)
                    sum += row16(row, off + w);
                while (sum > 0xFFFF)
                    sum = (sum & 0xFFFF) + (sum >> 16);
                found = sum == 0xFFFF;
            } else if (__builtin_expect(maybe6, 0)) {
                found = field >= 8 && next[row[off + 6]] && row[off + 7] > 0;
            }
        }
        o[i] = found;
    }
    return release(views, Py_NewRef(Py_None));
}

static PyMethodDef methods[] = {
    {"tables", tables, METH_VARARGS, tables_doc},
    {"decode", decode, METH_VARARGS, decode_doc},
    {"row_keys", row_keys, METH_VARARGS, row_keys_doc},
    {"payload_heads", payload_heads, METH_VARARGS, payload_heads_doc},
    {"route_windows", route_windows, METH_VARARGS, route_windows_doc},
    {"carried_at", carried_at, METH_VARARGS, carried_at_doc},
    {"ip_within", ip_within, METH_VARARGS, ip_within_doc},
    {NULL, NULL, 0, NULL},
};

static PyModuleDef_Slot slots[] = {
#ifdef Py_mod_multiple_interpreters
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
    {0, NULL},
};

static struct PyModuleDef outer_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "detector.decode._outer",
    .m_doc = "The outer header decode, row hashes and prefilter tests of a batch, compiled.",
    .m_size = 0,
    .m_methods = methods,
    .m_slots = slots,
};

PyMODINIT_FUNC
PyInit__outer(void)
{
    return PyModuleDef_Init(&outer_module);
}
