"""Pluggable models: specs, factories (inside and outside the package), the logits contract,
checkpoints rebuilt from their spec, RAdam and early stopping."""

from __future__ import annotations

import re
import sys
import time
from dataclasses import replace

import pytest
import torch

from eeg_assets.lib.model.factory import (
    DEFAULT_FACTORY,
    SEIZURE_TRANSFORMER_FACTORY,
    ModelContractError,
    ModelSpec,
    ModelSpecError,
    build_model,
    check_contract,
)
from eeg_assets.lib.model.network import ModelConfig, SeizureUNet, count_parameters
from eeg_assets.lib.model.training import (
    BEST_CHECKPOINT,
    LAST_CHECKPOINT,
    TrainConfig,
    fit,
    load_checkpoint,
)
from eeg_assets_tests.support.tiny_task import POS_WEIGHT, TRAIN, VAL

#: A tiny compact network and a short run: each fit below takes a second or two on one thread.
TINY = ModelSpec(DEFAULT_FACTORY, {"base_channels": 4, "depth": 1, "bottleneck_blocks": 1,
                                   "attention": False})
SHORT = TrainConfig(epochs=1, batch_size=4, eval_batch_size=16, lr=1e-2, seed=7, device="cpu",
                    cpu_threads=1, max_train_windows_per_epoch=8, threshold=0.5,
                    merge_gap_s=1.0, min_event_s=1.0, model=TINY)

USER_MODULE = '''
import torch
from torch import nn


class PerSampleConv(nn.Module):
    """(B, C, T) -> (B, T): one convolution, optionally shortening or poisoning its output."""

    def __init__(self, in_channels=19, width=4, crop=0, poison=False):
        super().__init__()
        self.body = nn.Sequential(nn.Conv1d(in_channels, width, 5, padding=2), nn.ReLU(),
                                  nn.Conv1d(width, 1, 1))
        self.crop, self.poison = crop, poison

    def forward(self, x):
        out = self.body(x).squeeze(1)
        if self.crop:
            out = out[:, ::self.crop]
        if self.poison:
            out = out / 0.0
        return out


def build(width=4, crop=0, poison=False):
    return PerSampleConv(width=width, crop=crop, poison=poison)


def not_a_module():
    return "a string"


CONSTANT = 3
'''


@pytest.fixture
def user_factory(tmp_path, request):
    """A factory module in a folder outside the package; unique name per test."""
    name = f"user_nets_{request.node.name.replace('[', '_').replace(']', '_').replace('-', '_')}"
    folder = tmp_path / "experiments"
    folder.mkdir()
    (folder / f"{name}.py").write_text(USER_MODULE)
    yield name, folder
    sys.modules.pop(name, None)


# -- specs --------------------------------------------------------------------------------------

def test_spec_round_trips_and_its_version_is_stable():
    spec = ModelSpec(SEIZURE_TRANSFORMER_FACTORY, {"dropout": 0.2, "encoder_kernels": (11, 9)})
    assert spec.params == {"dropout": 0.2, "encoder_kernels": [11, 9]}  # JSON-normalised
    assert ModelSpec.from_dict(spec.to_dict()) == spec
    assert spec.version() == ModelSpec.from_dict(spec.to_dict()).version()
    assert len(spec.version()) == 16
    assert spec.version() != ModelSpec(SEIZURE_TRANSFORMER_FACTORY, {"dropout": 0.1}).version()
    assert ModelSpec() == ModelSpec("eeg_assets.lib.model.network:compact", {})
    assert hash(spec) == hash(ModelSpec.from_dict(spec.to_dict()))
    with pytest.raises(ModelSpecError, match="JSON"):
        ModelSpec(DEFAULT_FACTORY, {"size": object()})


def test_train_config_carries_the_spec_optimizer_and_patience_in_its_version():
    config = TrainConfig(model=TINY, optimizer="radam", patience=3)
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert config.to_dict()["model"] == {"factory": DEFAULT_FACTORY, "params": TINY.params}
    versions = {TrainConfig().version(), TrainConfig(model=TINY).version(),
                TrainConfig(optimizer="radam").version(), TrainConfig(patience=3).version()}
    assert len(versions) == 4


def test_an_old_config_dict_reads_as_the_compact_network():
    old = TrainConfig().to_dict()
    old["model"] = ModelConfig(base_channels=8).to_dict()
    del old["optimizer"], old["patience"]
    config = TrainConfig.from_dict(old)
    assert config.model.factory == DEFAULT_FACTORY
    assert config.model.params == ModelConfig(base_channels=8).to_dict()
    assert config.optimizer == "adamw" and config.patience is None


