"""fold_bn: applies, declines what it cannot fold (with counted reasons), numerically exact."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from ember.passes import PassContext
from ember.passes.fold_bn import FoldBatchNorm


def _randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g))
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.2)
            if m.affine:
                m.weight.data.copy_(torch.randn(m.num_features, generator=g))
                m.bias.data.copy_(torch.randn(m.num_features, generator=g))
    return model.eval()


def _ctx(*xs: torch.Tensor) -> PassContext:
    return PassContext(example_inputs={f"x{i}": x for i, x in enumerate(xs)})


def _count_bn(model: nn.Module) -> int:
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


CASES = {
    "conv2d+bn, bias": (lambda: nn.Sequential(nn.Conv2d(3, 6, 3), nn.BatchNorm2d(6)), (2, 3, 9, 9)),
    "conv2d no bias": (lambda: nn.Sequential(nn.Conv2d(3, 6, 3, bias=False), nn.BatchNorm2d(6)),
                       (1, 3, 8, 8)),
    "grouped conv": (lambda: nn.Sequential(nn.Conv2d(4, 8, 3, groups=2), nn.BatchNorm2d(8)),
                     (1, 4, 7, 7)),
    "depthwise conv": (lambda: nn.Sequential(nn.Conv2d(4, 4, 3, groups=4), nn.BatchNorm2d(4)),
                       (1, 4, 7, 7)),
    "conv1d": (lambda: nn.Sequential(nn.Conv1d(3, 5, 3), nn.BatchNorm1d(5)), (2, 3, 11)),
    "conv3d": (lambda: nn.Sequential(nn.Conv3d(2, 3, 3), nn.BatchNorm3d(3)), (1, 2, 5, 5, 5)),
    "linear+bn1d": (lambda: nn.Sequential(nn.Linear(6, 4), nn.BatchNorm1d(4)), (5, 6)),
    "bn without affine": (
        lambda: nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4, affine=False)), (1, 3, 4, 4)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_folds_and_matches_the_original(name):
    factory, shape = CASES[name]
    torch.manual_seed(0)
    model = _randomize(factory())
    x = torch.randn(*shape)
    original = copy.deepcopy(model)
    result = FoldBatchNorm()(model, _ctx(x))
    assert result.modified and result.stats == {"folded": 1}
    assert _count_bn(result.model) == 0
    with torch.no_grad():
        torch.testing.assert_close(result.model(x), original(x), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(model(x), original(x), atol=0, rtol=0)  # input untouched


def test_second_run_reports_unmodified():
    model = _randomize(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()))
    x = torch.randn(1, 3, 6, 6)
    first = FoldBatchNorm()(model, _ctx(x))
    second = FoldBatchNorm()(first.model, _ctx(x))
    assert first.modified and not second.modified


class _Shared(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x):
        y = self.conv(x)
        return self.bn(y) + y  # the conv output has a second user: folding would change it


class _AfterFunction(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x):
        return self.bn(torch.tanh(self.conv(x)))


class _Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow: torch.fx cannot trace it
            x = x * 2
        return self.bn(self.conv(x))


DECLINES = {
    "bn after relu": (lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.BatchNorm2d(4)),
                      (1, 3, 6, 6), "skipped:input_not_conv_or_linear"),
    "bn after a function": (_AfterFunction, (1, 3, 6, 6), "skipped:input_not_a_layer"),
    "conv output shared": (_Shared, (1, 3, 6, 6), "skipped:producer_output_shared"),
    "linear on 3-d input": (lambda: nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)), (2, 4, 4),
                            "skipped:linear_channels_not_on_axis_1"),
    "no running stats": (lambda: nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, track_running_stats=False)),
        (2, 3, 6, 6), "skipped:no_running_stats"),
    "untraceable": (_Untraceable, (1, 3, 6, 6), "skipped:untraceable"),
}


@pytest.mark.parametrize("name", list(DECLINES))
def test_declines_with_a_counted_reason(name):
    factory, shape, reason = DECLINES[name]
    model = factory().eval()
    result = FoldBatchNorm()(model, _ctx(torch.randn(*shape)))
    assert not result.modified
    assert result.stats[reason] == 1
    assert result.model is model


def test_model_without_batchnorm_is_unchanged():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    result = FoldBatchNorm()(model, _ctx(torch.randn(1, 3, 5, 5)))
    assert (result.modified, result.stats) == (False, {"folded": 0})


def test_into_conv_leaves_linear_batchnorm():
    model = _randomize(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(),
                                     nn.Linear(64, 5), nn.BatchNorm1d(5)))
    result = FoldBatchNorm(into="conv")(model, _ctx(torch.randn(2, 3, 6, 6)))
    assert result.stats == {"folded": 1, "skipped:input_not_conv_or_linear": 1}
    assert _count_bn(result.model) == 1


def test_invalid_parameter_names_the_field():
    with pytest.raises(ValueError, match="into must be one of"):
        FoldBatchNorm(into="lstm")


class _SharedWeight(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 3, 3, padding=1)
        self.b = nn.Conv2d(3, 3, 3, padding=1)
        self.b.weight = self.a.weight  # tied: folding BN into `a` would rescale `b` too
        self.bn = nn.BatchNorm2d(3)

    def forward(self, x):
        return self.bn(self.a(x)) + self.b(x)


def test_declines_shared_and_parametrized_weights_and_training_mode():
    x = torch.randn(1, 3, 6, 6)
    shared = _randomize(_SharedWeight())
    assert FoldBatchNorm()(shared, _ctx(x)).stats["skipped:shared_weight"] == 1

    normed = nn.Sequential(nn.utils.parametrizations.weight_norm(nn.Conv2d(3, 4, 3)),
                           nn.BatchNorm2d(4))
    normed = _randomize(normed)
    assert FoldBatchNorm()(normed, _ctx(x)).stats["skipped:parametrized_weight"] == 1

    training = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).train()
    stats_before = training[1].running_mean.clone()
    result = FoldBatchNorm()(training, _ctx(x))
    assert not result.modified and result.stats["skipped:training_mode"] == 1
    assert torch.equal(training[1].running_mean, stats_before)  # the input model is untouched
