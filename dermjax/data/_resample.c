/* Fused crop + resize + orientation + colour jitter for uint8 RGB images.

   One call turns a decoded source image into a training example: the crop box is resampled to
   size x size with a triangle (bilinear) filter whose support widens when downscaling (the
   anti-aliased bilinear that PIL's resize uses), written flipped and rotated by multiples of 90
   degrees straight into the destination buffer, with an optional affine colour transform
   (saturation, brightness, contrast around the crop's mean luma) applied on the way.

   Doing this in one pass over the output matters because the input pipeline is CPU-bound:
   PIL needs a resize, a colour conversion and numpy's strided copy of the rotated view, three
   passes over 224 x 224 x 3 bytes, where this needs one (bench/input_pipeline.py).

   Python signature:
     resample(src, src_h, src_w, dst, size, x0, y0, x1, y1, flip, turns,
              brightness, contrast, saturation) -> None
   src: src_h x src_w pixels, either a contiguous buffer of 3 uint8 per pixel (a numpy array) or
   the "arrow_array" capsule of a Pillow image (its own memory, 4 bytes per pixel, no copy);
   dst: a writable buffer of size x size x 3 uint8.
   Output = rot90(fliplr(resized) if flip else resized, turns) in numpy's convention.
*/
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

/* ITU-R 601-2 luma, as PIL's "L" conversion: saturation jitter keeps this grey unchanged. */
static const float LUMA[3] = {0.299f, 0.587f, 0.114f};

typedef struct {
    int *start;   /* first source index of each output index (start + taps <= in_size) */
    float *w;     /* taps weights per output index, zero-padded */
    int taps;     /* the same for every output index, so the inner loops have a fixed length */
} Coeffs;

static void coeffs_free(Coeffs *c) {
    free(c->start);
    free(c->w);
}

/* Triangle-filter weights for n outputs over source [in0, in1) of a line of in_size pixels. */
static int coeffs_make(Coeffs *c, int n, double in0, double in1, int in_size) {
    double scale = (in1 - in0) / n;
    double fscale = scale > 1.0 ? scale : 1.0;
    double support = fscale; /* triangle radius 1, widened by the downscale factor */
    int cap = (int)ceil(support) * 2 + 1;
    if (cap > in_size) cap = in_size;
    int *lo = malloc(sizeof(int) * n), *cnt = malloc(sizeof(int) * n);
    float *w = malloc(sizeof(float) * (size_t)n * cap);
    c->start = NULL;
    c->w = NULL;
    if (!lo || !cnt || !w) goto fail;
    int taps = 1;
    for (int i = 0; i < n; i++) {
        double center = in0 + (i + 0.5) * scale;
        int a = (int)floor(center - support + 0.5), b = (int)floor(center + support + 0.5);
        if (a < 0) a = 0;
        if (b > in_size) b = in_size;
        if (b - a > cap) b = a + cap;
        float *k = w + (size_t)i * cap;
        double total = 0.0;
        for (int j = 0; j < b - a; j++) {
            double v = 1.0 - fabs((a + j + 0.5 - center) / fscale);
            k[j] = v > 0.0 ? (float)v : 0.0f;
            total += k[j];
        }
        if (total <= 0.0) { /* centre outside the image: nearest edge pixel */
            a = center < 0 ? 0 : in_size - 1;
            b = a + 1;
            k[0] = 1.0f;
            total = 1.0;
        }
        /* Trim zero weights at both ends: upsampling then needs exactly two taps. */
        int j0 = 0, j1 = b - a;
        while (j1 - j0 > 1 && k[j0] == 0.0f) j0++;
        while (j1 - j0 > 1 && k[j1 - 1] == 0.0f) j1--;
        for (int j = j0; j < j1; j++) k[j - j0] = (float)(k[j] / total);
        lo[i] = a + j0;
        cnt[i] = j1 - j0;
        if (cnt[i] > taps) taps = cnt[i];
    }
    c->taps = taps;
    c->start = malloc(sizeof(int) * n);
    c->w = calloc((size_t)n * taps, sizeof(float));
    if (!c->start || !c->w) goto fail;
    for (int i = 0; i < n; i++) {
        /* Shift windows that would run past the end; their extra leading taps get weight 0. */
        int shift = lo[i] + taps > in_size ? lo[i] + taps - in_size : 0;
        c->start[i] = lo[i] - shift;
        for (int j = 0; j < cnt[i]; j++) c->w[(size_t)i * taps + shift + j] = w[(size_t)i * cap + j];
    }
    free(lo);
    free(cnt);
    free(w);
    return 0;
fail:
    free(lo);
    free(cnt);
    free(w);
    coeffs_free(c);
    return -1;
}

typedef float v4f __attribute__((vector_size(16)));

