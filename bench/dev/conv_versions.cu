// Earlier versions of the convolution helpers, kept to be timed against the production kernels
// (kernels/gpu/conv2d.cu and layout.cu, the latest version of each op). Same layouts and contracts:
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

// col2im v6: v4 with the kernel size and stride as compile-time constants for the geometries of the
// seed models (3x3 stride 1, 3x3 stride 2, 5x5 stride 2), and v4's loop for any other. The tap loops
// unroll, so a thread issues all of its loads before the first one returns instead of one per trip
// through a loop with runtime bounds. Same taps in the same order as v3 and v4: the same bits.
template <typename T, int KH, int KW, int SH, int SW>
__device__ __forceinline__ T col2im_gather_fixed(const T* __restrict__ cols, int L, int c, int n, int h, int w, int ph,
                                                 int pw, int Ho, int Wo) {
    const int hp = h + ph, wp = w + pw;
    const int i0 = hp % SH, j0 = wp % SW;
    const int oh0 = (hp - i0) / SH, ow0 = (wp - j0) / SW;
    T acc = T(0);
#pragma unroll
    for (int ti = 0; ti < (KH + SH - 1) / SH; ++ti) {
        const int i = i0 + ti * SH, oh = oh0 - ti;
        if (i < KH && oh >= 0 && oh < Ho) {
            const T* base = cols + (c * KH + i) * KW * L + (n * Ho + oh) * Wo;
#pragma unroll
            for (int tj = 0; tj < (KW + SW - 1) / SW; ++tj) {
                const int j = j0 + tj * SW, ow = ow0 - tj;
                if (j < KW && ow >= 0 && ow < Wo) acc += base[j * L + ow];
            }
        }
    }
    return acc;
}

template <typename T, int KH, int KW, int SH, int SW>
__device__ __forceinline__ void col2im_by_phase_fixed(const T* __restrict__ cols, T* __restrict__ x, int N, int C,
                                                      int H, int W, int ph, int pw, int Ho, int Wo) {
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
        x[((n * C + c) * H + h) * W + w] = col2im_gather_fixed<T, KH, KW, SH, SW>(cols, L, c, n, h, w, ph, pw, Ho, Wo);
    }
}

template <typename T>
__global__ void col2im_v6(const T* __restrict__ cols, T* __restrict__ x, index_t N_, index_t C_, index_t H_,
                          index_t W_, int kh, int kw, int sh, int sw, int ph, int pw, index_t Ho_, index_t Wo_) {
    const int N = (int)N_, C = (int)C_, H = (int)H_, W = (int)W_, Ho = (int)Ho_, Wo = (int)Wo_;
    if (kh == 3 && kw == 3 && sh == 1 && sw == 1)
        col2im_by_phase_fixed<T, 3, 3, 1, 1>(cols, x, N, C, H, W, ph, pw, Ho, Wo);
    else if (kh == 3 && kw == 3 && sh == 2 && sw == 2)
        col2im_by_phase_fixed<T, 3, 3, 2, 2>(cols, x, N, C, H, W, ph, pw, Ho, Wo);
    else if (kh == 5 && kw == 5 && sh == 2 && sw == 2)
        col2im_by_phase_fixed<T, 5, 5, 2, 2>(cols, x, N, C, H, W, ph, pw, Ho, Wo);
    else
        col2im_by_phase<T, int>(cols, x, N, C, H, W, kh, kw, sh, sw, ph, pw, Ho, Wo);
}
