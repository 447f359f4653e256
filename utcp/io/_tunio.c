/* Optional C helper for utcp.io.tun: a thread that writes a TUN device's packets, and a loop that reads
 * them.
 *
 * A write(2) into a TUN device runs the kernel's receive path for that packet inside the call: IP, then
 * the TCP work of the kernel peer (a SYN-ACK's ACK, a wake-up of the peer's reader). In a utcp process
 * that is a third of its CPU on the connection and transmit benchmarks. Here the stack's thread copies
 * each packet into a queue and goes on; a thread of our own writes the queue in order, with no Python
 * (so no GIL) between its writes, on whichever CPU is free. A Python thread would take the GIL back
 * after every write and measured slower than writing in place.
 *
 *   TunWriter(fd, limit, nap_us=0, nap_window_us=1000) starts the thread, which writes to a duplicate
 *     of `fd` (its own, closed by close()): a device closed or collected before its writer can never
 *     have its number, reused by another file, written to.
 *     With nap_us > 0 the thread, having written within the last nap_window_us and running on another
 *     CPU than the last push, does not sleep until a push wakes it but naps nap_us at a time and looks
 *     again. Waking a thread on another CPU is the costly part of a push where IPIs are VM exits: ~8 us
 *     of the pushing thread's CPU against ~0.5 us for the copy (docs/performance.md, session 10); a
 *     nap's timer fires on the writer's own CPU. On the pusher's CPU (a busy machine) a wake-up needs no
 *     IPI and a nap's timer would preempt the pusher, so the thread sleeps. The price of a nap: a packet
 *     may wait up to nap_us, and the writer's CPU takes a timer tick per nap.
 *   push(data) -> bool and push_pair(head, data) -> bool (written with writev: a virtio_net_hdr and
 *     the packet) queue a copy, or return False while `limit` bytes wait: the caller holds the packet
 *     and waits until `space_fd` (an eventfd) is readable, which the thread makes it once it takes the
 *     queue that refused.
 *   push_many(packets, head=None) -> int queues packets in order until the queue refuses one, and
 *     says how many it took: one call for a pump's packets.
 *   close() writes what is queued, then ends the thread (the GIL released while it waits).
 *   written, errors, last_errno, queued: what the thread did. A write that fails is counted and the
 *     packet dropped, as a packet lost on a wire.
 * A fork's child has no such thread: there push() raises, and close() only closes the fds.
 *
 * read_batch(fd, max_packets, skip) -> (packets, non_ipv4, more) reads a non-blocking fd until EAGAIN
 * or max_packets, as utcp.io.tun's Python loop does with os.read: each packet without its first `skip`
 * bytes (a virtio_net_hdr), frames whose version nibble is not 4 counted in non_ipv4 and left out, `more`
 * True when the limit (not EAGAIN) ended the loop. A read error after some packets returns them (the
 * next call meets it again); before any, it raises OSError. Each packet is copied once, at its length.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

typedef struct node {
    struct node *next;
    size_t len;      /* bytes in data */
    size_t head_len; /* > 0: data[:head_len] and data[head_len:] go out as two iovecs (push_pair) */
    unsigned char data[];
} node;

/* Counts the forks this process came out of (pthread_atfork): a writer from another generation has
 * its thread, and maybe its mutex's holder, in the parent. */
static unsigned long fork_generation;

static void on_fork_child(void) { fork_generation++; }

typedef struct {
    PyObject_HEAD
    unsigned long generation;
    int fd;
    int space_fd;
    int started;
    int closed;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* under mu */
    node *head, *tail;
    size_t queued;
    size_t limit;
    long long nap_ns, nap_window_ns;
    int sleeping;   /* the thread waits on cv: a push must signal */
    int pusher_cpu; /* the CPU of the last push (-1: none yet) */
    int closing;
    int want_space; /* a push was refused: signal space_fd when the queue is taken */
    unsigned long long written, errors, wakeups, naps;
    int last_errno;
} TunWriter;

