/* What the compiled modules share: checked access to the numpy columns a call is given, and
 * the 64-bit mixing of detector/flows/table.py.
 *
 * A call holds up to MOST_VIEWS buffers in one zeroed array and releases them together however
 * it ends (release returns its second argument, so `return release(v, NULL);` reads as one
 * step).  column() checks what numpy hands over: contiguous, the item size and struct format
 * asked for, writable if written to, and the number of items where the caller knows it.
 */
#ifndef MIRRORWATCH_COLUMNS_H
#define MIRRORWATCH_COLUMNS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define MOST_VIEWS 16

static PyObject *
release(Py_buffer *views, PyObject *result)
{
    for (int i = 0; i < MOST_VIEWS; i++)
        if (views[i].obj)
            PyBuffer_Release(&views[i]);
    return result;
}

/* A C-contiguous buffer of `items` items (any number if negative) of `itemsize` bytes whose
 * struct format is one of `formats` (the byte order prefix of native order allowed), writable
 * if asked. */
static int
column(PyObject *obj, Py_buffer *view, int writable, Py_ssize_t itemsize, const char *formats,
       Py_ssize_t items, const char *name)
{
    int want = PyBUF_FORMAT | PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, want) < 0)
        return -1;
    const char *f = view->format ? view->format : "B";
    if (*f == '<' || *f == '=' || *f == '@')
        f++;
    if (view->itemsize != itemsize || f[0] == '\0' || f[1] != '\0' || !strchr(formats, f[0])) {
        PyErr_Format(PyExc_TypeError, "%s must be a contiguous array of %zd-byte items (%s)",
                     name, itemsize, formats);
        return -1;
    }
    if (items >= 0 && view->len != items * itemsize) {
        PyErr_Format(PyExc_ValueError, "%s holds %zd items, not %zd", name,
                     view->len / itemsize, items);
        return -1;
    }
    return 0;
}

/* splitmix64's finaliser and the golden ratio, as in detector/flows/table.py: the differential
 * tests hold the compiled and numpy forms equal. */
#define M1 UINT64_C(0x9E3779B97F4A7C15)
#define M2 UINT64_C(0xBF58476D1CE4E5B9)
#define M3 UINT64_C(0x94D049BB133111EB)

static inline uint64_t
mix64(uint64_t x)
{
    x = (x ^ (x >> 30)) * M2;
    x = (x ^ (x >> 27)) * M3;
    return x ^ (x >> 31);
}

#endif
