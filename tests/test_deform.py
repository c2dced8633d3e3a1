"""arclab.detection.deform: the grid_sample deformable convolution against torchvision's kernel
(values and all three gradients, float64), against a plain convolution and a hand-shifted
input, and its module against torchvision's (parameters, initialisation, fallbacks)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import DeformConv2d as TorchvisionDeformConv2d
from torchvision.ops import deform_conv2d as torchvision_deform_conv2d

from arclab.detection.deform import DeformConv2d, deform_conv2d


def _grads(fn, x, offset, weight, bias, upstream):
    out = fn(x, offset, weight, bias)
    return [out, *torch.autograd.grad(out, (x, offset, weight, bias), upstream)]


@pytest.mark.parametrize("shape,kernel,stride,padding,dilation", [
    ((2, 3, 5, 7), (3, 3), 1, 1, 1),      # odd sizes, the SSH module's 3x3
    ((1, 4, 9, 6), (3, 2), 2, (1, 2), 1),  # rectangular kernel, stride, uneven padding
    ((2, 2, 8, 8), (3, 3), 1, 2, 2),      # dilation
    ((1, 1, 1, 1), (3, 3), 1, 1, 1),      # a single pixel
])
def test_matches_torchvision_values_and_gradients(shape, kernel, stride, padding, dilation):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=gen, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(5, shape[1], *kernel, generator=gen, dtype=torch.float64,
                         requires_grad=True)
    bias = torch.randn(5, generator=gen, dtype=torch.float64, requires_grad=True)
    h = (shape[2] + 2 * (padding if isinstance(padding, int) else padding[0])
         - dilation * (kernel[0] - 1) - 1) // stride + 1
    w = (shape[3] + 2 * (padding if isinstance(padding, int) else padding[1])
         - dilation * (kernel[1] - 1) - 1) // stride + 1
    # offsets of a few pixels, many taps land outside the input (the zero-padding branch)
    offset = (3 * torch.randn(shape[0], 2 * kernel[0] * kernel[1], h, w, generator=gen,
                              dtype=torch.float64)).requires_grad_()
    upstream = torch.randn(shape[0], 5, h, w, generator=gen, dtype=torch.float64)
    kw = {"stride": stride, "padding": padding, "dilation": dilation}
    ours = _grads(lambda *a: deform_conv2d(*a, **kw), x, offset, weight, bias, upstream)
    theirs = _grads(lambda *a: torchvision_deform_conv2d(*a, **kw), x, offset, weight, bias,
                    upstream)
    for name, a, b in zip(("output", "d/dx", "d/doffset", "d/dweight", "d/dbias"), ours, theirs):
        assert a.shape == b.shape, name
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10, msg=name)


def test_zero_offsets_are_a_plain_convolution_and_integer_offsets_shift_the_input():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 8, 16, generator=gen, dtype=torch.float64)
    weight = torch.randn(4, 3, 3, 3, generator=gen, dtype=torch.float64)
    zero = torch.zeros(2, 18, 8, 16, dtype=torch.float64)
    torch.testing.assert_close(deform_conv2d(x, zero, weight, padding=1),
                               F.conv2d(x, weight, padding=1))
    # every tap moved by (dy, dx) = (1, -2): the plain convolution centred one row lower and
    # two columns left, on the input with a wide zero border
    shift = zero.view(2, 9, 2, 8, 16).clone()
    shift[:, :, 0], shift[:, :, 1] = 1.0, -2.0
    plain = F.conv2d(F.pad(x, (3, 3, 3, 3)), weight)  # output (u, v) centred on x (u-2, v-2)
    torch.testing.assert_close(deform_conv2d(x, shift.view(2, 18, 8, 16), weight, padding=1),
                               plain[:, :, 3:11, 0:16])


def test_channels_last_inputs_give_the_same_result():
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, 4, 6, 6, generator=gen)
    offset = torch.randn(2, 18, 6, 6, generator=gen)
    weight = torch.randn(3, 4, 3, 3, generator=gen)
    expected = deform_conv2d(x, offset, weight, padding=1)
    cl = torch.channels_last
    got = deform_conv2d(x.contiguous(memory_format=cl), offset.contiguous(memory_format=cl),
                        weight.contiguous(memory_format=cl), padding=1)
    torch.testing.assert_close(got, expected)


def test_half_pixel_offset_is_the_mean_of_neighbours():
    x = torch.arange(12.0, dtype=torch.float64).view(1, 1, 3, 4)
    weight = torch.ones(1, 1, 1, 1, dtype=torch.float64)
    offset = torch.zeros(1, 2, 3, 4, dtype=torch.float64)
    offset[:, 1] = 0.5  # dx = +0.5: halfway to the right neighbour, and to zero past the edge
    expected = (x + F.pad(x[..., 1:], (0, 1))) / 2
    torch.testing.assert_close(deform_conv2d(x, offset, weight), expected)


def test_module_is_torchvisions_with_the_same_parameters_and_output():
    torch.manual_seed(3)
    theirs = TorchvisionDeformConv2d(4, 6, 3, padding=1, bias=True)
    torch.manual_seed(3)
    ours = DeformConv2d(4, 6, 3, padding=1, bias=True)
    assert isinstance(ours, TorchvisionDeformConv2d)  # detector_costs' hook still counts it
    for (na, a), (nb, b) in zip(ours.state_dict().items(), theirs.state_dict().items()):
        assert na == nb and torch.equal(a, b)  # same names and the same random initialisation
    x, offset = torch.randn(2, 4, 6, 5), torch.randn(2, 18, 6, 5)
    torch.testing.assert_close(ours(x, offset), theirs(x, offset), rtol=1e-5, atol=1e-5)
    mask = torch.rand(2, 9, 6, 5)  # DCN v2's modulation: torchvision's kernel answers
    torch.testing.assert_close(ours(x, offset, mask), theirs(x, offset, mask))
    grouped = DeformConv2d(4, 6, 3, padding=1, groups=2)
    assert grouped(x, offset).shape == (2, 6, 6, 5)


@pytest.mark.parametrize("kwargs,match", [
    ({"offset": torch.zeros(1, 16, 4, 4)}, "offset must have shape"),
    ({"weight": torch.zeros(2, 5, 3, 3)}, "input channels"),
    ({"bias": torch.zeros(3)}, "bias must have shape"),
    ({"stride": 0}, "stride must be"),
    ({"padding": -1}, "padding must be"),
    ({"x": torch.zeros(3, 4, 4)}, "must be 4-D"),
    ({"x": torch.zeros(1, 3, 1, 1), "padding": 0}, "kernel .* does not fit"),
    ({"dilation": 1.5}, "dilation must be"),
])
def test_bad_arguments_are_named(kwargs, match):
    args = {"x": torch.zeros(1, 3, 4, 4), "offset": torch.zeros(1, 18, 4, 4),
            "weight": torch.zeros(2, 3, 3, 3), "bias": None, "padding": 1}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        deform_conv2d(**args)
