"""Pluggable networks: a model is named by an import path and keyword parameters.

A :class:`ModelSpec` says which callable builds the network (``"package.module:callable"``) and
with which keyword arguments; :func:`build_model` imports and calls it, :func:`check_contract`
runs one forward pass to prove the result fits training before any step is taken. The contract
every factory's module must meet:

* input: a float32 batch ``(batch, n_channels, n_samples)`` of z-scored EEG (19 x 15360 for the
  60 s windows at 256 Hz of the cache);
* output: ``(batch, n_samples)`` seizure **logits**, one per input sample, finite (training uses
  ``BCEWithLogitsLoss``; validation and inference apply the sigmoid themselves);
* a window's output may depend on the other windows of its batch only through BatchNorm-style
  training statistics (evaluation runs in ``eval()`` mode);
* the parameters are JSON values (they are part of the training configuration's version and of
  every checkpoint, which rebuilds the network from its spec).

Built in: ``eeg_assets.lib.model.network:compact`` (the default, sized for CPU training) and
``eeg_assets.lib.model.seizure_transformer:seizure_transformer`` (the published
SeizureTransformer size). A user's factory may live outside the package: pass the folder that
holds its module as ``search_path``.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

#: The network trained when a configuration names none.
DEFAULT_FACTORY = "eeg_assets.lib.model.network:compact"
SEIZURE_TRANSFORMER_FACTORY = "eeg_assets.lib.model.seizure_transformer:seizure_transformer"
#: Geometry of the cache's windows (19 channels, 60 s at 256 Hz): what the contract checks.
CONTRACT_CHANNELS = 19
CONTRACT_SAMPLES = 15360


class ModelSpecError(ValueError):
    """A model spec that does not name an importable callable building an ``nn.Module``."""


class ModelContractError(ValueError):
    """A built model whose forward pass does not give ``(batch, n_samples)`` finite logits."""


@dataclass(frozen=True)
class ModelSpec:
    """Which callable builds the network, with which keyword parameters.

    Parameters
    ----------
    factory : str
        ``"package.module:callable"``; the callable is called as ``callable(**params)`` and must
        return an ``nn.Module`` meeting the contract of this module.
    params : dict
        JSON values only (normalised through JSON on construction, so a spec equals its
        round trip through :meth:`to_dict` and JSON).
    """

    factory: str = DEFAULT_FACTORY
    params: dict = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.factory, str):
            raise ModelSpecError(f"model factory must be a string 'package.module:callable', "
                                 f"got {self.factory!r}")
        params = {} if self.params is None else self.params
        if not isinstance(params, dict):
            raise ModelSpecError(f"model factory {self.factory}: params must be a dict of "
                                 f"keyword arguments, got {type(params).__name__}")
        try:
            normalised = json.loads(json.dumps(params, sort_keys=True, allow_nan=False))
        except (TypeError, ValueError) as error:
            raise ModelSpecError(f"model factory {self.factory}: params must be JSON values "
                                 f"(they are versioned and stored in checkpoints): {error}"
                                 ) from None
        object.__setattr__(self, "params", normalised)

    def __hash__(self) -> int:
        return hash(self.version())

    def to_dict(self) -> dict:
        return {"factory": self.factory, "params": json.loads(json.dumps(self.params))}

    @classmethod
    def from_dict(cls, data: dict) -> ModelSpec:
        unknown = set(data) - {"factory", "params"}
        if unknown or "factory" not in data:
            raise ModelSpecError(f"a model spec is {{'factory': 'package.module:callable', "
                                 f"'params': {{...}}}}, got keys {sorted(data)}")
        return cls(data["factory"], data.get("params") or {})

    def version(self) -> str:
        """A short, stable digest of the factory path and its parameters."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def split(self) -> tuple[str, str]:
        """``(module, attribute)`` of :attr:`factory`.

        Raises
        ------
        ModelSpecError
            When the path is not ``"package.module:callable"``.
        """
        module, sep, attribute = self.factory.partition(":")
        if (not sep or not module.strip() or not attribute.strip() or ":" in attribute
                or not all(part.isidentifier() for part in module.split("."))
                or not all(part.isidentifier() for part in attribute.split("."))):
            raise ModelSpecError(f"model factory {self.factory!r}: not an import path of the "
                                 f"form 'package.module:callable'")
        return module, attribute

    def validate(self) -> None:
        """Check the form of the spec without importing anything."""
        self.split()

    def describe(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in sorted(self.params.items()))
        return f"{self.factory}({params})"


