// Exponential moving average of parameters, in place, as tinygan.kernels.reference.ema:
//   ema = d ema + (1 - d) param,   d = min(decay, (1 + t) / (10 + t)) after t earlier updates
// in double, rounded once on store. Every tensor of a model in one launch: each tensor's two device
// pointers (ema, param) and size come from tables in device memory, and one grid strides over every
// tensor in turn (the pattern of adam.cu's adam_update_multi, which says why).

template <typename T>
__device__ __forceinline__ void ema_step(T* __restrict__ e, const T* __restrict__ p, index_t i, double d, double c) {
    e[i] = (T)(d * (double)e[i] + c * (double)p[i]);
}

// d and c = 1 - d computed on the host (a plain decay, or the warm-up of a host count).
template <typename T>
__global__ void ema_update_multi(const unsigned long long* __restrict__ ptrs, const index_t* __restrict__ sizes,
                                 int n_tensors, double d, double c) {
    for (int k = 0; k < n_tensors; ++k) {
        T* e = (T*)ptrs[2 * k + 0];
        const T* p = (const T*)ptrs[2 * k + 1];
        GRID_STRIDE_LOOP(i, sizes[k]) { ema_step(e, p, i, d, c); }
    }
}

// The count of earlier updates in device memory, so that a captured CUDA graph warms up the decay
// on every replay: count[0] holds t, count[1] is a ticket (0 between launches). Every block reads
// t before taking its ticket; the last block to finish stores t + 1 (when advance is set), as
// adam_update_multi_device_step does with its step.
template <typename T>
__global__ void ema_update_multi_device_count(const unsigned long long* __restrict__ ptrs,
                                              const index_t* __restrict__ sizes, int n_tensors,
                                              unsigned long long* count, int advance, double decay) {
    __shared__ double d_block;
    __shared__ unsigned long long t_block;
    if (threadIdx.x == 0) {
        const unsigned long long t = *(volatile const unsigned long long*)count;
        t_block = t;
        d_block = fmin(decay, (1.0 + (double)t) / (10.0 + (double)t));
    }
    __syncthreads();
    const double d = d_block, c = 1.0 - d_block;
    for (int k = 0; k < n_tensors; ++k) {
        T* e = (T*)ptrs[2 * k + 0];
        const T* p = (const T*)ptrs[2 * k + 1];
        GRID_STRIDE_LOOP(i, sizes[k]) { ema_step(e, p, i, d, c); }
    }
    if (!advance) return;
    __syncthreads();
    if (threadIdx.x == 0) {
        __threadfence();
        const unsigned long long ticket = atomicAdd(&count[1], 1ull);
        if (ticket == (unsigned long long)gridDim.x - 1ull) {
            count[0] = t_block + 1ull;
            count[1] = 0ull;
            __threadfence();
        }
    }
}
