// im2col / col2im for NCHW tensors.
// cols has shape (C*kh*kw, N*Ho*Wo): row r = (c*kh + i)*kw + j (the flattening of W[o, c, i, j]),
// column l = (n*Ho + oh)*Wo + ow. Output pixel (oh, ow) with tap (i, j) reads input pixel
// (oh*sh - ph + i, ow*sw - pw + j); taps that fall into the padding read zero.
//
// Index arithmetic is in I: int whenever every offset fits, long long otherwise (two instantiations
// of each kernel; the host picks). A 64-bit division costs several times a 32-bit one, and these
// kernels do little else.

// S: what cols stores, T (float32) or bf16_t (precision "bf16": half the bytes written here and read by the GEMM).
// Block row y owns rows r_begin .. r_end - 1 of cols. A thread decodes its V consecutive columns l into
// (n, oh, ow) once and walks those rows, stepping (c, i, j) by counting rather than dividing; its V values of a
// row go out as one store, and the threads along x write consecutive columns. V > 1 shares the row loop, its tap
// stepping and the store among V columns: the kernel is bound by its issue rate, not the bytes (the scalar
// bfloat16 version measured slower than float32's, 225.7 against 214.4 us over the DCGAN's step on an H200),
// but at stride 2 a thread's V reads lie two apart and a warp's loads touch twice the sectors (bench/dev v3:
// 1.34x at stride 1, slower at stride 2), so the host asks V > 1 at stride 1 only. Needs L % V == 0 (then
// every row's first column is V-aligned).
template <typename T, typename S, int V, typename I>
__device__ __forceinline__ void im2col_rows(const T* __restrict__ x, S* __restrict__ cols, I N, I C, I H, I W, int kh,
                                            int kw, int sh, int sw, int ph, int pw, I Ho, I Wo, int rows_per_block) {
    const I L = N * Ho * Wo;
    const I R = C * kh * kw;
    const I r_begin = (I)blockIdx.y * rows_per_block;
    const I r_end = min(R, r_begin + (I)rows_per_block);
    if (r_begin >= r_end) return;
    const int j_begin = (int)(r_begin % kw);
    const I t = r_begin / kw;
    const int i_begin = (int)(t % kh);
    const I c_begin = t / kh;
    const I plane = H * W;
    for (I l0 = ((I)blockIdx.x * blockDim.x + threadIdx.x) * V; l0 < L; l0 += (I)blockDim.x * gridDim.x * V) {
        I h0[V], w0[V];
        const T* xc[V];
#pragma unroll
        for (int v = 0; v < V; ++v) {
            const I l = l0 + v;
            const I q = l / Wo;
            const I ow = l - q * Wo;
            const I n = q / Ho;
            const I oh = q - n * Ho;
            h0[v] = oh * sh - ph;
            w0[v] = ow * sw - pw;
            xc[v] = x + (n * C + c_begin) * plane;
        }
        int i = i_begin, j = j_begin;
        for (I r = r_begin; r < r_end; ++r) {
            Pack<S, V> out;
#pragma unroll
            for (int v = 0; v < V; ++v) {
                const I h = h0[v] + i, w = w0[v] + j;
                out.v[v] = store_as<S>((h >= 0 && h < H && w >= 0 && w < W) ? xc[v][h * W + w] : T(0));
            }
            store_pack<V>(cols + r * L + l0, out);
            if (++j == kw) {
                j = 0;
                if (++i == kh) {
                    i = 0;
#pragma unroll
                    for (int v = 0; v < V; ++v) xc[v] += plane;
                }
            }
        }
    }
}

template <typename T, typename S, typename I>
__device__ __forceinline__ void im2col_any(const T* __restrict__ x, S* __restrict__ cols, index_t N, index_t C,
                                           index_t H, index_t W, int kh, int kw, int sh, int sw, int ph, int pw,
                                           index_t Ho, index_t Wo, int rows_per_block, int vec) {
    if (vec == 4)
        return im2col_rows<T, S, 4, I>(x, cols, (I)N, (I)C, (I)H, (I)W, kh, kw, sh, sw, ph, pw, (I)Ho, (I)Wo,
                                       rows_per_block);
    if (vec == 2)
        return im2col_rows<T, S, 2, I>(x, cols, (I)N, (I)C, (I)H, (I)W, kh, kw, sh, sw, ph, pw, (I)Ho, (I)Wo,
                                       rows_per_block);
    im2col_rows<T, S, 1, I>(x, cols, (I)N, (I)C, (I)H, (I)W, kh, kw, sh, sw, ph, pw, (I)Ho, (I)Wo, rows_per_block);
}

