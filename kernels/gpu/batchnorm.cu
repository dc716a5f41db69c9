// Batch normalization over every axis but 1. x is viewed as (N, C, S) with S = H*W (1 for
// BatchNorm1d); channel c's M = N*S values sit at (n*C + c)*S + s, so a block that owns a channel
// walks them with consecutive threads on consecutive s.
// Channels of few values: one block per channel computes the statistics and then uses them, all in
// one launch. Channels of many values: several blocks per channel (below). Sums are in double: the
// two-pass variance stays accurate for float32, and the result is deterministic.
// Index arithmetic is in I: int when every offset fits, long long otherwise (two instantiations of
// each kernel; the host picks): a 64-bit division per value costs more than the rest of the work.
// Fused with a following ReLU / LeakyReLU (the fusion plan: act, slope): the forward kernels apply
// epilogue_act to the rounded output, the backward ones form epilogue_grad(dy, y) wherever they read dy,
// y (gate) the fused forward's output: the same values as the separate activation layer's kernels.

template <typename I>
__device__ __forceinline__ I bn_offset(I m, I S, I C, I c) {
    const I n = m / S;
    return (n * C + c) * S + (m - n * S);
}

// Values begin .. end-1 of channel c: their mean, and the sum of their squared deviations from it,
// in a second pass over centred values (E[x^2] - E[x]^2 cancels catastrophically when |mean| >> std).
template <typename T, typename I>
__device__ __forceinline__ void bn_range_stats(const T* __restrict__ x, I C, I S, I c, I begin, I end, double* smem,
                                               double& mean, double& m2) {
    double acc = 0.0;
    for (I m = begin + (I)threadIdx.x; m < end; m += (I)blockDim.x) acc += (double)x[bn_offset(m, S, C, c)];
    mean = block_sum(acc, smem) / (double)(end - begin);
    acc = 0.0;
    for (I m = begin + (I)threadIdx.x; m < end; m += (I)blockDim.x) {
        const double d = (double)x[bn_offset(m, S, C, c)] - mean;
        acc += d * d;
    }
    m2 = block_sum(acc, smem);
}

// Values begin .. end-1 of channel c: the sums of dy and of dy * xhat.
template <typename T, typename I>
__device__ __forceinline__ void bn_range_grad_sums(const T* __restrict__ dy, const T* __restrict__ xhat,
                                                   const T* __restrict__ gate, int act, T slope, I C, I S, I c,
                                                   I begin, I end, double* smem, double& s_dy, double& s_dyx) {
    s_dy = 0.0;
    s_dyx = 0.0;
    for (I m = begin + (I)threadIdx.x; m < end; m += (I)blockDim.x) {
        const I k = bn_offset(m, S, C, c);
        const double g = (double)(act ? epilogue_grad(dy[k], gate[k], act, slope) : dy[k]);
        s_dy += g;
        s_dyx += g * (double)xhat[k];
    }
    s_dy = block_sum(s_dy, smem);
    s_dyx = block_sum(s_dyx, smem);
}

template <typename T, typename I>
__device__ __forceinline__ void batchnorm_forward_body(const T* __restrict__ x, const T* __restrict__ gamma,
                                                       const T* __restrict__ beta, T* __restrict__ y,
                                                       T* __restrict__ xhat, T* __restrict__ mean_out,
                                                       T* __restrict__ var_out, T* __restrict__ inv_std_out, I N, I C,
                                                       I S, double eps, int act, T slope, double* smem) {
    const I c = blockIdx.x;
    const I M = N * S;
    double mean, m2;
    bn_range_stats<T, I>(x, C, S, c, 0, M, smem, mean, m2);
    const double var = m2 / (double)M;
    const double inv_std = 1.0 / sqrt(var + eps);

    const T g = gamma[c];
    const T b = beta[c];
    for (I m = threadIdx.x; m < M; m += blockDim.x) {
        const I k = bn_offset(m, S, C, c);
        const T xh = (T)(((double)x[k] - mean) * inv_std);
        xhat[k] = xh;
        y[k] = epilogue_act(g * xh + b, act, slope);
    }
    if (threadIdx.x == 0) {
        mean_out[c] = (T)mean;
        var_out[c] = (T)var;
        inv_std_out[c] = (T)inv_std;
    }
}

