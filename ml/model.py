"""CNN modules and their config. Nothing but modules here (nanoGPT style)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from ml.classes import NUM_CLASSES


@dataclass
class ModelConfig:
    """VGG-style stages of ``convs_per_stage`` 3×3 conv-BN-ReLU, each followed by 2×2 max-pool."""

    name: str = "compact"
    widths: tuple[int, ...] = (32, 64, 128, 256)
    convs_per_stage: int = 2
    in_channels: int = 1
    num_classes: int = NUM_CLASSES
    dropout: float = 0.3
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["widths"] = list(self.widths)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        d = dict(d)
        d["widths"] = tuple(d["widths"])
        return cls(**d)


#: Named sizes. ``compact`` (~1.2 M params) is the CPU default; ``large`` (~9.4 M) wants a GPU.
MODEL_SIZES: dict[str, ModelConfig] = {
    "tiny": ModelConfig(name="tiny", widths=(16, 32, 64, 128), dropout=0.2),
    "compact": ModelConfig(name="compact", widths=(32, 64, 128, 256), dropout=0.3),
    "large": ModelConfig(name="large", widths=(64, 128, 256, 512), convs_per_stage=3, dropout=0.4),
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
        for w in config.widths:
            for _ in range(config.convs_per_stage):
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


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
