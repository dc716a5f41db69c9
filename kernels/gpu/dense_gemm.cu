// The Dense layers' FP32 products on the CUDA cores: C[M, N] = op(A) . op(B), exact FP32 (one FMA per product,
// FP32 accumulation), with the forward's bias and activation applied as the result is written.
//
// Why our own: in the dense MNIST GAN M is the batch (125 or 250 rows), so the output has few 64 x 64 tiles (32
// for 125 x 1024) and cuBLAS's FP32 kernels leave most of an H200's 132 SMs idle: 9 TFLOP/s, 17% of the card's
// sgemm rate (bench/results/gpu-fp32-compute-probe-2026-12-02-s9run4.log). Smaller tiles and a split of the sum
// over a thread-block cluster put every SM to work.
//
// The three products of a Dense layer y = act(x W + b), W of shape (in, out):
//   forward         y  = act(x . W + b)  TA 0, TB 0: A = x (M, in),  B = W (in, out)
//   input gradient  dx = dz . W^T        TA 0, TB 1: A = dz (M, out), B = W read as its transpose
//   weight gradient dW += x^T . dz       TA 1, TB 0: A = x read as its transpose, B = dz; accumulate into dW
// A(i, k) = TA ? A[k * lda + i] : A[i * lda + k];  B(k, j) = TB ? B[j * ldb + k] : B[k * ldb + j].
//
// Tiles (WIDE): 32 x 64 outputs per block of 128 threads, each thread a 4 x 4 sub-tile, or 64 x 64 with 8 x 4 a
// thread (rows ty*RM.., columns tx*4..). k tiles are 16 deep, k-major in shared memory (As[k][i], Bs[k][j]) so the
// inner loop reads a thread's rows of A and 4 columns of B as 16-byte loads; rows are padded by 4 floats, which
// keeps those loads aligned and the transposing stores to 2-way bank conflicts. Two pipelines (ASYNC): the next
// tile staged through registers into the other of two buffers while the current one is multiplied, or cp.async
// copies (compute capability 8.0 and up) into a ring of 3-4 buffers with that many tiles in flight.
// kernels/gpu/dense.py's plan picks per product from bench/dev/dense_gemm_versions.py's measurements.
//
// Split-K over a cluster (S = 2, 4 or 8 blocks along z, compile-time __cluster_dims__, Hopper): block z sums k
// in [z * k_split, (z + 1) * k_split), writes its partial tile to its shared memory, and after a cluster
// barrier block r adds the S partials of rows r * BM / S.. through distributed shared memory, in rank order
// 0, 1, .., S-1 whoever runs first: a fixed order, so the same inputs give the same bits (no atomics), and
// no partial tile ever reaches global memory. Then the epilogue: C_old (accumulate) + sum + bias, act.

#define DG_BN 64
#define DG_BK 16
#define DG_THREADS 128
#define DG_PAD 4

__device__ __forceinline__ unsigned dg_cluster_rank() {
    unsigned r;
    asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(r));
    return r;
}

// Every block of the cluster arrives, then waits for all: shared-memory writes before it are visible to the
// cluster's other blocks after it (release / acquire).
__device__ __forceinline__ void dg_cluster_sync() {
    asm volatile("barrier.cluster.arrive.release.aligned;\n\tbarrier.cluster.wait.acquire.aligned;" ::: "memory");
}

// 4 floats at the same shared-memory offset as p, in the shared memory of the cluster's block ``rank``.
__device__ __forceinline__ float4 dg_load_cluster4(const float* p, unsigned rank) {
    unsigned remote;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(remote) : "r"(shared_addr(p)), "r"(rank));
    float4 v;
    asm volatile("ld.shared::cluster.v4.f32 {%0, %1, %2, %3}, [%4];"
                 : "=f"(v.x), "=f"(v.y), "=f"(v.z), "=f"(v.w)
                 : "r"(remote)
                 : "memory");
    return v;
}

