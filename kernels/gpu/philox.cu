// Philox4x32-10 (Salmon, Moraes, Dror & Shaw, "Parallel random numbers: as easy as 1, 2, 3",
// SC'11), the counter-based generator of Random123, cuRAND and JAX.
//
// state[0..3] is the generator's 128-bit counter (little-endian words) in device memory;
// state[4] counts finished blocks. A launch consumes counters base .. base + used - 1 (thread j
// of the grid-stride loop encrypts base + j under the 64-bit key) and the last block to finish
// moves the counter past them, so the next launch draws fresh numbers even when both are
// replays of one captured CUDA graph, whose arguments are frozen.

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

__device__ __forceinline__ uint4 philox4x32_10(uint4 ctr, unsigned int k0, unsigned int k1) {
    for (int round = 0; round < 10; ++round) {
        if (round > 0) {
            k0 += PHILOX_W0;
            k1 += PHILOX_W1;
        }
        const unsigned int hi0 = __umulhi(PHILOX_M0, ctr.x), lo0 = PHILOX_M0 * ctr.x;
        const unsigned int hi1 = __umulhi(PHILOX_M1, ctr.z), lo1 = PHILOX_M1 * ctr.z;
        ctr = make_uint4(hi1 ^ ctr.y ^ k0, lo1, hi0 ^ ctr.w ^ k1, lo0);
    }
    return ctr;
}

// Thread 0 reads the counter once for its block; the fence-and-ticket in philox_finish
// guarantees no block can see the advanced value.
__device__ __forceinline__ void philox_begin(const unsigned int* state, unsigned long long* base) {
    if (threadIdx.x == 0) {
        const volatile unsigned int* s = state;
        base[0] = ((unsigned long long)s[1] << 32) | s[0];
        base[1] = ((unsigned long long)s[3] << 32) | s[2];
    }
    __syncthreads();
}

__device__ __forceinline__ uint4 philox_block(const unsigned long long* base, unsigned long long j,
                                              unsigned int k0, unsigned int k1) {
    const unsigned long long lo = base[0] + j;
    const unsigned long long hi = base[1] + (lo < base[0] ? 1ull : 0ull);
    return philox4x32_10(make_uint4((unsigned int)lo, (unsigned int)(lo >> 32), (unsigned int)hi,
                                    (unsigned int)(hi >> 32)),
                         k0, k1);
}

__device__ __forceinline__ void philox_finish(unsigned int* state, const unsigned long long* base,
                                              unsigned long long used) {
    __syncthreads();
    if (threadIdx.x == 0) {
        __threadfence();
        const unsigned int ticket = atomicAdd(&state[4], 1u);
        if (ticket == gridDim.x - 1) {
            // Every other block has taken its ticket, hence finished reading the counter.
            const unsigned long long lo = base[0] + used;
            const unsigned long long hi = base[1] + (lo < base[0] ? 1ull : 0ull);
            state[0] = (unsigned int)lo;
            state[1] = (unsigned int)(lo >> 32);
            state[2] = (unsigned int)hi;
            state[3] = (unsigned int)(hi >> 32);
            state[4] = 0u;
            __threadfence();
        }
    }
}

// 24 random bits -> [0, 1) (exact in float); 53 bits from two words -> [0, 1) in double.
__device__ __forceinline__ float u01_float(unsigned int r) { return (float)(r >> 8) * 5.9604644775390625e-08f; }
__device__ __forceinline__ double u01_double(unsigned int a, unsigned int b) {
    return (double)((((unsigned long long)a << 32) | b) >> 11) * 1.1102230246251565e-16;
}

// Box-Muller needs u1 in (0, 1]: log(0) would give an infinite normal.
__device__ __forceinline__ void box_muller(float u1, float u2, float* z0, float* z1) {
    const float r = sqrtf(-2.0f * logf(1.0f - u1));
    float s, c;
    sincospif(2.0f * u2, &s, &c);
    *z0 = r * c;
    *z1 = r * s;
}
__device__ __forceinline__ void box_muller(double u1, double u2, double* z0, double* z1) {
    const double r = sqrt(-2.0 * log(1.0 - u1));
    double s, c;
    sincospi(2.0 * u2, &s, &c);
    *z0 = r * c;
    *z1 = r * s;
}

// Raw 32-bit words: four per counter, in order (Random123's output for counter base + j).
__global__ void philox_uint32(unsigned int* state, unsigned int k0, unsigned int k1, unsigned int* out, index_t n,
                              unsigned long long used) {
    __shared__ unsigned long long base[2];
    philox_begin(state, base);
    GRID_STRIDE_LOOP(j, used) {
        const uint4 r = philox_block(base, (unsigned long long)j, k0, k1);
        const unsigned int w[4] = {r.x, r.y, r.z, r.w};
        for (int q = 0; q < 4; ++q)
            if (4 * j + q < n) out[4 * j + q] = w[q];
    }
    philox_finish(state, base, used);
}

// Uniform [0, 1): four floats or two doubles per counter.
template <typename T>
__global__ void philox_uniform(unsigned int* state, unsigned int k0, unsigned int k1, T* out, index_t n,
                               unsigned long long used);