DEFAULT_MODEL = ModelSpec()


@contextmanager
def _on_sys_path(search_path: Path | None) -> Iterator[None]:
    """``search_path`` at the front of ``sys.path`` for the duration, then removed again."""
    if search_path is None:
        yield
        return
    entry = str(Path(search_path).resolve())
    sys.path.insert(0, entry)
    importlib.invalidate_caches()
    try:
        yield
    finally:
        try:
            sys.path.remove(entry)
        except ValueError:  # the factory removed it itself
            pass


def _forget_shadowed(module_name: str, search_path: Path | None) -> None:
    """Drop a cached import of ``module_name``'s top-level module when it came from a folder no
    longer on ``sys.path`` (an earlier ``search_path``) and ``search_path`` holds one of that
    name: the folder asked for must win. Modules importable without a search path are never
    touched."""
    if search_path is None:
        return
    top = module_name.split(".")[0]
    folder = Path(search_path).resolve()
    if not ((folder / f"{top}.py").is_file() or (folder / top / "__init__.py").is_file()):
        return
    origin = getattr(sys.modules.get(top), "__file__", None)
    if origin is None:
        return
    origin = Path(origin).resolve()
    root = origin.parent.parent if origin.name == "__init__.py" else origin.parent
    on_path = set()
    for entry in sys.path:
        try:
            on_path.add(Path(entry or ".").resolve())
        except OSError:
            continue
    if root == folder or root in on_path:
        return
    for name in [n for n in sys.modules if n == top or n.startswith(top + ".")]:
        del sys.modules[name]


def _resolve(spec: ModelSpec, search_path: Path | None = None):
    """The factory callable (importing its module); the caller manages ``sys.path``."""
    module_name, attribute = spec.split()
    _forget_shadowed(module_name, search_path)
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ModelSpecError(f"model factory {spec.factory}: cannot import module "
                             f"{module_name!r}: {type(error).__name__}: {error}") from error
    except Exception as error:  # noqa: BLE001 - a user's module failing while it is imported
        raise ModelSpecError(f"model factory {spec.factory}: importing module {module_name!r} "
                             f"raised {type(error).__name__}: {error}") from error
    target = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ModelSpecError(f"model factory {spec.factory}: module {module_name!r} "
                                 f"({getattr(module, '__file__', None)}) has no attribute "
                                 f"{attribute!r}") from None
    if not callable(target):
        raise ModelSpecError(f"model factory {spec.factory}: {attribute!r} is not callable "
                             f"(it is a {type(target).__name__})")
    return target


def build_model(spec: ModelSpec, search_path: Path | None = None) -> nn.Module:
    """Import ``spec.factory`` and call it with ``**spec.params``.

    Parameters
    ----------
    spec : ModelSpec
    search_path : Path, optional
        A folder put at the front of ``sys.path`` while the factory is imported and called (for
        a user's module outside the package, e.g. in the experiments folder).

    Returns
    -------
    nn.Module
        The freshly built network (on CPU, in training mode as the factory left it).

    Raises
    ------
    ModelSpecError
        Naming the factory and why: a malformed path, a module that cannot be imported (with the
        ImportError), a missing attribute, a non-callable, parameters the callable rejects
        (with its TypeError), or a result that is not an ``nn.Module``.
    """
    if not isinstance(spec, ModelSpec):
        raise ModelSpecError(f"build_model needs a ModelSpec, got {type(spec).__name__}")
    with _on_sys_path(search_path):
        factory = _resolve(spec, search_path)
        try:
            signature = inspect.signature(factory)
        except (TypeError, ValueError):  # builtins and some C callables have none
            signature = None
        if signature is not None:
            try:
                signature.bind(**spec.params)
            except TypeError as error:
                raise ModelSpecError(f"model factory {spec.factory} rejects params "
                                     f"{spec.params}: {error}") from None
        try:
            model = factory(**spec.params)
        except TypeError as error:
            raise ModelSpecError(f"model factory {spec.factory} rejects params {spec.params}: "
                                 f"{error}") from error
        except Exception as error:  # noqa: BLE001 - e.g. a ValueError on an invalid size
            raise ModelSpecError(f"model factory {spec.factory} with params {spec.params} "
                                 f"raised {type(error).__name__}: {error}") from error
    if not isinstance(model, nn.Module):
        raise ModelSpecError(f"model factory {spec.factory} returned a "
                             f"{type(model).__module__}.{type(model).__qualname__}, not a "
                             f"torch.nn.Module")
    return model


