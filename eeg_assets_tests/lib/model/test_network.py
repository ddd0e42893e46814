"""Shapes, gradient flow and input checks of the seizure U-Net."""

from __future__ import annotations

import pytest
import torch

from eeg_assets.lib.model.network import ModelConfig, SeizureUNet, count_parameters

SMALL = ModelConfig(base_channels=8, depth=2, bottleneck_blocks=1, attention_heads=2)


def test_default_model_maps_real_windows_to_per_sample_logits():
    torch.manual_seed(0)
    model = SeizureUNet().eval()
    with torch.no_grad():
        out = model(torch.randn(2, 19, 15360))
    assert out.shape == (2, 15360)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert model.config.total_stride == 32
    # "small by default": well under a few million parameters
    assert 100_000 < count_parameters(model) < 2_000_000


@pytest.mark.parametrize("config", [SMALL, ModelConfig(base_channels=8, depth=1, attention=False,
                                                       stem_stride=2, kernel_size=3)])
@pytest.mark.parametrize("length", [512, 2560])
def test_any_length_divisible_by_total_stride_works(config, length):
    model = SeizureUNet(config)
    assert model(torch.randn(3, 19, length)).shape == (3, length)


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    model = SeizureUNet(SMALL)
    x = torch.randn(2, 19, 1024)
    target = (torch.rand(2, 1024) > 0.5).float()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), target)
    loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


def test_output_of_a_window_does_not_depend_on_its_batch():
    torch.manual_seed(0)
    model = SeizureUNet(SMALL).eval()
    batch = torch.randn(4, 19, 1024)
    with torch.no_grad():
        together = model(batch)
        alone = model(batch[1:2])
    torch.testing.assert_close(together[1:2], alone, rtol=1e-5, atol=1e-5)


def test_output_depends_on_distant_input_through_the_bottleneck():
    """A change at one end of the window moves logits at the other end (global context)."""
    torch.manual_seed(0)
    model = SeizureUNet(SMALL).eval()
    x = torch.randn(1, 19, 2048)
    y = x.clone()
    y[..., :64] += 5.0
    with torch.no_grad():
        delta = (model(x) - model(y))[0, -256:].abs().max()
    assert delta > 0


def test_length_not_divisible_by_total_stride_is_refused_clearly():
    model = SeizureUNet(SMALL)
    with pytest.raises(ValueError, match="not divisible by the model's total stride 16"):
        model(torch.randn(1, 19, 1000))


def test_wrong_channel_count_is_refused():
    with pytest.raises(ValueError, match=r"expected input \(batch, 19, time\)"):
        SeizureUNet(SMALL)(torch.randn(1, 18, 1024))


def test_invalid_configs_are_refused():
    with pytest.raises(ValueError, match="odd"):
        SeizureUNet(ModelConfig(kernel_size=6))
    with pytest.raises(ValueError, match="attention_heads"):
        SeizureUNet(ModelConfig(base_channels=8, depth=1, attention_heads=3))


def test_config_round_trips_through_a_dict():
    assert ModelConfig.from_dict(SMALL.to_dict()) == SMALL