template <>
__global__ void philox_uniform<float>(unsigned int* state, unsigned int k0, unsigned int k1, float* out, index_t n,
                                      unsigned long long used) {
    __shared__ unsigned long long base[2];
    philox_begin(state, base);
    GRID_STRIDE_LOOP(j, used) {
        const uint4 r = philox_block(base, (unsigned long long)j, k0, k1);
        const unsigned int w[4] = {r.x, r.y, r.z, r.w};
        for (int q = 0; q < 4; ++q)
            if (4 * j + q < n) out[4 * j + q] = u01_float(w[q]);
    }
    philox_finish(state, base, used);
}

template <>
__global__ void philox_uniform<double>(unsigned int* state, unsigned int k0, unsigned int k1, double* out,
                                       index_t n, unsigned long long used) {
    __shared__ unsigned long long base[2];
    philox_begin(state, base);
    GRID_STRIDE_LOOP(j, used) {
        const uint4 r = philox_block(base, (unsigned long long)j, k0, k1);
        if (2 * j < n) out[2 * j] = u01_double(r.x, r.y);
        if (2 * j + 1 < n) out[2 * j + 1] = u01_double(r.z, r.w);
    }
    philox_finish(state, base, used);
}

// Standard normal by Box-Muller: four floats (two pairs) or two doubles (one pair) per counter.
template <typename T>
__global__ void philox_normal(unsigned int* state, unsigned int k0, unsigned int k1, T* out, index_t n,
                              unsigned long long used);

template <>
__global__ void philox_normal<float>(unsigned int* state, unsigned int k0, unsigned int k1, float* out, index_t n,
                                     unsigned long long used) {
    __shared__ unsigned long long base[2];
    philox_begin(state, base);
    GRID_STRIDE_LOOP(j, used) {
        const uint4 r = philox_block(base, (unsigned long long)j, k0, k1);
        float z[4];
        box_muller(u01_float(r.x), u01_float(r.y), &z[0], &z[1]);
        box_muller(u01_float(r.z), u01_float(r.w), &z[2], &z[3]);
        for (int q = 0; q < 4; ++q)
            if (4 * j + q < n) out[4 * j + q] = z[q];
    }
    philox_finish(state, base, used);
}

template <>
__global__ void philox_normal<double>(unsigned int* state, unsigned int k0, unsigned int k1, double* out,
                                      index_t n, unsigned long long used) {
    __shared__ unsigned long long base[2];
    philox_begin(state, base);
    GRID_STRIDE_LOOP(j, used) {
        const uint4 r = philox_block(base, (unsigned long long)j, k0, k1);
        double z0, z1;
        box_muller(u01_double(r.x, r.y), u01_double(r.z, r.w), &z0, &z1);
        if (2 * j < n) out[2 * j] = z0;
        if (2 * j + 1 < n) out[2 * j + 1] = z1;
    }
    philox_finish(state, base, used);
}

// Bernoulli bytes (a dropout mask): out = 1 with probability threshold / 2^32, four per counter.
// threshold is 64-bit so that p = 1 (threshold 2^32) keeps everything.
__global__ void philox_bernoulli(unsigned int* state, unsigned int k0, unsigned int k1, unsigned char* out,
                                 index_t n, unsigned long long used, unsigned long long threshold) {
    __shared__ unsigned long long base[2];
    philox_begin(state, base);
    GRID_STRIDE_LOOP(j, used) {
        const uint4 r = philox_block(base, (unsigned long long)j, k0, k1);
        const unsigned int w[4] = {r.x, r.y, r.z, r.w};
        for (int q = 0; q < 4; ++q)
            if (4 * j + q < n) out[4 * j + q] = (unsigned long long)w[q] < threshold ? 1 : 0;
    }
    philox_finish(state, base, used);
}

// Dropout with its keep-mask drawn in the same pass (one launch instead of a draw and an apply):
// mask[i] is word i of the stream compared with threshold, exactly as philox_bernoulli draws it,
// and y[i] = mask[i] ? x[i] * scale : 0, exactly as dropout_apply computes it.
template <typename T>
__global__ void philox_dropout(unsigned int* state, unsigned int k0, unsigned int k1, const T* __restrict__ x,
                               T* __restrict__ y, unsigned char* __restrict__ mask, index_t n, unsigned long long used,
                               unsigned long long threshold, T scale) {
    __shared__ unsigned long long base[2];
    philox_begin(state, base);
    GRID_STRIDE_LOOP(j, used) {
        const uint4 r = philox_block(base, (unsigned long long)j, k0, k1);
        const unsigned int w[4] = {r.x, r.y, r.z, r.w};
        for (int q = 0; q < 4; ++q) {
            const index_t i = 4 * j + q;
            if (i < n) {
                const bool keep = (unsigned long long)w[q] < threshold;
                mask[i] = keep ? 1 : 0;
                y[i] = keep ? x[i] * scale : T(0);
            }
        }
    }
    philox_finish(state, base, used);
}
