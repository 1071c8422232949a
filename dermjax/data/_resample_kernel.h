/* The hot loops of _resample.c. Included once per instruction set, with KERNEL(name) naming
   that copy's functions, so one build carries an SSE2 and an AVX2+FMA version. */

/* Horizontal pass of one source row held as 4 floats per pixel: each output pixel is a v4f
   (r, g, b, junk), so one multiply-add handles all channels. The
   colour transform is applied here, where upsampling has fewer pixels than the output.
   `taps` is a constant wherever this is inlined. */
static inline __attribute__((always_inline)) void KERNEL(hpass)(const float *line, const Coeffs *c, int n,
                                                         int taps, const v4f *colour, float *out) {
    for (int i = 0; i < n; i++) {
        const float *k = c->w + (size_t)i * taps, *p = line + 4 * (size_t)c->start[i];
        v4f a = k[0] * load4(p);
        for (int j = 1; j < taps; j++) a += k[j] * load4(p + 4 * j);
        if (colour) a = colour[0] * a[0] + colour[1] * a[1] + colour[2] * a[2] + colour[3];
        store4(out + 3 * (size_t)i, a); /* the junk lane lands on the next pixel, written next */
    }
}

static void KERNEL(hpass_any)(const float *line, const Coeffs *c, int n, const v4f *colour, float *out) {
    switch (c->taps) {
    case 1: KERNEL(hpass)(line, c, n, 1, colour, out); break;
    case 2: KERNEL(hpass)(line, c, n, 2, colour, out); break;
    case 3: KERNEL(hpass)(line, c, n, 3, colour, out); break;
    case 4: KERNEL(hpass)(line, c, n, 4, colour, out); break;
    case 5: KERNEL(hpass)(line, c, n, 5, colour, out); break;
    default: KERNEL(hpass)(line, c, n, c->taps, colour, out); break;
    }
}

static int KERNEL(run)(const unsigned char *src, int h, int w, int pb, unsigned char *dst, int n,
               double x0, double y0, double x1, double y1, int flip, int turns,
               double brightness, double contrast, double saturation) {
    Coeffs cx = {0}, cy = {0};
    float *line = NULL, *rows = NULL, *vrow = NULL;
    unsigned char *packed = NULL;
    int rc = -1;
    if (coeffs_make(&cx, n, x0, x1, w) || coeffs_make(&cy, n, y0, y1, h)) goto done;

    /* rot90(fliplr?(A), turns) in numpy's convention = B or B transposed, where B is A with
       its columns and/or rows mirrored (derivation in tests/test_augment.py's reference). */
    int mirror_x, mirror_y, transpose;
    switch (turns & 3) {
    case 0: mirror_x = flip; mirror_y = 0; transpose = 0; break;
    case 1: mirror_x = !flip; mirror_y = 0; transpose = 1; break;
    case 2: mirror_x = !flip; mirror_y = 1; transpose = 0; break;
    default: mirror_x = flip; mirror_y = 1; transpose = 1; break;
    }
    if (mirror_x) coeffs_reverse(&cx, n);
    if (mirror_y) coeffs_reverse(&cy, n);

    /* Source rows and columns that some output pixel reads. */
    int r0 = cy.start[0], r1 = cy.start[0] + cy.taps, c0 = cx.start[0], c1 = cx.start[0] + cx.taps;
    for (int i = 0; i < n; i++) {
        if (cy.start[i] < r0) r0 = cy.start[i];
        if (cy.start[i] + cy.taps > r1) r1 = cy.start[i] + cy.taps;
        if (cx.start[i] < c0) c0 = cx.start[i];
        if (cx.start[i] + cx.taps > c1) c1 = cx.start[i] + cx.taps;
    }
    int span = c1 - c0;
    for (int i = 0; i < n; i++) cx.start[i] -= c0; /* index into the converted line */

    /* Colour: saturation, then brightness, then contrast pivoting on the crop's mean grey. All
       three are affine, so they compose into one 3x3 matrix plus offset; colour[j] is the
       matrix column that multiplies channel j, colour[3] the offset. */
    v4f colour[4];
    int jitter = brightness != 1.0 || contrast != 1.0 || saturation != 1.0;
    if (jitter) {
        double grey = crop_grey(src, h, w, pb, x0, y0, x1, y1);
        double kk = contrast * brightness;
        float t = (float)((1.0 - contrast) * brightness * grey);
        for (int j = 0; j < 3; j++)
            for (int i = 0; i < 4; i++)
                colour[j][i] = i < 3 ? (float)(kk * ((i == j ? saturation : 0.0) + (1.0 - saturation) * LUMA[j])) : 0.f;
        colour[3] = (v4f){t, t, t, 0.f};
    }

    size_t row_len = (size_t)n * 3;
    line = malloc(sizeof(float) * 4 * (size_t)span);
    rows = malloc(sizeof(float) * ((row_len * (r1 - r0)) + 4));   /* +4: store4 of the last pixel */
    vrow = malloc(sizeof(float) * row_len);
    packed = malloc(row_len + 1); /* +1: the 4-byte store of the last pixel */
    if (!line || !rows || !vrow || !packed) goto done;
    for (int r = r0; r < r1; r++) {
        const unsigned char *p = src + ((size_t)r * w + c0) * pb;
        if (pb == 4) {
            for (size_t q = 0; q < 4 * (size_t)span; q++) line[q] = p[q];
        } else {
            for (int x = 0; x < span; x++) {
                line[4 * x] = p[3 * x];
                line[4 * x + 1] = p[3 * x + 1];
                line[4 * x + 2] = p[3 * x + 2];
                line[4 * x + 3] = 0.f;
            }
        }
        KERNEL(hpass_any)(line, &cx, n, jitter ? colour : NULL, rows + (size_t)(r - r0) * row_len);
    }

    /* Vertical pass: each output row is a weighted sum of whole intermediate rows. With the
       mirroring done by the coefficients, a row lands either contiguously (turns 0, 2) or, for
       the transposed orientations (turns 1, 3), as a column of the destination. */
    for (int y = 0; y < n; y++) {
        const float *k = cy.w + (size_t)y * cy.taps;
        const float *first = rows + (size_t)(cy.start[y] - r0) * row_len;
        for (size_t q = 0; q < row_len; q++) vrow[q] = k[0] * first[q];
        for (int j = 1; j < cy.taps; j++) {
            const float *r = first + (size_t)j * row_len;
            float kj = k[j];
            for (size_t q = 0; q < row_len; q++) vrow[q] += kj * r[q];
        }
        unsigned char *o = transpose ? packed : dst + (size_t)y * row_len;
        for (size_t q = 0; q < row_len; q++) {
            int v = (int)(vrow[q] + 0.5f); /* truncation = rounding for v >= -0.5 */
            o[q] = (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
        if (transpose) {
            /* Pixel x goes to (x, y). A 4-byte store also writes the R byte of (x, y + 1), which
               the next row overwrites; the last column stores exactly 3 bytes. */
            unsigned char *col = dst + (size_t)y * 3;
            size_t stride = row_len;
            if (y + 1 < n) {
                for (int x = 0; x < n; x++) memcpy(col + x * stride, packed + 3 * x, 4);
            } else {
                for (int x = 0; x < n; x++) memcpy(col + x * stride, packed + 3 * x, 3);
            }
        }
    }
    rc = 0;
done:
    free(line);
    free(rows);
    free(vrow);
    free(packed);
    coeffs_free(&cx);
    coeffs_free(&cy);
    return rc;
}
