"""A NumPy walk-through of kernels/gpu/conv_igemm.cu's index math, checked against the reference convolution.

No GPU needed: every thread's loads (which element of A and B it gathers, with its masks), the swizzled
shared-memory tiles, the mma.sync fragment ownership (m16n8k8 TF32, m16n8k16 BF16, per the PTX ISA) or the
SIMT sub-tile, and the epilogue's scatter into NCHW are replayed element by element on small problems with
ragged edges, in float64. A mistake in any of them makes the result differ from tinygan's reference conv.

    python -m bench.dev.igemm_emulate
"""

from __future__ import annotations

import itertools
import sys

import numpy as np

FPROP, DGRAD, WGRAD = 0, 1, 2
SIMT, TF32, BF16 = 0, 1, 2
# (BM, BN, BK, THREADS, WM, WN) of IgCfg<0>, <1>, <2>
CFGS = {0: (64, 64, 32, 128, 2, 2), 1: (128, 128, 16, 256, 2, 4), 2: (64, 128, 16, 128, 2, 2)}
# 3 and 4 map their tiles as 1 and 2 do (they copy them with cp.async instead of through registers).
CFGS[3], CFGS[4] = CFGS[1], CFGS[2]
BM, BN, BK, THREADS, WM, WN = CFGS[0]


def use_cfg(cfg: int) -> None:
    global BM, BN, BK, THREADS, WM, WN
    BM, BN, BK, THREADS, WM, WN = CFGS[cfg]


def swz(row: int, k: int) -> int:
    if BK == 32:
        return row * BK + (k ^ (((row & 7) << 2) | ((row >> 3) & 3)))
    return row * 16 + (k ^ ((((row >> 1) & 3) << 2) | ((row >> 3) & 3)))


def run_kernel(mode, prec, a_src, b_src, out, bias, pbias, N, C, H, W, Cout, kh, kw, sh, sw, ph, pw, Ho, Wo, kps, grid):
    """One launch: every block of ``grid`` (x, y, z), every thread, as conv_igemm<MODE, PREC>."""
    for bz, by, bx in itertools.product(range(grid[2]), range(grid[1]), range(grid[0])):
        block(
            mode,
            prec,
            a_src,
            b_src,
            out,
            bias,
            pbias,
            N,
            C,
            H,
            W,
            Cout,
            kh,
            kw,
            sh,
            sw,
            ph,
            pw,
            Ho,
            Wo,
            kps,
            bx,
            by,
            bz,
        )


