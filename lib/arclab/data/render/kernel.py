"""The SynthFaces scene as one compiled per-pixel kernel (numba): the same picture as the torch
engine (:mod:`~arclab.data.render.engine`), pixel by pixel in float64 instead of ~110 float32
passes over whole images: about 3× faster for the scene, 2-3× for a whole render with blur,
JPEG and noise (``benchmarks/synthfaces.py``), and not differentiable.

``render`` uses it whenever no gradient is needed (``engine="auto"``). The per-image
coefficients come from the torch engine's own functions (``head.head_coefficients``,
``regions.features``, ``colour.palette``, ``regions.pixel_boxes``); only the per-pixel
arithmetic is written twice, and ``tests/test_synthfaces.py`` holds the two to float round-off
of each other. ``render_scene`` blurs and noises each image right after drawing it, while it
is in the core's cache, with the compiled post of :mod:`~arclab.data.render.kernel_post`;
JPEG is the same torch function in both engines, applied afterwards to the images that have
it (then their noise).

Images run in parallel on ``torch.get_num_threads()`` Python threads
(``kernel_post.parallel``). The first call compiles the kernels (10-20 s); numba caches the
machine code beside this file (or under ``$NUMBA_CACHE_DIR``), and later processes load it
in about a second.

Taught in: notebooks/03_synthfaces.ipynb
"""

from __future__ import annotations

import math

import numpy as np
import torch
from numba import njit
from torch import Tensor

from arclab.data.render.kernel_post import blur_image, noise_image, parallel

__all__ = ["render_scene"]

# the per-image parameter vector's layout: name -> width, in order (see _pack)
_LAYOUT = (("xa", 3), ("ya", 3), ("hair_q", 6), ("hair_bg", 3), ("disc_q", 6), ("kh", 1),
           ("t_lin", 3), ("iqa", 1), ("o", 9), ("d", 3), ("axes", 3), ("jaw", 1), ("ipx", 1),
           ("num_lin", 3), ("dw", 1), ("ia4", 3), ("amb", 1), ("skin", 3), ("hair_c", 3),
           ("hair_line", 1), ("ey", 1), ("age", 1), ("ex", 1), ("er", 1), ("eh", 1),
           ("brow_y", 1), ("tilt", 1), ("brow_w", 1), ("brow_t", 1), ("brow_c", 3),
           ("white", 3), ("iris_c", 3), ("tip_y", 1), ("nl", 1), ("nw", 1), ("mouth_y", 1),
           ("smile", 1), ("half", 1), ("lip_h", 1), ("gap_h", 1), ("lip_c", 3),
           ("mark_on", 1), ("mark_x", 1), ("mark_y", 1), ("mark2_on", 1), ("mark2_x", 1),
           ("mark2_y", 1), ("mark_r", 1), ("occlusion", 1), ("mask_top", 1), ("cloth", 3),
           ("hand_q", 6), ("hand_c", 3))
N_PARAMS = sum(w for _, w in _LAYOUT)
_OFFSET = dict(zip([n for n, _ in _LAYOUT],
                   np.cumsum([0] + [w for _, w in _LAYOUT])[:-1].tolist()))
# the kernel's names for the offsets (numba reads module constants at compile time)
(XA, YA, HQ, HBG, DQ, KH, TL, IQA, ORIG, DIR, AX, JAW, IPX, NUM, DW, IA4, AMB, SKIN, HAIRC, HLINE,
 EY, AGE, EX, ER, EH, BROWY, TILT, BROWW, BROWT, BROWC, WHITE, IRIS, TIPY, NL, NW, MY, SMILE,
 HALF, LIPH, GAPH, LIPC, M1, M1X, M1Y, M2, M2X, M2Y, MR, OCC, MTOP, CLOTH, HANDQ,
 HANDC) = _OFFSET.values()


