// Differentiable augmentation (Zhao et al., 2020, DiffAugment), the transforms of
// tinygan.kernels.reference.augment on NCHW batches; per-sample parameters come in as arrays.
// Each kernel serves forward and backward: the backward of translation is the translation by
// minus the shifts (sign = -1), cutout's is the same mask, and saturation and contrast are
// symmetric linear maps. Index arithmetic is in I (int when every offset fits, else long long).
// Means and mixes are computed in double and rounded once on store, as the Numba kernels do.

// y[n, k] = x[n, k] + shift[n] over the K = C*H*W values of each sample.
template <typename T, typename I>
__global__ void augment_add_per_sample(const T* __restrict__ x, const T* __restrict__ shift, T* __restrict__ y,
                                       index_t K_, index_t total_) {
    const I K = (I)K_, total = (I)total_;
    for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (I)blockDim.x * gridDim.x) {
        y[i] = x[i] + shift[i / K];  // in T, as the reference adds
    }
}

// One thread per pixel (n, s) of an (N, C, S) batch: y[n, c, s] = (x - mu) f + mu, mu the mean over c.
template <typename T, typename I>
__global__ void augment_saturation(const T* __restrict__ x, const T* __restrict__ factor, T* __restrict__ y,
                                   index_t C_, index_t S_, index_t pixels_) {
    const I C = (I)C_, S = (I)S_, pixels = (I)pixels_;
    for (I p = (I)blockIdx.x * blockDim.x + threadIdx.x; p < pixels; p += (I)blockDim.x * gridDim.x) {
        const I n = p / S;
        const I s = p - n * S;
        const I base = n * C * S + s;
        double total = 0.0;
        for (I c = 0; c < C; ++c) total += (double)x[base + c * S];
        const double mu = total / (double)C;
        const double f = (double)factor[n];
        for (I c = 0; c < C; ++c) y[base + c * S] = (T)(((double)x[base + c * S] - mu) * f + mu);
    }
}

// One block per sample (blockIdx.x = n, REDUCE_THREADS threads): the sample's mean over its K
// values by the fixed-order block sum, then y = (x - mu) f + mu over the same values.
template <typename T>
__global__ void augment_contrast(const T* __restrict__ x, const T* __restrict__ factor, T* __restrict__ y,
                                 index_t K) {
    __shared__ double smem[REDUCE_THREADS];
    const index_t n = blockIdx.x;
    const T* xs = x + n * K;
    T* ys = y + n * K;
    double part = 0.0;
    for (index_t k = threadIdx.x; k < K; k += REDUCE_THREADS) part += (double)xs[k];
    const double mu = block_sum<double>(part, smem) / (double)K;
    const double f = (double)factor[n];
    for (index_t k = threadIdx.x; k < K; k += REDUCE_THREADS) ys[k] = (T)(((double)xs[k] - mu) * f + mu);
}

// out[n, c, i, j] = src[n, c, i + sign*shift_h[n], j + sign*shift_w[n]], zero from outside the image.
template <typename T, typename I>
__global__ void augment_translate(const T* __restrict__ src, const int* __restrict__ shift_h,
                                  const int* __restrict__ shift_w, int sign, T* __restrict__ out, index_t C_,
                                  index_t H_, index_t W_, index_t total_) {
    const I C = (I)C_, H = (I)H_, W = (I)W_, total = (I)total_;
    for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (I)blockDim.x * gridDim.x) {
        const I j = i % W;
        const I t = i / W;
        const I r = t % H;
        const I n = (t / H) / C;
        const I sr = r + (I)(sign * shift_h[n]);
        const I sj = j + (I)(sign * shift_w[n]);
        // The source offset differs from i by (sr - r) * W + (sj - j) within the same (n, c) plane.
        out[i] = (sr >= 0 && sr < H && sj >= 0 && sj < W) ? src[i + (sr - r) * W + (sj - j)] : T(0);
    }
}

// out = src * m, m = 0 inside the size_h x size_w rectangle at (top[n], left[n]) (clipped), else 1.
template <typename T, typename I>
__global__ void augment_cutout(const T* __restrict__ src, const int* __restrict__ top, const int* __restrict__ left,
                               int size_h, int size_w, T* __restrict__ out, index_t C_, index_t H_, index_t W_,
                               index_t total_) {
    const I C = (I)C_, H = (I)H_, W = (I)W_, total = (I)total_;
    for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (I)blockDim.x * gridDim.x) {
        const I j = i % W;
        const I t = i / W;
        const I r = t % H;
        const I n = (t / H) / C;
        const int dr = (int)r - top[n], dj = (int)j - left[n];
        const bool inside = dr >= 0 && dr < size_h && dj >= 0 && dj < size_w;
        out[i] = inside ? T(0) : src[i];
    }
}

// The parameters of one draw from its uniforms u (rows, N), one thread per (row, sample): the first
// n_int rows are integers low + min(floor(u count), count - 1), plan[r] = (count, low); the others
// floats u scale + offset, plan[r] = (scale, offset). Explicitly rounded double operations (no fused
// multiply-add), so that the values are exactly NumPy's for the same uniforms.
template <typename T>
__global__ void augment_parameters(const double* __restrict__ u, const double* __restrict__ plan, int n_int,
                                   int* __restrict__ ints, T* __restrict__ floats, index_t N, index_t total) {
    GRID_STRIDE_LOOP(i, total) {
        const index_t r = i / N;
        const double a = plan[2 * r], b = plan[2 * r + 1];
        if (r < n_int) {
            const double k = fmin(floor(__dmul_rn(u[i], a)), a - 1.0);
            ints[i] = (int)(k + b);
        } else {
            floats[i - (index_t)n_int * N] = (T)__dadd_rn(__dmul_rn(u[i], a), b);
        }
    }
}
