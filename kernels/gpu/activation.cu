// Elementwise activations and their backward passes, one thread per element (grid-stride).
// Backward passes take whichever of x or y the derivative is cheapest in, as the contract says.

template <typename T>
__global__ void relu_forward(const T* __restrict__ x, T* __restrict__ y, index_t n) {
    GRID_STRIDE_LOOP(i, n) {
        const T v = x[i];
        y[i] = v > T(0) ? v : T(0);
    }
}

template <typename T>
__global__ void relu_backward(const T* __restrict__ dy, const T* __restrict__ y, T* __restrict__ dx, index_t n) {
    GRID_STRIDE_LOOP(i, n) { dx[i] = y[i] > T(0) ? dy[i] : T(0); }
}

template <typename T>
__global__ void leaky_relu_forward(const T* __restrict__ x, T* __restrict__ y, T slope, index_t n) {
    GRID_STRIDE_LOOP(i, n) {
        const T v = x[i];
        y[i] = v > T(0) ? v : slope * v;
    }
}

template <typename T>
__global__ void leaky_relu_backward(const T* __restrict__ dy, const T* __restrict__ x, T* __restrict__ dx,
                                    T slope, index_t n) {
    GRID_STRIDE_LOOP(i, n) { dx[i] = x[i] > T(0) ? dy[i] : slope * dy[i]; }
}

// exp is only ever taken of -|x|, so it cannot overflow for large |x| of either sign.
template <typename T>
__global__ void sigmoid_forward(const T* __restrict__ x, T* __restrict__ y, index_t n) {
    GRID_STRIDE_LOOP(i, n) {
        const T v = x[i];
        const T e = exp(-fabs(v));
        y[i] = v >= T(0) ? T(1) / (T(1) + e) : e / (T(1) + e);
    }
}

template <typename T>
__global__ void sigmoid_backward(const T* __restrict__ dy, const T* __restrict__ y, T* __restrict__ dx, index_t n) {
    GRID_STRIDE_LOOP(i, n) {
        const T s = y[i];
        dx[i] = dy[i] * s * (T(1) - s);
    }
}

template <typename T>
__global__ void tanh_forward(const T* __restrict__ x, T* __restrict__ y, index_t n) {
    GRID_STRIDE_LOOP(i, n) { y[i] = tanh(x[i]); }
}

template <typename T>
__global__ void tanh_backward(const T* __restrict__ dy, const T* __restrict__ y, T* __restrict__ dx, index_t n) {
    GRID_STRIDE_LOOP(i, n) {
        const T t = y[i];
        dx[i] = dy[i] * (T(1) - t * t);
    }
}

// The fused epilogue on its own (epilogue_act / epilogue_grad of _common.cu), for the weight ops whose product
// kernel does not apply it itself (the implicit-GEMM route, ConvTranspose2d's backward): in place on y, and
// dz = dy * act'(y) from the fused output y.
template <typename T>
__global__ void fused_act(T* __restrict__ y, T slope, index_t n) {
    GRID_STRIDE_LOOP(i, n) { y[i] = epilogue_act(y[i], 1, slope); }
}

template <typename T>
__global__ void fused_act_grad(const T* __restrict__ dy, const T* __restrict__ y, T* __restrict__ dz, T slope,
                               index_t n) {
    GRID_STRIDE_LOOP(i, n) { dz[i] = epilogue_grad(dy[i], y[i], 1, slope); }
}
