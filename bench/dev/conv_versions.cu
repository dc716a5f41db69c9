// Earlier versions of the convolution helpers, kept to be timed against the production kernels
// (kernels/gpu/conv2d.cu and layout.cu, the latest version of each op). Each is a standalone copy of
// the code of its time, so that later changes to production leave it as it was measured. Same layouts and contracts:
// cols is (C*kh*kw, N*Ho*Wo), row r = (c*kh + i)*kw + j, column l = (n*Ho + oh)*Wo + ow.
// bench/dev/kernel_versions.py says what each version changed and what it measured.

// im2col v1: one thread per element of cols, every index decoded with 64-bit divisions.
template <typename T>
__global__ void im2col_v1(const T* __restrict__ x, T* __restrict__ cols, index_t N, index_t C, index_t H, index_t W,
                          int kh, int kw, int sh, int sw, int ph, int pw, index_t Ho, index_t Wo) {
    const index_t L = N * Ho * Wo;
    GRID_STRIDE_LOOP(e, C * kh * kw * L) {
        const index_t r = e / L;
        const index_t l = e - r * L;
        const index_t ow = l % Wo;
        const index_t t = l / Wo;
        const index_t oh = t % Ho;
        const index_t n = t / Ho;
        const int j = (int)(r % kw);
        const index_t t2 = r / kw;
        const int i = (int)(t2 % kh);
        const index_t c = t2 / kh;
        const index_t h = oh * sh - ph + i;
        const index_t w = ow * sw - pw + j;
        cols[e] = (h >= 0 && h < H && w >= 0 && w < W) ? x[((n * C + c) * H + h) * W + w] : T(0);
    }
}

// col2im v1 and v2: a gather, one thread per pixel of x, over every one of the kh*kw taps, each
// tested for whether it reaches the pixel (a stride-2 tap does one time in two per axis).
// v1 indexes with long long (I = long long); v2 is the same loop with int wherever every offset fits.
template <typename T, typename I>
__device__ __forceinline__ void col2im_all_taps(const T* __restrict__ cols, T* __restrict__ x, I N, I C, I H, I W,
                                                int kh, int kw, int sh, int sw, int ph, int pw, I Ho, I Wo) {
    const I L = N * Ho * Wo;
    const I total = N * C * H * W;
    for (I e = (I)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += (I)blockDim.x * gridDim.x) {
        const I w = e % W;
        I t = e / W;
        const I h = t % H;
        t /= H;
        const I c = t % C;
        const I n = t / C;
        T acc = T(0);
        for (int i = 0; i < kh; ++i) {
            const I hh = h + ph - i;  // tap i of output row oh lands on h when oh*sh = h + ph - i
            if (hh < 0 || hh % sh != 0) continue;
            const I oh = hh / sh;
            if (oh >= Ho) continue;
            for (int j = 0; j < kw; ++j) {
                const I ww = w + pw - j;
                if (ww < 0 || ww % sw != 0) continue;
                const I ow = ww / sw;
                if (ow >= Wo) continue;
                acc += cols[(((c * kh) + i) * kw + j) * L + (n * Ho + oh) * Wo + ow];
            }
        }
        x[e] = acc;
    }
}

template <typename T>
__global__ void col2im_v1(const T* __restrict__ cols, T* __restrict__ x, index_t N, index_t C, index_t H, index_t W,
                          int kh, int kw, int sh, int sw, int ph, int pw, index_t Ho, index_t Wo) {
    col2im_all_taps<T, long long>(cols, x, N, C, H, W, kh, kw, sh, sw, ph, pw, Ho, Wo);
}

template <typename T>
__global__ void col2im_v2(const T* __restrict__ cols, T* __restrict__ x, index_t N, index_t C, index_t H, index_t W,
                          int kh, int kw, int sh, int sw, int ph, int pw, index_t Ho, index_t Wo) {
    col2im_all_taps<T, int>(cols, x, (int)N, (int)C, (int)H, (int)W, kh, kw, sh, sw, ph, pw, (int)Ho, (int)Wo);
}