def source_digest(spec: ModelSpec, search_path: Path | None = None) -> str | None:
    """sha256 prefix of the source file of the factory's module (None when it has none).

    :meth:`ModelSpec.version` covers the path and parameters, not the code behind them: a caller
    versioning a run of a user's factory outside the package should fold this digest in.
    """
    module_name, _attribute = spec.split()
    with _on_sys_path(search_path):
        _resolve(spec, search_path)
    source = getattr(sys.modules.get(module_name), "__file__", None)
    if source is None or not Path(source).is_file():
        return None
    return hashlib.sha256(Path(source).read_bytes()).hexdigest()[:16]


def check_contract(model: nn.Module, device: torch.device | str,
                   n_channels: int = CONTRACT_CHANNELS, n_samples: int = CONTRACT_SAMPLES,
                   batch: int = 2, factory: str | None = None) -> None:
    """One forward pass of a ``(batch, n_channels, n_samples)`` float32 batch on ``device``.

    Runs in ``eval()`` mode under ``torch.no_grad()`` (BatchNorm statistics and the global RNG
    are left untouched: the input comes from a private generator), then restores every
    submodule's train/eval mode. The model must already be on ``device``.

    Parameters
    ----------
    model : nn.Module
    device : torch.device or str
        Where the input batch is put: the training device.
    n_channels, n_samples, batch : int
        Geometry of the probe batch (default: two cache windows, 19 x 15360).
    factory : str, optional
        Named in the error (the spec's import path).

    Raises
    ------
    ModelContractError
        When the forward pass raises, or its output is not ``(batch, n_samples)`` or not finite;
        the message names the factory, the expected and the actual shape.
    """
    name = factory or f"{type(model).__module__}.{type(model).__qualname__}"
    expected = (batch, n_samples)
    generator = torch.Generator().manual_seed(0)
    probe = torch.randn(batch, n_channels, n_samples, generator=generator).to(device)
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            try:
                output = model(probe)
            except Exception as error:  # noqa: BLE001 - reported with the contract
                raise ModelContractError(
                    f"model factory {name}: the forward pass of a ({batch}, {n_channels}, "
                    f"{n_samples}) float32 batch on {device} raised {type(error).__name__}: "
                    f"{error}; expected logits of shape {expected}") from error
    finally:
        for module, training in modes:
            module.training = training
    if not isinstance(output, torch.Tensor):
        raise ModelContractError(f"model factory {name}: the forward pass returned a "
                                 f"{type(output).__name__}, expected a tensor of logits of "
                                 f"shape {expected}")
    if tuple(output.shape) != expected:
        raise ModelContractError(f"model factory {name}: expected logits of shape {expected} "
                                 f"for a ({batch}, {n_channels}, {n_samples}) input, got "
                                 f"{tuple(output.shape)}")
    if not output.is_floating_point():
        raise ModelContractError(f"model factory {name}: logits of shape {expected} must be "
                                 f"floating point, got {output.dtype}")
    if not bool(torch.isfinite(output).all()):
        bad = int((~torch.isfinite(output)).sum())
        raise ModelContractError(f"model factory {name}: non-finite output ({bad} of "
                                 f"{output.numel()} logits of shape {expected} are NaN or "
                                 f"infinite)")


__all__ = [
    "CONTRACT_CHANNELS",
    "CONTRACT_SAMPLES",
    "DEFAULT_FACTORY",
    "DEFAULT_MODEL",
    "ModelContractError",
    "ModelSpec",
    "ModelSpecError",
    "SEIZURE_TRANSFORMER_FACTORY",
    "build_model",
    "check_contract",
    "source_digest",
]
