// Implicit-GEMM convolution: all three passes of Conv2d (and, as their adjoints, of ConvTranspose2d)
// as one matrix product C[M, Ng] = A[M, K] B[K, Ng] whose tiles are gathered from the NCHW tensors
// straight into shared memory. No im2col / col2im buffer ever reaches global memory.
//
// Conv2d with x (N, C, H, W), Wt (Cout, C, kh, kw), y (N, Cout, Ho, Wo):
//   FPROP  y  = Wt . im2col(x):   M = Cout, Ng = N*Ho*Wo, K = C*kh*kw    (+ bias[m] in the epilogue)
//   DGRAD  dx = Wt^T . dy-taps:   M = C,    Ng = N*H*W,   K = Cout*kh*kw (+ bias[m]: ConvTranspose2d forward)
//          For stride s only the taps i = (h + ph) mod s (then every s-th) reach row h, so pixels are
//          grouped by phase (h mod sh, w mod sw), one phase per blockIdx.z, and K runs over just those
//          taps: no multiply by a structural zero.
//   WGRAD  dW = dy . im2col(x)^T: M = Cout, Ng = C*kh*kw, K = N*Ho*Wo    (split over blockIdx.z, partial
//          sums reduced in a fixed order by ig_splitk_reduce; the bias gradient = row sums of A, taken
//          from the tiles already loaded, when pbias is given)
//
// Tiles: BM x BN = 64 x 64 outputs per block of 128 threads (2 x 2 warps of 32 x 32), BK = 32. A tile
// is kept k-contiguous, row r at r*32, its column XOR-swizzled by the row (ig_swz) so that both the
// tile stores (consecutive threads: consecutive rows or consecutive k) and the fragment loads of
// mma.sync hit 32 different banks. Global loads for tile t+1 are issued before the products of tile t.
//
// The product, by PREC:
//   IG_SIMT   plain FP32 FMAs (each thread an 8 x 4 sub-tile)                     exact FP32
//   IG_TF32   mma.sync m16n8k8 TF32 (operands rounded to 10-bit mantissas)         ~1e-3 relative
//   IG_BF16   mma.sync m16n8k16 BF16 (operands rounded to 7-bit mantissas)         ~1e-2 relative
//   IG_3XTF32 each operand split a = big + small (both TF32), three TF32 products
//             big*big + big*small + small*big: 2e-7 on short sums but up to 3e-5 on the DCGAN's
//             65,536-long weight-gradient sums (measured on an H200), so not an FP32 substitute
// Accumulation is FP32 in every mode. All index math is 32-bit: the host sends larger tensors to the
// im2col path.

// Tile configurations (template parameter CFG): BM x BN outputs per block of THREADS threads, WM x WN
// warps each owning a (BM/WM) x (BN/WN) sub-tile, BK deep k tiles.
//   CFG 0: 64 x 64,   BK 32, 128 threads, 2 x 2 warps of 32 x 32   (v1-v4 of bench/dev)
//   CFG 1: 128 x 128, BK 16, 256 threads, 2 x 4 warps of 64 x 32   (four times the work per loaded byte)
//   CFG 2: 64 x 128,  BK 16, 128 threads, 2 x 2 warps of 32 x 64   (for M <= 64)
//   CFG 3, 4: CFG 1, 2 with the tiles copied by cp.async into a ring of STAGES shared-memory buffers,
//   several tiles in flight instead of one staged through registers (TF32 rounding then happens as the
//   fragments are loaded).
// STAGES 0: loads staged through registers into two buffers.
template <int CFG>
struct IgCfg;
template <>
struct IgCfg<0> {
    static constexpr int BM = 64, BN = 64, BK = 32, THREADS = 128, WM = 2, WN = 2, STAGES = 0;
};
template <>
struct IgCfg<1> {
    static constexpr int BM = 128, BN = 128, BK = 16, THREADS = 256, WM = 2, WN = 4, STAGES = 0;
};
template <>
struct IgCfg<2> {
    static constexpr int BM = 64, BN = 128, BK = 16, THREADS = 128, WM = 2, WN = 2, STAGES = 0;
};
template <>
struct IgCfg<3> {
    static constexpr int BM = 128, BN = 128, BK = 16, THREADS = 256, WM = 2, WN = 4, STAGES = 3;
};
template <>
struct IgCfg<4> {
    static constexpr int BM = 64, BN = 128, BK = 16, THREADS = 128, WM = 2, WN = 2, STAGES = 4;
};