static void write_node(int fd, node *n, unsigned long long *ok, unsigned long long *failed, int *err) {
    ssize_t r;
    do {
        if (n->head_len) {
            struct iovec iov[2] = {{n->data, n->head_len}, {n->data + n->head_len, n->len - n->head_len}};
            r = writev(fd, iov, 2);
        } else {
            r = write(fd, n->data, n->len);
        }
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
        ++*failed;
        *err = errno;
    } else {
        ++*ok;
    }
}

static long long monotonic_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void *run(void *arg) {
    TunWriter *w = arg;
    /* the default timer slack (50 us) would double a 50 us nap */
    if (w->nap_ns)
        prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
    long long last_write = 0; /* monotonic_ns() after the last batch written */
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->head && !w->closing) {
            long long now = w->nap_ns ? monotonic_ns() : 0;
            if (now && now - last_write < w->nap_window_ns && sched_getcpu() != w->pusher_cpu) {
                long long until = now + w->nap_ns;
                struct timespec deadline = {until / 1000000000LL, until % 1000000000LL};
                /* pushes do not signal a napping thread (sleeping stays 0); close() does */
                pthread_cond_timedwait(&w->cv, &w->mu, &deadline);
                w->naps++;
                continue;
            }
            w->sleeping = 1;
            pthread_cond_wait(&w->cv, &w->mu);
        }
        w->sleeping = 0;
        if (!w->head)
            break; /* closing, and everything queued is written */
        node *batch = w->head;
        w->head = w->tail = NULL;
        w->queued = 0;
        int notify = w->want_space;
        w->want_space = 0;
        pthread_mutex_unlock(&w->mu);
        if (notify) {
            uint64_t one = 1;
            (void)!write(w->space_fd, &one, sizeof one);
        }
        unsigned long long ok = 0, failed = 0;
        int err = 0;
        while (batch) {
            node *next = batch->next;
            write_node(w->fd, batch, &ok, &failed, &err);
            free(batch);
            batch = next;
        }
        if (w->nap_ns)
            last_write = monotonic_ns();
        pthread_mutex_lock(&w->mu);
        w->written += ok;
        w->errors += failed;
        if (failed)
            w->last_errno = err;
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

