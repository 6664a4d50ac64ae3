"""CNN modules and their config. Nothing but modules here (nanoGPT style)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from ml.classes import NUM_CLASSES


@dataclass
class ModelConfig:
    """VGG-style stages of ``convs_per_stage`` 3×3 conv-BN-ReLU, each followed by 2×2 max-pool.

    ``convs_per_stage`` is one count for every stage or a tuple with one count per stage.
    """

    name: str = "compact"
    arch: str = "vgg"  # "vgg" (EmotionCNN) or "mini_xception" (the speed baseline)
    widths: tuple[int, ...] = (32, 64, 128, 256)
    convs_per_stage: int | tuple[int, ...] = 2
    in_channels: int = 1
    num_classes: int = NUM_CLASSES
    dropout: float = 0.3
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["widths"] = list(self.widths)
        if not isinstance(self.convs_per_stage, int):
            d["convs_per_stage"] = list(self.convs_per_stage)
        return d

    def stage_convs(self) -> tuple[int, ...]:
        c = self.convs_per_stage
        counts = (c,) * len(self.widths) if isinstance(c, int) else tuple(c)
        if len(counts) != len(self.widths) or min(counts) < 1:
            raise ValueError(f"convs_per_stage {c!r} does not fit {len(self.widths)} stages")
        return counts

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        d = dict(d)
        d["widths"] = tuple(d["widths"])
        if isinstance(d.get("convs_per_stage"), list):
            d["convs_per_stage"] = tuple(d["convs_per_stage"])
        return cls(**d)


#: Named sizes. ``compact`` (~1.2 M params) is the CPU default; ``large`` (~7.8 M) wants a GPU;
#: ``fast`` (~0.29 M, one conv at full 48×48 resolution) is the distilled speed model;
#: ``small`` (~0.66 M) is ``fast`` 1.5× wider, between it and ``compact``.
MODEL_SIZES: dict[str, ModelConfig] = {
    "tiny": ModelConfig(name="tiny", widths=(16, 32, 64, 128), dropout=0.2),
    "fast": ModelConfig(
        name="fast", widths=(16, 32, 64, 128), convs_per_stage=(1, 2, 2, 2), dropout=0.2
    ),
    "small": ModelConfig(
        name="small", widths=(24, 48, 96, 192), convs_per_stage=(1, 2, 2, 2), dropout=0.25
    ),
    "compact": ModelConfig(name="compact", widths=(32, 64, 128, 256), dropout=0.3),
    "large": ModelConfig(name="large", widths=(64, 128, 256, 512), convs_per_stage=3, dropout=0.4),
    # Arriaga et al. 2017 (the `fer` package's model): ~58 k params, run at 64×64 input
    "mini_xception": ModelConfig(
        name="mini_xception", arch="mini_xception", widths=(16, 32, 64, 128), dropout=0.0
    ),
}


def model_config(size: str) -> ModelConfig:
    if size not in MODEL_SIZES:
        raise ValueError(f"unknown model size {size!r}: choose from {sorted(MODEL_SIZES)}")
    return ModelConfig.from_dict(MODEL_SIZES[size].to_dict())


class ConvBNReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int):
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )


class EmotionCNN(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        cin = config.in_channels
        for w, n_convs in zip(config.widths, config.stage_convs(), strict=True):
            for _ in range(n_convs):
                layers.append(ConvBNReLU(cin, w))
                cin = w
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(cin, config.num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x)).flatten(1)
        return self.head(self.dropout(x))


class SeparableConv(nn.Sequential):
    def __init__(self, cin: int, cout: int):
        super().__init__(
            nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False),
            nn.Conv2d(cin, cout, 1, bias=False),
        )


class XceptionBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.shortcut = nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride=2, bias=False), nn.BatchNorm2d(cout)
        )
        self.body = nn.Sequential(
            SeparableConv(cin, cout),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            SeparableConv(cout, cout),
            nn.BatchNorm2d(cout),
            nn.MaxPool2d(3, stride=2, padding=1),
        )

    def forward(self, x):
        return self.body(x) + self.shortcut(x)


class MiniXception(nn.Module):
    """mini-Xception (Arriaga, Valdenegro-Toro & Plöger 2017): the widely used baseline."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.stem = nn.Sequential(
            nn.Conv2d(config.in_channels, 8, 3, bias=False),
            nn.BatchNorm2d(8),
            nn.ReLU(True),
            nn.Conv2d(8, 8, 3, bias=False),
            nn.BatchNorm2d(8),
            nn.ReLU(True),
        )
        blocks, cin = [], 8
        for w in config.widths:
            blocks.append(XceptionBlock(cin, w))
            cin = w
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Conv2d(cin, config.num_classes, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.head(self.blocks(self.stem(x)))).flatten(1)


class LogitEnsemble(nn.Module):
    """Mean of its members' logits: an ensemble used as one (e.g. a distillation teacher)."""

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.members[0](x)
        for m in self.members[1:]:
            out = out + m(x)
        return out / len(self.members)


def create_model(config: ModelConfig) -> nn.Module:
    if config.arch == "vgg":
        return EmotionCNN(config)
    if config.arch == "mini_xception":
        return MiniXception(config)
    raise ValueError(f"unknown architecture {config.arch!r}")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