// The epilogue of 4 consecutive outputs of row i from column j (j a multiple of 4), guarded at the edges.
__device__ __forceinline__ void dg_store4(float* __restrict__ C, const float* __restrict__ bias, float4 v, int i,
                                          int j, int M, int N, int act, float slope, int accumulate) {
    if (i >= M) return;
    float out[4] = {v.x, v.y, v.z, v.w};
    if ((N & 3) == 0 && j + 3 < N) {
        float4* dst = reinterpret_cast<float4*>(C + (size_t)i * N + j);
        if (accumulate) {
            const float4 old = *dst;
            out[0] += old.x, out[1] += old.y, out[2] += old.z, out[3] += old.w;
        }
#pragma unroll
        for (int c = 0; c < 4; ++c) {
            if (bias != nullptr) out[c] += bias[j + c];
            out[c] = epilogue_act(out[c], act, slope);
        }
        *dst = make_float4(out[0], out[1], out[2], out[3]);
        return;
    }
#pragma unroll
    for (int c = 0; c < 4; ++c) {
        if (j + c >= N) break;
        float o = out[c];
        if (accumulate) o += C[(size_t)i * N + j + c];
        if (bias != nullptr) o += bias[j + c];
        C[(size_t)i * N + j + c] = epilogue_act(o, act, slope);
    }
}

// ASYNC: the tiles go global -> shared by cp.async (_common.cu's cp_async4) into a ring of DG_STAGES buffers,
// DG_STAGES - 1 tiles in flight while one is multiplied, instead of one tile staged through registers
// (bench/dev/dense_gemm_versions.py, v5).
#define DG_STAGES 4

