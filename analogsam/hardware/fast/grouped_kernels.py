"""The compiled kernel of a whole grouped (depthwise) convolution layer, all its tiles in one call.

A depthwise layer (:mod:`analogsam.hardware.mapping.grouped`) is ``groups`` tiny tiles (a 1x3
depthwise ``Conv1d`` over 64 channels: 64 tiles of 3 inputs and 1 output). Run tile by tile, each
tile's DAC kernel, product, output-noise draw and ADC kernel is a separate call over a few values
per image, and the fixed cost of the calls, not the arithmetic, sets the time. :func:`grouped_conv`
does the layer in one call: group by group, over all images at once (images innermost, so that
the loops vectorise), the noise-management scale of every patch, the DAC of the patch, the tile's
product, the output noise (generated here, from each tile's stream of the engine's counter-based
generator (:mod:`~analogsam.hardware.fast.noise`): the numbers the tile-by-tile path draws), the ADC, the bound test and the tile's digital periphery, with the
float32 operations of :mod:`.kernels` in the same order (no ``fastmath``).

The product: ``W q`` with the tile's weights is a chain over the patch elements in their order,
accumulated with fused multiply-adds (``fma32``); the layer's tiles compute the same chain
when they run one by one (:class:`.products.Weights` with ``chain=True`` calls :func:`chain_product`),
so the two paths agree whatever the local BLAS's summation order (which OpenBLAS picks by CPU).
"""

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from analogsam.hardware.fast.noise import normal

__all__ = ["grouped_conv", "chain_product"]

# as in .kernels: no fastmath (every float32 operation rounded as written), cached machine code
jit = njit(cache=True, boundscheck=False, nogil=True)


@intrinsic
def fma32(typingctx, a, b, c):
    """``a * b + c`` in float32 with a single rounding (LLVM's ``llvm.fma.f32``)."""
    sig = types.float32(types.float32, types.float32, types.float32)

    def codegen(context, builder, signature, args):
        f32 = ir.FloatType()
        fn = builder.module.declare_intrinsic("llvm.fma", [f32], ir.FunctionType(f32, [f32, f32, f32]))
        return builder.call(fn, args)

    return sig, codegen


@jit
def _chain(w_row, q, acc):
    """``acc = sum_e w_row[e] * q[e]`` (q (K, L)), the terms added in the order of ``e`` with
    fused multiply-adds, the first one a plain product."""
    k_size, length = q.shape
    w0 = w_row[0]
    src = q[0]
    for t in range(length):
        acc[t] = w0 * src[t]
    for e in range(1, k_size):
        we, src = w_row[e], q[e]
        for t in range(length):
            acc[t] = fma32(we, src[t], acc[t])


@jit
def chain_product(w, x, out):
    """``out[i] = w @ x[i]`` for ``w`` (n, K), ``x`` (b, K, L), ``out`` (b, n, L), as
    :func:`grouped_conv` computes its products."""
    for i in range(x.shape[0]):
        for j in range(w.shape[0]):
            _chain(w[j], x[i], out[i, j])