@pytest.mark.parametrize("change, message", [
    ({"optimizer": "sgd"}, "optimizer must be one of adamw, radam, got 'sgd'"),
    ({"epochs": 0}, "epochs must be a positive integer"),
    ({"batch_size": -1}, "batch_size must be a positive integer"),
    ({"lr": 0.0}, "lr must be a positive number"),
    ({"patience": 0}, "patience must be a positive integer or None"),
    ({"device": "tpu"}, "device must be 'auto', 'cpu', 'cuda' or 'cuda:N'"),
    ({"model": ModelSpec("no_colon_here", {})}, "not an import path"),
])
def test_invalid_train_configs_say_which_field(change, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        TrainConfig(**change)


# -- build_model --------------------------------------------------------------------------------

def test_default_spec_builds_todays_network():
    torch.manual_seed(0)
    built = build_model(ModelSpec())
    torch.manual_seed(0)
    today = SeizureUNet(ModelConfig())
    assert isinstance(built, SeizureUNet) and built.config == ModelConfig()
    for (name, a), (_, b) in zip(built.state_dict().items(), today.state_dict().items()):
        assert torch.equal(a, b), name


def test_a_factory_outside_the_package_is_imported_from_its_search_path(user_factory):
    name, folder = user_factory
    path_before = list(sys.path)
    model = build_model(ModelSpec(f"{name}:build", {"width": 3}), search_path=folder)
    assert type(model).__name__ == "PerSampleConv" and model.body[0].out_channels == 3
    assert sys.path == path_before
    check_contract(model, "cpu", factory=f"{name}:build")
    sys.modules.pop(name)
    with pytest.raises(ModelSpecError, match=f"cannot import module '{name}'"):
        build_model(ModelSpec(f"{name}:build", {}))  # not on the path without search_path


@pytest.mark.parametrize("factory, message", [
    ("eeg_assets.lib.model.network", "not an import path of the form"),
    ("eeg_assets.lib.model.network:", "not an import path of the form"),
    ("eeg_assets.lib.model.no_such_module:build",
     "cannot import module 'eeg_assets.lib.model.no_such_module': ModuleNotFoundError: "
     "No module named 'eeg_assets.lib.model.no_such_module'"),
    ("eeg_assets.lib.model.network:no_such_factory",
     "module 'eeg_assets.lib.model.network' .* has no attribute 'no_such_factory'"),
    ("eeg_assets.lib.model.network:__doc__", r"'__doc__' is not callable \(it is a str\)"),
])
def test_unusable_factories_are_named_with_the_reason(factory, message):
    with pytest.raises(ModelSpecError, match=message) as raised:
        build_model(ModelSpec(factory, {}))
    assert factory in str(raised.value)


def test_a_module_failing_its_own_imports_names_the_missing_one(tmp_path):
    (tmp_path / "user_broken_nets.py").write_text("import no_such_dependency_xyz\n")
    spec = ModelSpec("user_broken_nets:build", {})
    try:
        with pytest.raises(ModelSpecError, match="user_broken_nets:build: cannot import module "
                                                 "'user_broken_nets': ModuleNotFoundError: No "
                                                 "module named 'no_such_dependency_xyz'"):
            build_model(spec, search_path=tmp_path)
    finally:
        sys.modules.pop("user_broken_nets", None)


def test_user_factory_errors(user_factory):
    name, folder = user_factory
    with pytest.raises(ModelSpecError, match=rf"{name}:CONSTANT: 'CONSTANT' is not callable "
                                             r"\(it is a int\)"):
        build_model(ModelSpec(f"{name}:CONSTANT", {}), folder)
    with pytest.raises(ModelSpecError, match=f"{name}:not_a_module returned a builtins.str, "
                                             "not a torch.nn.Module"):
        build_model(ModelSpec(f"{name}:not_a_module", {}), folder)
    with pytest.raises(ModelSpecError, match=re.escape(
            f"{name}:build rejects params {{'depth': 2}}: got an unexpected keyword argument "
            "'depth'")):
        build_model(ModelSpec(f"{name}:build", {"depth": 2}), folder)


def test_params_the_compact_network_rejects_are_reported():
    with pytest.raises(ModelSpecError, match=re.escape("network:compact rejects params "
                                                       "{'bogus': 1}: ") + ".*unexpected keyword "
                                                                          "argument 'bogus'"):
        build_model(ModelSpec(DEFAULT_FACTORY, {"bogus": 1}))
    with pytest.raises(ModelSpecError, match="raised ValueError: kernel_size must be odd"):
        build_model(ModelSpec(DEFAULT_FACTORY, {"kernel_size": 6}))


# -- check_contract -----------------------------------------------------------------------------

def test_a_wrong_output_shape_breaks_the_contract_naming_both_shapes(user_factory):
    name, folder = user_factory
    model = build_model(ModelSpec(f"{name}:build", {"crop": 2}), folder)
    with pytest.raises(ModelContractError) as raised:
        check_contract(model, "cpu", factory=f"{name}:build")
    message = str(raised.value)
    assert f"{name}:build" in message
    assert "expected logits of shape (2, 15360)" in message and "got (2, 7680)" in message


def test_non_finite_output_breaks_the_contract(user_factory):
    name, folder = user_factory
    model = build_model(ModelSpec(f"{name}:build", {"poison": True}), folder)
    with pytest.raises(ModelContractError, match=f"{name}:build: non-finite output"):
        check_contract(model, "cpu", factory=f"{name}:build")


def test_a_failing_forward_pass_breaks_the_contract():
    model = build_model(TINY)
    with pytest.raises(ModelContractError, match=r"network:compact: the forward pass of a "
                                                 r"\(2, 18, 15360\).*raised ValueError"):
        check_contract(model, "cpu", n_channels=18, factory=TINY.factory)


def test_the_contract_check_restores_modes_and_leaves_the_rng_alone():
    model = build_model(TINY)
    model.train()
    model.head.eval()  # a mixed state must come back as it was
    modes = [m.training for m in model.modules()]
    rng = torch.get_rng_state()
    check_contract(model, "cpu", n_samples=2560)
    assert [m.training for m in model.modules()] == modes
    assert torch.equal(torch.get_rng_state(), rng)


def test_seizure_transformer_maps_a_window_to_per_sample_logits():
    torch.manual_seed(0)
    model = build_model(ModelSpec(SEIZURE_TRANSFORMER_FACTORY, {}))
    # The published size: the parameter tensors of the authors' code.
    assert count_parameters(model) == 37_848_897
    started = time.perf_counter()
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(1, 19, 15360))
    assert out.shape == (1, 15360) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert not ((out >= 0) & (out <= 1)).all(), "logits, not sigmoid probabilities"
    assert time.perf_counter() - started < 30
    with pytest.raises(ValueError, match="not divisible by 2\\*\\*5 = 32"):
        model(torch.randn(1, 19, 15360 + 16))


