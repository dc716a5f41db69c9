// Adam (Kingma & Ba, 2015) in PyTorch's form, as the reference kernel, in place:
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//   p -= step_size * m / (sqrt(v) / sqrt_bc2 + eps)    step_size = lr / (1 - b1^t), sqrt_bc2 = sqrt(1 - b2^t)
// c1 = 1 - b1, c2 = 1 - b2, step_size and sqrt_bc2 are computed on the host in double, as the
// reference does, so float32 runs round the same constants.

template <typename T>
__device__ __forceinline__ void adam_step(T* __restrict__ p, const T* __restrict__ g, T* __restrict__ m,
                                          T* __restrict__ v, index_t i, T step_size, T b1, T c1, T b2, T c2,
                                          T eps, T sqrt_bc2) {
    const T gi = g[i];
    const T mi = b1 * m[i] + c1 * gi;
    const T vi = b2 * v[i] + c2 * (gi * gi);
    m[i] = mi;
    v[i] = vi;
    p[i] -= step_size * (mi / (sqrt(vi) / sqrt_bc2 + eps));
}

template <typename T>
__global__ void adam_update(T* __restrict__ p, const T* __restrict__ g, T* __restrict__ m, T* __restrict__ v,
                            T step_size, T b1, T c1, T b2, T c2, T eps, T sqrt_bc2, index_t n) {
    GRID_STRIDE_LOOP(i, n) { adam_step(p, g, m, v, i, step_size, b1, c1, b2, c2, eps, sqrt_bc2); }
}

// Every tensor of a model in one launch: blockIdx.y picks the tensor, whose four device pointers
// (param, grad, m, v) and size come from tables in device memory; blockIdx.x and the threads
// stride over its elements. Blocks of small tensors simply find no work and exit.
template <typename T>
__global__ void adam_update_multi(const unsigned long long* __restrict__ ptrs, const index_t* __restrict__ sizes,
                                  T step_size, T b1, T c1, T b2, T c2, T eps, T sqrt_bc2) {
    const int k = blockIdx.y;
    T* p = (T*)ptrs[4 * k + 0];
    const T* g = (const T*)ptrs[4 * k + 1];
    T* m = (T*)ptrs[4 * k + 2];
    T* v = (T*)ptrs[4 * k + 3];
    GRID_STRIDE_LOOP(i, sizes[k]) { adam_step(p, g, m, v, i, step_size, b1, c1, b2, c2, eps, sqrt_bc2); }
}
