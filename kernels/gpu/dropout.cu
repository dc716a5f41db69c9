// Inverted dropout with an explicit mask (1 = kept). The mask is bytes, bool or uint8 alike,
// so the layer can draw it however it likes and replay it in the backward pass.

template <typename T>
__global__ void dropout_apply(const T* __restrict__ src, const unsigned char* __restrict__ mask, T* __restrict__ dst,
                              T scale, index_t n) {
    GRID_STRIDE_LOOP(i, n) { dst[i] = mask[i] ? src[i] * scale : T(0); }
}