template <typename T, typename I>
__global__ void batchnorm_forward(const T* __restrict__ x, const T* __restrict__ gamma, const T* __restrict__ beta,
                                  T* __restrict__ y, T* __restrict__ xhat, T* __restrict__ mean_out,
                                  T* __restrict__ var_out, T* __restrict__ inv_std_out, index_t N, index_t C,
                                  index_t S, double eps, int act, T slope) {
    __shared__ double smem[REDUCE_THREADS];
    batchnorm_forward_body<T, I>(x, gamma, beta, y, xhat, mean_out, var_out, inv_std_out, (I)N, (I)C, (I)S, eps, act,
                                 slope, smem);
}

// dbeta = sum dy, dgamma = sum dy*xhat, dx = gamma*inv_std/M * (M*dy - dbeta - xhat*dgamma).
template <typename T, typename I>
__device__ __forceinline__ void batchnorm_backward_body(const T* __restrict__ dy, const T* __restrict__ xhat,
                                                        const T* __restrict__ gate, int act, T slope,
                                                        const T* __restrict__ inv_std, const T* __restrict__ gamma,
                                                        T* __restrict__ dx, T* __restrict__ dgamma,
                                                        T* __restrict__ dbeta, I N, I C, I S, double* smem) {
    const I c = blockIdx.x;
    const I M = N * S;
    double s_dy, s_dyx;
    bn_range_grad_sums<T, I>(dy, xhat, gate, act, slope, C, S, c, 0, M, smem, s_dy, s_dyx);

    const double scale = (double)gamma[c] * (double)inv_std[c] / (double)M;
    for (I m = threadIdx.x; m < M; m += blockDim.x) {
        const I k = bn_offset(m, S, C, c);
        const T dz = act ? epilogue_grad(dy[k], gate[k], act, slope) : dy[k];
        dx[k] = (T)(scale * ((double)M * (double)dz - s_dy - (double)xhat[k] * s_dyx));
    }
    if (threadIdx.x == 0) {
        dgamma[c] = (T)s_dyx;
        dbeta[c] = (T)s_dy;
    }
}

template <typename T, typename I>
__global__ void batchnorm_backward(const T* __restrict__ dy, const T* __restrict__ xhat, const T* __restrict__ gate,
                                   int act, T slope, const T* __restrict__ inv_std, const T* __restrict__ gamma,
                                   T* __restrict__ dx, T* __restrict__ dgamma, T* __restrict__ dbeta, index_t N,
                                   index_t C, index_t S) {
    __shared__ double smem[REDUCE_THREADS];
    batchnorm_backward_body<T, I>(dy, xhat, gate, act, slope, inv_std, gamma, dx, dgamma, dbeta, (I)N, (I)C, (I)S,
                                  smem);
}

// Channels of many values: one block per channel would leave most of the GPU idle (a DCGAN layer
// has 64 to 128 channels of 8K to 32K values each), so the work splits three ways:
//   batchnorm_partial_stats  block (p, c) reduces chunk p of channel c to its mean and sum of
//                            squared deviations (two passes over a chunk that stays in cache);
//   batchnorm_finish_stats   one thread per channel combines the chunks in order (Chan, Golub and
//                            LeVeque's pairwise update), so the result is deterministic and keeps
//                            the two-pass accuracy when |mean| >> std;
//   batchnorm_normalize      one thread per value writes xhat and y.
// The backward pass is the same shape: partial sums of dy and dy*xhat, a per-channel finish, and
// one thread per value for dx.
template <typename T, typename I>
__global__ void batchnorm_partial_stats(const T* __restrict__ x, double* __restrict__ part_mean,
                                        double* __restrict__ part_m2, index_t N, index_t C_, index_t S_,
                                        index_t chunk) {
    __shared__ double smem[REDUCE_THREADS];
    const I C = (I)C_, S = (I)S_, M = (I)(N * S_);
    const I c = blockIdx.y;
    const I begin = (I)blockIdx.x * (I)chunk;
    const I end = min(M, begin + (I)chunk);
    double mean, m2;
    bn_range_stats<T, I>(x, C, S, c, begin, end, smem, mean, m2);
    if (threadIdx.x == 0) {
        part_mean[(index_t)c * gridDim.x + blockIdx.x] = mean;
        part_m2[(index_t)c * gridDim.x + blockIdx.x] = m2;
    }
}

