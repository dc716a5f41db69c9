// Layout changes and per-channel sums shared by Dense, Conv2d and ConvTranspose2d.
// "ncs" is an (N, C, S) array (NCHW with S = H*W); "cns" is the same data channel-major,
// which is what a GEMM with the weights on the left produces and consumes.
// Index arithmetic is in I: int when every offset fits, long long otherwise (two instantiations of
// each kernel; the host picks); a 64-bit division costs several times a 32-bit one, and these
// kernels do little else. The two layout changes divide by S and by C or N, fixed for the launch:
// div_by (fast_div in the int instantiation, _common.cu) with the host's (mul, shift) for each; measured
// 1.08-1.33x over the plain divisions at the DCGAN's sizes on an H200 (v2 in bench/dev).

// (C, N, S) -> (N, C, S), adding bias[c] and applying the fused activation (epilogue_act) on the way, so
// the GEMM's output needs no second pass. V values a thread (S % V == 0: they share n, c and the source row),
// moved as one vector each way; every value takes the same operations whatever V, so V changes no bit.
template <typename T, int V, typename I>
__device__ __forceinline__ void cns_to_ncs_body(const T* __restrict__ src, T* __restrict__ dst,
                                                const T* __restrict__ bias, int has_bias, int act, T slope, I N,
                                                I C, I S, const unsigned* magic) {
    const I total = N * C * S;
    for (I i = ((I)blockIdx.x * blockDim.x + threadIdx.x) * V; i < total; i += (I)blockDim.x * gridDim.x * V) {
        const I t = div_by(i, S, magic[0], magic[1]);
        const I s = i - t * S;
        const I n = div_by(t, C, magic[2], magic[3]);
        const I c = t - n * C;
        Pack<T, V> v = load_pack<V>(src + (c * N + n) * S + s);
        const T b = has_bias ? bias[c] : T(0);
#pragma unroll
        for (int k = 0; k < V; ++k) {
            T z = v.v[k];
            if (has_bias) z += b;
            v.v[k] = epilogue_act(z, act, slope);
        }
        store_pack<V>(dst + i, v);
    }
}

// vec: values a thread, 4, 2 or 1 (the host's: the largest dividing S, 1 for double); the launch covers
// N*C*S / vec threads' worth of grid-stride loop.
template <typename T, typename I>
__global__ void cns_to_ncs(const T* __restrict__ src, T* __restrict__ dst, const T* __restrict__ bias, int has_bias,
                           int act, T slope, index_t N, index_t C, index_t S, unsigned s_mul, unsigned s_shift,
                           unsigned c_mul, unsigned c_shift, int vec) {
    const unsigned magic[4] = {s_mul, s_shift, c_mul, c_shift};
    if (vec == 4) return cns_to_ncs_body<T, 4, I>(src, dst, bias, has_bias, act, slope, (I)N, (I)C, (I)S, magic);
    if (vec == 2) return cns_to_ncs_body<T, 2, I>(src, dst, bias, has_bias, act, slope, (I)N, (I)C, (I)S, magic);
    cns_to_ncs_body<T, 1, I>(src, dst, bias, has_bias, act, slope, (I)N, (I)C, (I)S, magic);
}

// (N, C, S) -> (C, N, S); indexed by the destination so the writes are coalesced. With act, the source is an
// upstream gradient dy and the result dz = epilogue_grad(dy, y): the fused activation's backward, in the pass
// that already reads dy for the GEMMs (gate = y, the fused forward's output, in dy's layout).
// S: what dst stores, T or bf16_t (precision "bf16": dz as the products' operand, rounded once here). V values
// a thread as in cns_to_ncs_body (S_ % V == 0).
template <typename T, typename S, int V, typename I>
__device__ __forceinline__ void ncs_to_cns_body(const T* __restrict__ src, S* __restrict__ dst,
                                                const T* __restrict__ gate, int act, T slope, I N, I C, I S_,
                                                const unsigned* magic) {
    const I total = N * C * S_;
    for (I i = ((I)blockIdx.x * blockDim.x + threadIdx.x) * V; i < total; i += (I)blockDim.x * gridDim.x * V) {
        const I t = div_by(i, S_, magic[0], magic[1]);
        const I s = i - t * S_;
        const I c = div_by(t, N, magic[2], magic[3]);
        const I n = t - c * N;
        const I j = (n * C + c) * S_ + s;
        const Pack<T, V> d = load_pack<V>(src + j);
        Pack<S, V> out;
        if (act) {
            const Pack<T, V> y = load_pack<V>(gate + j);
#pragma unroll
            for (int k = 0; k < V; ++k) out.v[k] = store_as<S>(epilogue_grad(d.v[k], y.v[k], act, slope));
        } else {
#pragma unroll
            for (int k = 0; k < V; ++k) out.v[k] = store_as<S>(d.v[k]);
        }
        store_pack<V>(dst + i, out);
    }
}

