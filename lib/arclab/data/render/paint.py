"""Painting the head: its texture (skin and hairline, then the small features: forehead lines,
eyes with brows, nose, mouth, beauty marks) and the occluders (glasses, masks, a hand), as
batched torch ops, each small feature only inside the pixel window that holds it in every
image of the batch (see :mod:`~arclab.data.render.regions`). The torch engine's painting;
the kernel engine paints the same in :mod:`~arclab.data.render.kernel`.

Taught in: notebooks/03_synthfaces.ipynb
"""

from __future__ import annotations

import torch
from torch import Tensor

from arclab.data.render.head import coverage, hand_coef, per_image
from arclab.data.render.regions import window

__all__ = ["occluders", "put", "texture"]


def put(img: Tensor, sel: Tensor, values: Tensor) -> Tensor:
    """``img[sel] = values``, in place unless autograd is tracking ``img``."""
    return img.index_copy(0, sel, values) if img.requires_grad else img.index_copy_(0, sel, values)


def _paint(col: Tensor, maps: tuple[Tensor, ...], pix_box: Tensor, size: int, paint,
           dense: bool = False, sel: Tensor | None = None) -> Tensor:
    """``col[..., window] = paint(col[..., window], *maps[..., window])`` where the window holds,
    for every image, its pixel box ``pix_box`` (B, 2, 2) (see ``pixel_boxes``). ``paint`` must
    leave every pixel outside the feature's head-surface box exactly as it was, so what an
    image gets does not depend on the rest of the batch. ``col`` may be (B, 3, H, W) or
    (B, H, W). ``sel`` (K,) restricts painting to those images (``pix_box`` is then theirs,
    (K, 2, 2)). ``dense`` paints the whole frame (the same pixels, bit for bit)."""
    if sel is not None and not sel.numel():
        return col
    if dense:
        if sel is None:
            return paint(col, *maps)
        return put(col, sel, paint(col[sel], *(m[sel] for m in maps)))
    if not len(col):
        return col
    win = window(pix_box, size)
    if win is None:
        return col
    ys, xs = win
    if sel is None:
        painted = paint(col[..., ys, xs], *(m[:, ys, xs] for m in maps))
    else:
        part = col[sel, :, ys, xs] if col.ndim == 4 else col[sel, ys, xs]
        painted = paint(part, *(m[sel, ys, xs] for m in maps))
    if painted.requires_grad or col.requires_grad:  # autograd saved views of col: copy it
        col = col.clone()
    if sel is None:
        col[..., ys, xs] = painted
    elif col.ndim == 4:
        col[sel, :, ys, xs] = painted
    else:
        col[sel, ys, xs] = painted
    return col


def _ellipse_fast(x: Tensor, y: Tensor, cx, cy, rx, ry, ipx: Tensor) -> Tensor:
    """``ellipse`` with ``1 / px`` given, in fewer passes over the pixels."""
    s = 0.5 * torch.minimum(torch.as_tensor(rx), torch.as_tensor(ry)) * ipx
    u, v = (x - cx).div_(rx), (y - cy).div_(ry)
    return _cover((u * u).addcmul_(v, v), s)


def _cover(d2: Tensor, s: Tensor) -> Tensor:
    """Coverage s·(1 − d²) + 0.5, clamped to [0, 1], from an ellipse's normalised d²."""
    return torch.addcmul(s + 0.5, d2, -s).clamp_(0, 1)