static int TunWriter_init(TunWriter *w, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"fd", "limit", "nap_us", "nap_window_us", NULL};
    int fd;
    Py_ssize_t limit;
    long long nap_us = 0, nap_window_us = 1000;
    if (w->started) {
        PyErr_SetString(PyExc_RuntimeError, "TunWriter already started");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "in|LL", kwlist, &fd, &limit, &nap_us, &nap_window_us))
        return -1;
    if (fd < 0 || limit <= 0) {
        PyErr_SetString(PyExc_ValueError, "TunWriter needs fd >= 0 and limit > 0");
        return -1;
    }
    /* a nap of a second or more would be a stall, not a nap */
    if (nap_us < 0 || nap_us >= 1000000 || nap_window_us < 0 || nap_window_us > 1000000000LL) {
        PyErr_SetString(PyExc_ValueError, "TunWriter needs 0 <= nap_us < 1000000 and 0 <= nap_window_us <= 1e9");
        return -1;
    }
    w->nap_ns = nap_us * 1000LL;
    w->nap_window_ns = nap_window_us * 1000LL;
    w->pusher_cpu = -1;
    w->generation = fork_generation;
    w->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (w->fd < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    w->limit = (size_t)limit;
    w->space_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->space_fd < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        close(w->fd);
        return -1;
    }
    pthread_mutex_init(&w->mu, NULL);
    pthread_condattr_t cv_attr; /* naps time out on CLOCK_MONOTONIC, as monotonic_ns() reads */
    pthread_condattr_init(&cv_attr);
    pthread_condattr_setclock(&cv_attr, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cv, &cv_attr);
    pthread_condattr_destroy(&cv_attr);
    /* The thread blocks every signal (it inherits the mask): signals are the Python thread's to take. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&w->thread, NULL, run, w);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        close(w->space_fd);
        close(w->fd);
        w->space_fd = -1;
        errno = rc;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    w->started = 1;
    return 0;
}

/* 1: queued; 0: the queue is full (want_space set); -1: an exception is set. */
static int enqueue(TunWriter *w, Py_buffer *head, Py_buffer *data) {
    size_t head_len = head ? (size_t)head->len : 0;
    size_t len = head_len + (size_t)data->len;
    node *n = malloc(sizeof(node) + len);
    if (!n) {
        PyErr_NoMemory();
        return -1;
    }
    n->next = NULL;
    n->len = len;
    n->head_len = head_len;
    if (head_len)
        memcpy(n->data, head->buf, head_len);
    memcpy(n->data + head_len, data->buf, (size_t)data->len);
    pthread_mutex_lock(&w->mu);
    if (w->closing) {
        pthread_mutex_unlock(&w->mu);
        free(n);
        PyErr_SetString(PyExc_ValueError, "TunWriter is closed");
        return -1;
    }
    if (w->queued >= w->limit) {
        w->want_space = 1;
        pthread_mutex_unlock(&w->mu);
        free(n);
        return 0;
    }
    if (w->tail)
        w->tail->next = n;
    else
        w->head = n;
    w->tail = n;
    w->queued += len;
    w->pusher_cpu = sched_getcpu(); /* ~ns: glibc reads it from rseq or the vDSO */
    if (w->sleeping) {
        w->sleeping = 0;
        w->wakeups++;
        pthread_cond_signal(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
    return 1;
}

static int check_open(TunWriter *w) {
    if (!w->started || w->closed) {
        PyErr_SetString(PyExc_ValueError, "TunWriter is closed");
        return -1;
    }
    if (w->generation != fork_generation) {
        PyErr_SetString(PyExc_RuntimeError, "TunWriter was created before a fork: its thread is not in this process");
        return -1;
    }
    return 0;
}

/* push and push_pair: one packet, after `head_obj` if not NULL. */
static PyObject *push_one(TunWriter *w, PyObject *head_obj, PyObject *data_obj) {
    if (check_open(w) < 0)
        return NULL;
    Py_buffer head, data;
    if (head_obj && PyObject_GetBuffer(head_obj, &head, PyBUF_SIMPLE) < 0)
        return NULL;
    if (PyObject_GetBuffer(data_obj, &data, PyBUF_SIMPLE) < 0) {
        if (head_obj)
            PyBuffer_Release(&head);
        return NULL;
    }
    int rc = enqueue(w, head_obj ? &head : NULL, &data);
    if (head_obj)
        PyBuffer_Release(&head);
    PyBuffer_Release(&data);
    return rc < 0 ? NULL : PyBool_FromLong(rc);
}

static PyObject *TunWriter_push(TunWriter *w, PyObject *arg) { return push_one(w, NULL, arg); }

static PyObject *TunWriter_push_pair(TunWriter *w, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "push_pair(head, data) takes 2 arguments");
        return NULL;
    }
    return push_one(w, args[0], args[1]);
}

static PyObject *TunWriter_push_many(TunWriter *w, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "push_many(packets, head=None) takes 1 or 2 arguments");
        return NULL;
    }
    if (check_open(w) < 0)
        return NULL;
    PyObject *seq = PySequence_Fast(args[0], "push_many needs a sequence of packets");
    if (!seq)
        return NULL;
    Py_buffer head;
    int has_head = nargs == 2 && args[1] != Py_None;
    if (has_head && PyObject_GetBuffer(args[1], &head, PyBUF_SIMPLE) < 0) {
        Py_DECREF(seq);
        return NULL;
    }
    Py_ssize_t count = PySequence_Fast_GET_SIZE(seq), queued = 0;
    PyObject **items = PySequence_Fast_ITEMS(seq);
    int rc = 1;
    for (; queued < count; queued++) {
        Py_buffer data;
        if (PyObject_GetBuffer(items[queued], &data, PyBUF_SIMPLE) < 0) {
            rc = -1;
            break;
        }
        rc = enqueue(w, has_head ? &head : NULL, &data);
        PyBuffer_Release(&data);
        if (rc <= 0)
            break;
    }
    if (has_head)
        PyBuffer_Release(&head);
    Py_DECREF(seq);
    if (rc < 0)
        return NULL;
    return PyLong_FromSsize_t(queued);
}