template <typename T, typename S, typename I>
__device__ __forceinline__ void ncs_to_cns_vec(const T* __restrict__ src, S* __restrict__ dst,
                                               const T* __restrict__ gate, int act, T slope, I N, I C, I S_,
                                               const unsigned* magic, int vec) {
    if (vec == 4) return ncs_to_cns_body<T, S, 4, I>(src, dst, gate, act, slope, N, C, S_, magic);
    if (vec == 2) return ncs_to_cns_body<T, S, 2, I>(src, dst, gate, act, slope, N, C, S_, magic);
    ncs_to_cns_body<T, S, 1, I>(src, dst, gate, act, slope, N, C, S_, magic);
}

// vec as in cns_to_ncs.
template <typename T, typename I>
__global__ void ncs_to_cns(const T* __restrict__ src, T* __restrict__ dst, const T* __restrict__ gate, int act,
                           T slope, index_t N, index_t C, index_t S, unsigned s_mul, unsigned s_shift,
                           unsigned n_mul, unsigned n_shift, int vec) {
    const unsigned magic[4] = {s_mul, s_shift, n_mul, n_shift};
    ncs_to_cns_vec<T, T, I>(src, dst, gate, act, slope, (I)N, (I)C, (I)S, magic, vec);
}

template <typename T, typename I>
__global__ void ncs_to_cns_bf16(const T* __restrict__ src, bf16_t* __restrict__ dst, const T* __restrict__ gate,
                                int act, T slope, index_t N, index_t C, index_t S, unsigned s_mul, unsigned s_shift,
                                unsigned n_mul, unsigned n_shift, int vec) {
    const unsigned magic[4] = {s_mul, s_shift, n_mul, n_shift};
    ncs_to_cns_vec<T, bf16_t, I>(src, dst, gate, act, slope, (I)N, (I)C, (I)S, magic, vec);
}

// rows x cols values of src written at a row pitch of ld >= cols, the ld - cols values after each row zero, and
// stored as S: a weight matrix as a GEMM operand, in bfloat16 at precision "bf16" (cast_bf16) and with its rows
// padded to a multiple of 8 columns (both kernels; conv2d.py's gemm_rows says why).
template <typename T, typename S>
__device__ __forceinline__ void copy_rows_padded(const T* __restrict__ src, S* __restrict__ dst, index_t rows,
                                                 index_t cols, index_t ld) {
    GRID_STRIDE_LOOP(i, rows * ld) {
        const index_t r = i / ld;
        const index_t c = i - r * ld;
        dst[i] = store_as<S>(c < cols ? src[r * cols + c] : T(0));
    }
}

template <typename T>
__global__ void cast_bf16(const T* __restrict__ src, bf16_t* __restrict__ dst, index_t rows, index_t cols,
                          index_t ld) {
    copy_rows_padded(src, dst, rows, cols, ld);
}

template <typename T>
__global__ void pad_rows(const T* __restrict__ src, T* __restrict__ dst, index_t rows, index_t cols, index_t ld) {
    copy_rows_padded(src, dst, rows, cols, ld);
}

// In place: y[n, c, s] = epilogue_act(y[n, c, s] + bias[c]) (Dense's forward epilogue after the GEMM).
template <typename T, typename I>
__device__ __forceinline__ void add_bias_body(T* __restrict__ y, const T* __restrict__ bias, int act, T slope, I C,
                                              I S, I total) {
    for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (I)blockDim.x * gridDim.x)
        y[i] = epilogue_act(y[i] + bias[(i / S) % C], act, slope);
}

