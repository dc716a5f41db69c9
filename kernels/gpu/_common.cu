// Prepended to every op's .cu source before NVRTC compiles it (NVRTC has no include path
// into the package, and the helpers are small).

typedef long long index_t;

// Grid-stride loops let the host cap the grid size without the kernel caring how large n is.
#define GRID_STRIDE_LOOP(i, n)                                                        \
    for (index_t i = (index_t)blockIdx.x * blockDim.x + threadIdx.x; i < (index_t)(n); \
         i += (index_t)blockDim.x * gridDim.x)

// Every reduction kernel launches exactly this many threads per block, so shared buffers can be
// sized statically.
#define REDUCE_THREADS 256

// Block-wide sum with a fixed tree shape: the same inputs always give the same bits, unlike
// atomics. Every thread gets the total; smem must hold REDUCE_THREADS entries.
template <typename A>
__device__ A block_sum(A v, A* smem) {
    smem[threadIdx.x] = v;
    __syncthreads();
    for (int s = REDUCE_THREADS / 2; s > 0; s >>= 1) {
        if ((int)threadIdx.x < s) smem[threadIdx.x] += smem[threadIdx.x + s];
        __syncthreads();
    }
    A total = smem[0];
    // A second call may reuse smem only after every thread has read the total.
    __syncthreads();
    return total;
}

// The fused epilogue of the weight ops (kernels/reference/activation.py: activate, activate_backward), in one
// place for every kernel that writes a weight op's output or first reads its upstream gradient: when act is
// nonzero, LeakyReLU(slope) (ReLU for slope 0); the identity otherwise. The backward reads the fused output y
// (slope >= 0: y > 0 exactly when the pre-activation was). "!(v > 0)" lets a NaN through, as NumPy does.
template <typename T>
__device__ __forceinline__ T epilogue_act(T z, int act, T slope) {
    return (act && !(z > T(0))) ? z * slope : z;
}

template <typename T>
__device__ __forceinline__ T epilogue_grad(T dy, T y, int act, T slope) {
    return (act && !(y > T(0))) ? dy * slope : dy;
}

// 4 bytes global -> shared without passing through registers (cp.async: compute capability 8.0 and up; the
// kernels that use it are compiled only there, and these unused helpers reach no older device's code). saddr is
// in the shared window, as shared_addr gives it; zero-filled, nothing read, when !ok. A group of copies is
// committed, and waited for until at most N groups are still in flight.
__device__ __forceinline__ unsigned shared_addr(const void* p) { return (unsigned)__cvta_generic_to_shared(p); }
__device__ __forceinline__ void cp_async4(unsigned saddr, const float* src, bool ok) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(saddr), "l"(src), "r"(ok ? 4 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// n / d for 0 <= n < 2^31 and a divisor d fixed for the launch, as a multiply-high and a shift (two
// instructions against a ~25-instruction division sequence); (mul, shift) from the host's fast_div_args
// (kernels/fastdiv.py, which gives the formula and its source). d == 1 passes n through.
__device__ __forceinline__ int fast_div(int n, int d, unsigned mul, unsigned shift) {
    return d == 1 ? n : (int)(__umulhi((unsigned)n, mul) >> shift);
}

// n / d in a kernel's index type I: fast_div for the 32-bit instantiation, a plain division for the 64-bit
// one (whose divisors may not fit the multiply-high), so one body serves both.
template <typename I>
__device__ __forceinline__ I div_by(I n, I d, unsigned mul, unsigned shift) {
    if constexpr (sizeof(I) == sizeof(int)) {
        return fast_div(n, d, mul, shift);
    } else {
        return n / d;
    }
}

// bfloat16 (precision "bf16"): GEMM operands stored as the top 16 bits of a float32 (1 sign, 8 exponent and 7
// mantissa bits), the type cuBLAS reads as CUDA_R_16BF. Kept as plain 16-bit integers so that no header is
// needed and the host (kernels/bf16.py, NumPy) rounds the very same way: to nearest, ties to even;
// a NaN stays a (quiet) NaN. Products and sums are formed in float32 (FP32 accumulation).
typedef unsigned short bf16_t;

__device__ __forceinline__ bf16_t to_bf16(float f) {
    unsigned u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (bf16_t)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (bf16_t)(u >> 16);
}

__device__ __forceinline__ float from_bf16(bf16_t h) { return __uint_as_float(((unsigned)h) << 16); }

// Storage conversions for kernels templated on what they store (S) beside the type they compute in (T):
// store_as<S>(v) writes a T value as S; widen(s) reads an S as the compute type.
template <typename S, typename T>
__device__ __forceinline__ S store_as(T v) {
    if constexpr (sizeof(S) == sizeof(bf16_t)) {
        return to_bf16((float)v);
    } else {
        return (S)v;
    }
}

__device__ __forceinline__ float widen(float v) { return v; }
__device__ __forceinline__ double widen(double v) { return v; }
__device__ __forceinline__ float widen(bf16_t v) { return from_bf16(v); }

// V consecutive values of type S moved as one vector load or store (16 bytes at most for float x4, bf16 x4 is
// 8): kernels that the issue rate bounds rather than the bytes (the layout changes, im2col) do a fraction of
// the instructions per value. The offset must be a multiple of V (and the array's start aligned: CuPy's are).
template <typename S, int V>
struct alignas(sizeof(S) * V) Pack {
    S v[V];
};

template <int V, typename S>
__device__ __forceinline__ Pack<S, V> load_pack(const S* p) {
    return *reinterpret_cast<const Pack<S, V>*>(p);
}

template <int V, typename S>
__device__ __forceinline__ void store_pack(S* p, const Pack<S, V>& v) {
    *reinterpret_cast<Pack<S, V>*>(p) = v;
}