/* The caller set w->closed (holding the GIL, so no push starts after it). */
static void stop(TunWriter *w) {
    if (w->generation != fork_generation) {
        /* a fork's child: no thread to end, and the mutex may be held by a thread that is not here */
        close(w->space_fd);
        close(w->fd);
        w->space_fd = -1;
        return;
    }
    pthread_mutex_lock(&w->mu);
    w->closing = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    close(w->space_fd);
    close(w->fd);
    w->space_fd = -1;
}

static PyObject *TunWriter_close(TunWriter *w, PyObject *unused) {
    if (w->started && !w->closed) {
        w->closed = 1;
        Py_BEGIN_ALLOW_THREADS
        stop(w);
        Py_END_ALLOW_THREADS
    }
    Py_RETURN_NONE;
}

static void TunWriter_dealloc(TunWriter *w) {
    if (w->started && !w->closed) {
        w->closed = 1;
        stop(w);
    }
    if (w->started && w->generation == fork_generation) {
        pthread_mutex_destroy(&w->mu);
        pthread_cond_destroy(&w->cv);
    }
    Py_TYPE(w)->tp_free((PyObject *)w);
}

static PyObject *counter(TunWriter *w, int which) {
    if (!w->started || w->generation != fork_generation)
        return PyLong_FromLong(0);
    pthread_mutex_lock(&w->mu);
    unsigned long long v = which == 0   ? w->written
                           : which == 1 ? w->errors
                           : which == 2 ? (unsigned long long)w->last_errno
                           : which == 3 ? (unsigned long long)w->queued
                           : which == 4 ? w->wakeups
                                        : w->naps;
    pthread_mutex_unlock(&w->mu);
    return PyLong_FromUnsignedLongLong(v);
}

static PyObject *get_written(TunWriter *w, void *c) { return counter(w, 0); }
static PyObject *get_errors(TunWriter *w, void *c) { return counter(w, 1); }
static PyObject *get_last_errno(TunWriter *w, void *c) { return counter(w, 2); }
static PyObject *get_queued(TunWriter *w, void *c) { return counter(w, 3); }
static PyObject *get_wakeups(TunWriter *w, void *c) { return counter(w, 4); }
static PyObject *get_naps(TunWriter *w, void *c) { return counter(w, 5); }
static PyObject *get_space_fd(TunWriter *w, void *c) { return PyLong_FromLong(w->started ? w->space_fd : -1); }
static PyObject *get_closed(TunWriter *w, void *c) { return PyBool_FromLong(!w->started || w->closed); }

static PyGetSetDef TunWriter_getset[] = {
    {"written", (getter)get_written, NULL, "packets written", NULL},
    {"errors", (getter)get_errors, NULL, "writes that failed (the packet dropped)", NULL},
    {"last_errno", (getter)get_last_errno, NULL, "errno of the last failed write, 0 if none", NULL},
    {"queued", (getter)get_queued, NULL, "bytes waiting to be written", NULL},
    {"wakeups", (getter)get_wakeups, NULL, "pushes that woke the sleeping thread", NULL},
    {"naps", (getter)get_naps, NULL, "naps the thread took (nap_us)", NULL},
    {"space_fd", (getter)get_space_fd, NULL, "eventfd readable once a refused push may succeed", NULL},
    {"closed", (getter)get_closed, NULL, "close() was called", NULL},
    {NULL},
};

