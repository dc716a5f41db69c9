// Adam (Kingma & Ba, 2015) in PyTorch's form, as the reference kernel, in place:
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//   p -= step_size * m / (sqrt(v) / sqrt_bc2 + eps)    step_size = lr / (1 - b1^t), sqrt_bc2 = sqrt(1 - b2^t)
// c1 = 1 - b1, c2 = 1 - b2, step_size and sqrt_bc2 are computed on the host in double, as the
// reference does, so float32 runs round the same constants.

// The update of one element, on values: the one formula every kernel below applies. The multiply-adds are
// written as fma: left to the compiler, a*b + c*d contracts to fma(a, b, c*d) or fma(c, d, a*b) as each
// call site's code happens to fall, so the per-tensor and the chunked kernels rounded differently (measured:
// not the same bits, device call 4 of the seventh session); spelled out, every kernel rounds alike.
template <typename T>
__device__ __forceinline__ void adam_math(T g, T& m, T& v, T& p, T step_size, T b1, T c1, T b2, T c2, T eps,
                                          T sqrt_bc2) {
    m = fma(b1, m, c1 * g);
    // v in double, rounded once, as the reference and Numba do: in float32, g*g overflows to inf for
    // |g| > 1.8e19 and the weight freezes, although (1 - b2) g^2 still fits.
    const double gd = static_cast<double>(g);
    v = static_cast<T>(fma(static_cast<double>(b2), static_cast<double>(v), static_cast<double>(c2) * (gd * gd)));
    p = fma(-step_size, m / (sqrt(v) / sqrt_bc2 + eps), p);
}

template <typename T>
__device__ __forceinline__ void adam_step(T* __restrict__ p, const T* __restrict__ g, T* __restrict__ m,
                                          T* __restrict__ v, index_t i, T step_size, T b1, T c1, T b2, T c2,
                                          T eps, T sqrt_bc2) {
    T mi = m[i], vi = v[i], pi = p[i];
    adam_math(g[i], mi, vi, pi, step_size, b1, c1, b2, c2, eps, sqrt_bc2);
    m[i] = mi;
    v[i] = vi;
    p[i] = pi;
}

// Elements of a chunk each thread updates; a chunk is ADAM_PER_THREAD * blockDim.x consecutive elements
// of one tensor. Must equal _PER_THREAD in adam.py.
#define ADAM_PER_THREAD 4

// Block b updates chunks b, b + gridDim.x, ... of the chunk table (tensor, chunk within it: host-built,
// cached with the pointer table). A thread loads its ADAM_PER_THREAD elements of p, g, m and v before it
// computes any, so 16 loads are in flight together (a plain loop's loads wait on the stores before them:
// the tensors' pointers come from a table, so the compiler cannot tell they do not alias). Every chunk is
// the same size, so the blocks share the work evenly, small tensors included (the earlier kernel strode
// over each tensor in turn with one grid: 21 us a launch for the MNIST GAN's 1.5M weights on an H200,
// 2 TB/s).
template <typename T>
__device__ __forceinline__ void adam_chunks(const unsigned long long* __restrict__ ptrs,
                                            const index_t* __restrict__ sizes, const int* __restrict__ chunks,
                                            int n_chunks, T step_size, T b1, T c1, T b2, T c2, T eps, T sqrt_bc2) {
    for (int q = blockIdx.x; q < n_chunks; q += gridDim.x) {
        const int k = chunks[2 * q];
        T* p = (T*)ptrs[4 * k + 0];
        const T* g = (const T*)ptrs[4 * k + 1];
        T* m = (T*)ptrs[4 * k + 2];
        T* v = (T*)ptrs[4 * k + 3];
        const index_t n = sizes[k];
        const index_t first = (index_t)chunks[2 * q + 1] * ADAM_PER_THREAD * blockDim.x + threadIdx.x;
        T gr[ADAM_PER_THREAD], mr[ADAM_PER_THREAD], vr[ADAM_PER_THREAD], pr[ADAM_PER_THREAD];
#pragma unroll
        for (int u = 0; u < ADAM_PER_THREAD; ++u) {
            const index_t i = first + (index_t)u * blockDim.x;
            if (i < n) {
                gr[u] = g[i];
                mr[u] = m[i];
                vr[u] = v[i];
                pr[u] = p[i];
            }
        }
#pragma unroll
        for (int u = 0; u < ADAM_PER_THREAD; ++u) {
            const index_t i = first + (index_t)u * blockDim.x;
            if (i < n) {
                adam_math(gr[u], mr[u], vr[u], pr[u], step_size, b1, c1, b2, c2, eps, sqrt_bc2);
                m[i] = mr[u];
                v[i] = vr[u];
                p[i] = pr[u];
            }
        }
    }
}

template <typename T>
__global__ void adam_update(T* __restrict__ p, const T* __restrict__ g, T* __restrict__ m, T* __restrict__ v,
                            T step_size, T b1, T c1, T b2, T c2, T eps, T sqrt_bc2, index_t n) {
    GRID_STRIDE_LOOP(i, n) { adam_step(p, g, m, v, i, step_size, b1, c1, b2, c2, eps, sqrt_bc2); }
}

// Every tensor of a model in one launch: each tensor's four device pointers (param, grad, m, v) and
// size come from tables in device memory, its chunks from a third (adam_chunks).
template <typename T>
__global__ void adam_update_multi(const unsigned long long* __restrict__ ptrs, const index_t* __restrict__ sizes,
                                  const int* __restrict__ chunks, int n_chunks, T step_size, T b1, T c1, T b2, T c2,
                                  T eps, T sqrt_bc2) {
    adam_chunks(ptrs, sizes, chunks, n_chunks, step_size, b1, c1, b2, c2, eps, sqrt_bc2);
}

// adam_update_multi with the step count in device memory: a captured CUDA graph freezes its kernel
// arguments, so a host-side step (and host-computed bias corrections) would replay step t forever.
// step[0] counts the completed steps and step[1] is a ticket (0 between launches). Every block
// reads t = step[0] + 1 and derives the corrections in double, the same formulas as the host;
// the last block to finish stores t (when advance is set). A block takes its ticket only after
// reading step[0], so no block can see the stored value.
template <typename T>
__global__ void adam_update_multi_device_step(const unsigned long long* __restrict__ ptrs,
                                              const index_t* __restrict__ sizes, const int* __restrict__ chunks,
                                              int n_chunks, unsigned long long* step, int advance, double lr, double beta1,
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
    adam_chunks(ptrs, sizes, chunks, n_chunks, step_size, b1, c1, b2, c2, e, sqrt_bc2);
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

// Zero many tensors in one launch (an optimizer's gradients before a backward pass): one grid
// strides over every tensor of the pointer table in turn (stores only: nothing to keep in flight).
template <typename T>
__global__ void zero_multi(const unsigned long long* __restrict__ ptrs, const index_t* __restrict__ sizes, int count) {
    for (int k = 0; k < count; ++k) {
        T* p = (T*)ptrs[k];
        GRID_STRIDE_LOOP(i, sizes[k]) { p[i] = T(0); }
    }
}
