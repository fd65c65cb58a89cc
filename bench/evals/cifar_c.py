"""The CIFAR-10-C corruption family (Hendrycks & Dietterich, ICLR 2019): 15 corruptions x 5
severities with the CIFAR-C parameters of make_cifar_c.py (not ImageNet-C's), written in torch
for N x C x H x W images in [0,1], grayscale (C = 1) or RGB (C = 3), 28x28 or 32x32. On RGB
images every step is the original's colour step (per-channel noise and contrast, HSV brightness,
colour frost, snow blended against the luma); on grayscale images the luma is the image.

Why by hand: the maintained package (imagecorruptions-imaug) uses ImageNet-scale parameters,
refuses images under 32 px and returns RGB. These are equivalents of the CIFAR-C recipe, not
byte-identical copies: ImageMagick's motion blur is re-implemented (its one-sided Gaussian line
kernel), OpenCV/scipy resampling is replaced by torch's, and the per-image draws use torch's RNG.
Constants defined in pixels at 32 px (elastic) scale with the image size. Every output is
rounded to the uint8 grid, as the released CIFAR-10-C files are. Each image draws from its own
generator (``ImageRNG``), so every model sees the same corrupted image. Frost overlays the six frost
photographs shipped with imagecorruptions-imaug (read from its files, the module is not
imported). Where a user has the real CIFAR-10-C/100-C files, the evaluation reads them instead."""

from __future__ import annotations

import importlib.util
import io
import math
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from bench.errors import DataNotFound
from bench.evals.image_rng import ImageRNG
from bench.registry import Registry

CIFAR_C = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
)
Corruption = Callable[[torch.Tensor, int, ImageRNG], torch.Tensor]
CORRUPTIONS: Registry[Corruption] = Registry("corruption")
SEVERITIES = (1, 2, 3, 4, 5)


def _quantize(x: torch.Tensor) -> torch.Tensor:
    return (x.clamp(0, 1) * 255).round() / 255


def _pad(x: torch.Tensor, p: int, mode: str) -> torch.Tensor:
    """mode: 'nearest' (edge), 'reflect' (scipy: edge pixel repeated), 'mirror' (edge not repeated)."""
    if p == 0:
        return x
    if mode == "nearest":
        return F.pad(x, (p, p, p, p), mode="replicate")
    if mode == "mirror":
        return F.pad(x, (p, p, p, p), mode="reflect")
    x = torch.cat([x[..., :p, :].flip(-2), x, x[..., -p:, :].flip(-2)], dim=-2)
    return torch.cat([x[..., :p].flip(-1), x, x[..., -p:].flip(-1)], dim=-1)


def gaussian_filter(x: torch.Tensor, sigma: float, mode: str = "nearest", truncate: float = 4.0) -> torch.Tensor:
    """scipy.ndimage / skimage.filters.gaussian on the last two axes."""
    radius = int(truncate * sigma + 0.5)
    if sigma <= 0 or radius == 0:
        return x
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    shape = x.shape
    x = _pad(x.reshape(-1, 1, *shape[-2:]), radius, mode)
    x = F.conv2d(x, k.view(1, 1, 1, -1))
    return F.conv2d(x, k.view(1, 1, -1, 1)).reshape(shape)


def clipped_zoom(x: torch.Tensor, zoom: float) -> torch.Tensor:
    """Zoom into the centre by ``zoom`` and crop back to the input size (scipy zoom, order 1)."""
    h = x.shape[-1]
    ch = int(math.ceil(h / zoom))
    top = (h - ch) // 2
    crop = x[..., top : top + ch, top : top + ch]
    size = int(round(ch * zoom))
    z = F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=True)
    trim = (size - h) // 2
    return z[..., trim : trim + h, trim : trim + h]


def motion_blur(x: torch.Tensor, radius: float, sigma: float, angles: torch.Tensor) -> torch.Tensor:
    """ImageMagick's MotionBlurImage: a one-sided line of 2*ceil(radius)+1 taps with Gaussian
    weights exp(-i^2 / 2 sigma^2), at an angle per image (degrees), edge pixels repeated."""
    width = 2 * int(math.ceil(radius)) + 1
    i = torch.arange(width, dtype=torch.float64)
    k = torch.exp(-(i**2) / (2 * sigma**2))
    k = (k / k.sum()).to(x.dtype)
    a = torch.deg2rad(angles.double())
    dx = torch.ceil(i[None] * torch.cos(a)[:, None] - 0.5).long()  # N x width
    dy = torch.ceil(i[None] * torch.sin(a)[:, None] - 0.5).long()
    n, c, h, w = x.shape
    xp = F.pad(x, (width, width, width, width), mode="replicate")
    rows = torch.arange(h)[None, :, None] + width
    cols = torch.arange(w)[None, None, :] + width
    batch = torch.arange(n)[:, None, None]
    out = torch.zeros_like(x)
    for t in range(width):
        shifted = xp[batch, :, rows + dy[:, t, None, None], cols + dx[:, t, None, None]]  # N x H x W x C
        out += k[t] * shifted.permute(0, 3, 1, 2)
    return out