def test_seizure_transformer_sizes_are_parameters():
    small = build_model(ModelSpec(SEIZURE_TRANSFORMER_FACTORY, {
        "encoder_channels": [8, 16], "encoder_kernels": [5, 3], "decoder_kernels": [3, 5],
        "residual_kernels": [3, 2], "transformer_layers": 1, "attention_heads": 2,
        "feedforward_channels": 32}))
    check_contract(small, "cpu", n_samples=2560, factory=SEIZURE_TRANSFORMER_FACTORY)
    assert count_parameters(small) < 20_000
    with pytest.raises(ModelSpecError, match="must be non-empty and of one length"):
        build_model(ModelSpec(SEIZURE_TRANSFORMER_FACTORY, {"encoder_kernels": [3]}))


# -- training -----------------------------------------------------------------------------------

def test_fit_refuses_a_broken_factory_before_touching_checkpoints(user_factory, tmp_path):
    name, folder = user_factory
    out_dir = tmp_path / "run"
    out_dir.mkdir()
    (out_dir / BEST_CHECKPOINT).write_bytes(b"an earlier run's")
    config = replace(SHORT, model=ModelSpec(f"{name}:build", {"crop": 2}))
    lines = []
    with pytest.raises(ModelContractError, match=r"expected logits of shape \(2, 2560\).*got "
                                                 r"\(2, 1280\)"):
        fit(TRAIN, POS_WEIGHT, VAL, out_dir, config, log=lines.append,
            model_search_path=folder)
    assert (out_dir / BEST_CHECKPOINT).read_bytes() == b"an earlier run's"
    assert not lines
    with pytest.raises(ModelSpecError, match="no attribute 'missing'"):
        fit(TRAIN, POS_WEIGHT, VAL, out_dir, replace(SHORT, model=ModelSpec(f"{name}:missing")),
            model_search_path=folder)


def test_checkpoints_rebuild_a_user_model_from_their_spec(user_factory, tmp_path):
    name, folder = user_factory
    spec = ModelSpec(f"{name}:build", {"width": 3})
    config = replace(SHORT, model=spec)
    result = fit(TRAIN, POS_WEIGHT, VAL, tmp_path / "run", config, log=lambda _line: None,
                 model_search_path=folder)
    model, checkpoint = load_checkpoint(result.best_checkpoint)  # the recorded search path
    assert checkpoint["model_spec"] == spec.to_dict()
    assert TrainConfig.from_dict(checkpoint["train_config"]) == config
    assert type(model).__name__ == "PerSampleConv" and model.body[0].out_channels == 3
    assert not model.training
    for key, tensor in checkpoint["model_state"].items():
        assert torch.equal(model.state_dict()[key], tensor), key
    sys.modules.pop(name)
    model_again, _ = load_checkpoint(result.best_checkpoint, search_path=folder)
    assert type(model_again).__name__ == "PerSampleConv"