def texture(f, lit, qx, qy, qz, front, c, pxf, pix, size, dense=False):
    """The head's colour under the light, before shading, (B, 3, H, W), and a grey gain
    (B, H, W) that multiplies it (wrinkles, nose, marks). ``f``: the chunk's ``features``.
    Small features are painted only inside the pixel window that holds them in every image
    of the batch. ``lit``: the colours of ``lit_colours``."""
    def p(key: str) -> Tensor:
        return f[key][:, None, None]

    skin, hair_c = lit["skin"], lit["hair"]
    ipx = per_image(1 / pxf)
    hair_line = p("hair_line")
    hair = torch.maximum(torch.addcmul(hair_line * ipx + 0.5, qy, -ipx),
                         torch.addcmul(0.5 - 0.1 * c * ipx, qz, -ipx)).clamp_(0, 1)
    col = torch.lerp(skin, hair_c, hair[:, None])
    maps = (qx, qy, front)

    def wrinkles(g, x, y, fr):  # forehead lines between the hairline and the brows
        band = torch.addcmul((p("ey") - 0.12) * ipx + 0.5, y, -ipx).clamp(0, 1) * \
            torch.addcmul(0.5 - (hair_line + 0.04) * ipx, y, ipx).clamp(0, 1)
        return torch.addcmul(g, (torch.sin(y * 70) + 1) * band * fr, -0.09 * p("age") ** 2)

    gain = _paint(torch.ones_like(qy), maps, pix[:, 0], size, wrinkles, dense)
    for k, eye in zip((1, 2), _eye_painters(f, lit, ipx)):  # left eye, right eye
        col = _paint(col, maps, pix[:, k], size, eye, dense)
    tip_y, nl, nw = p("tip_y"), p("nl"), p("nw")

    def nose(cw, x, y, fr):
        ridge = _ellipse_fast(x, y, 0.0, tip_y - 0.45 * nl, nw * 0.7, 0.55 * nl, ipx)
        g = 1 - 0.10 * ridge
        for side in (-1.0, 1.0):
            nostril = _ellipse_fast(x, y, side * nw, tip_y, 0.35 * nw, 0.2 * nw, ipx)
            g = g * (1 - 0.55 * nostril)
        tip = _ellipse_fast(x, y, 0.0, tip_y, 0.45 * nw, 0.35 * nw, ipx)
        return cw * torch.lerp(torch.ones(()), g * (1 + 0.12 * tip), fr)

    gain = _paint(gain, maps, pix[:, 3], size, nose, dense)
    smile, half, lip_h = p("smile"), p("half"), p("lip_h")
    lip_c = lit["lip"]

    def mouth(cw, x, y, fr):
        curved = y - p("mouth_y") + 0.9 * smile * (half**2 - x**2)
        lips = _ellipse_fast(x, curved, 0.0, 0.0, half, lip_h, ipx) * fr
        cw = torch.lerp(cw, lip_c, lips[:, None])
        gap = _ellipse_fast(x, curved, 0.0, 0.0, 0.85 * half, p("gap_h"), ipx) * lips
        return cw * (1 - 0.8 * gap[:, None])

    col = _paint(col, maps, pix[:, 4], size, mouth, dense)
    for k, m in enumerate(("mark", "mark2")):
        # the identity draw can give a radius <= 0 (p = 0.2 %): no mark then
        sel = ((f[m + "_on"] > 0.5) & (f["mark_r"] > 0)).nonzero().squeeze(1)
        mx, my, mr = (f[key][sel, None, None] for key in (m + "_x", m + "_y", "mark_r"))
        ip = ipx[sel]

        def mark(cw, x, y, fr, mx=mx, my=my, mr=mr, ip=ip):
            spot = _ellipse_fast(x, y, mx, my, mr, mr, ip)
            return cw * (1 - 0.45 * (spot * fr))

        gain = _paint(gain, maps, pix[sel, 5 + k], size, mark, dense, sel)
    return col, gain