def plasma_fractal(mapsize: int, wibbledecay: float, rng: ImageRNG) -> torch.Tensor:
    """Diamond-square height maps in [0,1], images x mapsize x mapsize (the CIFAR-C fog texture)."""
    m = torch.zeros(len(rng), mapsize, mapsize, dtype=torch.float64)
    step, wibble = mapsize, 100.0

    def wibbled(a):
        return a / 4 + wibble * rng.uniform(-wibble, wibble, *a.shape[1:]).double()

    while step >= 2:
        half = step // 2
        corner = m[:, 0::step, 0::step]
        sq = corner + corner.roll(-1, dims=1)
        sq = sq + sq.roll(-1, dims=2)
        m[:, half::step, half::step] = wibbled(sq)
        dr = m[:, half::step, half::step]
        ul = m[:, 0::step, 0::step]
        m[:, 0::step, half::step] = wibbled(dr + dr.roll(1, dims=1) + ul + ul.roll(-1, dims=2))
        m[:, half::step, 0::step] = wibbled(dr + dr.roll(1, dims=2) + ul + ul.roll(-1, dims=1))
        step //= 2
        wibble /= wibbledecay
    m = m - m.amin(dim=(1, 2), keepdim=True)
    return (m / m.amax(dim=(1, 2), keepdim=True)).float()


def _per_image_pil(x: torch.Tensor, fn: Callable[[Image.Image], Image.Image]) -> torch.Tensor:
    """PIL per image: mode 'L' for one channel, 'RGB' for three."""
    images = (x * 255).round().to(torch.uint8)
    images = images[:, 0] if x.shape[1] == 1 else images.permute(0, 2, 3, 1)
    out = [torch.from_numpy(np.asarray(fn(Image.fromarray(img.numpy())), dtype=np.uint8).copy()) for img in images]
    out = torch.stack(out)
    return (out.unsqueeze(1) if x.shape[1] == 1 else out.permute(0, 3, 1, 2)).float() / 255


def _luma(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma, N x 1 x H x W (OpenCV's RGB2GRAY weights); a grayscale image is its own."""
    if x.shape[1] == 1:
        return x
    return 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]


@CORRUPTIONS.register("gaussian_noise")
def gaussian_noise(x, severity, rng):
    c = [0.04, 0.06, 0.08, 0.09, 0.10][severity - 1]
    return _quantize(x + c * rng.randn(*x.shape[1:]))


@CORRUPTIONS.register("shot_noise")
def shot_noise(x, severity, rng):
    c = [500, 250, 100, 75, 50][severity - 1]
    return _quantize(rng.poisson(x * c) / c)


@CORRUPTIONS.register("impulse_noise")
def impulse_noise(x, severity, rng):
    c = [0.01, 0.02, 0.03, 0.05, 0.07][severity - 1]  # skimage random_noise 's&p', half salt
    flipped = rng.rand(*x.shape[1:]) < c
    salt = rng.rand(*x.shape[1:]) < 0.5
    return _quantize(torch.where(flipped, salt.float(), x))


@CORRUPTIONS.register("defocus_blur")
def defocus_blur(x, severity, rng):
    radius, alias = [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)][severity - 1]
    r = torch.arange(-8, 9, dtype=torch.float32)
    disk = ((r[:, None] ** 2 + r[None] ** 2) <= radius**2).float()
    disk = disk / disk.sum()
    # OpenCV GaussianBlur 3x3 with sigma `alias`, border reflect-101
    t = torch.tensor([-1.0, 0.0, 1.0])
    g = torch.exp(-(t**2) / (2 * alias**2))
    g = g / g.sum()
    disk = F.conv2d(F.conv2d(_pad(disk[None, None], 1, "mirror"), g.view(1, 1, 1, 3)), g.view(1, 1, 3, 1))[0, 0]
    c = x.shape[1]  # the same disk on every channel
    return _quantize(F.conv2d(_pad(x, 8, "mirror"), disk[None, None].expand(c, 1, -1, -1).contiguous(), groups=c))