// vec: the columns a thread writes, 4, 2 or 1 (the host's choice: the largest that divides L at stride 1, else 1;
// 1 for double); the grid's x covers L / vec columns.
template <typename T, typename I>
__global__ void im2col_bf16(const T* __restrict__ x, bf16_t* __restrict__ cols, index_t N, index_t C, index_t H,
                            index_t W, int kh, int kw, int sh, int sw, int ph, int pw, index_t Ho, index_t Wo,
                            int rows_per_block, int vec) {
    im2col_any<T, bf16_t, I>(x, cols, N, C, H, W, kh, kw, sh, sw, ph, pw, Ho, Wo, rows_per_block, vec);
}

// I = int where every offset fits, long long otherwise: two kernels (CudaModule.get_for).
template <typename T, typename I>
__global__ void im2col(const T* __restrict__ x, T* __restrict__ cols, index_t N, index_t C, index_t H, index_t W,
                       int kh, int kw, int sh, int sw, int ph, int pw, index_t Ho, index_t Wo, int rows_per_block,
                       int vec) {
    im2col_any<T, T, I>(x, cols, N, C, H, W, kh, kw, sh, sw, ph, pw, Ho, Wo, rows_per_block, vec);
}

// The adjoint of im2col, written as a gather: each thread owns one pixel of x and sums the cols
// entries of every (output pixel, tap) whose patch covers it. No two threads write the same
// address, so there are no atomics and the sum order is fixed. bias[c] is added at the end when
// has_bias (ConvTranspose2d's forward is exactly this col2im plus a bias), then the fused activation
// (epilogue_act, _common.cu) when act is set.
// Tap i of output row oh lands on row h when oh*sh = h + ph - i: only the taps i = (h + ph) mod sh,
// then every sh-th, can, with oh falling by one from tap to tap. Every version below visits just
// those (about (kh/sh) * (kw/sw) of the kh * kw) in increasing i and j, so all give the same bits.
// bench/dev/kernel_versions.py times this kernel against its earlier versions.

// Any geometry, any index width: pixels in NCHW order.
template <typename T, typename S, typename I>
__device__ __forceinline__ void col2im_pixels(const S* __restrict__ cols, T* __restrict__ x, const T* __restrict__ bias,
                                              int has_bias, int act, T slope, I N, I C, I H, I W, int kh, int kw,
                                              int sh, int sw, int ph, int pw, I Ho, I Wo) {
    const I L = N * Ho * Wo;
    const I total = N * C * H * W;
    for (I e = (I)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += (I)blockDim.x * gridDim.x) {
        I t = e / W;
        const I w = e - t * W;
        I u = t / H;
        const I h = t - u * H;
        const I n = u / C;
        const I c = u - n * C;
        const I hp = h + ph, wp = w + pw;
        const int i0 = (int)(hp % sh), j0 = (int)(wp % sw);
        const I ow0 = (wp - j0) / sw;
        T acc = T(0);
        I oh = (hp - i0) / sh;
        for (int i = i0; i < kh && oh >= 0; i += sh, --oh) {
            if (oh >= Ho) continue;
            const S* base = cols + (c * kh + i) * kw * L + (n * Ho + oh) * Wo;
            I ow = ow0;
            for (int j = j0; j < kw && ow >= 0; j += sw, --ow) {
                if (ow >= Wo) continue;
                acc += widen(base[(I)j * L + ow]);
            }
        }
        if (has_bias) acc += bias[c];
        x[e] = epilogue_act(acc, act, slope);
    }
}