// The cp.async helpers (cp_async4, cp_async_commit, cp_async_wait) are _common.cu's.

#define IG_FPROP 0
#define IG_DGRAD 1
#define IG_WGRAD 2

#define IG_SIMT 0
#define IG_TF32 1
#define IG_BF16 2
#define IG_3XTF32 3

// Element (row, k) of a BK-wide tile: the k column XORed with a function of the row, chosen so that 32
// consecutive rows at one k (the B tile stores), a warp's rows at consecutive k (the A tile stores) and the
// mma.sync fragment loads (rows g = 0..7 of an 8-aligned group, k = t or t + 4) each hit 32 different banks.
template <int BK>
__device__ __forceinline__ int ig_swz(int row, int k) {
    if constexpr (BK == 32) {
        return row * 32 + (k ^ (((row & 7) << 2) | ((row >> 3) & 3)));
    } else {  // BK == 16: two rows per 32 banks, told apart by the row's parity
        return row * 16 + (k ^ ((((row >> 1) & 3) << 2) | ((row >> 3) & 3)));
    }
}

__device__ __forceinline__ unsigned ig_tf32(float v) {
    unsigned r;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(v));
    return r;
}

// Two floats as a bf16x2 register: lo in the low half (the lower k index), hi in the high half.
__device__ __forceinline__ unsigned ig_bf16x2(float lo, float hi) {
    unsigned r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}