@CORRUPTIONS.register("glass_blur")
def glass_blur(x, severity, rng):
    sigma, delta, iterations = [(0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)][severity - 1]
    img = (gaussian_filter(x, sigma) * 255).floor()  # np.uint8 truncates
    n, _, h, w = img.shape
    batch = torch.arange(n)
    positions = [(r, c) for r in range(h - delta, delta, -1) for c in range(w - delta, delta, -1)]
    offsets = rng.randint(-delta, delta, iterations, len(positions), 2)  # drawn up front, per image
    for it in range(iterations):  # locally shuffle pixels, in the original's order
        for k, (r, c) in enumerate(positions):
            d = offsets[:, it, k]
            r2, c2 = r + d[:, 1], c + d[:, 0]
            a, b = img[batch, :, r, c].clone(), img[batch, :, r2, c2].clone()  # a pixel: all its channels
            img[batch, :, r, c], img[batch, :, r2, c2] = b, a
    return _quantize(gaussian_filter(img / 255, sigma))


@CORRUPTIONS.register("motion_blur")
def motion_blur_corruption(x, severity, rng):
    radius, sigma = [(6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)][severity - 1]
    return _quantize(motion_blur(x, radius, sigma, rng.uniform(-45, 45)))


@CORRUPTIONS.register("zoom_blur")
def zoom_blur(x, severity, rng):
    top = [1.06, 1.11, 1.16, 1.21, 1.26][severity - 1]
    zooms = np.arange(1, top, 0.01)
    out = sum(clipped_zoom(x, float(z)) for z in zooms)
    return _quantize((x + out) / (len(zooms) + 1))


