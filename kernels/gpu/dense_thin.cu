// Dense products with one side of width 1: a layer with one output (the MNIST discriminator's logit). As a GEMM
// such a product has one tile column and a sum of length 1 or k, which leaves a GEMM kernel's tiles nearly
// empty (measured on an H200: the 250 x 256 input gradient of D's last layer took 13 us in dense_gemm's
// 64 x 64 tiles, bench/results/gpu-tests-2026-12-02.md "Fourteenth session"); here each is what it is.

// y[i] = act(sum_k x[i, k] w[k] + b): one warp per row, the lanes' partial sums combined by shuffles in a fixed
// order (the same inputs give the same bits).
template <typename T>
__global__ void dense_row_dot(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias,
                              int has_bias, T* __restrict__ y, index_t m, index_t k, int act, T slope) {
    const int lane = threadIdx.x & 31;
    const index_t warps = ((index_t)gridDim.x * blockDim.x) >> 5;
    for (index_t i = ((index_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5; i < m; i += warps) {
        T acc = T(0);
        for (index_t j = lane; j < k; j += 32) acc = fma(x[i * k + j], w[j], acc);
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) acc += __shfl_down_sync(0xffffffffu, acc, off);
        if (lane == 0) y[i] = epilogue_act(has_bias ? acc + bias[0] : acc, act, slope);
    }
}

// out[i, j] = a[i] b[j]: the input gradient dz @ W.T of a layer with one output (a sum of length 1).
template <typename T>
__global__ void dense_outer(const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ out, index_t m,
                            index_t n) {
    GRID_STRIDE_LOOP(t, m * n) out[t] = a[t / n] * b[t % n];
}