@jit
def grouped_conv(
    img,
    groups,
    kh,
    kw,
    dh,
    dw,
    ph,
    pw,
    sh,
    sw,
    signed,
    thres,
    res,
    bound,
    w,
    tab,
    keys,
    base,
    sigma,
    ores,
    obound,
    test_negative,
    out_scale,
    post,
    alpha,
    osc,
    bias,
    out,
):
    """Every group of a grouped convolution on its own tile, for images ``img`` (b, C, h, w).

    Group ``g`` reads channels ``g*c ... (g+1)*c - 1`` (``c = C / groups``) and writes outputs
    ``g*n ... (g+1)*n - 1`` of ``out`` (b, groups*n, oh*ow); ``w`` (groups, n, c*kh*kw): the
    tiles' weights; ``keys`` (groups,) uint64: each tile's output-noise key (:class:`.noise.Stream`;
    empty for no noise), the noise of output ``j`` of patch ``t`` of image ``i`` read from the
    table ``tab`` at index ``((base + i) * oh*ow + t) * n + j``; ``post``, ``alpha``,
    ``osc``, ``bias`` (groups, n): each tile's periphery (see :func:`.kernels.adc_cols`). Group by
    group, its channels (zero-padded), its noise and its outputs are moved through buffers with
    the images innermost, so that every loop of the arithmetic runs over the ``b`` images,
    contiguous (a depthwise tile has only a few values per image). Per patch, the steps of
    :func:`.kernels.conv_dac` (noise-management maximum over the patch, the padding's zeros
    included, scale, DAC), the product (``_chain``), then those of :func:`.kernels.adc_cols`;
    a patch whose maximum is not positive gives the periphery of an
    exact zero (as :meth:`.tile.Tile.complete` sets it). Returns the number of saturated outputs
    that may fail their patch's bound test (positive whenever a patch failed; the caller redoes
    the layer tile by tile if bound management would rerun them)."""
    b, c, h, wd = img.shape[0], img.shape[1] // groups, img.shape[2], img.shape[3]
    n, k_size = w.shape[1], w.shape[2]
    hp, wp = h + 2 * ph, wd + 2 * pw
    oh = (hp - dh * (kh - 1) - 1) // sh + 1
    ow = (wp - dw * (kw - 1) - 1) // sw + 1
    length = oh * ow
    x = np.zeros((c, hp, wp, b), np.float32)  # the padding stays zero
    noise_g = np.empty((n, length, b), np.float32)
    out_g = np.empty((n, length, b), np.float32)
    scale = np.empty((length, b), np.float32)
    factor = np.empty((length, b), np.float32)
    nonpos = np.empty((length, b), np.bool_)
    q = np.empty((length, k_size, b), np.float32)  # each patch's elements, contiguous
    acc = np.empty((length, b), np.float32)
    one = np.float32(1.0)
    has_noise = keys.size > 0
    count = 0
    for g in range(groups):
        for i in range(b):
            for ch in range(c):
                for y in range(h):
                    src = img[i, g * c + ch, y]
                    for xx in range(wd):
                        x[ch, y + ph, xx + pw, i] = src[xx]
            if has_noise:
                key, first = keys[g], (base + i) * length
                for j in range(n):
                    for t in range(length):
                        noise_g[j, t, i] = normal(tab, key, (first + t) * n + j)
        for oy in range(oh):
            for ox in range(ow):
                t = oy * ow + ox
                best = scale[t]
                src = x[0, oy * sh, ox * sw]
                for i in range(b):
                    best[i] = src[i] if signed else abs(src[i])
                for ch in range(c):
                    for ki in range(kh):
                        for kj in range(kw):
                            src = x[ch, oy * sh + ki * dh, ox * sw + kj * dw]
                            if signed:
                                for i in range(b):
                                    best[i] = max(best[i], src[i])
                            else:
                                for i in range(b):
                                    best[i] = max(best[i], abs(src[i]))
                zp, fac = nonpos[t], factor[t]
                for i in range(b):
                    v = min(best[i], thres) if thres > 0 else best[i]
                    positive = v > 0
                    best[i] = one / v if positive else one
                    zp[i] = not positive
                    fac[i] = out_scale / best[i]
        for ch in range(c):
            for ki in range(kh):
                for kj in range(kw):
                    e = (ch * kh + ki) * kw + kj
                    for oy in range(oh):
                        for ox in range(ow):
                            t = oy * ow + ox
                            src, sc, dst = x[ch, oy * sh + ki * dh, ox * sw + kj * dw], scale[t], q[t, e]
                            for i in range(b):
                                v = np.rint(src[i] * sc[i] / res) * res
                                dst[i] = min(max(v, -bound), bound)
        for j in range(n):
            for t in range(length):
                _chain(w[g, j], q[t], acc[t])
                count += _adc(
                    acc[t],
                    noise_g[j, t] if has_noise else acc[t, :0],
                    sigma,
                    ores,
                    obound,
                    test_negative,
                    factor[t],
                    nonpos[t],
                    post[g, j],
                    alpha[g, j],
                    osc[g, j],
                    bias[g, j],
                    out_g[j, t],
                )
        for i in range(b):
            for j in range(n):
                dst = out[i, g * n + j]
                for t in range(length):
                    dst[t] = out_g[j, t, i]
    return count


@jit
def _adc(acc, noise, sigma, res, bound, test_negative, factor, nonpos, p, a, s, bias, out):
    """:func:`.kernels.adc_cols` for one output of a row of patches: ``+ sigma * noise`` (none if
    ``noise`` is empty), ``rint``, the bound test and clip, ``* factor``, the periphery; the
    periphery of an exact zero where ``nonpos``. Returns the saturated outputs (not counting
    the negative ones unless ``test_negative``) of patches with a positive maximum."""
    has_noise = noise.shape[0] > 0
    zero_out = ((np.float32(0.0) * p) * a) * s + bias
    count = 0
    for t in range(acc.shape[0]):
        v = acc[t] + sigma * noise[t] if has_noise else acc[t]
        v = np.rint(v / res) * res
        count += ((v > bound) or (test_negative and v < -bound)) and not nonpos[t]
        v = min(max(v, -bound), bound)
        out[t] = zero_out if nonpos[t] else (((v * factor[t]) * p) * a) * s + bias
    return count