__device__ __forceinline__ void ig_mma_tf32(float* c, const unsigned* a, const unsigned* b) {
    asm volatile(
        "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

__device__ __forceinline__ void ig_mma_bf16(float* c, const unsigned* a, const unsigned* b) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// The products of one BK-deep pair of tiles into this thread's accumulators. Warp (wm, wn) owns rows
// wm*WTM .. +WTM and columns wn*WTN .. +WTN of the block tile: MT x NT mma tiles of 16 x 8.
template <int CFG, int PREC>
__device__ __forceinline__ void ig_tile_product(const float* __restrict__ As, const float* __restrict__ Bs, float* acc,
                                                int wm, int wn, int lane) {
    using C = IgCfg<CFG>;
    constexpr int BK = C::BK, WTM = C::BM / C::WM, WTN = C::BN / C::WN, MT = WTM / 16, NT = WTN / 8;
    if constexpr (PREC == IG_SIMT) {
        static_assert(CFG == 0, "the SIMT product is written for 32 x 32 warp tiles");
        // acc[r*4 + c] is (m, n) = (wm*32 + tm + 4r, wn*32 + tn + 8c): a warp's 4 rows and 8 columns
        // per step fall in distinct banks, and equal addresses broadcast.
        const int tm = lane >> 3, tn = lane & 7;
#pragma unroll 4
        for (int kk = 0; kk < BK; ++kk) {
            float a[8], b[4];
#pragma unroll
            for (int r = 0; r < 8; ++r) a[r] = As[ig_swz<BK>(wm * 32 + tm + 4 * r, kk)];
#pragma unroll
            for (int c = 0; c < 4; ++c) b[c] = Bs[ig_swz<BK>(wn * 32 + tn + 8 * c, kk)];
#pragma unroll
            for (int r = 0; r < 8; ++r)
#pragma unroll
                for (int c = 0; c < 4; ++c) acc[r * 4 + c] = fmaf(a[r], b[c], acc[r * 4 + c]);
        }
    } else if constexpr (PREC == IG_BF16) {
        // m16n8k16: a thread holds A rows g, g+8 at k = 2t, 2t+1 (and +8), B column g at the same k.
        const int g = lane >> 2, t = lane & 3;
#pragma unroll
        for (int kk = 0; kk < BK; kk += 16) {
            unsigned a[MT][4], b[NT][2];
            const int k0 = kk + 2 * t;
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) {
                const int r0 = wm * WTM + mt * 16 + g;
                a[mt][0] = ig_bf16x2(As[ig_swz<BK>(r0, k0)], As[ig_swz<BK>(r0, k0 + 1)]);
                a[mt][1] = ig_bf16x2(As[ig_swz<BK>(r0 + 8, k0)], As[ig_swz<BK>(r0 + 8, k0 + 1)]);
                a[mt][2] = ig_bf16x2(As[ig_swz<BK>(r0, k0 + 8)], As[ig_swz<BK>(r0, k0 + 9)]);
                a[mt][3] = ig_bf16x2(As[ig_swz<BK>(r0 + 8, k0 + 8)], As[ig_swz<BK>(r0 + 8, k0 + 9)]);
            }
#pragma unroll
            for (int nt = 0; nt < NT; ++nt) {
                const int c0 = wn * WTN + nt * 8 + g;
                b[nt][0] = ig_bf16x2(Bs[ig_swz<BK>(c0, k0)], Bs[ig_swz<BK>(c0, k0 + 1)]);
                b[nt][1] = ig_bf16x2(Bs[ig_swz<BK>(c0, k0 + 8)], Bs[ig_swz<BK>(c0, k0 + 9)]);
            }
#pragma unroll
            for (int mt = 0; mt < MT; ++mt)
#pragma unroll
                for (int nt = 0; nt < NT; ++nt) ig_mma_bf16(acc + (mt * NT + nt) * 4, a[mt], b[nt]);
        }
    } else {
        // m16n8k8: a thread holds A rows g, g+8 at k = t, t+4, and B column g at k = t, t+4.
        const int g = lane >> 2, t = lane & 3;
#pragma unroll
        for (int kk = 0; kk < BK; kk += 8) {
            unsigned a[MT][4], b[NT][2];
            float af[MT][4], bf[NT][2];
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) {
                const int r0 = wm * WTM + mt * 16 + g;
                af[mt][0] = As[ig_swz<BK>(r0, kk + t)];
                af[mt][1] = As[ig_swz<BK>(r0 + 8, kk + t)];
                af[mt][2] = As[ig_swz<BK>(r0, kk + t + 4)];
                af[mt][3] = As[ig_swz<BK>(r0 + 8, kk + t + 4)];
            }
#pragma unroll
            for (int nt = 0; nt < NT; ++nt) {
                const int c0 = wn * WTN + nt * 8 + g;
                bf[nt][0] = Bs[ig_swz<BK>(c0, kk + t)];
                bf[nt][1] = Bs[ig_swz<BK>(c0, kk + t + 4)];
            }
            if constexpr (PREC == IG_TF32) {
                // Register-staged tiles were rounded to TF32 when stored; cp.async tiles are rounded here.
                constexpr bool round = C::STAGES > 0;
#pragma unroll
                for (int mt = 0; mt < MT; ++mt)
#pragma unroll
                    for (int e = 0; e < 4; ++e) a[mt][e] = round ? ig_tf32(af[mt][e]) : __float_as_uint(af[mt][e]);
#pragma unroll
                for (int nt = 0; nt < NT; ++nt)
#pragma unroll
                    for (int e = 0; e < 2; ++e) b[nt][e] = round ? ig_tf32(bf[nt][e]) : __float_as_uint(bf[nt][e]);
#pragma unroll
                for (int mt = 0; mt < MT; ++mt)
#pragma unroll
                    for (int nt = 0; nt < NT; ++nt) ig_mma_tf32(acc + (mt * NT + nt) * 4, a[mt], b[nt]);
            } else {  // IG_3XTF32
                unsigned as[MT][4], bs[NT][2];
#pragma unroll
                for (int mt = 0; mt < MT; ++mt)
#pragma unroll
                    for (int e = 0; e < 4; ++e) {
                        a[mt][e] = ig_tf32(af[mt][e]);
                        as[mt][e] = ig_tf32(af[mt][e] - __uint_as_float(a[mt][e]));
                    }
#pragma unroll
                for (int nt = 0; nt < NT; ++nt)
#pragma unroll
                    for (int e = 0; e < 2; ++e) {
                        b[nt][e] = ig_tf32(bf[nt][e]);
                        bs[nt][e] = ig_tf32(bf[nt][e] - __uint_as_float(b[nt][e]));
                    }
                // The small cross terms first, then the big product.
#pragma unroll
                for (int mt = 0; mt < MT; ++mt)
#pragma unroll
                    for (int nt = 0; nt < NT; ++nt) {
                        ig_mma_tf32(acc + (mt * NT + nt) * 4, as[mt], b[nt]);
                        ig_mma_tf32(acc + (mt * NT + nt) * 4, a[mt], bs[nt]);
                        ig_mma_tf32(acc + (mt * NT + nt) * 4, a[mt], b[nt]);
                    }
            }
        }
    }
}

