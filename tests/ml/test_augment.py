import torch

from ml.augment import AugmentConfig, augment_batch

MIRROR_ONLY = AugmentConfig(
    max_rotation_deg=0,
    scale=(1.0, 1.0),
    max_shift=0,
    brightness=0,
    contrast=0,
    erase_p=0,
)


def test_flip_mask_names_exactly_the_mirrored_images():
    x = torch.rand(32, 1, 48, 48)
    out, flipped = augment_batch(x, MIRROR_ONLY, torch.Generator().manual_seed(0), return_flip=True)
    assert flipped.dtype == torch.bool and 0 < int(flipped.sum()) < 32
    torch.testing.assert_close(out[flipped], x[flipped].flip(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(out[~flipped], x[~flipped], atol=1e-5, rtol=0)


def test_flip_mask_does_not_change_the_random_stream():
    x = torch.rand(8, 1, 48, 48)
    a = augment_batch(x, AugmentConfig(), torch.Generator().manual_seed(3))
    b, _ = augment_batch(x, AugmentConfig(), torch.Generator().manual_seed(3), return_flip=True)
    torch.testing.assert_close(a, b, atol=0, rtol=0)
