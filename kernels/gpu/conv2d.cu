// im2col / col2im for NCHW tensors.
// cols has shape (C*kh*kw, N*Ho*Wo): row r = (c*kh + i)*kw + j (the flattening of W[o, c, i, j]),
// column l = (n*Ho + oh)*Wo + ow. Output pixel (oh, ow) with tap (i, j) reads input pixel
// (oh*sh - ph + i, ow*sw - pw + j); taps that fall into the padding read zero.

template <typename T>
__global__ void im2col(const T* __restrict__ x, T* __restrict__ cols, index_t N, index_t C, index_t H,
                       index_t W, int kh, int kw, int sh, int sw, int ph, int pw, index_t Ho, index_t Wo) {
    const index_t L = N * Ho * Wo;
    // One thread per element of cols, so consecutive threads write consecutive columns.
    GRID_STRIDE_LOOP(e, C * kh * kw * L) {
        const index_t r = e / L;
        const index_t l = e - r * L;
        const index_t ow = l % Wo;
        const index_t t = l / Wo;
        const index_t oh = t % Ho;
        const index_t n = t / Ho;
        const int j = (int)(r % kw);
        const index_t t2 = r / kw;
        const int i = (int)(t2 % kh);
        const index_t c = t2 / kh;
        const index_t h = oh * sh - ph + i;
        const index_t w = ow * sw - pw + j;
        cols[e] = (h >= 0 && h < H && w >= 0 && w < W) ? x[((n * C + c) * H + h) * W + w] : T(0);
    }
}

// The adjoint of im2col, written as a gather: each thread owns one pixel of x and sums the cols
// entries of every (output pixel, tap) whose patch covers it. No two threads write the same
// address, so there are no atomics and the sum order is fixed. bias[c] is added at the end when
// has_bias (ConvTranspose2d's forward is exactly this col2im plus a bias).
template <typename T>
__global__ void col2im(const T* __restrict__ cols, T* __restrict__ x, const T* __restrict__ bias, int has_bias,
                       index_t N, index_t C, index_t H, index_t W, int kh, int kw, int sh, int sw, int ph, int pw,
                       index_t Ho, index_t Wo) {
    const index_t L = N * Ho * Wo;
    GRID_STRIDE_LOOP(e, N * C * H * W) {
        const index_t w = e % W;
        index_t t = e / W;
        const index_t h = t % H;
        t /= H;
        const index_t c = t % C;
        const index_t n = t / C;
        T acc = T(0);
        for (int i = 0; i < kh; ++i) {
            // Tap i of output row oh lands on h when oh*sh = h + ph - i.
            const index_t hh = h + ph - i;
            if (hh < 0 || hh % sh != 0) continue;
            const index_t oh = hh / sh;
            if (oh >= Ho) continue;
            for (int j = 0; j < kw; ++j) {
                const index_t ww = w + pw - j;
                if (ww < 0 || ww % sw != 0) continue;
                const index_t ow = ww / sw;
                if (ow >= Wo) continue;
                acc += cols[(((c * kh) + i) * kw + j) * L + (n * Ho + oh) * Wo + ow];
            }
        }
        if (has_bias) acc += bias[c];
        x[e] = acc;
    }
}