@CORRUPTIONS.register("snow")
def snow(x, severity, rng):
    loc, scale, zoom, threshold, radius, sigma, blend = [
        (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
        (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
        (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
        (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
    ][severity - 1]
    layer = loc + scale * rng.randn(1, *x.shape[2:])  # one snow layer, on every channel
    layer = clipped_zoom(layer, zoom)
    layer = _quantize(torch.where(layer < threshold, 0.0, layer))
    layer = motion_blur(layer, radius, sigma, rng.uniform(-135, -45))
    layer = (layer * 255).round() / 255  # the original decodes the blurred layer from a PNG
    x = blend * x + (1 - blend) * torch.maximum(x, _luma(x) * 1.5 + 0.5)
    return _quantize(x + layer + layer.flip(-1, -2))


@lru_cache(maxsize=2)
def frost_images(mode: str = "L") -> tuple[torch.Tensor, ...]:
    """The frost photographs as H x W x C float tensors in 0..255: 'L' (luma) or 'RGB'."""
    spec = importlib.util.find_spec("imagecorruptions")
    folder = Path(next(iter(spec.submodule_search_locations or []), "")) / "frost" if spec else None
    names = ["frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg", "frost6.jpg"]
    if folder is None or not all((folder / n).is_file() for n in names):
        raise DataNotFound(
            "frost: the frost photographs of 'imagecorruptions-imaug' are not installed; "
            "pip install imagecorruptions-imaug==1.1.5 (a declared dependency)"
        )
    out = []
    for n in names:
        img = Image.open(folder / n).convert(mode)  # 'L': ITU-R 601 luma, as our grayscale datasets
        img = img.resize((int(img.width * 0.2), int(img.height * 0.2)), Image.BILINEAR)
        out.append(torch.from_numpy(np.asarray(img, dtype=np.float32).copy()).reshape(img.height, img.width, -1))
    return tuple(out)


@CORRUPTIONS.register("frost")
def frost(x, severity, rng):
    a, b = [(1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)][severity - 1]
    n, c, h, w = x.shape
    textures = frost_images("L" if c == 1 else "RGB")
    layer = torch.empty(n, c, h, w)
    pick, (rows, cols) = rng.randint(0, 5), rng.rand(2).unbind(1)  # the original draws from the first five
    for k in range(n):
        t = textures[int(pick[k])]
        r = int(rows[k] * (t.shape[0] - h))
        col = int(cols[k] * (t.shape[1] - w))
        layer[k] = t[r : r + h, col : col + w].permute(2, 0, 1)
    return _quantize((a * x * 255 + b * layer) / 255)


@CORRUPTIONS.register("fog")
def fog(x, severity, rng):
    strength, decay = [(0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)][severity - 1]
    n, _, h, w = x.shape
    size = max(32, 1 << (max(h, w) - 1).bit_length())
    peak = x.amax(dim=(1, 2, 3), keepdim=True)
    x = x + strength * plasma_fractal(size, decay, rng)[:, None, :h, :w]
    return _quantize(x * peak / (peak + strength))


@CORRUPTIONS.register("brightness")
def brightness(x, severity, rng):
    c = [0.05, 0.1, 0.15, 0.2, 0.3][severity - 1]  # HSV value + c; a gray image's value is the image
    if x.shape[1] == 1:
        return _quantize(x + c)
    # hue and saturation fixed, a pixel's RGB is its value times a fixed colour: scale by V'/V
    # (a black pixel, V = 0, becomes the gray V')
    v = x.amax(dim=1, keepdim=True)
    v_new = (v + c).clamp(0, 1)
    return _quantize(torch.where(v > 0, x * v_new / v.clamp_min(1e-12), v_new))


@CORRUPTIONS.register("contrast")
def contrast(x, severity, rng):
    c = [0.75, 0.5, 0.4, 0.3, 0.15][severity - 1]
    mean = x.mean(dim=(1, 2, 3) if x.shape[1] == 1 else (2, 3), keepdim=True)  # per channel, as the original
    return _quantize((x - mean) * c + mean)


@CORRUPTIONS.register("elastic_transform")
def elastic_transform(x, severity, rng):
    n, _, h, w = x.shape
    size = h  # make_cifar_c.py's IMSIZE (32): its pixel constants scale with the image
    alpha, sigma, shift = [(0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05), (0.1, 0.03, 0.03)][
        severity - 1
    ]
    alpha, sigma, shift = alpha * size, sigma * size, shift * size
    center = torch.tensor([w // 2, h // 2], dtype=torch.float64)
    sq = min(h, w) // 3
    src = torch.stack([center + sq, torch.stack([center[0] + sq, center[1] - sq]), center - sq])  # (x, y)
    dst = src + rng.uniform(-shift, shift, 3, 2).double()
    # the affine map src -> dst, per image; output pixel p samples the input at M^-1 p
    ones = torch.ones(3, 1, dtype=torch.float64)
    m = torch.linalg.solve(torch.cat([src, ones], 1).expand(n, 3, 3), dst).transpose(1, 2)  # n x 2 x 3
    a_inv = torch.linalg.inv(m[:, :, :2])
    disp = [gaussian_filter(rng.uniform(-1, 1, h, w), sigma, mode="reflect", truncate=3) * alpha for _ in range(2)]
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    px, py = xs + disp[0].double(), ys + disp[1].double()  # dx moves columns, dy rows
    q = torch.stack([px, py], -1) - m[:, None, None, :, 2]
    q = torch.einsum("nij,nhwj->nhwi", a_inv, q)
    grid = torch.stack([q[..., 0] / (w - 1), q[..., 1] / (h - 1)], -1) * 2 - 1
    return _quantize(F.grid_sample(x, grid.float(), mode="bilinear", padding_mode="reflection", align_corners=True))


@CORRUPTIONS.register("pixelate")
def pixelate(x, severity, rng):
    c = [0.95, 0.9, 0.85, 0.75, 0.65][severity - 1]
    h, w = x.shape[-2:]
    return _per_image_pil(x, lambda im: im.resize((int(w * c), int(h * c)), Image.BOX).resize((w, h), Image.BOX))


@CORRUPTIONS.register("jpeg_compression")
def jpeg_compression(x, severity, rng):
    quality = [80, 65, 58, 50, 40][severity - 1]

    def jpeg(im: Image.Image) -> Image.Image:
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=quality)
        return Image.open(buf)

    return _per_image_pil(x, jpeg)


def corrupt(x: torch.Tensor, name: str, severity: int, rng: ImageRNG | int) -> torch.Tensor:
    """``rng``: the images' generators, or a seed (then image k is seeded as index k)."""
    if severity not in SEVERITIES:
        raise ValueError(f"severity {severity}: CIFAR-C severities are 1 to 5")
    if isinstance(rng, int):
        rng = ImageRNG.for_images(rng, torch.arange(len(x)))
    if len(rng) != len(x):
        raise ValueError(f"{len(rng)} image generators for {len(x)} images")
    return CORRUPTIONS.get(name)(x.cpu().float(), severity, rng)