template <int TA, int TB, int S, int ASYNC, int WIDE>
__device__ __forceinline__ void dense_gemm_body(const float* __restrict__ A, const float* __restrict__ B,
                                                const float* __restrict__ bias, float* __restrict__ C, int M,
                                                int N, int K, int lda, int ldb, int k_split, int act, float slope,
                                                int accumulate) {
    constexpr int BM = WIDE ? 64 : 32;  // rows of the tile: 32, or 64 with 8 x 4 outputs a thread
    constexpr int RM = BM / 8;          // rows a thread owns: ty * RM ..
    constexpr int STAGES = WIDE ? 3 : DG_STAGES;  // the wide tile's ring of 4 would pass 48 KB of static shared memory
    const int tid = threadIdx.x;
    const int tx = tid & 15, ty = tid >> 4;
    const int m0 = blockIdx.y * BM, n0 = blockIdx.x * DG_BN;
    unsigned rank = 0u;
    if constexpr (S > 1) rank = dg_cluster_rank();
    const int k_begin = (int)rank * k_split;
    const int k_end = min(K, k_begin + k_split);

    float ra[BM * DG_BK / DG_THREADS];  // 4
    float rb[DG_BK * DG_BN / DG_THREADS];  // 8

    float acc[RM][4];
#pragma unroll
    for (int r = 0; r < RM; ++r)
#pragma unroll
        for (int c = 0; c < 4; ++c) acc[r][c] = 0.0f;

    if constexpr (ASYNC) {
        __shared__ __align__(16) float As[STAGES][DG_BK][BM + DG_PAD];
        __shared__ __align__(16) float Bs[STAGES][DG_BK][DG_BN + DG_PAD];
        const int tiles = k_end > k_begin ? (k_end - k_begin + DG_BK - 1) / DG_BK : 0;
        // Each thread copies the same (row, k) slots of every tile: their offsets, shared addresses and row guards
        // are worked out once here, so a tile's copies cost an add and a compare each.
        constexpr int AR = BM * DG_BK / DG_THREADS, BR = DG_BK * DG_BN / DG_THREADS;
        const int a_step = TA ? DG_BK * lda : DG_BK, b_step = TB ? DG_BK : DG_BK * ldb;  // per tile
        int a_off[AR], a_k[AR], b_off[BR], b_k[BR];
        unsigned a_dst[AR], b_dst[BR];
        bool a_in[AR], b_in[BR];
#pragma unroll
        for (int r = 0; r < AR; ++r) {
            const int e = tid + r * DG_THREADS;
            const int kk = TA ? e / BM : e % DG_BK, i = TA ? e % BM : e / DG_BK;
            const int gi = m0 + i, gk = k_begin + kk;
            a_k[r] = gk, a_in[r] = gi < M, a_off[r] = TA ? gk * lda + gi : gi * lda + gk;
            a_dst[r] = shared_addr(&As[0][kk][i]);
        }
#pragma unroll
        for (int r = 0; r < BR; ++r) {
            const int e = tid + r * DG_THREADS;
            const int kk = TB ? e % DG_BK : e / DG_BN, j = TB ? e / DG_BK : e % DG_BN;
            const int gj = n0 + j, gk = k_begin + kk;
            b_k[r] = gk, b_in[r] = gj < N, b_off[r] = TB ? gj * ldb + gk : gk * ldb + gj;
            b_dst[r] = shared_addr(&Bs[0][kk][j]);
        }
        auto issue = [&](int t) {  // tile t into buffer t % STAGES
            const int slot = t % STAGES, dk = t * DG_BK;
#pragma unroll
            for (int r = 0; r < AR; ++r) {
                const bool ok = a_in[r] && a_k[r] + dk < k_end;
                cp_async4(a_dst[r] + slot * (unsigned)sizeof(As[0]), ok ? A + a_off[r] + t * a_step : A, ok);
            }
#pragma unroll
            for (int r = 0; r < BR; ++r) {
                const bool ok = b_in[r] && b_k[r] + dk < k_end;
                cp_async4(b_dst[r] + slot * (unsigned)sizeof(Bs[0]), ok ? B + b_off[r] + t * b_step : B, ok);
            }
        };
#pragma unroll
        for (int t = 0; t < STAGES - 1; ++t) {
            if (t < tiles) issue(t);
            cp_async_commit();  // empty groups too, so that the count below holds
        }
        for (int t = 0; t < tiles; ++t) {
            cp_async_wait<STAGES - 2>();  // this thread's copies of tile t have landed
            __syncthreads();                     // everyone's have; everyone is done with tile t - 1's buffer
            if (t + STAGES - 1 < tiles) issue(t + STAGES - 1);
            cp_async_commit();
            const int buf = t % STAGES;
#pragma unroll
            for (int kk = 0; kk < DG_BK; ++kk) {
                float av[RM];
#pragma unroll
                for (int q = 0; q < RM / 4; ++q) {
                    const float4 a = *reinterpret_cast<const float4*>(&As[buf][kk][ty * RM + 4 * q]);
                    av[4 * q] = a.x, av[4 * q + 1] = a.y, av[4 * q + 2] = a.z, av[4 * q + 3] = a.w;
                }
                const float4 b = *reinterpret_cast<const float4*>(&Bs[buf][kk][tx * 4]);
                const float bv[4] = {b.x, b.y, b.z, b.w};
#pragma unroll
                for (int r = 0; r < RM; ++r)
#pragma unroll
                    for (int c = 0; c < 4; ++c) acc[r][c] = fmaf(av[r], bv[c], acc[r][c]);
            }
        }
        cp_async_wait<0>();
    } else {
        __shared__ __align__(16) float As[2][DG_BK][BM + DG_PAD];
        __shared__ __align__(16) float Bs[2][DG_BK][DG_BN + DG_PAD];
        // Consecutive threads read consecutive addresses of whichever index is contiguous in memory.
        auto load = [&](int k0) {
#pragma unroll
            for (int r = 0; r < BM * DG_BK / DG_THREADS; ++r) {
                const int e = tid + r * DG_THREADS;
                const int kk = TA ? e / BM : e % DG_BK;
                const int i = TA ? e % BM : e / DG_BK;
                const int gi = m0 + i, gk = k0 + kk;
                const size_t at = TA ? (size_t)gk * lda + gi : (size_t)gi * lda + gk;
                ra[r] = (gi < M && gk < k_end) ? A[at] : 0.0f;
            }
#pragma unroll
            for (int r = 0; r < DG_BK * DG_BN / DG_THREADS; ++r) {
                const int e = tid + r * DG_THREADS;
                const int kk = TB ? e % DG_BK : e / DG_BN;
                const int j = TB ? e / DG_BK : e % DG_BN;
                const int gj = n0 + j, gk = k0 + kk;
                const size_t at = TB ? (size_t)gj * ldb + gk : (size_t)gk * ldb + gj;
                rb[r] = (gj < N && gk < k_end) ? B[at] : 0.0f;
            }
        };
        auto store = [&](int buf) {
#pragma unroll
            for (int r = 0; r < BM * DG_BK / DG_THREADS; ++r) {
                const int e = tid + r * DG_THREADS;
                As[buf][TA ? e / BM : e % DG_BK][TA ? e % BM : e / DG_BK] = ra[r];
            }
#pragma unroll
            for (int r = 0; r < DG_BK * DG_BN / DG_THREADS; ++r) {
                const int e = tid + r * DG_THREADS;
                Bs[buf][TB ? e % DG_BK : e / DG_BN][TB ? e / DG_BK : e % DG_BN] = rb[r];
            }
        };

        int buf = 0;
        if (k_begin < k_end) {
            load(k_begin);
            store(0);
        }
        __syncthreads();
        for (int k0 = k_begin; k0 < k_end; k0 += DG_BK) {
            const bool more = k0 + DG_BK < k_end;
            if (more) load(k0 + DG_BK);
#pragma unroll
            for (int kk = 0; kk < DG_BK; ++kk) {
                float av[RM];
#pragma unroll
                for (int q = 0; q < RM / 4; ++q) {
                    const float4 a = *reinterpret_cast<const float4*>(&As[buf][kk][ty * RM + 4 * q]);
                    av[4 * q] = a.x, av[4 * q + 1] = a.y, av[4 * q + 2] = a.z, av[4 * q + 3] = a.w;
                }
                const float4 b = *reinterpret_cast<const float4*>(&Bs[buf][kk][tx * 4]);
                const float bv[4] = {b.x, b.y, b.z, b.w};
#pragma unroll
                for (int r = 0; r < RM; ++r)
#pragma unroll
                    for (int c = 0; c < 4; ++c) acc[r][c] = fmaf(av[r], bv[c], acc[r][c]);
            }
            if (more) store(buf ^ 1);
            __syncthreads();
            buf ^= 1;
        }
    }

    if constexpr (S == 1) {
#pragma unroll
        for (int r = 0; r < RM; ++r)
            dg_store4(C, bias, make_float4(acc[r][0], acc[r][1], acc[r][2], acc[r][3]), m0 + ty * RM + r,
                      n0 + tx * 4, M, N, act, slope, accumulate);
    } else {
        __shared__ __align__(16) float part[BM][DG_BN];
#pragma unroll
        for (int r = 0; r < RM; ++r)
            *reinterpret_cast<float4*>(&part[ty * RM + r][tx * 4]) =
                make_float4(acc[r][0], acc[r][1], acc[r][2], acc[r][3]);
        dg_cluster_sync();
        constexpr int ROWS = BM / S;  // this block's share of the tile's rows
        for (int q = tid; q < ROWS * (DG_BN / 4); q += DG_THREADS) {
            const int row = (int)rank * ROWS + q / (DG_BN / 4), col = (q % (DG_BN / 4)) * 4;
            float4 sum = dg_load_cluster4(&part[row][col], 0u);
#pragma unroll
            for (unsigned s = 1; s < (unsigned)S; ++s) {
                const float4 p = dg_load_cluster4(&part[row][col], s);
                sum.x += p.x, sum.y += p.y, sum.z += p.z, sum.w += p.w;
            }
            dg_store4(C, bias, sum, m0 + row, n0 + col, M, N, act, slope, accumulate);
        }
        dg_cluster_sync();  // no block leaves while another may still read its partial tile
    }
}