def _eye_painters(f: dict[str, Tensor], lit: dict[str, Tensor], ipx: Tensor) -> list:
    """The painters of the left and the right eye, each with its brow, for ``_paint``:
    ``f`` the ``features``, ``lit`` the ``lit_colours``, ``ipx`` (B, 1, 1) pixels per face
    unit."""
    def p(key: str) -> Tensor:
        return f[key][:, None, None]

    ex, ey, er, eh, brow_y, tilt = (p(k) for k in ("ex", "ey", "er", "eh", "brow_y", "tilt"))
    white, iris_c, brow_c = lit["white"], lit["iris"], lit["brow"]
    # _ellipse_fast's terms: 1 / r² per axis and the ramp slope s = min(rx, ry) / (2 px)
    ibw2, ibt2, ier2, ieh2 = p("brow_w") ** -2, p("brow_t") ** -2, er**-2, eh**-2
    sb = 0.5 * torch.minimum(p("brow_w"), p("brow_t")) * ipx
    se, si = 0.5 * torch.minimum(er, eh) * ipx, 0.25 * er * ipx
    painters = []
    for side in (-1.0, 1.0):
        def eye(cw, x, y, fr, side=side):
            # brow, sclera, iris and pupil share the eye's centre column: one u², v² for all
            u, v = x - side * ex, y - ey
            uu, vv = u * u, v * v
            bv = torch.addcmul(v + (ey - brow_y), u, -side * tilt)  # sheared, from brow_y
            brow = _cover((uu * ibw2).addcmul_(bv * ibt2, bv), sb).mul_(fr)
            cw = torch.lerp(cw, brow_c, brow[:, None])  # a new tensor: cw is col's window
            sclera = _cover((uu * ier2).addcmul_(vv, ieh2), se).mul_(fr)
            cw = cw.lerp_(white, sclera[:, None])
            r2 = uu + vv
            iris = _cover(r2 * (4 * ier2), si).mul_(sclera)
            cw = cw.lerp_(iris_c, iris[:, None])
            pupil = _cover(r2 * (25 * ier2), 0.4 * si).mul_(sclera)
            return cw.mul_((1 - 0.9 * pupil)[:, None])

        painters.append(eye)
    return painters


def occluders(img, ident, nuis, lit, xa, ya, gi, gj, qx, qy, head, front, pxf, pix,
              size, dense=False):
    """Glasses on the front of the head, masks on its surface, a hand-like blob in the image
    plane. Each is drawn only on the images that have it."""
    occ = nuis["occlusion"]
    ipx = per_image(1 / pxf)
    sel = (occ == 1).nonzero().squeeze(1)
    if sel.numel():
        ex, ey, er = (ident[k][sel, None, None] for k in ("eye_dx", "eye_y", "eye_r"))
        ip = ipx[sel]

        def glasses(iw, x, y, hd, fr):
            ring = torch.zeros_like(x)
            for side in (-1.0, 1.0):
                outer = _ellipse_fast(x, y, side * ex, ey, 1.9 * er, 1.5 * er, ip)
                inner = _ellipse_fast(x, y, side * ex, ey, 1.6 * er, 1.2 * er, ip)
                ring = torch.maximum(ring, outer - inner)
            return torch.lerp(iw, torch.full_like(iw[:, :, :1, :1], 0.08),
                              (ring * hd * fr)[:, None])

        img = _paint(img, (qx, qy, head, front), pix[sel, 7], size, glasses, dense, sel)
    sel = (occ == 2).nonzero().squeeze(1)
    if sel.numel():
        top = (ident["eye_y"] + 0.65 * ident["nose_len"])[sel, None, None]
        ip = ipx[sel]
        mask = torch.addcmul(0.5 - top * ip, qy[sel], ip).clamp(0, 1) * head[sel]
        cloth = lit["cloth"][sel]
        img = put(img, sel, torch.lerp(img[sel], cloth, mask[:, None]))
    sel = (occ == 3).nonzero().squeeze(1)
    if sel.numel():
        hand = coverage(hand_coef({k: nuis[k][sel] for k in ("occ_u", "occ_v")}, xa[sel],
                                  ya[sel], pxf[sel].double()), gi, gj)
        colour = lit["hand"][sel]
        img = put(img, sel, torch.lerp(img[sel], colour, hand[:, None]))
    return img
