/* Optional C accelerator for utcp.wire.checksum: the RFC 1071 word sum of a byte range.
 *
 * word_sum(data, start=0, end=len(data)) -> int in 0..0xFFFF
 *
 * The result is the one's-complement sum of the big-endian 16-bit words of data[start:end] (an odd
 * last byte is padded with a zero byte), folded to 16 bits: congruent modulo 0xFFFF to the plain sum
 * of those words, and 0 only when every byte is zero. That is all utcp.wire.checksum needs from
 * `_words_value` (its pure-Python twin), which the tests hold it to byte for byte.
 *
 * The loop sums native 32-bit loads into a 64-bit accumulator and swaps bytes once at the end:
 * RFC 1071 2(B), the one's-complement sum does not depend on byte order.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static uint16_t fold64(uint64_t s) {
    /* end-around carry until 16 bits remain; a non-zero sum never folds to 0 */
    while (s >> 16)
        s = (s & 0xFFFF) + (s >> 16);
    return (uint16_t)s;
}

static uint16_t sum_native(const unsigned char *p, Py_ssize_t n) {
    uint64_t s = 0;
    while (n >= 8) {
        uint32_t a, b;
        memcpy(&a, p, 4);
        memcpy(&b, p + 4, 4);
        s += (uint64_t)a + b;
        p += 8;
        n -= 8;
    }
    while (n >= 2) {
        uint16_t w;
        memcpy(&w, p, 2);
        s += w;
        p += 2;
        n -= 2;
    }
    uint16_t folded = fold64(s);
    if (n) {
        /* the odd last byte is the high byte of a big-endian word: in native order, its byte 0 */
        unsigned char pad[2] = {p[0], 0};
        uint16_t w;
        memcpy(&w, pad, 2);
        folded = fold64((uint64_t)folded + w);
    }
    return folded;
}

static uint16_t to_big_endian_sum(uint16_t native) {
    const uint16_t one = 1;
    unsigned char little;
    memcpy(&little, &one, 1);
    if (little)
        return (uint16_t)((native << 8) | (native >> 8));
    return native;
}

static PyObject *word_sum(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs < 1 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "word_sum(data, start=0, end=len(data))");
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    Py_ssize_t start = 0, end = view.len;
    if (nargs >= 2) {
        start = PyLong_AsSsize_t(args[1]);
        if (start == -1 && PyErr_Occurred())
            goto fail;
    }
    if (nargs == 3) {
        end = PyLong_AsSsize_t(args[2]);
        if (end == -1 && PyErr_Occurred())
            goto fail;
    }
    /* the bounds of data[start:end] for non-negative indices, clipped as a slice would be */
    if (start < 0 || end < 0) {
        PyErr_SetString(PyExc_ValueError, "word_sum: negative start or end");
        goto fail;
    }
    if (end > view.len)
        end = view.len;
    if (start > end)
        start = end;
    uint16_t s = to_big_endian_sum(sum_native((const unsigned char *)view.buf + start, end - start));
    PyBuffer_Release(&view);
    return PyLong_FromLong(s);
fail:
    PyBuffer_Release(&view);
    return NULL;
}

static PyMethodDef methods[] = {
    {"word_sum", (PyCFunction)(void (*)(void))word_sum, METH_FASTCALL,
     "word_sum(data, start=0, end=len(data)) -> folded RFC 1071 sum of data[start:end]"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "utcp.wire._checksum", "RFC 1071 word sums in C (optional).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__checksum(void) { return PyModule_Create(&module); }
