"""Fused element-wise kernels of the fast analog forward (:mod:`analogsam.hardware.fast`), compiled by numba.

The analog forward of one tile is a handful of element-wise steps around one matrix product: the
DAC side (noise-management scale, ``rint(x * scale / res) * res``, clip to ``inp_bound``) on the
input vectors, and the ADC side (output noise, ``rint``, bound test and clip, ``out_scale / scale``)
on the outputs. As separate torch operations each step is a pass over memory; for convolutions the
input side runs over the unfolded patches, nine times the image for a 3x3 kernel, and these passes
can cost more than the product itself (``benchmarks/bench_evaluate.py --internals`` compares the
forward with and without these kernels). Here each side is one loop that reads its input once and
writes its output once.

Every kernel does the same float32 operations in the same order as the torch code it replaces
(and as aihwkit's C++ ``ForwardBackwardPassIOManaged``): a product, a division, ``rint``
(round-half-to-even, like ``rintf`` and ``torch.round``), a product, a comparison. numba compiles
them without ``fastmath``, so no operation is contracted or reordered and the results are
bit-identical to the torch path (``tests/test_fastpath.py`` checks it). The output noise is
generated where it is added, from the engine's counter-based generator (:mod:`~analogsam.hardware.fast.noise`: the number
of an output is addressed by the draw site's key and the output's global index, so it does not
depend on the chunk or the batch), bit-identical to the numbers the torch path draws.

The arrays are numpy views of contiguous float32 CPU tensors (no copies). The kernels run on one
thread. numba compiles each on its first call and caches the machine code in ``__pycache__``
next to this file (the functions are module-level so that the cache is found again by the next
process: compiling takes seconds, loading the cache a fraction of that).
"""

import numpy as np
from numba import njit

from analogsam.hardware.fast.noise import normal

__all__ = ["conv_dac", "rows_dac", "scaled_rows_dac", "adc_cols", "adc_rows"]

# no fastmath: every float32 operation is rounded as written; boundscheck off: the callers
# size the arrays; nogil: another thread may run torch meanwhile
jit = njit(cache=True, boundscheck=False, nogil=True)


@jit
def pad_abs_max(img, i, ph, pw, xp, m):
    """Copy image ``i`` of ``img`` into the zero-padded buffer ``xp`` (c, hp, wp) and set the
    interior of ``m`` (hp, wp) to the maximum of ``|x|`` over the channels (one pass)."""
    c, h, w = img.shape[1], img.shape[2], img.shape[3]
    for y in range(h):
        mrow = m[y + ph, pw : pw + w]
        src = img[i, 0, y]
        dst = xp[0, y + ph, pw : pw + w]
        for x in range(w):
            dst[x] = src[x]
            mrow[x] = abs(src[x])
        for ch in range(1, c):
            src = img[i, ch, y]
            dst = xp[ch, y + ph, pw : pw + w]
            for x in range(w):
                dst[x] = src[x]
                mrow[x] = max(mrow[x], abs(src[x]))


@jit
def pad_max(img, i, ph, pw, xp, m):
    """:func:`pad_abs_max` with the maximum of ``x`` (max noise management); a separate function
    because a flag tested inside the loop would stop it being vectorised."""
    c, h, w = img.shape[1], img.shape[2], img.shape[3]
    for y in range(h):
        mrow = m[y + ph, pw : pw + w]
        src = img[i, 0, y]
        dst = xp[0, y + ph, pw : pw + w]
        for x in range(w):
            dst[x] = src[x]
            mrow[x] = src[x]
        for ch in range(1, c):
            src = img[i, ch, y]
            dst = xp[ch, y + ph, pw : pw + w]
            for x in range(w):
                dst[x] = src[x]
                mrow[x] = max(mrow[x], src[x])


@jit
def patch_scales(m, i, kh, kw, dh, dw, sh, sw, thres, rmax, scale, nonpos):
    """Noise management of every patch of image ``i`` from ``m`` (hp, wp), the channel
    maximum of the padded image (the padding's zeros count, as in ``F.unfold``'s patches):
    the window maximum, along the width (``rmax``) then the height, clamped to ``thres`` if
    positive; ``scale[i] = 1 / max`` where it is positive, else 1 and ``nonpos[i]`` set.
    Returns the number of non-positive maxima."""
    hp = m.shape[0]
    oh, ow = scale.shape[1], scale.shape[2]
    # loops over whole output rows, innermost: they vectorise
    for y in range(hp):
        src, dst = m[y], rmax[y]
        for ox in range(ow):
            dst[ox] = src[ox * sw]
        for kj in range(1, kw):
            for ox in range(ow):
                dst[ox] = max(dst[ox], src[ox * sw + kj * dw])
    count = 0
    one = np.float32(1.0)
    for oy in range(oh):
        sc, nonpos_row = scale[i, oy], nonpos[i, oy]
        sc[:] = rmax[oy * sh]
        for ki in range(1, kh):
            src = rmax[oy * sh + ki * dh]
            for ox in range(ow):
                sc[ox] = max(sc[ox], src[ox])
        for ox in range(ow):
            best = min(sc[ox], thres) if thres > 0 else sc[ox]
            positive = best > 0
            sc[ox] = one / best if positive else one
            nonpos_row[ox] = not positive
            count += not positive
    return count


