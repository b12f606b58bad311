"""prune_cnn: coupled channel groups, declines, exact slicing, scores, round_to, fine-tuning."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from torch import nn

from ember.passes.prune.cnn import prune as prune_module
from ember.passes.prune.cnn.groups import ChannelGroup, Member, channel_groups
from ember.passes.prune.cnn.prune import (
    PruneError,
    check_equivalence,
    finetune,
    keep_count,
    mask_model,
    plan_pruning,
    prune_cnn,
    slice_model,
)
from ember.progress import Progress


def _randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BatchNorm statistics and affine parameters; eval mode."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g))
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.2)
            m.weight.data.copy_(torch.randn(m.num_features, generator=g))
            m.bias.data.copy_(torch.randn(m.num_features, generator=g))
    return model.eval()


def _cbr(cin: int, cout: int, k: int = 3, **kw) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, padding=k // 2, **kw), nn.BatchNorm2d(cout), nn.ReLU()]


class VGG(nn.Module):
    """conv -> BN -> ReLU x3 (16, 32, 24 channels, biased convs) -> flatten (24 x 2 x 2)
    -> linear 32 -> linear 10."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(*_cbr(3, 16), *_cbr(16, 32), nn.MaxPool2d(2),
                                      *_cbr(32, 24), nn.AdaptiveAvgPool2d(2))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(96, 32), nn.ReLU(),
                                        nn.Linear(32, 10))

    def forward(self, x):
        return self.classifier(self.features(x))


def _vgg_params(c0: int, c1: int, c2: int, f0: int) -> int:
    """Parameters of VGG with the given widths: conv weights and biases, BN gamma and beta,
    the flattened linear (c2 channels x 4 positions), the classifier."""
    convs = (3 * c0 * 9 + c0) + (c0 * c1 * 9 + c1) + (c1 * c2 * 9 + c2)
    norms = 2 * (c0 + c1 + c2)
    return convs + norms + (c2 * 4 * f0 + f0) + (f0 * 10 + 10)