// The unsplit kernel, and below the clustered ones. The parameters are dense_gemm_body's (has_bias 0: bias is not
// read).
template <int TA, int TB, int ASYNC, int WIDE>
__global__ void __launch_bounds__(DG_THREADS)
    dense_gemm_s1(const float* __restrict__ A, const float* __restrict__ B, const float* __restrict__ bias,
                  int has_bias, float* __restrict__ C, int M, int N, int K, int lda, int ldb, int k_split, int act,
                  float slope, int accumulate) {
    dense_gemm_body<TA, TB, 1, ASYNC, WIDE>(A, B, has_bias ? bias : nullptr, C, M, N, K, lda, ldb, k_split, act,
                                            slope, accumulate);
}

// Clusters exist from compute capability 9.0 (Hopper) on; the host asks for these only there
// (kernels/gpu/dense_gemm.py), and NVRTC compiles for the one device at hand. S = 2, 4 or 8: one instantiation
// each, since __cluster_dims__ is fixed at compile time.
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 900
template <int S, int TA, int TB, int ASYNC, int WIDE>
__global__ void __cluster_dims__(1, 1, S) __launch_bounds__(DG_THREADS)
    dense_gemm_cluster(const float* __restrict__ A, const float* __restrict__ B, const float* __restrict__ bias,
                       int has_bias, float* __restrict__ C, int M, int N, int K, int lda, int ldb, int k_split,
                       int act, float slope, int accumulate) {
    dense_gemm_body<TA, TB, S, ASYNC, WIDE>(A, B, has_bias ? bias : nullptr, C, M, N, K, lda, ldb, k_split, act,
                                            slope, accumulate);
}
#endif