static PyMethodDef TunWriter_methods[] = {
    {"push", (PyCFunction)TunWriter_push, METH_O, "queue a copy of a packet; False while the queue is full"},
    {"push_pair", (PyCFunction)(void (*)(void))TunWriter_push_pair, METH_FASTCALL,
     "queue head + data, written with writev; False while the queue is full"},
    {"push_many", (PyCFunction)(void (*)(void))TunWriter_push_many, METH_FASTCALL,
     "queue packets (each after head, if given) until the queue is full: how many were queued"},
    {"close", (PyCFunction)TunWriter_close, METH_NOARGS, "write what is queued, then end the thread"},
    {NULL},
};

static PyTypeObject TunWriterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "utcp.io._tunio.TunWriter",
    .tp_basicsize = sizeof(TunWriter),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A thread that writes queued packets to a TUN fd in order.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)TunWriter_init,
    .tp_dealloc = (destructor)TunWriter_dealloc,
    .tp_methods = TunWriter_methods,
    .tp_getset = TunWriter_getset,
};

/* One packet at a time, with the GIL held throughout (the reads do not block): no other thread uses it. */
static unsigned char read_buffer[65536 + 64];

static PyObject *read_batch(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "read_batch(fd, max_packets, skip) takes 3 arguments");
        return NULL;
    }
    long fd = PyLong_AsLong(args[0]);
    Py_ssize_t max_packets = PyLong_AsSsize_t(args[1]);
    Py_ssize_t skip = PyLong_AsSsize_t(args[2]);
    if (PyErr_Occurred())
        return NULL;
    if (fd < 0 || fd > INT_MAX || skip < 0 || skip > 64 || max_packets < 0) {
        PyErr_SetString(PyExc_ValueError, "read_batch needs fd >= 0, 0 <= skip <= 64 and max_packets >= 0");
        return NULL;
    }
    PyObject *packets = PyList_New(0);
    if (!packets)
        return NULL;
    Py_ssize_t non_ipv4 = 0;
    int more = 1;
    for (Py_ssize_t i = 0; i < max_packets; i++) {
        ssize_t n = read((int)fd, read_buffer, sizeof read_buffer);
        if (n < 0) {
            if (errno == EINTR) {
                i--;
                if (PyErr_CheckSignals() < 0)
                    goto error;
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                more = 0;
                break;
            }
            if (PyList_GET_SIZE(packets) == 0) {
                PyErr_SetFromErrno(PyExc_OSError);
                goto error;
            }
            break; /* return what was read; the next call meets the error again */
        }
        if (n <= skip || read_buffer[skip] >> 4 != 4) {
            non_ipv4++;
            continue;
        }
        PyObject *packet = PyBytes_FromStringAndSize((const char *)read_buffer + skip, n - skip);
        if (!packet)
            goto error;
        int rc = PyList_Append(packets, packet);
        Py_DECREF(packet);
        if (rc < 0)
            goto error;
    }
    return Py_BuildValue("NnO", packets, non_ipv4, more ? Py_True : Py_False);
error:
    Py_DECREF(packets);
    return NULL;
}

static PyMethodDef module_methods[] = {
    {"read_batch", (PyCFunction)(void (*)(void))read_batch, METH_FASTCALL,
     "read packets until EAGAIN or max_packets: (packets, non_ipv4, more)"},
    {NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "utcp.io._tunio", NULL, -1, module_methods};

PyMODINIT_FUNC PyInit__tunio(void) {
    if (PyType_Ready(&TunWriterType) < 0)
        return NULL;
    if (pthread_atfork(NULL, NULL, on_fork_child) != 0) {
        PyErr_SetString(PyExc_RuntimeError, "pthread_atfork failed");
        return NULL;
    }
    PyObject *m = PyModule_Create(&module);
    if (!m)
        return NULL;
    Py_INCREF(&TunWriterType);
    if (PyModule_AddObject(m, "TunWriter", (PyObject *)&TunWriterType) < 0) {
        Py_DECREF(&TunWriterType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