class ResNet(nn.Module):
    """Stem, an identity-shortcut block (16) and a projection-shortcut block (16 -> 32)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.stem_bn = nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16)
        self.a1, self.a1_bn = nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16)
        self.a2, self.a2_bn = nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16)
        self.b1, self.b1_bn = nn.Conv2d(16, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32)
        self.b2, self.b2_bn = nn.Conv2d(32, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32)
        self.short, self.short_bn = nn.Conv2d(16, 32, 1, 2, bias=False), nn.BatchNorm2d(32)
        self.relu = nn.ReLU()  # reused: stateless modules may be called many times
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = self.relu(self.stem_bn(self.stem(x)))
        x = self.relu(self.a2_bn(self.a2(self.relu(self.a1_bn(self.a1(x))))) + x)
        y = self.b2_bn(self.b2(self.relu(self.b1_bn(self.b1(x)))))
        x = self.relu(y + self.short_bn(self.short(x)))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class Inception(nn.Module):
    """Two branches (8 and 16 channels) concatenated, a BatchNorm over the concat, a 1x1."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(*_cbr(3, 16))
        self.b1 = nn.Conv2d(16, 8, 1)
        self.b2 = nn.Conv2d(16, 16, 3, padding=1)
        self.cat_bn = nn.BatchNorm2d(24)
        self.head = nn.Conv2d(24, 16, 1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.stem(x)
        y = torch.relu(self.cat_bn(torch.cat([self.b1(x), self.b2(x)], dim=1)))
        return self.fc(self.head(y).mean((2, 3)))


class MobileNet(nn.Module):
    """Inverted residual: expand 1x1 -> BN -> ReLU6 -> depthwise 3x3 -> BN -> ReLU6 ->
    project 1x1 -> BN, added to its input."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(16), nn.ReLU6())
        self.expand, self.bn1 = nn.Conv2d(16, 48, 1, bias=False), nn.BatchNorm2d(48)
        self.dw = nn.Conv2d(48, 48, 3, padding=1, groups=48, bias=False)
        self.bn2 = nn.BatchNorm2d(48)
        self.project, self.bn3 = nn.Conv2d(48, 16, 1, bias=False), nn.BatchNorm2d(16)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.stem(x)
        y = nn.functional.relu6(self.bn1(self.expand(x)))
        y = nn.functional.relu6(self.bn2(self.dw(y)))
        x = x + self.bn3(self.project(y))
        return self.fc(nn.functional.adaptive_avg_pool2d(x, 1).flatten(1))


class Unpadded(nn.Module):
    """Only 1x1 and unpadded convolutions (a removed channel is then exactly constant):
    residual, depthwise, squeeze-excite mul, flatten -> linear."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(*_cbr(3, 16, 1))
        self.r1 = nn.Sequential(*_cbr(16, 16, 1))
        self.r2, self.r2_bn = nn.Conv2d(16, 16, 1), nn.BatchNorm2d(16)
        self.expand = nn.Sequential(*_cbr(16, 32, 1))
        self.dw = nn.Sequential(nn.Conv2d(32, 32, 3, groups=32), nn.BatchNorm2d(32), nn.SiLU())
        self.se1, self.se2 = nn.Conv2d(32, 8, 1), nn.Conv2d(8, 32, 1)
        self.project = nn.Sequential(*_cbr(32, 16, 1))
        self.fc = nn.Linear(16 * 36, 10)

    def forward(self, x):
        x = self.stem(x)
        x = torch.relu(x + self.r2_bn(self.r2(self.r1(x))))
        y = self.dw(self.expand(x))
        y = y * torch.sigmoid(self.se2(torch.relu(self.se1(y.mean((2, 3), keepdim=True)))))
        return self.fc(torch.flatten(self.project(y), 1))


def _digits_cnn() -> nn.Module:
    from ember.compiler.models.digits import DigitsCNN  # the real class, random init

    return DigitsCNN()


MODELS = {
    "vgg": (VGG, (3, 8, 8)),
    "resnet": (ResNet, (3, 8, 8)),
    "inception": (Inception, (3, 8, 8)),
    "mobilenet": (MobileNet, (3, 8, 8)),
    "unpadded": (Unpadded, (3, 8, 8)),
    "digits": (_digits_cnn, (1, 28, 28)),
}


def _model(name: str, seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
    factory, shape = MODELS[name]
    torch.manual_seed(seed)
    model = _randomize(factory(), seed)
    return model, torch.randn(4, *shape, generator=torch.Generator().manual_seed(seed + 1))


def _by_producers(groups: list[ChannelGroup]) -> dict[tuple[str, ...], ChannelGroup]:
    return {tuple(p.module for p in g.producers): g for g in groups}


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --- groups ---

def test_vgg_groups_and_flatten_blocks():
    model, x = _model("vgg")
    groups, declined = channel_groups(model, x)
    by = _by_producers(groups)
    assert {k: g.size for k, g in by.items()} == {
        ("features.0",): 16, ("features.3",): 32, ("features.7",): 24, ("classifier.1",): 32}
    last = by[("features.7",)]
    assert last.consumers == (Member("classifier.1", 0, 4),)  # 24 channels x 2 x 2 positions
    assert last.carried == (Member("features.8"),)
    assert by[("features.0",)].producers == (Member("features.0", bn="features.1"),)
    assert declined == {"input x (3 ch)": "network input",
                        "classifier.3 (10 ch)": "reaches the model output"}


def test_residual_operands_are_one_group():
    model, x = _model("resnet")
    by = _by_producers(channel_groups(model, x)[0])
    assert set(by) == {("stem", "a2"), ("a1",), ("b1",), ("b2", "short")}
    stage = by[("stem", "a2")]
    assert {m.module for m in stage.consumers} == {"a1", "b1", "short"}
    assert {m.module for m in stage.carried} == {"stem_bn", "a2_bn"}
    assert by[("b2", "short")].consumers == (Member("fc"),)


def test_concat_offsets():
    model, x = _model("inception")
    by = _by_producers(channel_groups(model, x)[0])
    assert by[("b1",)].consumers == (Member("head", 0),)
    assert by[("b2",)].consumers == (Member("head", 8),)
    assert by[("b1",)].carried == (Member("cat_bn", 0),)
    assert by[("b2",)].carried == (Member("cat_bn", 8),)


def test_depthwise_is_carried_not_a_producer():
    model, x = _model("mobilenet")
    by = _by_producers(channel_groups(model, x)[0])
    assert set(by) == {("stem.0", "project"), ("expand",)}
    expanded = by[("expand",)]
    assert [m.module for m in expanded.carried] == ["bn1", "dw", "bn2"]
    assert expanded.consumers == (Member("project"),)
    assert {m.module for m in by[("stem.0", "project")].consumers} == {"expand", "fc"}


def test_squeeze_excite_gate_joins_the_group():
    model, x = _model("unpadded")
    by = _by_producers(channel_groups(model, x)[0])
    assert set(by) == {("stem.0", "r2"), ("r1.0",), ("expand.0", "se2"), ("se1",),
                       ("project.0",)}
    assert {m.module for m in by[("expand.0", "se2")].consumers} == {"se1", "project.0"}
    assert by[("project.0",)].consumers == (Member("fc", 0, 36),)


def test_digits_cnn_groups():
    model, x = _model("digits")
    groups, declined = channel_groups(model, x)
    assert [g.size for g in groups] == [16, 16, 32, 32, 64]
    assert groups[3].consumers == (Member("classifier.1", 0, 49),)
    assert set(declined.values()) == {"network input", "reaches the model output"}


class Roll(nn.Module):
    def forward(self, x):
        return torch.roll(x, 1, dims=1)  # permutes channels: no rule


DECLINES = {
    "roll": (lambda: nn.Sequential(*_cbr(3, 8), Roll(), *_cbr(8, 8), nn.AdaptiveAvgPool2d(1),
                                   nn.Flatten(), nn.Linear(8, 10)),
             "unsupported op torch.roll"),
    "grouped": (lambda: nn.Sequential(*_cbr(3, 8), nn.Conv2d(8, 8, 3, groups=2), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)),
                "grouped conv 3 (groups=2)"),
}


@pytest.mark.parametrize("name", list(DECLINES))
def test_declines_name_the_op(name):
    factory, reason = DECLINES[name]
    groups, declined = channel_groups(_randomize(factory()), torch.randn(2, 3, 8, 8))
    assert declined["0 (8 ch)"] == reason  # the first conv's channels cross the op
    assert sorted(declined.values()) == sorted(
        ["network input", reason, reason, "reaches the model output"])  # reason: op's output
    assert all("0" not in [p.module for p in g.producers] for g in groups)


class _Branchy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow
            x = x * 2
        return x


def test_untraceable_names_the_module():
    model = nn.Sequential(nn.Conv2d(3, 3, 1), _Branchy())
    with pytest.raises(PruneError, match=r"cannot trace module '1' \(_Branchy\)"):
        channel_groups(model, torch.randn(1, 3, 8, 8))


# --- slicing ---

@pytest.mark.parametrize("method", ["magnitude", "bn", "taylor"])
@pytest.mark.parametrize("name", list(MODELS))
def test_sliced_matches_masked(name, method):
    model, x = _model(name)
    original = copy.deepcopy(model.state_dict())
    plan = plan_pruning(model, x, ratio=0.5, method=method, round_to=4)
    masked, sliced = mask_model(model, plan).eval(), slice_model(model, plan).eval()
    assert check_equivalence(masked, sliced, [x, torch.randn_like(x)]) <= 1e-6
    assert _params(sliced) < _params(model)
    for key, value in model.state_dict().items():  # the original is untouched
        assert torch.equal(value, original[key])
    pruned, stats = prune_cnn(model, x, ratio=0.5, method=method, round_to=4)
    assert stats["equivalence_max_rel"] <= 1e-5
    assert stats["params_after"] == _params(pruned) < stats["params_before"]


def test_removed_channels_behave_like_zeroed_producers():
    """Without padding a removed channel is exactly the constant its zero-weight producers
    give; the sliced model must equal the original with those weight rows zeroed."""
    model, x = _model("unpadded")
    plan = plan_pruning(model, x, ratio=0.5, method="magnitude", round_to=4)
    reference = copy.deepcopy(model)
    with torch.no_grad():
        for group, kept in zip(plan.groups, plan.kept, strict=True):
            removed = sorted(set(range(group.size)) - set(kept.tolist()))
            for producer in group.producers:
                reference.get_submodule(producer.module).weight[removed] = 0
        want, got = reference(x), slice_model(model, plan).eval()(x)
    assert float((want - got).abs().max() / want.abs().max()) <= 1e-5


def test_vgg_parameter_count_shrinks_as_expected():
    model, x = _model("vgg")
    pruned, stats = prune_cnn(model, x, ratio=0.5, method="magnitude")
    # keep = 8 * round_half_up(0.5 * size / 8): 16 -> 8, 32 -> 16, 24 -> 16 (1.5 -> 2), 32 -> 16
    assert stats["params_before"] == _params(model) == _vgg_params(16, 32, 24, 32)
    assert stats["params_after"] == _params(pruned) == _vgg_params(8, 16, 16, 16)
    assert (stats["channels_before"], stats["channels_after"]) == (104, 56)
    assert stats["groups"] == 4
    assert stats["declined:network input"] == 1
    assert stats["declined:reaches the model output"] == 1
    assert pruned.classifier[1].weight.shape == (16, 64)


def test_consumer_without_bias_gets_the_folded_constant():
    model, x = _model("digits")
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.bias.data.fill_(3.0)  # removed channels carry relu(3 - gamma mu / sigma) > 0
    pruned, stats = prune_cnn(model, x, ratio=0.5, method="magnitude")
    assert stats["equivalence_max_rel"] <= 1e-5
    assert model.features[3].bias is None and pruned.features[3].bias is not None
    assert pruned.features[3].weight.shape == (8, 8, 3, 3)


@pytest.mark.parametrize(("size", "ratio", "round_to", "keep"), [
    (64, 0.25, 8, 48), (20, 0.5, 8, 8), (40, 0.5, 8, 24), (6, 0.5, 8, 6), (16, 0.99, 8, 8),
    (16, 0.0, 8, 16), (10, 0.3, 1, 7), (48, 0.3, 16, 32),
])
def test_keep_count(size, ratio, round_to, keep):
    assert keep_count(size, ratio, round_to) == keep


def test_round_to_widths_and_small_groups():
    model, x = _model("mobilenet")
    pruned, stats = prune_cnn(model, x, ratio=0.3, method="magnitude", round_to=8)
    assert (pruned.expand.out_channels, pruned.stem[0].out_channels) == (32, 8)
    assert pruned.dw.groups == pruned.dw.in_channels == 32
    model, x = _model("vgg")
    _, stats = prune_cnn(model, x, ratio=0.5, method="magnitude", round_to=32)
    assert stats["kept_all:smaller_than_round_to"] == 2  # the 16- and 24-channel groups
    assert stats["channels_after"] == 16 + 24 + 32 + 32


def test_bn_method_keeps_the_largest_gammas():
    model, x = _model("vgg")
    plan = plan_pruning(model, x, ratio=0.5, method="bn")
    first = next(i for i, g in enumerate(plan.groups) if g.producers[0].module == "features.0")
    want = model.features[1].weight.abs().argsort(descending=True)[:8].sort().values
    assert torch.equal(plan.kept[first], want)


class Dead(nn.Module):
    """Channels 0-7 have large weights but a bias that keeps ReLU at 0 (no effect on the
    loss); channels 8-15 have small weights and matter."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 16, 1), nn.Conv2d(16, 8, 1)
        self.fc = nn.Linear(8, 10)
        with torch.no_grad():
            self.conv1.weight[:8] *= 10
            self.conv1.bias[:8] = -1e3
            self.conv1.weight[8:] *= 0.1
            self.conv1.bias[8:] = 0.5  # alive for every input

    def forward(self, x):
        y = self.conv2(torch.relu(self.conv1(x)))
        return self.fc(torch.relu(y).mean((2, 3)))


def test_taylor_and_magnitude_choose_differently():
    torch.manual_seed(0)
    model, x = Dead().eval(), torch.randn(8, 3, 6, 6)
    kept = {method: plan_pruning(model, x, ratio=0.5, method=method).kept[0].tolist()
            for method in ("magnitude", "taylor")}
    assert kept == {"magnitude": list(range(8)), "taylor": list(range(8, 16))}
    pruned, _ = prune_cnn(model, x, ratio=0.5, method="taylor")
    with torch.no_grad():  # the dead channels were removable without any change
        torch.testing.assert_close(pruned(x), model(x), atol=1e-6, rtol=1e-6)


def _kl(student: nn.Module, teacher: nn.Module, batches) -> float:
    with torch.no_grad():
        return sum(float(nn.functional.kl_div(student(x).log_softmax(1),
                                              teacher(x).log_softmax(1), log_target=True,
                                              reduction="batchmean"))
                   for x, _ in batches) / len(batches)


def test_finetune_distils_towards_the_teacher():
    teacher, _ = _model("vgg")
    g = torch.Generator().manual_seed(3)
    batches = [(torch.randn(8, 3, 8, 8, generator=g), None) for _ in range(4)]
    student, _ = prune_cnn(teacher, batches[0][0], ratio=0.75, method="magnitude")
    before = _kl(student, teacher, batches)
    stream = io.StringIO()
    tuned = finetune(student, teacher, batches, steps=20, lr=5e-3,
                     progress=Progress(stream=stream, verbose=True))
    assert not tuned.training
    assert _kl(tuned, teacher, batches) < 0.5 * before
    assert "fine-tuning" in stream.getvalue() and "loss=" in stream.getvalue()


def test_entry_point_fine_tunes_with_labels():
    model, x = _model("mobilenet")
    g = torch.Generator().manual_seed(5)
    batches = [(torch.randn(8, 3, 8, 8, generator=g), torch.randint(0, 10, (8,), generator=g))
               for _ in range(2)]
    _, stats = prune_cnn(model, x, ratio=0.5, method="taylor", batches=batches, steps=10,
                         lr=1e-2)
    assert stats["finetune_loss_after"] < stats["finetune_loss_before"]


def test_a_wrong_slice_is_caught(monkeypatch):
    real = prune_module.slice_model

    def tampered(model, plan):
        sliced = real(model, plan)
        with torch.no_grad():
            sliced.classifier[3].bias[0] += 1.0
        return sliced

    monkeypatch.setattr(prune_module, "slice_model", tampered)
    model, x = _model("vgg")
    with pytest.raises(PruneError, match="differs from the masked one"):
        prune_cnn(model, x, ratio=0.5, method="magnitude")


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"ratio": 1.0, "method": "magnitude"}, "ratio"),
    ({"ratio": 0.5, "method": "l1"}, "method"),
    ({"ratio": 0.5, "method": "magnitude", "round_to": 0}, "round_to"),
    ({"ratio": 0.5, "method": "magnitude", "steps": 5}, "calibration batches"),
])
def test_invalid_arguments(kwargs, match):
    model, x = _model("vgg")
    with pytest.raises(ValueError, match=match):
        prune_cnn(model, x, **kwargs)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", ["resnet", "inception", "unpadded"])
def test_prunes_on_cuda(name):
    model, x = _model(name)
    model, x = model.cuda(), x.cuda()
    batches = [(x, None), (torch.randn_like(x), torch.randint(0, 10, (len(x),), device="cuda"))]
    pruned, stats = prune_cnn(model, x, ratio=0.5, method="taylor", round_to=4,
                              batches=batches, steps=5)
    assert stats["equivalence_max_rel"] <= 1e-5
    assert {p.device.type for p in pruned.parameters()} == {"cuda"}
    assert all(p.device.type == "cuda" for p in model.parameters())
