"""Small vision networks with the block structure of the common model libraries (narrow
widths, random weights, eval mode), for `torch:ember.tools.conformance.vision_nets:NAME`
specs. Inputs: 1x3x32x32. The conformance `vision` suite and tests/e2e/test_vision_nets.py
compile them."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def _bn_relu(c_in: int, c_out: int, k: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, stride, k // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU())


class Basic(nn.Module):
    """ResNet's basic block: two 3x3 convs with BatchNorm and an identity or 1x1 shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.a = _bn_relu(c_in, c_out, 3, stride)
        self.b = nn.Sequential(nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out))
        self.short = nn.Identity() if stride == 1 and c_in == c_out else nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        return F.relu(self.b(self.a(x)) + self.short(x))


class InvertedResidual(nn.Module):
    """MobileNetV2/V3: 1x1 expand, 3x3 depthwise, squeeze-excitation, 1x1 project, residual."""

    def __init__(self, c: int, expand: int = 4) -> None:
        super().__init__()
        hidden = c * expand
        self.expand = _bn_relu(c, hidden, 1)
        self.depthwise = _bn_relu(hidden, hidden, 3, groups=hidden)
        self.se_reduce, self.se_expand = nn.Conv2d(hidden, hidden // 4, 1), nn.Conv2d(
            hidden // 4, hidden, 1)
        self.project = nn.Sequential(nn.Conv2d(hidden, c, 1, bias=False), nn.BatchNorm2d(c))

    def forward(self, x):
        h = self.depthwise(self.expand(x))
        scale = torch.sigmoid(self.se_expand(F.relu(self.se_reduce(h.mean((2, 3), keepdim=True)))))
        return x + self.project(h * scale)


class ShuffleUnit(nn.Module):
    """ShuffleNet: grouped 1x1 conv, channel shuffle, depthwise 3x3, grouped 1x1, residual."""

    def __init__(self, c: int, groups: int = 4) -> None:
        super().__init__()
        self.groups = groups
        self.a = _bn_relu(c, c, 1, groups=groups)
        self.dw = nn.Sequential(nn.Conv2d(c, c, 3, 1, 1, groups=c, bias=False), nn.BatchNorm2d(c))
        self.b = nn.Sequential(nn.Conv2d(c, c, 1, groups=groups, bias=False), nn.BatchNorm2d(c))

    def forward(self, x):
        n, c, h, w = x.shape
        y = self.a(x).reshape(n, self.groups, c // self.groups, h, w).transpose(1, 2)
        return F.relu(x + self.b(self.dw(y.reshape(n, c, h, w))))


class DenseBlock(nn.Module):
    """DenseNet: each layer's BN-ReLU-conv output concatenated onto its input."""

    def __init__(self, c: int, growth: int = 8, layers: int = 3) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.Sequential(nn.BatchNorm2d(c + i * growth), nn.ReLU(),
                          nn.Conv2d(c + i * growth, growth, 3, 1, 1, bias=False))
            for i in range(layers))

    def forward(self, x):
        for layer in self.layers:
            x = torch.cat([x, layer(x)], 1)
        return x


class Fire(nn.Module):
    """SqueezeNet: 1x1 squeeze, then 1x1 and 3x3 expands concatenated."""

    def __init__(self, c_in: int, squeeze: int, expand: int) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(c_in, squeeze, 1)
        self.e1, self.e3 = nn.Conv2d(squeeze, expand, 1), nn.Conv2d(squeeze, expand, 3, 1, 1)

    def forward(self, x):
        s = F.relu(self.squeeze(x))
        return torch.cat([F.relu(self.e1(s)), F.relu(self.e3(s))], 1)


class ConvNeXtBlock(nn.Module):
    """ConvNeXt: 7x7 depthwise conv, LayerNorm over channels, MLP x4 with GELU, residual."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.dw = nn.Conv2d(c, c, 7, 1, 3, groups=c)
        self.norm = nn.LayerNorm(c)
        self.fc1, self.fc2 = nn.Linear(c, 4 * c), nn.Linear(4 * c, c)

    def forward(self, x):
        y = self.norm(self.dw(x).permute(0, 2, 3, 1))
        return x + self.fc2(F.gelu(self.fc1(y))).permute(0, 3, 1, 2)


class ViT(nn.Module):
    """A patch-embedding transformer: 8x8 patches, class token, 2 encoder layers."""

    def __init__(self, dim: int = 32, classes: int = 10) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, dim, 8, 8)
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos = nn.Parameter(torch.randn(1, 17, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, 4, 2 * dim, dropout=0.0, batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        tokens = self.patch(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls.expand(x.shape[0], -1, -1), tokens], 1) + self.pos
        return self.head(self.encoder(tokens)[:, 0])


def _classifier(stem_out: int, body: nn.Module, body_out: int, classes: int = 10) -> nn.Module:
    return nn.Sequential(_bn_relu(3, stem_out), body, nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(body_out, classes))


def _seeded(factory):
    def make() -> nn.Module:
        torch.manual_seed(0)
        model = factory().eval()
        with torch.no_grad():  # BatchNorm statistics away from the identity, so folding shows
            for m in model.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.running_mean.uniform_(-0.2, 0.2)
                    m.running_var.uniform_(0.5, 1.5)
        return model

    make.__name__ = factory.__name__
    return make


resnet = _seeded(lambda: _classifier(16, nn.Sequential(Basic(16, 16), Basic(16, 32, 2)), 32))
mobilenet = _seeded(lambda: _classifier(16, nn.Sequential(InvertedResidual(16),
                                                          InvertedResidual(16)), 16))
shufflenet = _seeded(lambda: _classifier(16, nn.Sequential(ShuffleUnit(16), ShuffleUnit(16)), 16))
densenet = _seeded(lambda: _classifier(16, DenseBlock(16), 40))
squeezenet = _seeded(lambda: _classifier(16, nn.Sequential(Fire(16, 8, 16), Fire(32, 8, 16)), 32))
convnext = _seeded(lambda: _classifier(16, nn.Sequential(ConvNeXtBlock(16), ConvNeXtBlock(16)),
                                       16))
vit = _seeded(ViT)
NETS = ("resnet", "mobilenet", "shufflenet", "densenet", "squeezenet", "convnext", "vit")