@jit
def dac_patches_unit(xp, scale_i, kh, kw, res, bound, out_i):
    """DAC of the patches of one padded image, stride 1 and dilation 1 (see :func:`conv_dac`)."""
    c = xp.shape[0]
    oh, ow = scale_i.shape
    for ch in range(c):
        for ki in range(kh):
            for kj in range(kw):
                row = (ch * kh + ki) * kw + kj
                for oy in range(oh):
                    src = xp[ch, oy + ki, kj : kj + ow]
                    sc = scale_i[oy]
                    dst = out_i[row, oy * ow : (oy + 1) * ow]
                    for ox in range(ow):
                        v = np.rint(src[ox] * sc[ox] / res) * res
                        dst[ox] = min(max(v, -bound), bound)


@jit
def dac_patches(xp, scale_i, kh, kw, dh, dw, sh, sw, res, bound, out_i):
    """:func:`dac_patches_unit` for any stride and dilation. (A separate loop nest on purpose:
    with a branch inside one nest, or a shared helper called per row, the stride-1 loop is no
    longer vectorised and runs several times slower.)"""
    c = xp.shape[0]
    oh, ow = scale_i.shape
    for ch in range(c):
        for ki in range(kh):
            for kj in range(kw):
                row = (ch * kh + ki) * kw + kj
                for oy in range(oh):
                    src = xp[ch, oy * sh + ki * dh, kj * dw : kj * dw + sw * (ow - 1) + 1 : sw]
                    sc = scale_i[oy]
                    dst = out_i[row, oy * ow : (oy + 1) * ow]
                    for ox in range(ow):
                        v = np.rint(src[ox] * sc[ox] / res) * res
                        dst[ox] = min(max(v, -bound), bound)


@jit
def conv_dac(img, kh, kw, dh, dw, ph, pw, sh, sw, signed, thres, res, bound, scale, nonpos, out):
    """The DAC side of a convolution tile for images ``img`` (b, c, h, w), unpadded.

    Per patch (the vectors of ``F.unfold``): the noise-management scale (``scale``,
    ``nonpos`` (b, oh, ow), see :func:`patch_scales`; ``signed``: max instead of abs-max
    noise management), then ``out`` (b, c*kh*kw, oh*ow) =
    ``clip(rint(x * scale / res) * res, -bound, bound)``. Each image is first copied into a
    zero-padded buffer, so that every inner loop runs over a whole output row. (The two
    DAC loops are separate functions: as two branches of one loop nest, neither is
    vectorised.) Returns the number of patches with a non-positive maximum."""
    b, c, h, w = img.shape
    hp, wp = h + 2 * ph, w + 2 * pw
    xp = np.zeros((c, hp, wp), np.float32)  # the padding stays zero
    m = np.zeros((hp, wp), np.float32)  # so does the channel maximum's
    rmax = np.empty((hp, scale.shape[2]), np.float32)
    unit = sh == 1 and sw == 1 and dh == 1 and dw == 1
    count = 0
    for i in range(b):
        if signed:
            pad_max(img, i, ph, pw, xp, m)
        else:
            pad_abs_max(img, i, ph, pw, xp, m)
        count += patch_scales(m, i, kh, kw, dh, dw, sh, sw, thres, rmax, scale, nonpos)
        if unit:
            dac_patches_unit(xp, scale[i], kh, kw, res, bound, out[i])
        else:
            dac_patches(xp, scale[i], kh, kw, dh, dw, sh, sw, res, bound, out[i])
    return count


@jit
def dac_vector(src, scale, res, bound, dst):
    """``dst = clip(rint(src * scale / res) * res, -bound, bound)`` for one vector at one scale."""
    for t in range(dst.shape[0]):
        v = np.rint(src[t] * scale / res) * res
        dst[t] = min(max(v, -bound), bound)


@jit
def vector_abs_max(v):
    """The maximum of ``|v|``."""
    best = abs(v[0])
    for j in range(1, v.shape[0]):
        best = max(best, abs(v[j]))
    return best


@jit
def vector_max(v):
    """The maximum of ``v`` (a function of its own, like :func:`pad_max`)."""
    best = v[0]
    for j in range(1, v.shape[0]):
        best = max(best, v[j])
    return best