// The seed models' geometries, with kernel size and stride known at compile time, 32-bit indices: a thread
// gathers a whole SH x SW block of pixels, (h, w) = (a*SH + dh, b*SW + dw), of plane (n, c), with
// e = ((n*C + c)*Ha + a)*Wb + b; Ha = ceil(H/SH), Wb = ceil(W/SW). At stride 2 that is one pixel of each of
// the four phases (the pixels whose (h + ph) mod SH and (w + pw) mod SW agree take the same taps), so:
// - the block's taps are all kh*kw of them, each read once, unrolled: a thread issues every load before the
//   first one returns, and a warp (consecutive b) reads consecutive entries of each cols row;
// - the index decoding (three fast_div by launch-constant Wb, Ha, C, with the host's (mul, shift)) and the
//   tap bounds are shared by the block's SH*SW pixels;
// - a block row's SW pixels are adjacent in x: one vector store (Pack) where W is even.
// History (bench/dev/kernel_versions.py times them): v4 numbered pixels phase by phase so a warp's taps ran in
// lockstep; v6 fixed the geometry at compile time (1.9x over the DCGAN's shapes on an H100); v7 replaced three
// ~25-instruction divisions per pixel with fast_div (ncu of v6: issue-bound at 79%, DRAM at 12-34%; 1.29x on an
// H200); this is v8, one thread per block of phases: the same loads, a quarter of the index work and stores.
// Each pixel still sums its taps in increasing i, then j: the same bits as every earlier version.
template <typename T, typename S, int KH, int KW, int SH, int SW>
__device__ __forceinline__ void col2im_blocks(const S* __restrict__ cols, T* __restrict__ x, const T* __restrict__ bias,
                                              int has_bias, int act, T slope, int N, int C, int H, int W, int ph,
                                              int pw, int Ho, int Wo, const unsigned* magic) {
    const int L = N * Ho * Wo;
    const int Ha = (H + SH - 1) / SH, Wb = (W + SW - 1) / SW;
    const int total = N * C * Ha * Wb;
    const bool pairs = SW == 2 && (W & 1) == 0;  // a block row's two pixels in range and 2-aligned
    for (int e = blockIdx.x * blockDim.x + threadIdx.x; e < total; e += blockDim.x * gridDim.x) {
        int t = fast_div(e, Wb, magic[0], magic[1]);
        const int b = e - t * Wb;
        const int u = fast_div(t, Ha, magic[2], magic[3]);
        const int a = t - u * Ha;
        const int n = fast_div(u, C, magic[4], magic[5]);
        const int c = u - n * C;
        const S* plane = cols + c * KH * KW * L + n * Ho * Wo;
        const T add = has_bias ? bias[c] : T(0);
#pragma unroll
        for (int dh = 0; dh < SH; ++dh) {
            const int h = a * SH + dh;
            if (h >= H) break;
            // Row h's first tap i0 = (h + ph) mod SH, at output row oh0; each further tap is SH on, a row up.
            const int i0 = (dh + ph) % SH, oh0 = a + (dh + ph - i0) / SH;
            T acc[SW];
#pragma unroll
            for (int dw = 0; dw < SW; ++dw) {
                const int j0 = (dw + pw) % SW, ow0 = b + (dw + pw - j0) / SW;
                T sum = T(0);
#pragma unroll
                for (int ti = 0; ti < (KH + SH - 1) / SH; ++ti) {
                    const int i = i0 + ti * SH, oh = oh0 - ti;
                    if (i < KH && oh >= 0 && oh < Ho) {
                        const S* row = plane + i * KW * L + oh * Wo;
#pragma unroll
                        for (int tj = 0; tj < (KW + SW - 1) / SW; ++tj) {
                            const int j = j0 + tj * SW, ow = ow0 - tj;
                            if (j < KW && ow >= 0 && ow < Wo) sum += widen(row[j * L + ow]);
                        }
                    }
                }
                acc[dw] = epilogue_act(has_bias ? sum + add : sum, act, slope);
            }
            T* out = x + ((n * C + c) * H + h) * W + b * SW;
            if constexpr (SW == 2) {
                if (pairs) {
                    Pack<T, 2> v;
                    v.v[0] = acc[0];
                    v.v[1] = acc[1];
                    store_pack<2>(out, v);
                    continue;
                }
            }
#pragma unroll
            for (int dw = 0; dw < SW; ++dw)
                if (b * SW + dw < W) out[dw] = acc[dw];
        }
    }
}

