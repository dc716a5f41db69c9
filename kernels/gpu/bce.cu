// Binary cross-entropy on logits, loss and gradient in one pass. Per element, with s = sigmoid(z):
//   l  = -[t log s + (1 - t) log(1 - s)] = max(z, 0) - z t + log(1 + exp(-|z|))
//   dl/dz = s - t
// The stable form never exponentiates a positive number. The mean divides both by the count.
// A single block does it all: GAN batches are small, and one block needs no atomics, so the loss
// is bitwise reproducible. A GAN's targets are usually one constant (all real or all fake): with
// t_is_const the kernel uses t_const and never reads t, so no target array has to be made.
template <typename T>
__global__ void bce_with_logits(const T* __restrict__ z, const T* __restrict__ t, T t_const, int t_is_const,
                                T* __restrict__ loss, T* __restrict__ dz, index_t n) {
    __shared__ double smem[REDUCE_THREADS];
    const double inv_n = 1.0 / (double)n;
    double acc = 0.0;
    for (index_t i = threadIdx.x; i < n; i += blockDim.x) {
        const T zi = z[i];
        const T ti = t_is_const ? t_const : t[i];
        const T e = exp(-fabs(zi));
        acc += (double)(zi > T(0) ? zi : T(0)) - (double)zi * (double)ti + (double)log1p(e);
        const T s = zi >= T(0) ? T(1) / (T(1) + e) : e / (T(1) + e);
        dz[i] = (T)((double)(s - ti) * inv_n);
    }
    const double total = block_sum(acc, smem);
    if (threadIdx.x == 0) loss[0] = (T)(total * inv_n);
}