static inline v4f load4(const float *p) {
    v4f v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void store4(float *p, v4f v) { memcpy(p, &v, sizeof v); }

/* Output index i takes the weights of n-1-i: the resized line comes out mirrored for free. */
static void coeffs_reverse(Coeffs *c, int n) {
    for (int i = 0, j = n - 1; i < j; i++, j--) {
        int s = c->start[i];
        c->start[i] = c->start[j];
        c->start[j] = s;
        for (int t = 0; t < c->taps; t++) {
            float v = c->w[(size_t)i * c->taps + t];
            c->w[(size_t)i * c->taps + t] = c->w[(size_t)j * c->taps + t];
            c->w[(size_t)j * c->taps + t] = v;
        }
    }
}

/* Mean luma of the crop, from a grid of every 4th pixel each way: the contrast pivot of a mild
   jitter needs no more precision, and the grid costs 1/16 of a full pass. */
static double crop_grey(const unsigned char *src, int h, int w, int pb, double x0, double y0, double x1, double y1) {
    int bx0 = (int)floor(x0), bx1 = (int)ceil(x1), by0 = (int)floor(y0), by1 = (int)ceil(y1);
    if (bx0 < 0) bx0 = 0;
    if (by0 < 0) by0 = 0;
    if (bx1 > w) bx1 = w;
    if (by1 > h) by1 = h;
    double s[3] = {0, 0, 0};
    long count = 0;
    for (int y = by0; y < by1; y += 4) {
        const unsigned char *p = src + ((size_t)y * w + bx0) * pb;
        unsigned long s0 = 0, s1 = 0, s2 = 0;
        int m = 0;
        for (int x = 0; x < bx1 - bx0; x += 4, m++) {
            s0 += p[pb * x];
            s1 += p[pb * x + 1];
            s2 += p[pb * x + 2];
        }
        s[0] += s0; s[1] += s1; s[2] += s2;
        count += m;
    }
    return count ? (LUMA[0] * s[0] + LUMA[1] * s[1] + LUMA[2] * s[2]) / count : 0.0;
}

#define KERNEL(name) name##_generic
#include "_resample_kernel.h"
#undef KERNEL

#if defined(__x86_64__) && defined(__GNUC__)
#define HAVE_AVX2_KERNEL 1
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define KERNEL(name) name##_avx2
#include "_resample_kernel.h"
#undef KERNEL
#pragma GCC pop_options
#endif

typedef int (*run_fn)(const unsigned char *, int, int, int, unsigned char *, int, double, double, double,
                      double, int, int, double, double, double);

/* The AVX2 copy where the CPU has AVX2 and FMA (about 2x faster), else the portable one. */
static run_fn pick_run(void) {
#ifdef HAVE_AVX2_KERNEL
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return run_avx2;
#endif
    return run_generic;
}

static run_fn run = NULL;

/* The Arrow C data interface (a stable ABI): how Pillow exports its pixel memory without a copy. */
struct ArrowArray {
    int64_t length, null_count, offset, n_buffers, n_children;
    const void **buffers;
    struct ArrowArray **children, *dictionary;
    void (*release)(struct ArrowArray *);
    void *private_data;
};

/* Pixels of `obj`: a PyCapsule "arrow_array" from Image.__arrow_c_array__() (Pillow's own
   4 bytes per pixel, borrowed: the capsule keeps ownership), or any contiguous buffer of
   3 bytes per pixel (e.g. a numpy array). */
static const unsigned char *source_pixels(PyObject *obj, int h, int w, int *pb, Py_buffer *view) {
    if (PyCapsule_CheckExact(obj)) {
        struct ArrowArray *a = PyCapsule_GetPointer(obj, "arrow_array");
        if (!a) return NULL;
        struct ArrowArray *child = a->n_children == 1 ? a->children[0] : NULL;
        if (!a->release || !child || child->n_buffers < 2 || !child->buffers[1] ||
            a->length < (int64_t)h * w || child->length < 4 * ((int64_t)h * w + a->offset)) {
            PyErr_SetString(PyExc_ValueError, "resample: the Arrow array is not h x w pixels of 4 bytes");
            return NULL;
        }
        *pb = 4;
        return (const unsigned char *)child->buffers[1] + 4 * a->offset + child->offset;
    }
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS) < 0) return NULL;
    if (view->len != (Py_ssize_t)h * w * 3) {
        PyErr_Format(PyExc_ValueError, "resample: source holds %zd bytes, not %d x %d x 3", view->len, h, w);
        PyBuffer_Release(view);
        view->obj = NULL;
        return NULL;
    }
    *pb = 3;
    return view->buf;
}

static PyObject *py_resample(PyObject *self, PyObject *args) {
    PyObject *src_obj;
    Py_buffer dst, view = {0};
    int h, w, n, flip, turns, pb;
    double x0, y0, x1, y1, brightness, contrast, saturation;
    if (!PyArg_ParseTuple(args, "Oiiw*iddddpiddd", &src_obj, &h, &w, &dst, &n, &x0, &y0, &x1, &y1,
                          &flip, &turns, &brightness, &contrast, &saturation))
        return NULL;
    PyObject *result = NULL;
    const unsigned char *src = NULL;
    if (h <= 0 || w <= 0 || n <= 0) {
        PyErr_SetString(PyExc_ValueError, "resample: sizes must be positive");
    } else if (dst.len != (Py_ssize_t)n * n * 3) {
        PyErr_Format(PyExc_ValueError, "resample: destination holds %zd bytes, not %d x %d x 3", dst.len, n, n);
    } else if (!(x0 < x1 && y0 < y1)) {
        PyErr_SetString(PyExc_ValueError, "resample: empty crop box");
    } else if ((src = source_pixels(src_obj, h, w, &pb, &view))) {
        int rc;
        if (!run) run = pick_run();
        Py_BEGIN_ALLOW_THREADS
        rc = run(src, h, w, pb, dst.buf, n, x0, y0, x1, y1, flip, turns, brightness, contrast, saturation);
        Py_END_ALLOW_THREADS
        if (rc) PyErr_NoMemory();
        else result = Py_None, Py_INCREF(result);
    }
    if (view.obj) PyBuffer_Release(&view);
    PyBuffer_Release(&dst);
    return result;
}

static PyMethodDef methods[] = {
    {"resample", py_resample, METH_VARARGS, "Fused crop/resize/orient/colour of a uint8 RGB image."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_resample", NULL, -1, methods};

PyMODINIT_FUNC PyInit__resample(void) { return PyModule_Create(&module); }
