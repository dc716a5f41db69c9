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
//   IG_3XTF32 each operand split a = big + small (both TF32), three TF32 products  ~FP32
//             big*big + big*small + small*big: FP32 accuracy on tensor cores
// Accumulation is FP32 in every mode. All index math is 32-bit: the host sends larger tensors to the
// im2col path.

#define IG_BM 64
#define IG_BN 64
#define IG_BK 32
#define IG_THREADS 128

#define IG_FPROP 0
#define IG_DGRAD 1
#define IG_WGRAD 2

#define IG_SIMT 0
#define IG_TF32 1
#define IG_BF16 2
#define IG_3XTF32 3

// Element (row, k) of a 32-wide tile: the k column XORed with a 5-bit function of the row.
__device__ __forceinline__ int ig_swz(int row, int k) { return row * IG_BK + (k ^ (((row & 7) << 2) | ((row >> 3) & 3))); }

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

// The products of one BK-deep pair of tiles into this thread's 32 accumulators.
template <int PREC>
__device__ __forceinline__ void ig_tile_product(const float* __restrict__ As, const float* __restrict__ Bs, float* acc,
                                                int wm, int wn, int lane) {
    if constexpr (PREC == IG_SIMT) {
        // acc[r*4 + c] is (m, n) = (wm*32 + tm + 4r, wn*32 + tn + 8c): a warp's 4 rows and 8 columns
        // per step fall in distinct banks, and equal addresses broadcast.
        const int tm = lane >> 3, tn = lane & 7;
#pragma unroll 4
        for (int kk = 0; kk < IG_BK; ++kk) {
            float a[8], b[4];
#pragma unroll
            for (int r = 0; r < 8; ++r) a[r] = As[ig_swz(wm * 32 + tm + 4 * r, kk)];
#pragma unroll
            for (int c = 0; c < 4; ++c) b[c] = Bs[ig_swz(wn * 32 + tn + 8 * c, kk)];
#pragma unroll
            for (int r = 0; r < 8; ++r)
#pragma unroll
                for (int c = 0; c < 4; ++c) acc[r * 4 + c] = fmaf(a[r], b[c], acc[r * 4 + c]);
        }
    } else if constexpr (PREC == IG_BF16) {
        // m16n8k16: a thread holds A rows g, g+8 at k = 2t, 2t+1 (and +8), B column g at the same k.
        const int g = lane >> 2, t = lane & 3;
#pragma unroll
        for (int kk = 0; kk < IG_BK; kk += 16) {
            unsigned a[2][4], b[4][2];
#pragma unroll
            for (int mt = 0; mt < 2; ++mt) {
                const int r0 = wm * 32 + mt * 16 + g;
                const int k0 = kk + 2 * t;
                a[mt][0] = ig_bf16x2(As[ig_swz(r0, k0)], As[ig_swz(r0, k0 + 1)]);
                a[mt][1] = ig_bf16x2(As[ig_swz(r0 + 8, k0)], As[ig_swz(r0 + 8, k0 + 1)]);
                a[mt][2] = ig_bf16x2(As[ig_swz(r0, k0 + 8)], As[ig_swz(r0, k0 + 9)]);
                a[mt][3] = ig_bf16x2(As[ig_swz(r0 + 8, k0 + 8)], As[ig_swz(r0 + 8, k0 + 9)]);
            }
#pragma unroll
            for (int nt = 0; nt < 4; ++nt) {
                const int c0 = wn * 32 + nt * 8 + g;
                const int k0 = kk + 2 * t;
                b[nt][0] = ig_bf16x2(Bs[ig_swz(c0, k0)], Bs[ig_swz(c0, k0 + 1)]);
                b[nt][1] = ig_bf16x2(Bs[ig_swz(c0, k0 + 8)], Bs[ig_swz(c0, k0 + 9)]);
            }
#pragma unroll
            for (int mt = 0; mt < 2; ++mt)
#pragma unroll
                for (int nt = 0; nt < 4; ++nt) ig_mma_bf16(acc + (mt * 4 + nt) * 4, a[mt], b[nt]);
        }
    } else {
        // m16n8k8: a thread holds A rows g, g+8 at k = t, t+4, and B column g at k = t, t+4.
        const int g = lane >> 2, t = lane & 3;
#pragma unroll
        for (int kk = 0; kk < IG_BK; kk += 8) {
            unsigned a[2][4], b[4][2];
            float af[2][4], bf[4][2];
#pragma unroll
            for (int mt = 0; mt < 2; ++mt) {
                const int r0 = wm * 32 + mt * 16 + g;
                af[mt][0] = As[ig_swz(r0, kk + t)];
                af[mt][1] = As[ig_swz(r0 + 8, kk + t)];
                af[mt][2] = As[ig_swz(r0, kk + t + 4)];
                af[mt][3] = As[ig_swz(r0 + 8, kk + t + 4)];
            }
#pragma unroll
            for (int nt = 0; nt < 4; ++nt) {
                const int c0 = wn * 32 + nt * 8 + g;
                bf[nt][0] = Bs[ig_swz(c0, kk + t)];
                bf[nt][1] = Bs[ig_swz(c0, kk + t + 4)];
            }
            if constexpr (PREC == IG_TF32) {
                // The tiles were rounded to TF32 when stored.
#pragma unroll
                for (int mt = 0; mt < 2; ++mt)
#pragma unroll
                    for (int e = 0; e < 4; ++e) a[mt][e] = __float_as_uint(af[mt][e]);
#pragma unroll
                for (int nt = 0; nt < 4; ++nt)
#pragma unroll
                    for (int e = 0; e < 2; ++e) b[nt][e] = __float_as_uint(bf[nt][e]);
#pragma unroll
                for (int mt = 0; mt < 2; ++mt)
#pragma unroll
                    for (int nt = 0; nt < 4; ++nt) ig_mma_tf32(acc + (mt * 4 + nt) * 4, a[mt], b[nt]);
            } else {  // IG_3XTF32
                unsigned as[2][4], bs[4][2];
#pragma unroll
                for (int mt = 0; mt < 2; ++mt)
#pragma unroll
                    for (int e = 0; e < 4; ++e) {
                        a[mt][e] = ig_tf32(af[mt][e]);
                        as[mt][e] = ig_tf32(af[mt][e] - __uint_as_float(a[mt][e]));
                    }
#pragma unroll
                for (int nt = 0; nt < 4; ++nt)
#pragma unroll
                    for (int e = 0; e < 2; ++e) {
                        b[nt][e] = ig_tf32(bf[nt][e]);
                        bs[nt][e] = ig_tf32(bf[nt][e] - __uint_as_float(b[nt][e]));
                    }
                // The small cross terms first, then the big product.
#pragma unroll
                for (int mt = 0; mt < 2; ++mt)
#pragma unroll
                    for (int nt = 0; nt < 4; ++nt) {
                        ig_mma_tf32(acc + (mt * 4 + nt) * 4, as[mt], b[nt]);
                        ig_mma_tf32(acc + (mt * 4 + nt) * 4, a[mt], bs[nt]);
                        ig_mma_tf32(acc + (mt * 4 + nt) * 4, a[mt], b[nt]);
                    }
            }
        }
    }
}

