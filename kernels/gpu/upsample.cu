// Nearest-neighbour upsampling by an integer factor s of NCHW images (planes = N * C, each h x w in).
// Forward: one thread per output pixel reads its source. Backward: one thread per input pixel sums its
// s x s block (no atomics: deterministic, and each sum in the reference's order).

template <typename T>
__global__ void upsample_nearest_forward(const T* __restrict__ x, T* __restrict__ y, index_t h, index_t w,
                                         index_t s, index_t n_out) {
    GRID_STRIDE_LOOP(i, n_out) {
        const index_t ow = w * s, oh = h * s;
        const index_t j = i % ow, t = i / ow;
        const index_t r = t % oh, plane = t / oh;
        y[i] = x[(plane * h + r / s) * w + j / s];
    }
}

template <typename T>
__global__ void upsample_nearest_backward(const T* __restrict__ dy, T* __restrict__ dx, index_t h, index_t w,
                                          index_t s, index_t n_in) {
    GRID_STRIDE_LOOP(i, n_in) {
        const index_t ow = w * s;
        const index_t j = i % w, t = i / w;
        const index_t r = t % h, plane = t / h;
        const T* block = dy + (plane * h * s + r * s) * ow + j * s;
        T acc = T(0);
        for (index_t a = 0; a < s; ++a)
            for (index_t b = 0; b < s; ++b) acc += block[a * ow + b];
        dx[i] = acc;
    }
}
