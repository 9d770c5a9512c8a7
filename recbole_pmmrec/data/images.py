"""Item images decoded and preprocessed once, outside the model.

Every image is resized (shorter side, bicubic) and centre-cropped to the vision tower's
input size, and kept as ``uint8`` pixels ``[3, S, S]``; the image encoder only scales and
normalises them. Decoding every image when the dataset loads also checks it: a missing or
undecodable file is an error naming the content file's line.
"""

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


def decode_image(path, where, preprocess):
    """The preprocessed pixels of the image at ``path``; :class:`ContentError` naming
    ``where`` if the file is missing or does not decode."""
    if not path.is_file():
        raise ContentError(f"{where}: image file not found: {path}")
    try:
        with Image.open(path) as img:
            return preprocess(img.convert("RGB"))
    except Exception as err:  # PIL raises many types for corrupt files
        raise ContentError(f"{where}: image file cannot be read: {path} ({err})") from None


def decode_images(paths, size):
    """``(pixels [N, 3, size, size] uint8, has_image [N] float)`` for ``paths``, a list of
    ``(path, where)`` or None (no image: black pixels, masked by the item encoder)."""
    preprocess = resize_and_crop(size)
    pixels = torch.zeros(len(paths), 3, size, size, dtype=torch.uint8)
    for index, entry in enumerate(tqdm(paths, desc="decode images", leave=False)):
        if entry is not None:
            pixels[index] = decode_image(*entry, preprocess)
    has_image = torch.tensor([entry is not None for entry in paths], dtype=torch.float)
    return pixels, has_image