// A grid-stride loop: any launch size is correct; the host launches conv2d.py's col2im_threads, a thread a block
// of pixels for the geometries below (COL2IM_BLOCKED there), a pixel for any other. The fixed geometries run
// with I = int only: the 64-bit kernel (arrays with offsets beyond 32 bits) takes the general path. (wb, ha, c)_(mul, shift): fast_div's
// arguments for ceil(W/sw), ceil(H/sh) and C, used by the fixed geometries.
template <typename T, typename S, typename I>
__device__ __forceinline__ void col2im_any(const S* __restrict__ cols, T* __restrict__ x, const T* __restrict__ bias,
                                           int has_bias, int act, T slope, index_t N, index_t C, index_t H, index_t W,
                                           int kh, int kw, int sh, int sw, int ph, int pw, index_t Ho, index_t Wo,
                                           unsigned wb_mul, unsigned wb_shift, unsigned ha_mul, unsigned ha_shift,
                                           unsigned c_mul, unsigned c_shift) {
    if constexpr (sizeof(I) == sizeof(int)) {
        const int n = (int)N, c = (int)C, h = (int)H, w = (int)W, ho = (int)Ho, wo = (int)Wo;
        const unsigned magic[6] = {wb_mul, wb_shift, ha_mul, ha_shift, c_mul, c_shift};
        if (kh == 3 && kw == 3 && sh == 1 && sw == 1)
            return col2im_blocks<T, S, 3, 3, 1, 1>(cols, x, bias, has_bias, act, slope, n, c, h, w, ph, pw, ho, wo,
                                                    magic);
        if (kh == 3 && kw == 3 && sh == 2 && sw == 2)
            return col2im_blocks<T, S, 3, 3, 2, 2>(cols, x, bias, has_bias, act, slope, n, c, h, w, ph, pw, ho, wo,
                                                    magic);
        if (kh == 4 && kw == 4 && sh == 2 && sw == 2)
            return col2im_blocks<T, S, 4, 4, 2, 2>(cols, x, bias, has_bias, act, slope, n, c, h, w, ph, pw, ho, wo,
                                                    magic);
        if (kh == 5 && kw == 5 && sh == 2 && sw == 2)
            return col2im_blocks<T, S, 5, 5, 2, 2>(cols, x, bias, has_bias, act, slope, n, c, h, w, ph, pw, ho, wo,
                                                    magic);
    }
    col2im_pixels<T, S, I>(cols, x, bias, has_bias, act, slope, (I)N, (I)C, (I)H, (I)W, kh, kw, sh, sw, ph, pw, (I)Ho,
                        (I)Wo);
}

template <typename T, typename I>
__global__ void col2im(const T* __restrict__ cols, T* __restrict__ x, const T* __restrict__ bias, int has_bias,
                       int act, T slope, index_t N, index_t C, index_t H, index_t W, int kh, int kw, int sh, int sw,
                       int ph, int pw, index_t Ho, index_t Wo, unsigned wb_mul, unsigned wb_shift, unsigned ha_mul,
                       unsigned ha_shift, unsigned c_mul, unsigned c_shift) {
    col2im_any<T, T, I>(cols, x, bias, has_bias, act, slope, N, C, H, W, kh, kw, sh, sw, ph, pw, Ho, Wo, wb_mul,
                        wb_shift, ha_mul, ha_shift, c_mul, c_shift);
}

// The same, cols as bfloat16 (the data-gradient GEMM's output at precision "bf16"), summed in T.
template <typename T, typename I>
__global__ void col2im_bf16(const bf16_t* __restrict__ cols, T* __restrict__ x, const T* __restrict__ bias,
                            int has_bias, int act, T slope, index_t N, index_t C, index_t H, index_t W, int kh,
                            int kw, int sh, int sw, int ph, int pw, index_t Ho, index_t Wo, unsigned wb_mul,
                            unsigned wb_shift, unsigned ha_mul, unsigned ha_shift, unsigned c_mul,
                            unsigned c_shift) {
    col2im_any<T, bf16_t, I>(cols, x, bias, has_bias, act, slope, N, C, H, W, kh, kw, sh, sw, ph, pw, Ho, Wo,
                             wb_mul, wb_shift, ha_mul, ha_shift, c_mul, c_shift);
}
