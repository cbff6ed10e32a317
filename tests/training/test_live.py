"""The live stage: frozen early blocks stay exactly as loaded, the rest learns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from efficientnet_lite_pytorch import EfficientNet
from torch import nn
from torch.optim.swa_utils import AveragedModel

from clothing.training import live
from clothing.training.data import list_classes, list_images
from clothing.training.network import build_network

SIZE = 64
FROZEN = 3


def _train_data(tiny_dataset: Path) -> live.DecodedImages:
    folder = tiny_dataset / "train"
    return live.decode_all(list_images(folder, list_classes(folder)))


def _run_epoch(
    network: EfficientNet, data: live.DecodedImages, average: AveragedModel | None = None
) -> tuple[float, float]:
    """One live epoch with the first FROZEN blocks frozen, at a high constant rate."""
    optimizer = torch.optim.AdamW(live.prepare(network, FROZEN), lr=1e-2)
    return live.run_live_epoch(
        live.LiveEpoch(
            network=network,
            data=data,
            size=SIZE,
            frozen_blocks=FROZEN,
            optimizer=optimizer,
            scheduler=torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0),
            criterion=nn.CrossEntropyLoss(),
            generator=torch.Generator().manual_seed(0),
            rng=np.random.default_rng(0),
            batch_size=6,
            description="test",
            show_progress=False,
            average=average,
        )
    )


def _epoch(tiny_dataset: Path) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    network = build_network("lite0", 3, SIZE, SIZE)
    before = {name: value.clone() for name, value in network.state_dict().items()}
    loss, accuracy = _run_epoch(network, _train_data(tiny_dataset))
    assert loss > 0
    assert 0.0 <= accuracy <= 1.0
    return network, before


def test_frozen_modules_keep_weights_and_statistics_while_the_rest_learns(
    tiny_dataset: Path,
) -> None:
    network, before = _epoch(tiny_dataset)
    after = network.state_dict()
    frozen_prefixes = ("_conv_stem.", "_bn0.", *(f"_blocks.{i}." for i in range(FROZEN)))
    for name, value in after.items():
        if name.startswith(frozen_prefixes):
            # Weights and batch-norm running statistics alike.
            assert torch.equal(value, before[name]), name
    changed = [
        name
        for name, value in after.items()
        if not name.startswith(frozen_prefixes) and not torch.equal(value, before[name])
    ]
    assert any(name.startswith(f"_blocks.{FROZEN}.") for name in changed)
    assert "_fc.weight" in changed
    # Running statistics of trained blocks follow the new data.
    assert any(name.endswith("running_mean") for name in changed)


def test_frozen_blocks_out_of_range_is_refused() -> None:
    network = build_network("lite0", 3, SIZE, SIZE, pretrained=False)
    with pytest.raises(ValueError, match="frozen-blocks"):
        live.prepare(network, len(network._blocks) + 1)


def test_evaluation_uses_the_serving_preprocessing(tiny_dataset: Path) -> None:
    folder = tiny_dataset / "validation"
    images = list_images(folder, list_classes(folder))
    pixels = live.plain_pixels(images, SIZE)
    assert pixels.dtype == torch.uint8
    assert tuple(pixels.shape) == (len(images), SIZE, SIZE, 3)
    network = build_network("lite0", 3, SIZE, SIZE)
    labels = torch.tensor(images.labels)
    loss, accuracy = live.evaluate_pixels(network, pixels, labels, batch_size=4)
    assert loss > 0
    assert accuracy * len(images) == round(accuracy * len(images))


def test_the_exponential_average_trails_the_trained_weights(tiny_dataset: Path) -> None:
    data = _train_data(tiny_dataset)
    torch.manual_seed(0)
    network = build_network("lite0", 3, SIZE, SIZE)
    start = network._fc.weight.detach().clone()
    average = live.exponential_average(network, 0.5)
    _run_epoch(network, data, average)
    averaged = average.module.get_parameter("_fc.weight").detach()
    trained = network._fc.weight.detach()
    assert not torch.equal(averaged, start)
    assert not torch.equal(averaged, trained)
    # Between the start and the end of the epoch, and closer to the end.
    assert (averaged - trained).norm() < (start - trained).norm()