// col2im v3: only the taps that can reach the pixel. Tap i of output row oh lands on row h when
// oh*sh = h + ph - i, so only i = (h + ph) mod sh, then every sh-th, can, with oh falling by one from
// tap to tap: about (kh/sh) * (kw/sw) of the kh * kw taps, visited in the same order as v1.
template <typename T>
__global__ void col2im_v3(const T* __restrict__ cols, T* __restrict__ x, index_t N_, index_t C_, index_t H_,
                          index_t W_, int kh, int kw, int sh, int sw, int ph, int pw, index_t Ho_, index_t Wo_) {
    const int N = (int)N_, C = (int)C_, H = (int)H_, W = (int)W_, Ho = (int)Ho_, Wo = (int)Wo_;
    const int L = N * Ho * Wo;
    const int total = N * C * H * W;
    for (int e = blockIdx.x * blockDim.x + threadIdx.x; e < total; e += blockDim.x * gridDim.x) {
        int t = e / W;
        const int w = e - t * W;
        int u = t / H;
        const int h = t - u * H;
        const int n = u / C;
        const int c = u - n * C;
        const int hp = h + ph, wp = w + pw;
        const int i0 = hp % sh, j0 = wp % sw;
        const int ow0 = (wp - j0) / sw;
        T acc = T(0);
        int oh = (hp - i0) / sh;
        for (int i = i0; i < kh && oh >= 0; i += sh, --oh) {
            if (oh >= Ho) continue;
            const T* base = cols + (c * kh + i) * kw * L + (n * Ho + oh) * Wo;
            int ow = ow0;
            for (int j = j0; j < kw && ow >= 0; j += sw, --ow) {
                if (ow >= Wo) continue;
                acc += base[j * L + ow];
            }
        }
        x[e] = acc;
    }
}

// channel_sum v1 (the bias gradient): one block per channel sums all N*S values of its channel.
template <typename T>
__global__ void channel_sum_v1(const T* __restrict__ x, T* __restrict__ out, index_t N, index_t C, index_t S) {
    __shared__ double smem[REDUCE_THREADS];
    const index_t c = blockIdx.x;
    const index_t M = N * S;
    double acc = 0.0;
    for (index_t m = threadIdx.x; m < M; m += blockDim.x) {
        const index_t n = m / S;
        acc += (double)x[(n * C + c) * S + (m - n * S)];
    }
    const double total = block_sum(acc, smem);
    if (threadIdx.x == 0) out[c] = (T)total;
}

// col2im v4: v3's loop (only the taps that reach the pixel, same order, so the same bits) with the
// pixels numbered phase by phase. Pixels whose (h + ph) mod sh and (w + pw) mod sw agree take the same
// taps, so a warp of them runs the tap loops in lockstep and reads consecutive entries of each cols
// row; in v3 neighbouring pixels alternate between phases and a warp runs the longest loop of either.
// Thread e is pixel (h, w) = (rh + a*sh, rw + b*sw) of plane (n, c), with
// e = ((((n*C + c)*sh + rh)*sw + rw)*Ha + a)*Wb + b.
template <typename T, typename I>
__device__ __forceinline__ T col2im_gather(const T* __restrict__ cols, I L, I c, I n, I h, I w, int kh, int kw,
                                           int sh, int sw, int ph, int pw, I Ho, I Wo) {
    const I hp = h + ph, wp = w + pw;
    const int i0 = (int)(hp % sh), j0 = (int)(wp % sw);
    const I ow0 = (wp - j0) / sw;
    T acc = T(0);
    I oh = (hp - i0) / sh;
    for (int i = i0; i < kh && oh >= 0; i += sh, --oh) {
        if (oh >= Ho) continue;
        const T* base = cols + (c * kh + i) * kw * L + (n * Ho + oh) * Wo;
        I ow = ow0;
        for (int j = j0; j < kw && ow >= 0; j += sw, --ow) {
            if (ow >= Wo) continue;
            acc += base[(I)j * L + ow];
        }
    }
    return acc;
}

