// The pieces of GANTrainer's GPU step that are no layer's business (tinygan/train.py): picking the
// batch, assembling D's input, smoothed labels, D's figures, what G receives and their running sums.
// Each replaces several CuPy launches, and none reads a host value that changes from step to step:
// what varies (the batch position, the instance-noise sigma) sits in device memory, so a captured
// CUDA graph replays them correctly.

// out[r, :] = data[perm[(pos[0] * rows + r) % n_perm], :]: the step's batch from the epoch's
// permutation. pos counts the steps taken (gan_step_end advances it); the modulo keeps any pos in
// bounds.
template <typename T>
__global__ void gather_rows(const T* __restrict__ data, const long long* __restrict__ perm,
                            const long long* __restrict__ pos, T* __restrict__ out, index_t rows, index_t row_size,
                            index_t n_perm) {
    const long long first = pos[0] * rows;
    GRID_STRIDE_LOOP(i, rows * row_size) {
        const index_t r = i / row_size;
        const index_t c = i - r * row_size;
        const long long src = perm[(first + r) % n_perm];
        out[i] = data[src * row_size + c];
    }
}

// out = concat(a, b) + sigma[0] * noise (the noise only when has_noise): D's batch of real and
// generated images, with instance noise, in one pass. b may be empty (nb = 0).
template <typename T>
__global__ void concat_noisy(const T* __restrict__ a, const T* __restrict__ b, const T* __restrict__ noise,
                             const T* __restrict__ sigma, int has_noise, T* __restrict__ out, index_t na,
                             index_t nb) {
    GRID_STRIDE_LOOP(i, na + nb) {
        T v = i < na ? a[i] : b[i - na];
        if (has_noise) v += sigma[0] * noise[i];
        out[i] = v;
    }
}

// In place over uniform draws u: t = lo + width * u, with the real-label range for the first n
// entries and the fake-label range for the rest.
template <typename T>
__global__ void label_ranges(T* __restrict__ t, index_t n, index_t total, T real_lo, T real_width, T fake_lo,
                             T fake_width) {
    GRID_STRIDE_LOOP(i, total) { t[i] = i < n ? real_lo + real_width * t[i] : fake_lo + fake_width * t[i]; }
}

// D's figures from its logits on [real; fake]: out = (mean sigmoid of the first n = D(x), mean
// sigmoid of the rest = D(G(z)), fraction of the rest below 0 = generated images recognised).
// One block with a fixed reduction order, so the figures are reproducible bit for bit.
template <typename T>
__global__ void d_figures(const T* __restrict__ z, index_t n, index_t total, T* __restrict__ out) {
    __shared__ double smem[REDUCE_THREADS];
    double real_sum = 0.0, fake_sum = 0.0, caught = 0.0;
    for (index_t i = threadIdx.x; i < total; i += blockDim.x) {
        const double v = (double)z[i];
        const double e = exp(-fabs(v));
        const double s = v >= 0.0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
        if (i < n) {
            real_sum += s;
        } else {
            fake_sum += s;
            caught += v < 0.0 ? 1.0 : 0.0;
        }
    }
    real_sum = block_sum(real_sum, smem);
    fake_sum = block_sum(fake_sum, smem);
    caught = block_sum(caught, smem);
    if (threadIdx.x == 0) {
        const double m = (double)(total - n);
        out[0] = (T)(real_sum / (double)n);
        out[1] = (T)(fake_sum / m);
        out[2] = (T)(caught / m);
    }
}

// What G receives, in two launches: sum_squares_partial, a grid of blocks each summing the squares of a
// fixed stride of dx into partial[block] (in double), then input_grad_rms, one block that adds the
// partials and writes sqrt(n * sum) (the RMS over the n samples of n * dx[i]). One block alone took
// 300 us a DCGAN step on an H200 (393,216 elements, each thread's loads one after another); the grid
// depends only on the size, so the order of the sums, and the result, are the same every step.
template <typename T>
__global__ void sum_squares_partial(const T* __restrict__ dx, index_t total, double* __restrict__ partial) {
    __shared__ double smem[REDUCE_THREADS];
    double sq = 0.0;
    GRID_STRIDE_LOOP(i, total) {
        const double v = (double)dx[i];
        sq += v * v;
    }
    sq = block_sum(sq, smem);
    if (threadIdx.x == 0) partial[blockIdx.x] = sq;
}

template <typename T>
__global__ void input_grad_rms(const double* __restrict__ partial, int blocks, index_t n, T* __restrict__ out) {
    __shared__ double smem[REDUCE_THREADS];
    double sq = 0.0;
    for (int i = threadIdx.x; i < blocks; i += blockDim.x) sq += partial[i];
    sq = block_sum(sq, smem);
    if (threadIdx.x == 0) out[0] = (T)sqrt((double)n * sq);
}

// How evenly the n samples share G's step: w_i = |dlogits_i|, out[0] = (sum w)^2 / (n sum w^2) (1 where
// every w_i is 0). One block with a fixed reduction order, as d_figures.
template <typename T>
__global__ void weight_share(const T* __restrict__ dlogits, index_t n, T* __restrict__ out) {
    __shared__ double smem[REDUCE_THREADS];
    double sum = 0.0, sq = 0.0;
    for (index_t i = threadIdx.x; i < n; i += blockDim.x) {
        const double w = fabs((double)dlogits[i]);
        sum += w;
        sq += w * w;
    }
    sum = block_sum(sum, smem);
    sq = block_sum(sq, smem);
    if (threadIdx.x == 0) out[0] = (T)(sq > 0.0 ? sum * sum / ((double)n * sq) : 1.0);
}

// End of a step: acc[k] += figure k (in double, so a window of steps sums without float32
// rounding), and pos[0] += 1 for the next step's batch. A single thread: eight scalars.
template <typename T>
__global__ void step_end(double* __restrict__ acc, const T* __restrict__ f0, const T* __restrict__ f1,
                         const T* __restrict__ f2, const T* __restrict__ f3, const T* __restrict__ f4,
                         const T* __restrict__ f5, const T* __restrict__ f6, long long* __restrict__ pos) {
    if (blockIdx.x == 0 && threadIdx.x == 0) {
        acc[0] += (double)f0[0];
        acc[1] += (double)f1[0];
        acc[2] += (double)f2[0];
        acc[3] += (double)f3[0];
        acc[4] += (double)f4[0];
        acc[5] += (double)f5[0];
        acc[6] += (double)f6[0];
        pos[0] += 1;
    }
}
