import pytest
import torch

from ml.model import LogitEnsemble, create_model, model_config
from ml.runtime import optimize_for_inference


def _trained_like(size: str) -> torch.nn.Module:
    """A model whose BatchNorms hold non-trivial statistics, as after training."""
    model = create_model(model_config(size))
    side = 64 if size == "mini_xception" else 48
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(16, 1, side, side) * 3 - 1)
    return model.eval()


@pytest.mark.parametrize("size", ["fast", "compact", "mini_xception"])
def test_fused_model_gives_the_same_logits_with_fewer_modules(size):
    model = _trained_like(size)
    fast = optimize_for_inference(model)
    side = 64 if size == "mini_xception" else 48
    x = torch.randn(8, 1, side, side)
    with torch.inference_mode():
        torch.testing.assert_close(fast(x), model(x), atol=1e-4, rtol=1e-4)
    bns = [m for m in fast.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert not bns  # every BatchNorm folded into its conv
    conv = next(m for m in fast.modules() if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    # the original is left as trained (the checkpoint's modules are not rewritten)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


def test_an_ensemble_of_teachers_fuses_to_the_mean_of_its_members():
    a, b = _trained_like("fast"), _trained_like("tiny")
    ensemble = LogitEnsemble([a, b]).eval()
    fast = optimize_for_inference(ensemble)
    x = torch.randn(8, 1, 48, 48)
    with torch.inference_mode():
        torch.testing.assert_close(ensemble(x), (a(x) + b(x)) / 2)
        torch.testing.assert_close(fast(x), ensemble(x), atol=1e-4, rtol=1e-4)
    assert not [m for m in fast.modules() if isinstance(m, torch.nn.BatchNorm2d)]


def test_untraceable_model_runs_unfused(caplog):
    class Branchy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 4, 3)
            self.bn = torch.nn.BatchNorm2d(4)

        def forward(self, x):
            if x.sum() > 0:  # data-dependent control flow defeats symbolic tracing
                return self.bn(self.conv(x))
            return self.conv(x)

    model = Branchy().eval()
    fast = optimize_for_inference(model)
    x = torch.rand(2, 1, 8, 8)
    torch.testing.assert_close(fast(x), model(x))
    assert "fusion skipped" in caplog.text


def test_predictor_runs_the_optimised_copy(fer_val):
    from ml.predictor import Predictor

    pred = Predictor(device="cpu", precision="fp32")
    assert pred.runtime is not pred.model and pred.precision == "fp32"
    x = fer_val.images[:32]
    from ml.evaluate import predict_probs

    reference = predict_probs(pred.model, x, temperature=pred.temperature)
    torch.testing.assert_close(
        torch.from_numpy(pred.predict_faces(x)), torch.from_numpy(reference), atol=1e-5, rtol=0
    )