template <typename T, typename I>
__device__ __forceinline__ void col2im_by_phase(const T* __restrict__ cols, T* __restrict__ x, I N, I C, I H, I W,
                                                int kh, int kw, int sh, int sw, int ph, int pw, I Ho, I Wo) {
    const I L = N * Ho * Wo;
    const I Ha = (H + sh - 1) / sh, Wb = (W + sw - 1) / sw;
    const I total = N * C * sh * sw * Ha * Wb;
    for (I e = (I)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += (I)blockDim.x * gridDim.x) {
        I t = e / Wb;
        const I b = e - t * Wb;
        I u = t / Ha;
        const I a = t - u * Ha;
        t = u / sw;
        const int rw = (int)(u - t * sw);
        u = t / sh;
        const int rh = (int)(t - u * sh);
        const I n = u / C;
        const I c = u - n * C;
        const I h = rh + a * sh, w = rw + b * sw;
        if (h >= H || w >= W) continue;
        x[((n * C + c) * H + h) * W + w] = col2im_gather<T, I>(cols, L, c, n, h, w, kh, kw, sh, sw, ph, pw, Ho, Wo);
    }
}

template <typename T>
__global__ void col2im_v4(const T* __restrict__ cols, T* __restrict__ x, index_t N, index_t C, index_t H, index_t W,
                          int kh, int kw, int sh, int sw, int ph, int pw, index_t Ho, index_t Wo) {
    col2im_by_phase<T, int>(cols, x, (int)N, (int)C, (int)H, (int)W, kh, kw, sh, sw, ph, pw, (int)Ho, (int)Wo);
}

// col2im v5: v4 with a two-dimensional grid: blockIdx.y walks the (n, c, rh, rw) planes, x the pixels
// of one phase, so a thread decodes its pixel with one division instead of five.
template <typename T>
__global__ void col2im_v5(const T* __restrict__ cols, T* __restrict__ x, index_t N_, index_t C_, index_t H_,
                          index_t W_, int kh, int kw, int sh, int sw, int ph, int pw, index_t Ho_, index_t Wo_) {
    const int N = (int)N_, C = (int)C_, H = (int)H_, W = (int)W_, Ho = (int)Ho_, Wo = (int)Wo_;
    const int L = N * Ho * Wo;
    const int Ha = (H + sh - 1) / sh, Wb = (W + sw - 1) / sw;
    const int planes = N * C * sh * sw, per_plane = Ha * Wb;
    for (int p = blockIdx.y; p < planes; p += gridDim.y) {
        const int rw = p % sw;
        const int q = p / sw;
        const int rh = q % sh;
        const int nc = q / sh;
        const int n = nc / C, c = nc - (nc / C) * C;
        for (int e = blockIdx.x * blockDim.x + threadIdx.x; e < per_plane; e += blockDim.x * gridDim.x) {
            const int a = e / Wb;
            const int h = rh + a * sh, w = rw + (e - a * Wb) * sw;
            if (h >= H || w >= W) continue;
            x[(nc * H + h) * W + w] = col2im_gather<T, int>(cols, L, c, n, h, w, kh, kw, sh, sw, ph, pw, Ho, Wo);
        }
    }
}

// The taps that reach pixel (hp, wp) of the padded image (hp = h + ph, wp = w + pw), as v6 and v7 gather them:
// tap i0 = hp mod SH first, at output row (hp - i0) / SH, then every SH-th tap a row up (likewise for columns).
template <typename T, typename S, int KH, int KW, int SH, int SW>
__device__ __forceinline__ T phase_taps(const S* __restrict__ cols, int L, int c, int n, int hp, int wp, int Ho,
                                        int Wo) {
    const int i0 = hp % SH, j0 = wp % SW;
    const int oh0 = (hp - i0) / SH, ow0 = (wp - j0) / SW;
    T acc = T(0);
#pragma unroll
    for (int ti = 0; ti < (KH + SH - 1) / SH; ++ti) {
        const int i = i0 + ti * SH, oh = oh0 - ti;
        if (i < KH && oh >= 0 && oh < Ho) {
            const S* base = cols + (c * KH + i) * KW * L + (n * Ho + oh) * Wo;
#pragma unroll
            for (int tj = 0; tj < (KW + SW - 1) / SW; ++tj) {
                const int j = j0 + tj * SW, ow = ow0 - tj;
                if (j < KW && ow >= 0 && ow < Wo) acc += widen(base[j * L + ow]);
            }
        }
    }
    return acc;
}

