// Versions of the GPU's multi-tensor Adam beside production's (kernels/gpu/adam.cu, compiled before this
// file, whose adam_step / adam_math they share), for bench/dev/adam_versions.py.

// v1: production until the seventh session. One grid strides over each tensor in turn: a block does a few
// elements of every tensor, and a thread's loads of one element wait on its stores of the last (the
// pointers come from a table, so the compiler cannot tell they do not alias). The step count on the
// device and the last block's ticket as production's.
template <typename T>
__global__ void adam_multi_v1(const unsigned long long* __restrict__ ptrs, const index_t* __restrict__ sizes,
                              int count, unsigned long long* step, int advance, double lr, double beta1,
                              double beta2, double eps) {
    __shared__ T corrections[2];
    __shared__ unsigned long long t_block;
    if (threadIdx.x == 0) {
        const unsigned long long t = *(volatile const unsigned long long*)step + 1ull;
        t_block = t;
        corrections[0] = (T)(lr / (1.0 - pow(beta1, (double)t)));
        corrections[1] = (T)sqrt(1.0 - pow(beta2, (double)t));
    }
    __syncthreads();
    const T step_size = corrections[0], sqrt_bc2 = corrections[1];
    const T b1 = (T)beta1, c1 = (T)(1.0 - beta1), b2 = (T)beta2, c2 = (T)(1.0 - beta2), e = (T)eps;
    for (int k = 0; k < count; ++k) {
        T* p = (T*)ptrs[4 * k + 0];
        const T* g = (const T*)ptrs[4 * k + 1];
        T* m = (T*)ptrs[4 * k + 2];
        T* v = (T*)ptrs[4 * k + 3];
        GRID_STRIDE_LOOP(i, sizes[k]) { adam_step(p, g, m, v, i, step_size, b1, c1, b2, c2, e, sqrt_bc2); }
    }
    if (!advance) return;
    __syncthreads();
    if (threadIdx.x == 0) {
        __threadfence();
        const unsigned long long ticket = atomicAdd(&step[1], 1ull);
        if (ticket == (unsigned long long)gridDim.x - 1ull) {
            step[0] = t_block;
            step[1] = 0ull;
            __threadfence();
        }
    }
}