// Thread roles in the loads: A element (m, k) = (m0 + tid/BK + (THREADS/BK)*r, k0 + tid%BK), r < A_PER;
// B element (k, n) = (k0 + B_PER*(tid/BN) + r, n0 + tid%BN), r < B_PER: a thread decodes its k (A) or its
// k run (B) once per tile and steps through it by counting.
template <int CFG, int MODE, int PREC>
__global__ void __launch_bounds__(IgCfg<CFG>::THREADS)
    conv_igemm(const float* __restrict__ a_src, const float* __restrict__ b_src, float* __restrict__ out,
               const float* __restrict__ bias, float* __restrict__ pbias, int N, int C, int H, int W, int Cout,
               int kh, int kw, int sh, int sw, int ph, int pw, int Ho, int Wo, int k_per_split) {
    using Cf = IgCfg<CFG>;
    constexpr int BM = Cf::BM, BN = Cf::BN, BK = Cf::BK, THREADS = Cf::THREADS;
    constexpr int A_PER = BM * BK / THREADS, B_PER = BN * BK / THREADS, A_ROWS = THREADS / BK;
    constexpr int ACC = (BM / Cf::WM) * (BN / Cf::WN) / 32;
    constexpr int MT = BM / Cf::WM / 16, NT = BN / Cf::WN / 8;
    constexpr int STAGES = Cf::STAGES, NBUF = STAGES > 0 ? STAGES : 2;
    __shared__ __align__(16) float As[NBUF][BM * BK];
    __shared__ __align__(16) float Bs[NBUF][BN * BK];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int wm = warp / Cf::WN, wn = warp % Cf::WN;
    const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
    const int HoWo = Ho * Wo, khkw = kh * kw;
    const int a_row = tid / BK, a_k = tid % BK;          // this thread's A rows: a_row + A_ROWS*r
    const int b_col = tid % BN, b_k = B_PER * (tid / BN);  // this thread's B column and k run

    // The GEMM's sizes and this block's k range.
    int M, Ng, kbeg = 0, kend;
    // DGRAD: this block's phase and its taps.
    int rh = 0, rw = 0, i0 = 0, j0 = 0, nti = 1, ntj = 1, dh = 0, dw = 0, Hq = 1, Wq = 1;
    if constexpr (MODE == IG_FPROP) {
        M = Cout, Ng = N * HoWo, kend = C * khkw;
    } else if constexpr (MODE == IG_DGRAD) {
        rh = blockIdx.z / sw, rw = blockIdx.z % sw;
        i0 = (rh + ph) % sh, j0 = (rw + pw) % sw;
        nti = i0 < kh ? (kh - i0 + sh - 1) / sh : 0;
        ntj = j0 < kw ? (kw - j0 + sw - 1) / sw : 0;
        dh = (rh + ph - i0) / sh, dw = (rw + pw - j0) / sw;
        Hq = (H + sh - 1) / sh, Wq = (W + sw - 1) / sw;
        M = C, Ng = N * Hq * Wq, kend = Cout * nti * ntj;
    } else {
        M = Cout, Ng = C * khkw;
        const int K = N * HoWo;
        kbeg = blockIdx.z * k_per_split;
        kend = min(K, kbeg + k_per_split);
    }
    if (m0 >= M || n0 >= Ng) return;

    // This thread's B column n, decoded once.
    const int bn = n0 + b_col;
    const bool bn_ok = bn < Ng;
    int b_img = 0, b_y = 0, b_x = 0;  // FPROP: image, top-left input row/col; DGRAD: image, hq, wq
    int b_ci = 0, b_i = 0, b_j = 0;   // WGRAD: the (ci, i, j) of column n
    if (bn_ok) {
        if constexpr (MODE == IG_FPROP) {
            b_img = bn / HoWo;
            const int p = bn - b_img * HoWo;
            const int oh = p / Wo;
            b_y = oh * sh - ph, b_x = (p - oh * Wo) * sw - pw;
        } else if constexpr (MODE == IG_DGRAD) {
            const int per = Hq * Wq;
            b_img = bn / per;
            const int q = bn - b_img * per;
            b_y = q / Wq, b_x = q - b_y * Wq;
        } else {
            b_ci = bn / khkw;
            const int r = bn - b_ci * khkw;
            b_i = r / kw, b_j = r - b_i * kw;
        }
    }

    float a_reg[A_PER], b_reg[B_PER];
    float bsum[A_PER];
    const bool want_bsum = (MODE == IG_WGRAD) && pbias != nullptr && blockIdx.x == 0;
#pragma unroll
    for (int r = 0; r < A_PER; ++r) bsum[r] = 0.f;

    // Element r of this thread's A (B) part of a tile: into registers, or by cp.async into buffer `stage`.
    auto put_a = [&](int stage, int r, bool ok, const float* src) {
        if constexpr (STAGES > 0) {
            cp_async4(shared_addr(&As[stage][ig_swz<BK>(a_row + A_ROWS * r, a_k)]), ok ? src : a_src, ok);
        } else {
            a_reg[r] = ok ? *src : 0.f;
        }
    };
    auto put_b = [&](int stage, int r, bool ok, const float* src) {
        if constexpr (STAGES > 0) {
            cp_async4(shared_addr(&Bs[stage][ig_swz<BK>(b_col, b_k + r)]), ok ? src : b_src, ok);
        } else {
            b_reg[r] = ok ? *src : 0.f;
        }
    };
    auto load = [&](int k0, int stage) {
        // A: element (m0 + a_row + A_ROWS*r, k0 + a_k).
        const int ak = k0 + a_k;
        const bool ak_ok = ak < kend;
        if constexpr (MODE == IG_FPROP) {
            const int K = C * khkw;
#pragma unroll
            for (int r = 0; r < A_PER; ++r) {
                const int m = m0 + a_row + A_ROWS * r;
                put_a(stage, r, ak_ok && m < M, a_src + m * K + ak);
            }
        } else if constexpr (MODE == IG_DGRAD) {
            int base = 0;
            if (ak_ok) {
                const int nt = nti * ntj;
                const int co = ak / nt;
                const int rr = ak - co * nt;
                const int t = rr / ntj, u = rr - t * ntj;
                base = co * C * khkw + (i0 + sh * t) * kw + (j0 + sw * u);
            }
#pragma unroll
            for (int r = 0; r < A_PER; ++r) {
                const int m = m0 + a_row + A_ROWS * r;
                put_a(stage, r, ak_ok && m < M, a_src + base + m * khkw);
            }
        } else {
            int base = 0;
            if (ak_ok) {
                const int img = ak / HoWo;
                base = img * Cout * HoWo + (ak - img * HoWo);
            }
#pragma unroll
            for (int r = 0; r < A_PER; ++r) {
                const int m = m0 + a_row + A_ROWS * r;
                put_a(stage, r, ak_ok && m < M, a_src + base + m * HoWo);
                if constexpr (STAGES == 0) {
                    if (want_bsum) bsum[r] += a_reg[r];
                }
            }
        }
        // B: elements (k0 + b_k + r, bn), r < B_PER.
        const int kb = k0 + b_k;
        if constexpr (MODE == IG_FPROP) {
            int ci = kb / khkw;
            int rr = kb - ci * khkw;
            int i = rr / kw, j = rr - i * kw;
            const float* xc = b_src + (b_img * C + ci) * H * W;
#pragma unroll
            for (int r = 0; r < B_PER; ++r) {
                const int h = b_y + i, w = b_x + j;
                put_b(stage, r, bn_ok && kb + r < kend && h >= 0 && h < H && w >= 0 && w < W, xc + h * W + w);
                if (++j == kw) {
                    j = 0;
                    if (++i == kh) {
                        i = 0;
                        xc += H * W;
                    }
                }
            }
        } else if constexpr (MODE == IG_DGRAD) {
            const int nt = nti * ntj;
            int co = kb / nt;
            int rr = kb - co * nt;
            int t = rr / ntj, u = rr - t * ntj;
            const float* dyc = b_src + (b_img * Cout + co) * HoWo;
#pragma unroll
            for (int r = 0; r < B_PER; ++r) {
                const int oh = b_y + dh - t, ow = b_x + dw - u;
                put_b(stage, r, bn_ok && kb + r < kend && oh >= 0 && oh < Ho && ow >= 0 && ow < Wo, dyc + oh * Wo + ow);
                if (++u == ntj) {
                    u = 0;
                    if (++t == nti) {
                        t = 0;
                        dyc += HoWo;
                    }
                }
            }
        } else {
            int img = kb / HoWo;
            int p = kb - img * HoWo;
            int oh = p / Wo, ow = p - oh * Wo;
#pragma unroll
            for (int r = 0; r < B_PER; ++r) {
                const int h = oh * sh - ph + b_i, w = ow * sw - pw + b_j;
                put_b(stage, r, bn_ok && kb + r < kend && h >= 0 && h < H && w >= 0 && w < W,
                      b_src + ((img * C + b_ci) * H + h) * W + w);
                if (++ow == Wo) {
                    ow = 0;
                    if (++oh == Ho) {
                        oh = 0;
                        ++img;
                    }
                }
            }
        }
    };
    auto store = [&](int buf) {
#pragma unroll
        for (int r = 0; r < A_PER; ++r) {
            float av = a_reg[r];
            if constexpr (PREC == IG_TF32) av = __uint_as_float(ig_tf32(av));
            As[buf][ig_swz<BK>(a_row + A_ROWS * r, a_k)] = av;
        }
#pragma unroll
        for (int r = 0; r < B_PER; ++r) {
            float bv = b_reg[r];
            if constexpr (PREC == IG_TF32) bv = __uint_as_float(ig_tf32(bv));
            Bs[buf][ig_swz<BK>(b_col, b_k + r)] = bv;
        }
    };

    float acc[ACC];
#pragma unroll
    for (int e = 0; e < ACC; ++e) acc[e] = 0.f;

    if constexpr (STAGES == 0) {
        if (kbeg < kend) {
            load(kbeg, 0);
            store(0);
            __syncthreads();
            int buf = 0;
            for (int k0 = kbeg; k0 < kend; k0 += BK) {
                const bool more = k0 + BK < kend;
                if (more) load(k0 + BK, 0);
                ig_tile_product<CFG, PREC>(As[buf], Bs[buf], acc, wm, wn, lane);
                if (more) store(buf ^ 1);
                __syncthreads();
                buf ^= 1;
            }
        }
    } else if (kbeg < kend) {
        // Tiles t+1 .. t+STAGES-1 in flight while tile t is multiplied. One commit group per tile (empty
        // ones too), so "all but the newest STAGES-2 groups done" means tile t has landed.
#pragma unroll
        for (int s = 0; s < STAGES - 1; ++s) {
            if (kbeg + s * BK < kend) load(kbeg + s * BK, s);
            cp_async_commit();
        }
        int stage = 0;
        for (int k0 = kbeg; k0 < kend; k0 += BK) {
            cp_async_wait<STAGES - 2>();
            // Every thread's copies of tile t have landed, and every warp is done with tile t-1's buffer.
            __syncthreads();
            if constexpr (MODE == IG_WGRAD) {
                if (want_bsum) {
#pragma unroll
                    for (int r = 0; r < A_PER; ++r) bsum[r] += As[stage][ig_swz<BK>(a_row + A_ROWS * r, a_k)];
                }
            }
            const int next = k0 + (STAGES - 1) * BK;
            if (next < kend) load(next, (stage + STAGES - 1) % STAGES);
            cp_async_commit();
            ig_tile_product<CFG, PREC>(As[stage], Bs[stage], acc, wm, wn, lane);
            stage = (stage + 1) % STAGES;
        }
    }

    if constexpr (MODE == IG_WGRAD) {
        if (want_bsum) {
            // The BK threads of one A row are BK consecutive lanes of one warp.
#pragma unroll
            for (int r = 0; r < A_PER; ++r) {
                float v = bsum[r];
#pragma unroll
                for (int o = BK / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
                const int m = m0 + a_row + A_ROWS * r;
                if (a_k == 0 && m < M) pbias[blockIdx.z * M + m] = v;
            }
        }
    }

    // Epilogue: acc element e is (m, n) as ig_tile_product lays it out.
#pragma unroll
    for (int e = 0; e < ACC; ++e) {
        int m, n;
        if constexpr (PREC == IG_SIMT) {
            m = m0 + wm * 32 + (lane >> 3) + 4 * (e >> 2);
            n = n0 + wn * 32 + (lane & 7) + 8 * (e & 3);
        } else {
            const int tile = e >> 2, mt = tile / NT, nt = tile % NT, q = e & 3;
            m = m0 + wm * (BM / Cf::WM) + mt * 16 + (lane >> 2) + ((q >> 1) << 3);
            n = n0 + wn * (BN / Cf::WN) + nt * 8 + 2 * (lane & 3) + (q & 1);
        }
        if (m >= M || n >= Ng) continue;
        float v = acc[e];
        if constexpr (MODE == IG_FPROP) {
            if (bias != nullptr) v += bias[m];
            const int img = n / HoWo;
            out[(img * M + m) * HoWo + (n - img * HoWo)] = v;
        } else if constexpr (MODE == IG_DGRAD) {
            const int per = Hq * Wq;
            const int img = n / per;
            const int q = n - img * per;
            const int hq = q / Wq;
            const int h = rh + sh * hq, w = rw + sw * (q - hq * Wq);
            if (h < H && w < W) out[((img * M + m) * H + h) * W + w] = bias != nullptr ? v + bias[m] : v;
        } else {
            out[(blockIdx.z * M + m) * Ng + n] = v;
        }
    }
    (void)MT;
}

// out[i] = sum over z < splits of part[z*count + i], in the order of z: the same bits on every run.
__global__ void ig_splitk_reduce(const float* __restrict__ part, float* __restrict__ out, int count, int splits) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < count; i += blockDim.x * gridDim.x) {
        float s = 0.f;
        for (int z = 0; z < splits; ++z) s += part[z * count + i];
        out[i] = s;
    }
}