// col2im v6: production's col2im_phases before its three divisions by launch-constant values (Wb, Ha, C)
// became fast_div (v7, production since the seventh session). ncu of this version in the DCGAN step (H200,
// sixth session): compute (SM) throughput 79%, DRAM 12-34% of peak, three ~25-instruction div.s32 per pixel.
template <typename T, int KH, int KW, int SH, int SW>
__device__ __forceinline__ void col2im_phases_div(const T* __restrict__ cols, T* __restrict__ x, int N, int C, int H,
                                                  int W, int ph, int pw, int Ho, int Wo) {
    const int L = N * Ho * Wo;
    const int Ha = (H + SH - 1) / SH, Wb = (W + SW - 1) / SW;
    const int total = N * C * SH * SW * Ha * Wb;
    for (int e = blockIdx.x * blockDim.x + threadIdx.x; e < total; e += blockDim.x * gridDim.x) {
        int t = e / Wb;
        const int b = e - t * Wb;
        int u = t / Ha;
        const int a = t - u * Ha;
        t = u / SW;
        const int rw = u - t * SW;
        u = t / SH;
        const int rh = t - u * SH;
        const int n = u / C;
        const int c = u - n * C;
        const int h = rh + a * SH, w = rw + b * SW;
        if (h >= H || w >= W) continue;
        x[((n * C + c) * H + h) * W + w] = phase_taps<T, T, KH, KW, SH, SW>(cols, L, c, n, h + ph, w + pw, Ho, Wo);
    }
}

// The seed models' geometries as v6 has them; any other geometry takes v4 (the launch has v4's threads).
template <typename T>
__global__ void col2im_v6(const T* __restrict__ cols, T* __restrict__ x, index_t N, index_t C, index_t H, index_t W,
                          int kh, int kw, int sh, int sw, int ph, int pw, index_t Ho, index_t Wo) {
    const int n = (int)N, c = (int)C, h = (int)H, w = (int)W, ho = (int)Ho, wo = (int)Wo;
#define COL2IM_V6(KH_, SH_) return col2im_phases_div<T, KH_, KH_, SH_, SH_>(cols, x, n, c, h, w, ph, pw, ho, wo)
    if (kh == 3 && kw == 3 && sh == 1 && sw == 1) COL2IM_V6(3, 1);
    if (kh == 3 && kw == 3 && sh == 2 && sw == 2) COL2IM_V6(3, 2);
    if (kh == 4 && kw == 4 && sh == 2 && sw == 2) COL2IM_V6(4, 2);
    if (kh == 5 && kw == 5 && sh == 2 && sw == 2) COL2IM_V6(5, 2);
#undef COL2IM_V6
    col2im_by_phase<T, int>(cols, x, n, c, h, w, kh, kw, sh, sw, ph, pw, ho, wo);
}

// col2im v7: production's col2im_phases (sixth to ninth session): one thread a pixel, the pixels numbered phase
// by phase, with the kernel and stride fixed at compile time and fast_div for Wb, Ha and C. v8 (production since
// the ninth session) gathers a whole sh x sw block of phases a thread. S: what cols hold (T, or bfloat16 bits).
template <typename T, typename S, int KH, int KW, int SH, int SW>
__device__ __forceinline__ void col2im_phases_v7(const S* __restrict__ cols, T* __restrict__ x, int N, int C, int H,
                                                 int W, int ph, int pw, int Ho, int Wo, const unsigned* magic) {
    const int L = N * Ho * Wo;
    const int Ha = (H + SH - 1) / SH, Wb = (W + SW - 1) / SW;
    const int total = N * C * SH * SW * Ha * Wb;
    for (int e = blockIdx.x * blockDim.x + threadIdx.x; e < total; e += blockDim.x * gridDim.x) {
        int t = fast_div(e, Wb, magic[0], magic[1]);
        const int b = e - t * Wb;
        int u = fast_div(t, Ha, magic[2], magic[3]);
        const int a = t - u * Ha;
        t = u / SW;
        const int rw = u - t * SW;
        u = t / SH;
        const int rh = t - u * SH;
        const int n = fast_div(u, C, magic[4], magic[5]);
        const int c = u - n * C;
        const int h = rh + a * SH, w = rw + b * SW;
        if (h >= H || w >= W) continue;
        x[((n * C + c) * H + h) * W + w] = phase_taps<T, S, KH, KW, SH, SW>(cols, L, c, n, h + ph, w + pw, Ho, Wo);
    }
}