// stats[c] = mean, stats[C + c] = inv_std (double, for the normalize pass).
template <typename T>
__global__ void batchnorm_finish_stats(const double* __restrict__ part_mean, const double* __restrict__ part_m2,
                                       double* __restrict__ stats, T* __restrict__ mean_out, T* __restrict__ var_out,
                                       T* __restrict__ inv_std_out, index_t C, index_t M, index_t chunk, index_t parts,
                                       double eps) {
    GRID_STRIDE_LOOP(c, C) {
        double n = 0.0, mean = 0.0, m2 = 0.0;
        for (index_t p = 0; p < parts; ++p) {
            const double nb = (double)min(chunk, M - p * chunk);
            const double delta = part_mean[c * parts + p] - mean;
            const double total = n + nb;
            mean += delta * nb / total;
            m2 += part_m2[c * parts + p] + delta * delta * n * nb / total;
            n = total;
        }
        const double var = m2 / (double)M;
        const double inv_std = 1.0 / sqrt(var + eps);
        stats[c] = mean;
        stats[C + c] = inv_std;
        mean_out[c] = (T)mean;
        var_out[c] = (T)var;
        inv_std_out[c] = (T)inv_std;
    }
}

template <typename T, typename I>
__global__ void batchnorm_normalize(const T* __restrict__ x, const T* __restrict__ gamma, const T* __restrict__ beta,
                                    const double* __restrict__ stats, T* __restrict__ y, T* __restrict__ xhat,
                                    index_t C_, index_t S_, index_t total_, int act, T slope) {
    const I C = (I)C_, S = (I)S_, total = (I)total_;
    for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (I)blockDim.x * gridDim.x) {
        const I c = (i / S) % C;
        const T xh = (T)(((double)x[i] - stats[c]) * stats[C_ + c]);
        xhat[i] = xh;
        y[i] = epilogue_act(gamma[c] * xh + beta[c], act, slope);
    }
}

// part[c * parts + p] = sum of dy over chunk p of channel c; part[(C + c) * parts + p] = sum of dy*xhat.
template <typename T, typename I>
__global__ void batchnorm_partial_grads(const T* __restrict__ dy, const T* __restrict__ xhat, const T* __restrict__ gate,
                                        int act, T slope, double* __restrict__ part, index_t N, index_t C_, index_t S_,
                                        index_t chunk) {
    __shared__ double smem[REDUCE_THREADS];
    const I C = (I)C_, S = (I)S_, M = (I)(N * S_);
    const I c = blockIdx.y;
    const I begin = (I)blockIdx.x * (I)chunk;
    const I end = min(M, begin + (I)chunk);
    double s_dy, s_dyx;
    bn_range_grad_sums<T, I>(dy, xhat, gate, act, slope, C, S, c, begin, end, smem, s_dy, s_dyx);
    if (threadIdx.x == 0) {
        part[(index_t)c * gridDim.x + blockIdx.x] = s_dy;
        part[((index_t)C + c) * gridDim.x + blockIdx.x] = s_dyx;
    }
}