def _pack(columns: dict[str, Tensor], b: int) -> np.ndarray:
    """The (B, N_PARAMS) float64 parameter array from {name: (B,) or (B, width)} tensors."""
    out = []
    for name, width in _LAYOUT:
        t = columns[name].detach().to(torch.float64)
        if t.numel() != b * width:
            raise AssertionError(f"{name}: {tuple(t.shape)} for {b} images, layout says "
                                 f"{width} values each")
        out.append(t.reshape(b, width))
    return torch.cat(out, 1).numpy()


def _bilinear_taps(low: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each output index: the two source indices and the second one's weight of
    ``F.interpolate(mode="bilinear", align_corners=False)`` from ``low`` to ``size``."""
    dst = np.arange(size, dtype=np.float64)
    src = np.maximum((dst + 0.5) * (low / size) - 0.5, 0.0)
    i0 = np.floor(src).astype(np.int64)
    i1 = np.minimum(i0 + 1, low - 1)
    return i0, i1, src - i0


@njit(inline="always")
def _clamp01(x):
    return min(max(x, 0.0), 1.0)


@njit(inline="always")
def _lerp(a, b, w):  # torch.lerp's formula
    return a + w * (b - a) if w < 0.5 else b - (b - a) * (1.0 - w)


@njit(inline="always")
def _lerp3(a, b, w):
    return (_lerp(a[0], b[0], w), _lerp(a[1], b[1], w), _lerp(a[2], b[2], w))


@njit(inline="always")
def _cover(d2, s):
    return _clamp01(s + 0.5 - d2 * s)


@njit(inline="always")
def _ellipse(x, y, cx, cy, rx, ry, ipx):
    u = (x - cx) / rx
    v = (y - cy) / ry
    return _cover(u * u + v * v, 0.5 * min(rx, ry) * ipx)


@njit(inline="always")
def _quad(q, gi, gj):  # q: 6 coefficients of (j², i·j, i², j, i, 1)
    return ((q[2] * gi + q[4]) * gi + q[5] + (q[0] * gj + q[3]) * gj + q[1] * gi * gj)


@njit(inline="always")
def _aff(q, gi, gj):  # q: 3 coefficients of (j, i, 1)
    return q[0] * gj + q[2] + q[1] * gi


@njit(inline="always")
def _vec(q, o):
    return (q[o], q[o + 1], q[o + 2])


@njit(inline="always")
def _vec6(q, o):
    return (q[o], q[o + 1], q[o + 2], q[o + 3], q[o + 4], q[o + 5])


@njit(inline="always")
def _win(box, k):
    return (box[k, 0], box[k, 1], box[k, 2], box[k, 3])


@njit(inline="always")
def _inside(w, r, c):
    return w[0] <= r < w[1] and w[2] <= c < w[3]


# kept whole: splitting this numba per-pixel loop costs speed, and it reads best in one place
@njit(nogil=True, cache=True, error_model="numpy")
def _scene_kernel(params, boxes, bg, ty0, ty1, tyw, size, use_bg, img, alpha, start, stop):
    """Render images ``start`` to ``stop`` - 1 into ``img`` (B, 3, H, W) float32 (unclamped,
    before post) and ``alpha`` (B, H, W). ``params`` (B, N_PARAMS) in ``_LAYOUT`` order;
    ``boxes`` (B, 8, 4) int64 row/column windows [y0, y1) × [x0, x1) per feature;
    ``bg`` (B, 3, low, low) the low-resolution background; ty0/ty1/tyw its bilinear taps."""
    half = (size - 1) / 2.0
    for b in range(start, stop):
        q = params[b]
        box = boxes[b]
        ipx = q[IPX]
        a, bh, c = q[AX], q[AX + 1], q[AX + 2]
        kj = a * (1 - q[JAW]) / (bh - 0.2 * bh) ** 2 * ipx
        amb = q[AMB]
        occ = q[OCC]
        hair_bg, skin, hair_c = _vec(q, HBG), _vec(q, SKIN), _vec(q, HAIRC)
        # every per-image value into a local: array arguments to helpers inside the pixel
        # loop would cost a reference count update per call (3-4× slower)
        hair_q, disc_q, hand_q = _vec6(q, HQ), _vec6(q, DQ), _vec6(q, HANDQ)
        t_lin, o_x, o_y, o_z, num_lin = (_vec(q, TL), _vec(q, ORIG), _vec(q, ORIG + 3),
                                         _vec(q, ORIG + 6), _vec(q, NUM))
        kh, iqa, dw, hline, brow_y, tilt = q[KH], q[IQA], q[DW], q[HLINE], q[BROWY], q[TILT]
        dx, dy, dz = _vec(q, DIR)
        ia4x, ia4y, ia4z = _vec(q, IA4)
        mouth_y, smile, lip_h, gap_h, mtop = q[MY], q[SMILE], q[LIPH], q[GAPH], q[MTOP]
        m1, m1x, m1y, m2, m2x, m2y, mr = q[M1], q[M1X], q[M1Y], q[M2], q[M2X], q[M2Y], q[MR]
        brow_c, white, iris_c, lip_c = _vec(q, BROWC), _vec(q, WHITE), _vec(q, IRIS), _vec(q, LIPC)
        cloth, hand_c = _vec(q, CLOTH), _vec(q, HANDC)
        w_wr, w_el, w_er, w_nose, w_mouth, w_m1, w_m2, w_gl = (
            _win(box, 0), _win(box, 1), _win(box, 2), _win(box, 3), _win(box, 4), _win(box, 5),
            _win(box, 6), _win(box, 7))
        ex, ey, er, eh, age = q[EX], q[EY], q[ER], q[EH], q[AGE]
        ibw2, ibt2 = q[BROWW] ** -2, q[BROWT] ** -2
        ier2, ieh2 = er ** -2, eh ** -2
        sb = 0.5 * min(q[BROWW], q[BROWT]) * ipx
        se, si = 0.5 * min(er, eh) * ipx, 0.25 * er * ipx
        tip_y, nl, nw, half_m = q[TIPY], q[NL], q[NW], q[HALF]
        for r in range(size):
            gi = r - half
            y0, y1, wy = ty0[r], ty1[r], tyw[r]
            for col in range(size):
                gj = col - half
                disc = _quad(disc_q, gi, gj)
                t = qx = qy = qz = 0.0
                head = _clamp01(0.5 + disc * kh)
                if head > 0:
                    t = _aff(t_lin, gi, gj) + math.sqrt(max(disc, 0.0)) * iqa
                    qx = _aff(o_x, gi, gj) + t * dx
                    qy = _aff(o_y, gi, gj) + t * dy
                    qz = _aff(o_z, gi, gj) + t * dz
                    u = max(qy - 0.2 * bh, 0.0)
                    head *= _clamp01(a * ipx + 0.5 - u * u * kj - abs(qx) * ipx)
                # where the head covers the pixel fully, lerp(·, face, 1) is the face exactly
                # and the coverage 1: background and hair cannot show
                px = (0.0, 0.0, 0.0)
                al = head
                if head < 1:
                    if use_bg:  # bilinear upsampling, as F.interpolate(align_corners=False)
                        x0, x1, wx = ty0[col], ty1[col], tyw[col]
                        w00, w01 = (1 - wy) * (1 - wx), (1 - wy) * wx
                        w10, w11 = wy * (1 - wx), wy * wx
                        px = (w00 * bg[b, 0, y0, x0] + w01 * bg[b, 0, y0, x1]
                              + w10 * bg[b, 0, y1, x0] + w11 * bg[b, 0, y1, x1],
                              w00 * bg[b, 1, y0, x0] + w01 * bg[b, 1, y0, x1]
                              + w10 * bg[b, 1, y1, x0] + w11 * bg[b, 1, y1, x1],
                              w00 * bg[b, 2, y0, x0] + w01 * bg[b, 2, y0, x1]
                              + w10 * bg[b, 2, y1, x0] + w11 * bg[b, 2, y1, x1])
                    else:
                        px = (0.5, 0.5, 0.5)
                    hm = _clamp01(_quad(hair_q, gi, gj))
                    px = _lerp3(px, hair_bg, hm)
                    al = max(hm, head)
                if head > 0:
                    num = _aff(num_lin, gi, gj) + t * dw
                    nn = qx * ia4x * qx + qy * ia4y * qy + qz * ia4z * qz
                    lam = max(num / math.sqrt(max(nn, 1e-12)), 0.0)
                    shade = amb + lam * (1 - amb)
                    fr = _clamp01(0.5 - 0.2 * c * ipx + qz * ipx)
                    hv = _clamp01(max(hline * ipx + 0.5 - qy * ipx,
                                      0.5 - 0.1 * c * ipx - qz * ipx))
                    cw = _lerp3(skin, hair_c, hv)
                    gain = 1.0
                    if _inside(w_wr, r, col):  # forehead lines
                        band = (_clamp01((ey - 0.12) * ipx + 0.5 - qy * ipx)
                                * _clamp01(0.5 - (hline + 0.04) * ipx + qy * ipx))
                        gain += (math.sin(qy * 70) + 1) * band * fr * (-0.09 * age * age)
                    for k in range(2):
                        if _inside(w_el if k == 0 else w_er, r, col):
                            side = -1.0 if k == 0 else 1.0
                            u, v = qx - side * ex, qy - ey
                            uu, vv = u * u, v * v
                            bv = v + (ey - brow_y) - u * side * tilt
                            brow = _cover(uu * ibw2 + bv * ibt2 * bv, sb) * fr
                            cw = _lerp3(cw, brow_c, brow)
                            sclera = _cover(uu * ier2 + vv * ieh2, se) * fr
                            cw = _lerp3(cw, white, sclera)
                            r2 = uu + vv
                            iris = _cover(r2 * (4 * ier2), si) * sclera
                            cw = _lerp3(cw, iris_c, iris)
                            pupil = _cover(r2 * (25 * ier2), 0.4 * si) * sclera
                            dim = 1 - 0.9 * pupil
                            cw = (cw[0] * dim, cw[1] * dim, cw[2] * dim)
                    if _inside(w_nose, r, col):
                        ridge = _ellipse(qx, qy, 0.0, tip_y - 0.45 * nl, nw * 0.7, 0.55 * nl, ipx)
                        g = 1 - 0.10 * ridge
                        for side in (-1.0, 1.0):
                            g *= 1 - 0.55 * _ellipse(qx, qy, side * nw, tip_y, 0.35 * nw,
                                                     0.2 * nw, ipx)
                        tip = _ellipse(qx, qy, 0.0, tip_y, 0.45 * nw, 0.35 * nw, ipx)
                        gain *= _lerp(1.0, g * (1 + 0.12 * tip), fr)
                    if _inside(w_mouth, r, col):
                        curved = qy - mouth_y + 0.9 * smile * (half_m * half_m - qx * qx)
                        lips = _ellipse(qx, curved, 0.0, 0.0, half_m, lip_h, ipx) * fr
                        cw = _lerp3(cw, lip_c, lips)
                        gap = _ellipse(qx, curved, 0.0, 0.0, 0.85 * half_m, gap_h, ipx) * lips
                        dim = 1 - 0.8 * gap
                        cw = (cw[0] * dim, cw[1] * dim, cw[2] * dim)
                    if m1 > 0 and _inside(w_m1, r, col):
                        gain *= 1 - 0.45 * (_ellipse(qx, qy, m1x, m1y, mr, mr, ipx)
                                            * fr)
                    if m2 > 0 and _inside(w_m2, r, col):
                        gain *= 1 - 0.45 * (_ellipse(qx, qy, m2x, m2y, mr, mr, ipx)
                                            * fr)
                    sg = shade * gain
                    px = _lerp3(px, (cw[0] * sg, cw[1] * sg, cw[2] * sg), head)
                    if occ == 1 and _inside(w_gl, r, col):
                        ring = 0.0
                        for side in (-1.0, 1.0):
                            outer = _ellipse(qx, qy, side * ex, ey, 1.9 * er, 1.5 * er, ipx)
                            inner = _ellipse(qx, qy, side * ex, ey, 1.6 * er, 1.2 * er, ipx)
                            ring = max(ring, outer - inner)
                        px = _lerp3(px, (0.08, 0.08, 0.08), ring * head * fr)
                    elif occ == 2:
                        mask = _clamp01(0.5 - mtop * ipx + qy * ipx) * head
                        px = _lerp3(px, cloth, mask)
                if occ == 3:
                    hand = _clamp01(_quad(hand_q, gi, gj))
                    px = _lerp3(px, hand_c, hand)
                    al = max(al, hand)
                img[b, 0, r, col] = px[0]
                img[b, 1, r, col] = px[1]
                img[b, 2, r, col] = px[2]
                alpha[b, r, col] = al


def render_scene(columns: dict[str, Tensor], boxes: Tensor, bg_low: Tensor | None,
                 size: int, post: dict[str, Tensor] | None = None) -> tuple[Tensor, Tensor]:
    """Run the kernel over a batch: ``columns`` the per-image values named in ``_LAYOUT``,
    ``boxes`` (B, 8, 2, 2) the features' pixel boxes (``regions.pixel_boxes``),
    ``bg_low`` (B, 3, low, low) the background before upsampling, or None for mid grey.
    Returns images (B, 3, size, size) float32 and the face's coverage (B, size, size).

    ``post`` None: the images are not clamped, nothing else is done. Otherwise each image is
    blurred and (where ``post["noise_now"]``) noised and clamped as soon as its scene is drawn,
    while it is still in the core's cache, by the thread that drew it: ``post`` holds
    ``weights`` (B, R + 1) and ``radius`` (B,) as for ``kernel_post.blur``, and ``bank``,
    ``offsets``, ``sigma`` as for ``kernel_post.noise_and_clamp``. Images left out of
    ``noise_now`` (the renderer's JPEG ones) are only blurred: the caller compresses them,
    then calls ``noise_and_clamp``."""
    b = len(boxes)
    params = _pack(columns, b)
    lo = boxes[:, :, 0].floor().clamp(0, size)
    hi = boxes[:, :, 1].ceil().clamp(0, size)
    win = torch.stack([lo[..., 1], hi[..., 1], lo[..., 0], hi[..., 0]], -1)
    win = np.ascontiguousarray(win.to(torch.int64).numpy())
    if bg_low is None:
        bg = np.zeros((b, 3, 1, 1), np.float32)
        taps = _bilinear_taps(1, size)
    else:
        bg = np.ascontiguousarray(bg_low.detach().numpy())
        taps = _bilinear_taps(bg.shape[-1], size)
    img = np.empty((b, 3, size, size), np.float32)
    alpha = np.empty((b, size, size), np.float32)
    scene = (params, win, bg, *taps, size, bg_low is not None, img, alpha)
    if post is None:
        parallel(lambda lo, hi: _scene_kernel(*scene, lo, hi), b)
    else:
        finish = (post["weights"].numpy(), post["radius"].to(torch.int64).numpy(),
                  post["bank"].numpy(), post["offsets"].to(torch.int64).numpy(),
                  post["sigma"].float().numpy(), post["noise_now"].to(torch.bool).numpy())
        flat = img.reshape(b, 3 * size * size)
        parallel(lambda lo, hi: _scene_post_kernel(scene, flat, finish, lo, hi), b)
    return torch.from_numpy(img), torch.from_numpy(alpha)


@njit(nogil=True, cache=True, error_model="numpy")
def _scene_post_kernel(scene, flat, finish, start, stop):
    """Images start..stop-1: the scene, the blur, and noise + clamp where ``noise_now``, one
    image at a time (``render_scene`` with ``post``)."""
    weights, radius, bank, offsets, sigma, noise_now = finish
    img = scene[8]
    w = img.shape[3]
    row = np.empty(w + 2 * (weights.shape[1] - 1), np.float32)
    tmp = np.empty((img.shape[2], w), np.float32)
    for b in range(start, stop):
        _scene_kernel(*scene, b, b + 1)
        blur_image(img[b], weights[b], radius[b], row, tmp)
        if noise_now[b]:
            noise_image(flat[b], bank, offsets[b], sigma[b])