// The seed models' geometries only (the harness's cases); launch with v4's threads (the phase-padded pixels).
template <typename T, typename S>
__device__ __forceinline__ void col2im_v7_any(const S* __restrict__ cols, T* __restrict__ x, index_t N, index_t C,
                                              index_t H, index_t W, int kh, int kw, int sh, int sw, int ph, int pw,
                                              index_t Ho, index_t Wo, unsigned wb_mul, unsigned wb_shift,
                                              unsigned ha_mul, unsigned ha_shift, unsigned c_mul, unsigned c_shift) {
    const int n = (int)N, c = (int)C, h = (int)H, w = (int)W, ho = (int)Ho, wo = (int)Wo;
    const unsigned magic[6] = {wb_mul, wb_shift, ha_mul, ha_shift, c_mul, c_shift};
#define COL2IM_V7(KH_, SH_) return col2im_phases_v7<T, S, KH_, KH_, SH_, SH_>(cols, x, n, c, h, w, ph, pw, ho, wo, magic)
    if (kh == 3 && kw == 3 && sh == 1 && sw == 1) COL2IM_V7(3, 1);
    if (kh == 3 && kw == 3 && sh == 2 && sw == 2) COL2IM_V7(3, 2);
    if (kh == 4 && kw == 4 && sh == 2 && sw == 2) COL2IM_V7(4, 2);
    if (kh == 5 && kw == 5 && sh == 2 && sw == 2) COL2IM_V7(5, 2);
#undef COL2IM_V7
}

template <typename T>
__global__ void col2im_v7(const T* __restrict__ cols, T* __restrict__ x, index_t N, index_t C, index_t H, index_t W,
                          int kh, int kw, int sh, int sw, int ph, int pw, index_t Ho, index_t Wo, unsigned wb_mul,
                          unsigned wb_shift, unsigned ha_mul, unsigned ha_shift, unsigned c_mul, unsigned c_shift) {
    col2im_v7_any<T, T>(cols, x, N, C, H, W, kh, kw, sh, sw, ph, pw, Ho, Wo, wb_mul, wb_shift, ha_mul, ha_shift, c_mul,
                        c_shift);
}

template <typename T>
__global__ void col2im_v7_bf16(const bf16_t* __restrict__ cols, T* __restrict__ x, index_t N, index_t C, index_t H,
                               index_t W, int kh, int kw, int sh, int sw, int ph, int pw, index_t Ho, index_t Wo,
                               unsigned wb_mul, unsigned wb_shift, unsigned ha_mul, unsigned ha_shift, unsigned c_mul,
                               unsigned c_shift) {
    col2im_v7_any<T, bf16_t>(cols, x, N, C, H, W, kh, kw, sh, sw, ph, pw, Ho, Wo, wb_mul, wb_shift, ha_mul, ha_shift,
                             c_mul, c_shift);
}

// The layout changes of kernels/gpu/layout.cu, v1: production's before its two divisions per element by
// launch-constant values (the plane size S, then C or N) became fast_div (v2, production since the seventh
// session). 32-bit indices only (the harness's cases fit).
template <typename T>
__global__ void cns_to_ncs_v1(const T* __restrict__ src, T* __restrict__ dst, const T* __restrict__ bias,
                              int has_bias, int act, T slope, index_t N_, index_t C_, index_t S_) {
    const int N = (int)N_, C = (int)C_, S = (int)S_;
    const int total = N * C * S;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += blockDim.x * gridDim.x) {
        const int t = i / S;
        const int s = i - t * S;
        const int n = t / C;
        const int c = t - n * C;
        T v = src[(c * N + n) * S + s];
        if (has_bias) v += bias[c];
        dst[i] = epilogue_act(v, act, slope);
    }
}

template <typename T>
__global__ void ncs_to_cns_v1(const T* __restrict__ src, T* __restrict__ dst, const T* __restrict__ gate, int act,
                              T slope, index_t N_, index_t C_, index_t S_) {
    const int N = (int)N_, C = (int)C_, S = (int)S_;
    const int total = N * C * S;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += blockDim.x * gridDim.x) {
        const int t = i / S;
        const int s = i - t * S;
        const int c = t / N;
        const int n = t - c * N;
        const int j = (n * C + c) * S + s;
        dst[i] = act ? epilogue_grad(src[j], gate[j], act, slope) : src[j];
    }
}
