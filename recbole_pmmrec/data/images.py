"""Item images decoded and preprocessed once, outside the model.

Every image is resized (shorter side, bicubic) and centre-cropped to the vision tower's
input size, and kept as ``uint8`` pixels ``[3, S, S]``; the image encoder only scales and
normalises them. Greyscale, palette, CMYK, 16-bit and transparent images are converted to
RGB (transparency over white). Decoding every image when the dataset loads also checks it:
a missing, empty, truncated, undecodable or huge file (more pixels than PIL's
``Image.MAX_IMAGE_PIXELS``) is an error naming the content file's line, or with
``on_error="mask"`` the item's image is masked and the problem returned.
"""

import warnings

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from recbole_pmmrec.data.content import ContentError


def resize_and_crop(size):
    """PIL image -> ``uint8`` tensor ``[3, size, size]`` (as open_clip's evaluation transform,
    without its float conversion and normalisation)."""
    from torchvision import transforms  # 160 MB of RSS: imported only when images are used

    return transforms.Compose(
        [
            transforms.Resize(size, interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.CenterCrop(size),
            transforms.PILToTensor(),
        ]
    )


def to_rgb(img):
    """``img`` as RGB: 16-bit greyscale scaled to 8 bits, transparency composited over white."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        img = Image.fromarray((np.asarray(img, dtype=np.float64) / 257).clip(0, 255).astype(np.uint8))
    elif img.mode == "F":
        img = Image.fromarray(np.asarray(img, dtype=np.float64).clip(0, 255).astype(np.uint8))
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    return img.convert("RGB")


def decode_image(path, where, preprocess):
    """The preprocessed pixels of the image at ``path``; :class:`ContentError` naming
    ``where`` if the file is missing, empty, huge or does not decode."""
    if not path.is_file():
        raise ContentError(f"{where}: image file not found: {path}")
    if path.stat().st_size == 0:
        raise ContentError(f"{where}: image file is empty (0 bytes): {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                return preprocess(to_rgb(img))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ContentError(f"{where}: image file is huge ({err}): {path}") from None
    except Exception as err:  # PIL raises many types for corrupt files
        raise ContentError(f"{where}: image file cannot be read: {path} ({err})") from None


def decode_images(paths, size, on_error="error"):
    """``(pixels [N, 3, size, size] uint8, has_image [N] float, problems)`` for ``paths``, a
    list of ``(path, where)`` or None (no image: black pixels, masked by the item encoder).
    A bad image raises :class:`ContentError`, or with ``on_error="mask"`` is masked and its
    message returned in ``problems``."""
    preprocess = resize_and_crop(size)
    pixels = torch.zeros(len(paths), 3, size, size, dtype=torch.uint8)
    has_image = torch.tensor([entry is not None for entry in paths], dtype=torch.float)
    problems = []
    for index, entry in enumerate(tqdm(paths, desc="decode images", leave=False)):
        if entry is None:
            continue
        try:
            pixels[index] = decode_image(*entry, preprocess)
        except ContentError as error:
            if on_error != "mask":
                raise
            problems.append(str(error))
            has_image[index] = 0.0
    return pixels, has_image, problems