@jit
def rows_dac(x, signed, thres, res, bound, scale, nonpos, out):
    """:func:`conv_dac` for input vectors stored as rows: ``x`` and ``out`` (m, k),
    ``scale`` and ``nonpos`` (m,)."""
    one = np.float32(1.0)
    count = 0
    for i in range(x.shape[0]):
        row = x[i]
        best = vector_max(row) if signed else vector_abs_max(row)
        if thres > 0:
            best = min(best, thres)
        positive = best > 0
        scale[i] = one / best if positive else one
        nonpos[i] = not positive
        count += not positive
        dac_vector(row, scale[i], res, bound, out[i])
    return count


@jit
def scaled_rows_dac(x, scale, res, bound, out):
    """DAC of row vectors ``x`` (m, k) at given scales (m,) (bound-management reruns)."""
    for i in range(x.shape[0]):
        dac_vector(x[i], scale[i], res, bound, out[i])


@jit
def adc_cols(y, tab, key, base, sigma, res, bound, test_negative, scale, out_scale, post, alpha, osc, bias, failed):
    """ADC side of vectors stored as columns, in place: ``y`` (b, n, l), outputs along dim 1.

    Per output: ``+ sigma * z`` (none if ``sigma`` is 0), ``z`` the normal number (table ``tab``)
    of stream ``key`` at index ``(base + i * l + t) * n + j`` (:class:`.noise.Stream`: vector
    ``(i, t)`` of the chunk is global vector ``base + i * l + t``), ``rint(v / res) * res``,
    the bound test (``failed`` (b, l): the verdict of the last output beyond ``bound``, as
    the C++ loop leaves it), clip to ``bound``, ``* (out_scale / scale)`` (``scale`` (b, l)),
    then the tile's digital periphery, one value per output (n,) each: ``* post * alpha *
    osc + bias`` (ones and -0.0 leave the output as it is). Returns the number of failed
    vectors."""
    b, n, l = y.shape  # noqa: E741 (l: the output length, as in the kernels above)
    has_noise = sigma > 0
    factor = np.empty(l, np.float32)
    z = np.empty(l, np.float32)
    count = 0
    for i in range(b):
        verdict = failed[i]
        verdict[:] = False
        for t in range(l):
            factor[t] = out_scale / scale[i, t]
        for j in range(n):
            row = y[i, j]
            if has_noise:
                # the noise of the row first, in a loop of its own: the generator's (scalar) hash
                # inside the ADC loop would keep that loop from being vectorised (twice as slow)
                first = base + i * l
                for t in range(l):
                    z[t] = sigma * normal(tab, key, (first + t) * n + j)
            for t in range(l):
                v = row[t]
                if has_noise:
                    v = v + z[t]
                v = np.rint(v / res) * res
                if v > bound:
                    verdict[t] = True
                    v = bound
                elif v < -bound:
                    verdict[t] = test_negative
                    v = -bound
                row[t] = (((v * factor[t]) * post[j]) * alpha[j]) * osc[j] + bias[j]
        for t in range(l):
            count += verdict[t]
    return count


@jit
def adc_rows(y, tab, key, ids, sigma, res, bound, test_negative, scale, out_scale, post, alpha, osc, bias, failed):
    """:func:`adc_cols` for vectors stored as rows: ``y`` (m, n), ``scale`` and ``failed`` (m,);
    row ``i`` is global vector ``ids[i]``, its output ``j`` reads the noise at ``ids[i] * n + j``.

    The verdict of a row is taken from the positions of its last output above ``bound`` and its
    last one below ``-bound`` (maxima over the row, which vectorise; a flag set inside the loop
    kept it scalar, four times slower): the same verdict as the C++ loop's."""
    m, n = y.shape
    has_noise = sigma > 0
    z = np.empty(n, np.float32)
    count = 0
    for i in range(m):
        factor = out_scale / scale[i]
        row = y[i]
        if has_noise:  # (the noise first, in a loop of its own: see adc_cols)
            first = ids[i] * n
            for j in range(n):
                z[j] = sigma * normal(tab, key, first + j)
        last_pos = -1
        last_neg = -1
        for j in range(n):
            v = row[j]
            if has_noise:
                v = v + z[j]
            v = np.rint(v / res) * res
            last_pos = max(last_pos, j if v > bound else -1)
            last_neg = max(last_neg, j if v < -bound else -1)
            v = min(max(v, -bound), bound)
            row[j] = (((v * factor) * post[j]) * alpha[j]) * osc[j] + bias[j]
        verdict = last_pos > last_neg or (test_negative and last_neg >= 0)
        failed[i] = verdict
        count += verdict
    return count