def block(
    mode, prec, a_src, b_src, out, bias, pbias, N, C, H, W, Cout, kh, kw, sh, sw, ph, pw, Ho, Wo, kps, bx, by, bz
):
    m0, n0 = by * BM, bx * BN
    HoWo, khkw = Ho * Wo, kh * kw
    kbeg = 0
    rh = rw = i0 = j0 = dh = dw = 0
    nti = ntj = Hq = Wq = 1
    if mode == FPROP:
        M, Ng, kend = Cout, N * HoWo, C * khkw
    elif mode == DGRAD:
        rh, rw = bz // sw, bz % sw
        i0, j0 = (rh + ph) % sh, (rw + pw) % sw
        nti = (kh - i0 + sh - 1) // sh if i0 < kh else 0
        ntj = (kw - j0 + sw - 1) // sw if j0 < kw else 0
        dh, dw = (rh + ph - i0) // sh, (rw + pw - j0) // sw
        Hq, Wq = (H + sh - 1) // sh, (W + sw - 1) // sw
        M, Ng, kend = C, N * Hq * Wq, Cout * nti * ntj
    else:
        M, Ng = Cout, C * khkw
        kbeg = bz * kps
        kend = min(N * HoWo, kbeg + kps)
    if m0 >= M or n0 >= Ng:
        return
    As = np.full(BM * BK, np.nan)
    Bs = np.full(BN * BK, np.nan)
    A_PER, B_PER, A_ROWS = BM * BK // THREADS, BN * BK // THREADS, THREADS // BK
    ACC = (BM // WM) * (BN // WN) // 32
    acc = np.zeros((THREADS, ACC))
    bsum = np.zeros((THREADS, A_PER))
    want_bsum = mode == WGRAD and pbias is not None and bx == 0
    for k0 in range(kbeg, kend, BK):
        for tid in range(THREADS):
            a_row, a_k = tid // BK, tid % BK
            b_col, b_k = tid % BN, B_PER * (tid // BN)
            # -- A loads
            ak = k0 + a_k
            ak_ok = ak < kend
            a_reg = np.zeros(A_PER)
            for r in range(A_PER):
                m = m0 + a_row + A_ROWS * r
                if not (ak_ok and m < M):
                    continue
                if mode == FPROP:
                    a_reg[r] = a_src[m * C * khkw + ak]
                elif mode == DGRAD:
                    nt = nti * ntj
                    co = ak // nt
                    rr = ak - co * nt
                    t, u = rr // ntj, rr % ntj
                    a_reg[r] = a_src[co * C * khkw + (i0 + sh * t) * kw + (j0 + sw * u) + m * khkw]
                else:
                    img = ak // HoWo
                    a_reg[r] = a_src[img * Cout * HoWo + (ak - img * HoWo) + m * HoWo]
            if want_bsum:
                bsum[tid] += a_reg
            # -- B loads: column bn, rows kb .. kb + 15, stepped by counting as the kernel does
            bn = n0 + b_col
            bn_ok = bn < Ng
            kb = k0 + b_k
            b_reg = np.zeros(B_PER)
            if mode == FPROP:
                if bn_ok:
                    img = bn // HoWo
                    p = bn - img * HoWo
                    oh = p // Wo
                    by_, bx_ = oh * sh - ph, (p - oh * Wo) * sw - pw
                ci = kb // khkw
                rr = kb - ci * khkw
                i, j = rr // kw, rr % kw
                for r in range(B_PER):
                    if bn_ok and kb + r < kend:
                        h, w = by_ + i, bx_ + j
                        if 0 <= h < H and 0 <= w < W:
                            b_reg[r] = b_src[((img * C + ci) * H + h) * W + w]
                    j += 1
                    if j == kw:
                        j = 0
                        i += 1
                        if i == kh:
                            i = 0
                            ci += 1
            elif mode == DGRAD:
                if bn_ok:
                    per = Hq * Wq
                    img = bn // per
                    q = bn - img * per
                    hq, wq = q // Wq, q % Wq
                nt = nti * ntj
                co = kb // nt
                rr = kb - co * nt
                t, u = rr // ntj, rr % ntj
                for r in range(B_PER):
                    if bn_ok and kb + r < kend:
                        oh, ow = hq + dh - t, wq + dw - u
                        if 0 <= oh < Ho and 0 <= ow < Wo:
                            b_reg[r] = b_src[((img * Cout + co) * Ho + oh) * Wo + ow]
                    u += 1
                    if u == ntj:
                        u = 0
                        t += 1
                        if t == nti:
                            t = 0
                            co += 1
            else:
                if bn_ok:
                    ci = bn // khkw
                    rr = bn - ci * khkw
                    bi, bj = rr // kw, rr % kw
                img = kb // HoWo
                p = kb - img * HoWo
                oh, ow = p // Wo, p % Wo
                for r in range(B_PER):
                    if bn_ok and kb + r < kend:
                        h, w = oh * sh - ph + bi, ow * sw - pw + bj
                        if 0 <= h < H and 0 <= w < W:
                            b_reg[r] = b_src[((img * C + ci) * H + h) * W + w]
                    ow += 1
                    if ow == Wo:
                        ow = 0
                        oh += 1
                        if oh == Ho:
                            oh = 0
                            img += 1
            # -- stores
            for r in range(A_PER):
                As[swz(a_row + A_ROWS * r, a_k)] = a_reg[r]
            for r in range(B_PER):
                Bs[swz(b_col, b_k + r)] = b_reg[r]
        tile_product(prec, As, Bs, acc)
    if want_bsum:
        for tid in range(THREADS):
            a_row, a_k = tid // BK, tid % BK
            if a_k == 0:
                for r in range(A_PER):
                    m = m0 + a_row + A_ROWS * r
                    if m < M:
                        pbias[bz * M + m] = bsum[tid : tid + BK, r].sum()
    NT = BN // WN // 8
    for tid in range(THREADS):
        lane, warp = tid & 31, tid >> 5
        wm, wn = warp // WN, warp % WN
        for e in range(ACC):
            if prec == SIMT:
                m = m0 + wm * 32 + (lane >> 3) + 4 * (e >> 2)
                n = n0 + wn * 32 + (lane & 7) + 8 * (e & 3)
            else:
                tile = e >> 2
                mt, nt, q = tile // NT, tile % NT, e & 3
                m = m0 + wm * (BM // WM) + mt * 16 + (lane >> 2) + ((q >> 1) << 3)
                n = n0 + wn * (BN // WN) + nt * 8 + 2 * (lane & 3) + (q & 1)
            if m >= M or n >= Ng:
                continue
            v = acc[tid, e]
            if mode == FPROP:
                if bias is not None:
                    v += bias[m]
                img = n // HoWo
                out[(img * M + m) * HoWo + (n - img * HoWo)] = v
            elif mode == DGRAD:
                per = Hq * Wq
                img = n // per
                q = n - img * per
                hq = q // Wq
                h, w = rh + sh * hq, rw + sw * (q - hq * Wq)
                if h < H and w < W:
                    out[((img * M + m) * H + h) * W + w] = v + (bias[m] if bias is not None else 0.0)
            else:
                out[(bz * M + m) * Ng + n] = v


def tile_product(prec, As, Bs, acc):
    """Every warp's products of one tile pair, with the fragments each lane owns."""
    WTM, WTN = BM // WM, BN // WN
    MT, NT = WTM // 16, WTN // 8
    for warp in range(THREADS // 32):
        wm, wn = warp // WN, warp % WN
        lanes = range(32)
        if prec == SIMT:
            for lane in lanes:
                tid = warp * 32 + lane
                tm, tn = lane >> 3, lane & 7
                for kk in range(BK):
                    a = [As[swz(wm * 32 + tm + 4 * r, kk)] for r in range(8)]
                    b = [Bs[swz(wn * 32 + tn + 8 * c, kk)] for c in range(4)]
                    for r in range(8):
                        for c in range(4):
                            acc[tid, r * 4 + c] += a[r] * b[c]
            continue
        kstep = 16 if prec == BF16 else 8
        for kk in range(0, BK, kstep):
            for mt, nt in itertools.product(range(MT), range(NT)):
                # Assemble the 16 x kstep A and kstep x 8 B the warp's registers hold, per the PTX layouts.
                A = np.full((16, kstep), np.nan)
                B = np.full((kstep, 8), np.nan)
                for lane in lanes:
                    g, t = lane >> 2, lane & 3
                    r0, c0 = wm * WTM + mt * 16 + g, wn * WTN + nt * 8 + g
                    if prec == BF16:
                        k0 = kk + 2 * t
                        regs_a = [(r0, k0), (r0 + 8, k0), (r0, k0 + 8), (r0 + 8, k0 + 8)]
                        rows_a = [(g, 2 * t), (g + 8, 2 * t), (g, 2 * t + 8), (g + 8, 2 * t + 8)]
                        for (sr, sk), (fr, fk) in zip(regs_a, rows_a):
                            A[fr, fk] = As[swz(sr, sk)]  # low half: the lower k
                            A[fr, fk + 1] = As[swz(sr, sk + 1)]
                        for off in (0, 8):
                            B[2 * t + off, g] = Bs[swz(c0, k0 + off)]
                            B[2 * t + off + 1, g] = Bs[swz(c0, k0 + off + 1)]
                    else:
                        A[g, t] = As[swz(r0, kk + t)]
                        A[g + 8, t] = As[swz(r0 + 8, kk + t)]
                        A[g, t + 4] = As[swz(r0, kk + t + 4)]
                        A[g + 8, t + 4] = As[swz(r0 + 8, kk + t + 4)]
                        B[t, g] = Bs[swz(c0, kk + t)]
                        B[t + 4, g] = Bs[swz(c0, kk + t + 4)]
                assert not np.isnan(A).any() and not np.isnan(B).any(), "a fragment element was never loaded"
                D = A @ B
                for lane in lanes:
                    g, t = lane >> 2, lane & 3
                    tid = warp * 32 + lane
                    base = (mt * NT + nt) * 4
                    acc[tid, base + 0] += D[g, 2 * t]
                    acc[tid, base + 1] += D[g, 2 * t + 1]
                    acc[tid, base + 2] += D[g + 8, 2 * t]
                    acc[tid, base + 3] += D[g + 8, 2 * t + 1]


def conv_case(n, c, h, w, cout, k, s, p, prec, rng):
    """Forward, data and weight gradients of one Conv2d through the emulated kernels vs the reference."""
    from tinygan.kernels import reference as R

    (kh, kw), (sh, sw), (ph, pw) = k, s, p
    x = rng.standard_normal((n, c, h, w))
    Wt = rng.standard_normal((cout, c, kh, kw))
    b = rng.standard_normal(cout)
    y_ref, cols = R.conv2d_forward(x, Wt, b, s, p)
    _, _, ho, wo = y_ref.shape
    y = np.full(y_ref.size, np.nan)
    grid = (-(-(n * ho * wo) // BN), -(-cout // BM), 1)
    run_kernel(
        FPROP, prec, Wt.ravel(), x.ravel(), y, b, None, n, c, h, w, cout, kh, kw, sh, sw, ph, pw, ho, wo, 0, grid
    )
    errs = {"fprop": np.abs(y.reshape(y_ref.shape) - y_ref).max()}
    dy = rng.standard_normal(y_ref.shape)
    dx_ref = R.conv2d_backward_data(dy, Wt, x.shape, s, p)
    dx = np.full(x.size, np.nan)
    hq, wq = -(-h // sh), -(-w // sw)
    grid = (-(-(n * hq * wq) // BN), -(-c // BM), sh * sw)
    run_kernel(
        DGRAD, prec, Wt.ravel(), dy.ravel(), dx, None, None, n, c, h, w, cout, kh, kw, sh, sw, ph, pw, ho, wo, 0, grid
    )
    errs["dgrad"] = np.abs(dx.reshape(x.shape) - dx_ref).max()
    dW_ref, db_ref = R.conv2d_backward_weight(dy, cols, Wt.shape)
    K = n * ho * wo
    kps = 64  # two k tiles per split: exercises the split-K partials
    splits = -(-K // kps)
    part = np.full(splits * cout * c * kh * kw, np.nan)
    pb = np.full(splits * cout, np.nan)
    grid = (-(-(c * kh * kw) // BN), -(-cout // BM), splits)
    run_kernel(
        WGRAD, prec, dy.ravel(), x.ravel(), part, None, pb, n, c, h, w, cout, kh, kw, sh, sw, ph, pw, ho, wo, kps, grid
    )
    dW = part.reshape(splits, -1).sum(axis=0).reshape(Wt.shape)
    db = pb.reshape(splits, cout).sum(axis=0)
    errs["wgrad"] = np.abs(dW - dW_ref).max()
    errs["bgrad"] = np.abs(db - db_ref).max()
    return errs


CASES = [
    # n, c, h, w, cout, kernel, stride, padding: ragged tiles, stride 1/2/3, kernel < stride, non-square
    (2, 3, 9, 7, 5, (3, 3), (2, 2), (1, 1)),
    (1, 5, 8, 8, 70, (3, 3), (1, 1), (1, 1)),
    (3, 4, 11, 10, 6, (5, 5), (2, 2), (2, 2)),
    (2, 3, 7, 9, 4, (3, 2), (2, 3), (0, 1)),
    (1, 2, 10, 10, 3, (1, 1), (3, 3), (0, 0)),
    (2, 66, 5, 5, 3, (3, 3), (2, 2), (1, 1)),
]


def main() -> int:
    rng = np.random.default_rng(0)
    ok = True
    runs = [(0, p) for p in (SIMT, TF32, BF16)] + [(c, p) for c in (1, 2) for p in (TF32, BF16)]
    only = [int(a) for a in sys.argv[1:]]
    for case in CASES:
        for cfg, prec in runs:
            if only and cfg not in only:
                continue
            use_cfg(cfg)
            errs = conv_case(*case, prec, rng)
            bad = {k: v for k, v in errs.items() if not v < 1e-9}
            ok &= not bad
            print(
                f"{case} prec {prec}: " + ", ".join(f"{k} {v:.1e}" for k, v in errs.items()) + (" WRONG" if bad else "")
            )
    print("all index math matches the reference" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