template <typename T, typename I>
__global__ void add_bias(T* __restrict__ y, const T* __restrict__ bias, int act, T slope, index_t C, index_t S,
                         index_t total) {
    add_bias_body<T, I>(y, bias, act, slope, (I)C, (I)S, (I)total);
}

// Per-channel sums (bias gradients), all in double, each in a fixed order: the same inputs give
// the same bits. Three shapes of the problem, three kernels:
//   channel_sum       one block per channel, for channels of up to a few thousand values;
//   channel_partial   many blocks per channel, each summing a fixed chunk, then channel_finish
//                     sums a channel's partials (a single block per channel would leave most of
//                     the GPU idle when a few channels hold N*H*W values each);
//   channel_sum_rows  S = 1 and a large N (a Dense layer's (N, C) gradient over a big batch): one
//                     thread per channel, so that neighbouring threads read neighbouring addresses.
// With accumulate, each adds its sum into out (out[c] += sum, a bias gradient accumulated in place: beta = 1)
// instead of overwriting it.
template <typename T, typename I>
__device__ __forceinline__ double channel_chunk_sum(const T* __restrict__ x, I C, I S, I c, I begin, I end,
                                                    double* smem) {
    double acc = 0.0;
    for (I m = begin + (I)threadIdx.x; m < end; m += (I)blockDim.x) {
        const I n = m / S;
        acc += (double)x[(n * C + c) * S + (m - n * S)];
    }
    return block_sum(acc, smem);
}

template <typename T>
__device__ __forceinline__ void store_sum(T* __restrict__ out, index_t c, double total, int accumulate) {
    out[c] = accumulate ? out[c] + (T)total : (T)total;
}

template <typename T, typename I>
__global__ void channel_sum(const T* __restrict__ x, T* __restrict__ out, index_t N, index_t C, index_t S,
                            int accumulate) {
    __shared__ double smem[REDUCE_THREADS];
    const I c = blockIdx.x;
    const double total = channel_chunk_sum<T, I>(x, (I)C, (I)S, c, 0, (I)(N * S), smem);
    if (threadIdx.x == 0) store_sum(out, (index_t)c, total, accumulate);
}

// Block (p, c) sums values p*chunk .. (p+1)*chunk - 1 of channel c into partial[c * gridDim.x + p].
template <typename T, typename I>
__global__ void channel_partial(const T* __restrict__ x, double* __restrict__ partial, index_t N, index_t C,
                                index_t S, index_t chunk) {
    __shared__ double smem[REDUCE_THREADS];
    const I c = blockIdx.y;
    const I begin = (I)blockIdx.x * (I)chunk;
    const I end = min((I)(N * S), begin + (I)chunk);
    const double total = channel_chunk_sum<T, I>(x, (I)C, (I)S, c, begin, end, smem);
    if (threadIdx.x == 0) partial[(index_t)c * gridDim.x + blockIdx.x] = total;
}

template <typename T>
__global__ void channel_finish(const double* __restrict__ partial, T* __restrict__ out, index_t parts,
                               int accumulate) {
    __shared__ double smem[REDUCE_THREADS];
    const index_t c = blockIdx.x;
    double acc = 0.0;
    for (index_t p = threadIdx.x; p < parts; p += blockDim.x) acc += partial[c * parts + p];
    const double total = block_sum(acc, smem);
    if (threadIdx.x == 0) store_sum(out, c, total, accumulate);
}

