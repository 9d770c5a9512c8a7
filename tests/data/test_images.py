"""Images decoded once in the data layer: errors naming file and line, the same pixels as
open_clip's own preprocessing."""

import numpy as np
import pytest
import torch
from PIL import Image

from recbole_pmmrec.data.content import ContentError
from recbole_pmmrec.data.images import decode_images
from recbole_pmmrec.model.modality_encoders import ImageEncoder, ImageEncoderSettings
from recbole_pmmrec.pretrained import clip_model_name
from tests.conftest import build_dataset


def test_missing_image_file_names_file_and_line(tiny_data, make_config):
    (tiny_data / "tiny" / "images" / "i4.png").unlink()
    with pytest.raises(ContentError, match=r"tiny\.content\.jsonl, line 5 \(item i4\): image file not found: .*i4\.png"):
        build_dataset(make_config, tiny_data)


def test_corrupt_image_names_file_and_line(tiny_data, make_config):
    (tiny_data / "tiny" / "images" / "i2.png").write_bytes(b"not a png")
    with pytest.raises(ContentError, match=r"line 3 \(item i2\): image file cannot be read: .*i2\.png"):
        build_dataset(make_config, tiny_data)


def test_pixels_decoded_once_then_normalised_by_the_encoder_equal_open_clips_preprocessing(tiny_clip, tmp_path):
    import open_clip

    rng = np.random.default_rng(0)
    path = tmp_path / "photo.png"
    Image.fromarray(rng.integers(0, 256, (50, 37, 3), dtype=np.uint8)).save(path)
    pixels, has_image, problems = decode_images([(path, "photo"), None], size=32)
    assert not problems
    assert pixels.dtype == torch.uint8 and pixels.shape == (2, 3, 32, 32)
    assert has_image.tolist() == [1.0, 0.0] and not pixels[1].any()
    encoder = ImageEncoder(ImageEncoderSettings(str(tiny_clip), "random", 0, 8))
    _, _, preprocess = open_clip.create_model_and_transforms(clip_model_name(str(tiny_clip)))
    with Image.open(path) as image:
        expected = preprocess(image)
    normalised = (pixels[:1].float() - encoder.pixel_mean) / encoder.pixel_std
    assert torch.allclose(normalised[0], expected, atol=1e-5)