// Thread roles in the loads: A element (m, k) = (m0 + warp + 4r, k0 + lane), r < 16; B element (k, n) =
// (k0 + 16*(tid / 64) + r, n0 + tid % 64), r < 16: a thread decodes its k (A) or its k run (B) once
// per tile and steps through it by counting.
template <int MODE, int PREC>
__global__ void __launch_bounds__(IG_THREADS)
    conv_igemm(const float* __restrict__ a_src, const float* __restrict__ b_src, float* __restrict__ out,
               const float* __restrict__ bias, float* __restrict__ pbias, int N, int C, int H, int W, int Cout,
               int kh, int kw, int sh, int sw, int ph, int pw, int Ho, int Wo, int k_per_split) {
    __shared__ __align__(16) float As[2][IG_BM * IG_BK];
    __shared__ __align__(16) float Bs[2][IG_BN * IG_BK];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int wm = warp >> 1, wn = warp & 1;
    const int m0 = blockIdx.y * IG_BM, n0 = blockIdx.x * IG_BN;
    const int HoWo = Ho * Wo, khkw = kh * kw;

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
    const int bn = n0 + (tid & 63);
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

    float a_reg[16], b_reg[16];
    float bsum[16];
    const bool want_bsum = (MODE == IG_WGRAD) && pbias != nullptr && blockIdx.x == 0;
#pragma unroll
    for (int r = 0; r < 16; ++r) bsum[r] = 0.f;

    auto load = [&](int k0) {
        // A: element (m0 + warp + 4r, k0 + lane).
        const int ak = k0 + lane;
        const bool ak_ok = ak < kend;
        if constexpr (MODE == IG_FPROP) {
            const int K = C * khkw;
#pragma unroll
            for (int r = 0; r < 16; ++r) {
                const int m = m0 + warp + 4 * r;
                a_reg[r] = (ak_ok && m < M) ? a_src[m * K + ak] : 0.f;
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
            for (int r = 0; r < 16; ++r) {
                const int m = m0 + warp + 4 * r;
                a_reg[r] = (ak_ok && m < M) ? a_src[base + m * khkw] : 0.f;
            }
        } else {
            int base = 0;
            if (ak_ok) {
                const int img = ak / HoWo;
                base = img * Cout * HoWo + (ak - img * HoWo);
            }
#pragma unroll
            for (int r = 0; r < 16; ++r) {
                const int m = m0 + warp + 4 * r;
                a_reg[r] = (ak_ok && m < M) ? a_src[base + m * HoWo] : 0.f;
                if (want_bsum) bsum[r] += a_reg[r];
            }
        }
        // B: elements (k0 + kb + r, bn), r < 16.
        const int kb = k0 + 16 * (tid >> 6);
        if constexpr (MODE == IG_FPROP) {
            int ci = kb / khkw;
            int rr = kb - ci * khkw;
            int i = rr / kw, j = rr - i * kw;
            const float* xc = b_src + (b_img * C + ci) * H * W;
#pragma unroll
            for (int r = 0; r < 16; ++r) {
                const int h = b_y + i, w = b_x + j;
                b_reg[r] = (bn_ok && kb + r < kend && h >= 0 && h < H && w >= 0 && w < W) ? xc[h * W + w] : 0.f;
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
            for (int r = 0; r < 16; ++r) {
                const int oh = b_y + dh - t, ow = b_x + dw - u;
                b_reg[r] =
                    (bn_ok && kb + r < kend && oh >= 0 && oh < Ho && ow >= 0 && ow < Wo) ? dyc[oh * Wo + ow] : 0.f;
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
            for (int r = 0; r < 16; ++r) {
                const int h = oh * sh - ph + b_i, w = ow * sw - pw + b_j;
                b_reg[r] = (bn_ok && kb + r < kend && h >= 0 && h < H && w >= 0 && w < W)
                               ? b_src[((img * C + b_ci) * H + h) * W + w]
                               : 0.f;
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
        const int b_col = tid & 63, b_k = 16 * (tid >> 6);
#pragma unroll
        for (int r = 0; r < 16; ++r) {
            float av = a_reg[r], bv = b_reg[r];
            if constexpr (PREC == IG_TF32) {
                av = __uint_as_float(ig_tf32(av));
                bv = __uint_as_float(ig_tf32(bv));
            }
            As[buf][ig_swz(warp + 4 * r, lane)] = av;
            Bs[buf][ig_swz(b_col, b_k + r)] = bv;
        }
    };

    float acc[32];
#pragma unroll
    for (int e = 0; e < 32; ++e) acc[e] = 0.f;

    if (kbeg < kend) {
        load(kbeg);
        store(0);
        __syncthreads();
        int buf = 0;
        for (int k0 = kbeg; k0 < kend; k0 += IG_BK) {
            const bool more = k0 + IG_BK < kend;
            if (more) load(k0 + IG_BK);
            ig_tile_product<PREC>(As[buf], Bs[buf], acc, wm, wn, lane);
            if (more) store(buf ^ 1);
            __syncthreads();
            buf ^= 1;
        }
    }

    if constexpr (MODE == IG_WGRAD) {
        if (want_bsum) {
#pragma unroll
            for (int r = 0; r < 16; ++r) {
                float v = bsum[r];
#pragma unroll
                for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
                const int m = m0 + warp + 4 * r;
                if (lane == 0 && m < M) pbias[blockIdx.z * M + m] = v;
            }
        }
    }

    // Epilogue: acc element e is (m, n) as ig_tile_product lays it out.
#pragma unroll
    for (int e = 0; e < 32; ++e) {
        int m, n;
        if constexpr (PREC == IG_SIMT) {
            m = m0 + wm * 32 + (lane >> 3) + 4 * (e >> 2);
            n = n0 + wn * 32 + (lane & 7) + 8 * (e & 3);
        } else {
            const int tile = e >> 2, mt = tile >> 2, nt = tile & 3, q = e & 3;
            m = m0 + wm * 32 + mt * 16 + (lane >> 2) + ((q >> 1) << 3);
            n = n0 + wn * 32 + nt * 8 + 2 * (lane & 3) + (q & 1);
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
}

// out[i] = sum over z < splits of part[z*count + i], in the order of z: the same bits on every run.
__global__ void ig_splitk_reduce(const float* __restrict__ part, float* __restrict__ out, int count, int splits) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < count; i += blockDim.x * gridDim.x) {
        float s = 0.f;
        for (int z = 0; z < splits; ++z) s += part[z * count + i];
        out[i] = s;
    }
}