// ncs_to_cns and the per-channel sum of what it writes, in one pass (Conv2d's backward: dz channel-major
// for its two products, and the bias gradient sum dz): block (p, c) writes values p*chunk .. (p+1)*chunk - 1
// of channel c's row of dst (m = n*S + s, so the writes are contiguous and the reads contiguous within an
// image) and sums them into partial[c * gridDim.x + p]; channel_finish then adds a channel's partials. Each
// thread sums the same values in the same order as channel_partial over the written dst would, so db has
// the same bits as ncs_to_cns followed by channel_sum, without reading dz again (seventh session: 6 launches
// of channel_partial, 60 us of the DCGAN's tf32 step, read back what ncs_to_cns had just written).
// The sum is of the values before rounding to S: the bias gradient keeps T's precision when dz is bf16.
template <typename T, typename S, typename I>
__device__ __forceinline__ void ncs_to_cns_sum_body(const T* __restrict__ src, S* __restrict__ dst,
                                                    const T* __restrict__ gate, int act, T slope,
                                                    double* __restrict__ partial, index_t N_, index_t C_,
                                                    index_t S_, index_t chunk, unsigned s_mul, unsigned s_shift) {
    __shared__ double smem[REDUCE_THREADS];
    const I C = (I)C_, Sz = (I)S_, M = (I)(N_ * S_);
    const I c = blockIdx.y;
    const I begin = (I)blockIdx.x * (I)chunk;
    const I end = min(M, begin + (I)chunk);
    double acc = 0.0;
    for (I m = begin + (I)threadIdx.x; m < end; m += (I)blockDim.x) {
        const I n = div_by(m, Sz, s_mul, s_shift);
        const I j = (n * C + c) * Sz + (m - n * Sz);
        const T v = act ? epilogue_grad(src[j], gate[j], act, slope) : src[j];
        dst[(index_t)c * M + m] = store_as<S>(v);
        acc += (double)v;
    }
    const double total = block_sum(acc, smem);
    if (threadIdx.x == 0) partial[(index_t)c * gridDim.x + blockIdx.x] = total;
}

template <typename T, typename I>
__global__ void ncs_to_cns_sum(const T* __restrict__ src, T* __restrict__ dst, const T* __restrict__ gate, int act,
                               T slope, double* __restrict__ partial, index_t N_, index_t C_, index_t S_,
                               index_t chunk, unsigned s_mul, unsigned s_shift) {
    ncs_to_cns_sum_body<T, T, I>(src, dst, gate, act, slope, partial, N_, C_, S_, chunk, s_mul, s_shift);
}

template <typename T, typename I>
__global__ void ncs_to_cns_sum_bf16(const T* __restrict__ src, bf16_t* __restrict__ dst, const T* __restrict__ gate,
                                    int act, T slope, double* __restrict__ partial, index_t N_, index_t C_,
                                    index_t S_, index_t chunk, unsigned s_mul, unsigned s_shift) {
    ncs_to_cns_sum_body<T, bf16_t, I>(src, dst, gate, act, slope, partial, N_, C_, S_, chunk, s_mul, s_shift);
}

template <typename T>
__global__ void channel_sum_rows(const T* __restrict__ x, T* __restrict__ out, index_t N, index_t C,
                                 int accumulate) {
    GRID_STRIDE_LOOP(c, C) {
        double acc = 0.0;
        for (index_t n = 0; n < N; ++n) acc += (double)x[n * C + c];
        store_sum(out, c, acc, accumulate);
    }
}

// Dense's backward epilogue in one pass over (N, C) arrays: dz = epilogue_grad(dy, y) (written only with act;
// without it dz is dy itself) and, with want_sum, the bias gradient db[c] (+)= sum_n dz[n, c] in double.
// Block (32, ROWS_GRAD_Y): threadIdx.x is the channel, so neighbouring threads read neighbouring addresses;
// threadIdx.y takes every ROWS_GRAD_Y-th row, and the ROWS_GRAD_Y partial sums are added in a fixed order.
#define ROWS_GRAD_Y 16
template <typename T>
__global__ void rows_grad_sum(const T* __restrict__ dy, const T* __restrict__ y, T* __restrict__ dz,
                              T* __restrict__ db, int act, T slope, int want_sum, int accumulate, index_t N,
                              index_t C) {
    __shared__ double part[ROWS_GRAD_Y][32];
    const index_t c = (index_t)blockIdx.x * 32 + threadIdx.x;
    double acc = 0.0;
    if (c < C) {
        // Unrolled so that a thread has several rows' loads in flight: the batches are small (a few hundred
        // rows), and this loop's latency, not the bandwidth, is what the kernel costs.
#pragma unroll 4
        for (index_t n = threadIdx.y; n < N; n += ROWS_GRAD_Y) {
            const index_t i = n * C + c;
            const T v = act ? epilogue_grad(dy[i], y[i], act, slope) : dy[i];
            if (act) dz[i] = v;
            acc += (double)v;
        }
    }
    part[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (want_sum && threadIdx.y == 0 && c < C) {
        double total = 0.0;
        for (int k = 0; k < ROWS_GRAD_Y; ++k) total += part[k][threadIdx.x];
        store_sum(db, c, total, accumulate);
    }
}