def test_an_old_checkpoint_loads_as_the_compact_network(tmp_path):
    result = fit(TRAIN, POS_WEIGHT, VAL, tmp_path / "run", SHORT, log=lambda _line: None)
    checkpoint = torch.load(result.best_checkpoint, weights_only=True)
    checkpoint["format"] = 1
    checkpoint["model_config"] = ModelConfig(**TINY.params).to_dict()
    del checkpoint["model_spec"]
    torch.save(checkpoint, tmp_path / "old.pt")
    model, _ = load_checkpoint(tmp_path / "old.pt")
    assert isinstance(model, SeizureUNet) and model.config == ModelConfig(**TINY.params)


def test_radam_trains_an_epoch_with_decoupled_weight_decay(tmp_path):
    config = replace(SHORT, optimizer="radam")
    result = fit(TRAIN, POS_WEIGHT, VAL, tmp_path, config, log=lambda _line: None)
    assert len(result.history) == 1 and torch.isfinite(torch.tensor(result.history[0]["val_loss"]))
    last = torch.load(tmp_path / LAST_CHECKPOINT, weights_only=True)
    group = last["optimizer_state"]["param_groups"][0]
    assert group["decoupled_weight_decay"] is True and group["weight_decay"] == config.weight_decay
    assert TrainConfig.from_dict(last["train_config"]).optimizer == "radam"
    adamw = fit(TRAIN, POS_WEIGHT, VAL, tmp_path / "adamw", SHORT, log=lambda _line: None)
    assert adamw.history[0]["train_loss"] != result.history[0]["train_loss"]


def test_early_stopping_stops_when_val_loss_stops_improving(tmp_path):
    # A learning rate far below float32 resolution leaves every weight as it was, so the
    # validation loss never improves after the first epoch.
    config = replace(SHORT, epochs=5, lr=1e-30, patience=2)
    lines = []
    result = fit(TRAIN, POS_WEIGHT, VAL, tmp_path, config, log=lines.append)
    assert [m["epoch"] for m in result.history] == [1, 2, 3]
    assert len({m["val_loss"] for m in result.history}) == 1
    assert result.stopped_early and result.stopped_at_epoch == 3
    assert result.to_dict()["stopped_early"] is True
    assert any(line.startswith("stopping early after epoch 3/5: val loss has not improved for "
                               "2 epochs") for line in lines)
    lines.clear()
    again = fit(TRAIN, POS_WEIGHT, VAL, tmp_path, config, log=lines.append)
    assert again.stopped_early and again.stopped_at_epoch == 3 and len(again.history) == 3
    assert any("stopped early after epoch 3/5" in line and "nothing to train" in line
               for line in lines)
    full = fit(TRAIN, POS_WEIGHT, VAL, tmp_path / "none", replace(config, patience=None),
               log=lambda _line: None)
    assert len(full.history) == 5 and not full.stopped_early and full.stopped_at_epoch is None


def test_a_small_seizure_transformer_trains_and_reloads(tmp_path):
    spec = ModelSpec(SEIZURE_TRANSFORMER_FACTORY, {
        "encoder_channels": [8, 16], "encoder_kernels": [5, 3], "decoder_kernels": [3, 5],
        "residual_kernels": [3, 2], "transformer_layers": 1, "attention_heads": 2,
        "feedforward_channels": 32})
    config = replace(SHORT, model=spec, optimizer="radam")
    result = fit(TRAIN, POS_WEIGHT, VAL, tmp_path, config, log=lambda _line: None)
    assert torch.isfinite(torch.tensor(result.history[0]["train_loss"]))
    model, checkpoint = load_checkpoint(result.best_checkpoint)
    assert type(model).__name__ == "SeizureTransformer" and not model.training
    assert checkpoint["model_spec"] == spec.to_dict()


def test_the_search_path_asked_for_wins_over_an_earlier_one(tmp_path):
    """Two experiment folders holding a module of one name: each build imports its own."""
    for width, folder in ((2, tmp_path / "a"), (5, tmp_path / "b")):
        folder.mkdir()
        (folder / "user_same_name_nets.py").write_text(
            USER_MODULE + f"\n\ndef sized():\n    return PerSampleConv(width={width})\n")
    spec = ModelSpec("user_same_name_nets:sized", {})
    try:
        assert build_model(spec, tmp_path / "a").body[0].out_channels == 2
        assert build_model(spec, tmp_path / "b").body[0].out_channels == 5
        assert build_model(spec, tmp_path / "a").body[0].out_channels == 2
    finally:
        sys.modules.pop("user_same_name_nets", None)
