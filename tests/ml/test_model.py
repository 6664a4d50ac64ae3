import pytest
import torch

from ml.model import MODEL_SIZES, EmotionCNN, ModelConfig, count_parameters, model_config


@pytest.mark.parametrize("size", sorted(MODEL_SIZES))
def test_forward_backward_per_size(size):
    model = EmotionCNN(model_config(size))
    x = torch.randn(4, 1, 48, 48)
    logits = model(x)
    assert logits.shape == (4, 7)
    logits.logsumexp(1).mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_sizes_are_ordered_and_config_round_trips():
    n = {s: count_parameters(EmotionCNN(model_config(s))) for s in MODEL_SIZES}
    assert n["tiny"] < n["compact"] < n["large"]
    assert n["fast"] < n["small"] < n["compact"]
    assert 1_000_000 < n["compact"] < 1_500_000
    cfg = model_config("large")
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg


def test_unknown_size():
    with pytest.raises(ValueError, match="unknown model size"):
        model_config("huge")


def test_per_stage_conv_counts_round_trip_through_a_checkpoint_dict():
    cfg = model_config("fast")
    assert cfg.stage_convs() == (1, 2, 2, 2)
    d = cfg.to_dict()
    assert d["convs_per_stage"] == [1, 2, 2, 2]  # JSON-friendly, like widths
    assert ModelConfig.from_dict(d) == cfg
    convs = [m for m in EmotionCNN(cfg).modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 7
    n = {s: count_parameters(EmotionCNN(model_config(s))) for s in ("fast", "tiny")}
    assert n["fast"] < n["tiny"]


def test_conv_counts_must_match_the_stages():
    with pytest.raises(ValueError, match="does not fit 4 stages"):
        EmotionCNN(ModelConfig(widths=(8, 16, 32, 64), convs_per_stage=(1, 2)))