// sums[c] = dbeta, sums[C + c] = dgamma (double, for the dx pass).
template <typename T>
__global__ void batchnorm_finish_grads(const double* __restrict__ part, double* __restrict__ sums,
                                       T* __restrict__ dgamma, T* __restrict__ dbeta, index_t C, index_t parts) {
    GRID_STRIDE_LOOP(c, C) {
        double s_dy = 0.0, s_dyx = 0.0;
        for (index_t p = 0; p < parts; ++p) {
            s_dy += part[c * parts + p];
            s_dyx += part[(C + c) * parts + p];
        }
        sums[c] = s_dy;
        sums[C + c] = s_dyx;
        dbeta[c] = (T)s_dy;
        dgamma[c] = (T)s_dyx;
    }
}

template <typename T, typename I>
__global__ void batchnorm_input_grad(const T* __restrict__ dy, const T* __restrict__ xhat,
                                     const T* __restrict__ gate, int act, T slope,
                                     const T* __restrict__ inv_std, const T* __restrict__ gamma,
                                     const double* __restrict__ sums, T* __restrict__ dx, index_t M_, index_t C_,
                                     index_t S_, index_t total_) {
    const I C = (I)C_, S = (I)S_, total = (I)total_;
    const double M = (double)M_;
    for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (I)blockDim.x * gridDim.x) {
        const I c = (i / S) % C;
        const double scale = (double)gamma[c] * (double)inv_std[c] / M;
        const T dz = act ? epilogue_grad(dy[i], gate[i], act, slope) : dy[i];
        dx[i] = (T)(scale * (M * (double)dz - sums[c] - (double)xhat[i] * sums[C_ + c]));
    }
}

// Inference with running statistics: a per-channel affine map, one thread per element.
template <typename T>
__global__ void batchnorm_inference(const T* __restrict__ x, const T* __restrict__ gamma, const T* __restrict__ beta,
                                    const T* __restrict__ running_mean, const T* __restrict__ running_var,
                                    T* __restrict__ y, index_t C, index_t S, double eps, index_t n) {
    GRID_STRIDE_LOOP(i, n) {
        const index_t c = (i / S) % C;
        const T inv_std = (T)(1.0 / sqrt((double)running_var[c] + eps));
        y[i] = (x[i] - running_mean[c]) * inv_std * gamma[c] + beta[c];
    }
}

// running = (1 - f) running + f statistic, for the mean and the unbiased variance (reference.batchnorm's
// batchnorm_update_running), in the buffers' dtype T with every product rounded on its own (mul_rn), as NumPy
// and CuPy round them, so the running statistics equal the reference's bits. One launch for what were six
// small element-wise launches per layer and batch (about 30 us of the DCGAN's GPU step). With a cumulative
// average (cumulative != 0), thread 0 counts the batch in count[0] on the device (so that a captured graph
// counts on every replay) before any thread uses f = 1/t; otherwise the host's keep = 1 - f, f and
// f_var = f*M/(M-1) are used. One block, threads striding over the channels.
template <typename T>
__device__ __forceinline__ T mul_rn(T a, T b);
template <>
__device__ __forceinline__ float mul_rn<float>(float a, float b) { return __fmul_rn(a, b); }
template <>
__device__ __forceinline__ double mul_rn<double>(double a, double b) { return __dmul_rn(a, b); }

template <typename T>
__global__ void batchnorm_update_running(T* __restrict__ running_mean, T* __restrict__ running_var,
                                         const T* __restrict__ mean, const T* __restrict__ var, T* count,
                                         int cumulative, T keep, T f, T f_var, T m, T m_less_1, index_t C) {
    __shared__ T factors[3];
    if (threadIdx.x == 0) {
        if (cumulative) {
            const T t = count[0] + T(1);
            count[0] = t;
            f = T(1) / t;
            keep = T(1) - f;
            f_var = mul_rn(f, m) / m_less_1;
        }
        factors[0] = keep;
        factors[1] = f;
        factors[2] = f_var;
    }
    __syncthreads();
    keep = factors[0];
    f = factors[1];
    f_var = factors[2];
    for (index_t c = threadIdx.x; c < C; c += blockDim.x) {
        running_mean[c] = mul_rn(running_mean[c], keep) + mul_rn(f, mean[c]);
        running_var[c] = mul_rn(running_var[c], keep) + mul_rn(f_var, var[c]);
    }
}
