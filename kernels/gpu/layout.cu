// Layout changes and per-channel sums shared by Dense, Conv2d and ConvTranspose2d.
// "ncs" is an (N, C, S) array (NCHW with S = H*W); "cns" is the same data channel-major,
// which is what a GEMM with the weights on the left produces and consumes.

// (C, N, S) -> (N, C, S), adding bias[c] on the way so the GEMM's output needs no second pass.
template <typename T>
__global__ void cns_to_ncs(const T* __restrict__ src, T* __restrict__ dst, const T* __restrict__ bias,
                           int has_bias, index_t N, index_t C, index_t S) {
    GRID_STRIDE_LOOP(i, N * C * S) {
        const index_t s = i % S;
        const index_t t = i / S;
        const index_t c = t % C;
        const index_t n = t / C;
        T v = src[(c * N + n) * S + s];
        if (has_bias) v += bias[c];
        dst[i] = v;
    }
}

// (N, C, S) -> (C, N, S); indexed by the destination so the writes are coalesced.
template <typename T>
__global__ void ncs_to_cns(const T* __restrict__ src, T* __restrict__ dst, index_t N, index_t C, index_t S) {
    GRID_STRIDE_LOOP(i, N * C * S) {
        const index_t s = i % S;
        const index_t t = i / S;
        const index_t n = t % N;
        const index_t c = t / N;
        dst[i] = src[(n * C + c) * S + s];
    }
}

// In place: y[n, c, s] += bias[c].
template <typename T>
__global__ void add_bias(T* __restrict__ y, const T* __restrict__ bias, index_t C, index_t S, index_t total) {
    GRID_STRIDE_LOOP(i, total) { y[i] += bias[(i / S) % C]; }
}

// out[c] = sum over n and s of x[n, c, s]: one block per channel, accumulated in double so that
// float32 bias gradients over large batches keep their digits.
template <typename T>
__global__ void channel_sum(const T* __restrict__ x, T* __restrict__ out, index_t N, index_t C, index_t S) {
    __shared__ double smem[REDUCE_THREADS];
    const index_t c = blockIdx.x;
    const index_t M = N * S;
    double acc = 0.0;
    for (index_t m = threadIdx.x; m < M; m += blockDim.x) {
        const index_t n = m / S;
        acc += (double)x[(n * C + c) * S + (m - n * S)];
    }
    const double total = block_sum(acc, smem);
    if (threadIdx.x == 0) out[c] = (T)total;
}
