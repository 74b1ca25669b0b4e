"""Bottleneck adapters (Houlsby et al. 2019) as a PEFT method, so they save, load, resume and switch off
like every other adapter.

Each adapter sits on the output of a sub-layer's last projection (attention's ``o_proj`` and the MLP's
``down_proj``): ``h + up(act(down(h)))``, with ``down`` to ``size`` features, a non-linearity, ``up`` back
to the hidden size, and the residual. ``up`` starts at zero, so the adapted model starts as its base.
The non-linearity between ``down`` and ``up`` is why these adapters cannot be merged into the base
weights (docs/advice.md, "The other PEFT methods").

The maintained library for these adapters (``adapters`` 1.3) pins transformers 4.57; tuneforge runs
transformers 5, so the adapter is written here on PEFT's tuner interface. PEFT knows its methods by a
``PeftType`` enum member; :func:`register` adds ``BOTTLENECK`` to it once, before any adapter is built or
loaded (importing :mod:`tuneforge.models.tuning` does that).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import torch
from peft.config import PeftConfig
from peft.tuners.tuners_utils import BaseTuner, BaseTunerLayer
from peft.utils import PeftType
from torch import nn

NAME = "bottleneck"
#: Sub-layer output projections per architecture family (attention out, MLP out).
DEFAULT_TARGETS = ["o_proj", "down_proj", "c_proj", "dense", "fc2", "out_proj", "w2"]
ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}


@dataclass
class BottleneckConfig(PeftConfig):
    """PEFT config of a bottleneck adapter.

    Attributes:
        target_modules: Linear layers whose output is adapted (names or a regex).
        size: Features of the bottleneck.
        activation: The non-linearity between the down- and up-projection (``relu``, ``gelu``, ``silu``,
            ``tanh``).
        dropout: Dropout on the bottleneck's input.
        scaling: Multiplier of the adapter's output.
    """

    target_modules: list[str] | str | None = field(default=None)
    exclude_modules: list[str] | str | None = field(default=None)
    size: int = field(default=64)
    activation: str = field(default="relu")
    dropout: float = field(default=0.0)
    scaling: float = field(default=1.0)
    modules_to_save: list[str] | None = field(default=None)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.peft_type = PeftType.BOTTLENECK  # type: ignore[attr-defined]  # added by register()
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation {self.activation!r} is not one of {', '.join(ACTIVATIONS)}")


class BottleneckLayer(nn.Module, BaseTunerLayer):
    """A linear layer followed by ``x + scaling * up(act(down(dropout(x))))`` per adapter."""

    adapter_layer_names = ("bottleneck_down", "bottleneck_up")
    other_param_names = ("bottleneck_act",)

    def __init__(self, base_layer: nn.Module, adapter_name: str, config: BottleneckConfig) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.bottleneck_down = nn.ModuleDict({})
        self.bottleneck_up = nn.ModuleDict({})
        self.bottleneck_act: dict[str, nn.Module] = {}
        self.bottleneck_drop = nn.ModuleDict({})
        self.bottleneck_scaling: dict[str, float] = {}
        self.merged_adapters: list[str] = []
        self._active_adapter = adapter_name
        self.out_features = base_layer.out_features
        self.in_features = base_layer.in_features
        self.update_layer(adapter_name, config)

    def update_layer(self, adapter_name: str, config: BottleneckConfig, **kwargs: Any) -> None:
        """Add the adapter ``adapter_name`` (down: Kaiming-uniform as nn.Linear; up: zeros)."""
        width = self.out_features
        weight = self.base_layer.weight
        down = nn.Linear(width, config.size, device=weight.device)
        up = nn.Linear(config.size, width, device=weight.device)
        nn.init.zeros_(up.weight)
        nn.init.zeros_(up.bias)
        self.bottleneck_down[adapter_name] = down
        self.bottleneck_up[adapter_name] = up
        self.bottleneck_act[adapter_name] = ACTIVATIONS[config.activation]()
        self.bottleneck_drop[adapter_name] = nn.Dropout(config.dropout) if config.dropout else nn.Identity()
        self.bottleneck_scaling[adapter_name] = config.scaling
        self.set_adapter([adapter_name], inference_mode=config.inference_mode)

    def merge(self, safe_merge: bool = False, adapter_names: list[str] | None = None) -> None:
        """Refused: the non-linearity makes ``up(act(down(h)))`` no linear map of the layer's input."""
        raise ValueError("bottleneck adapters cannot be merged into the base weights: the non-linearity between "
                         "their down- and up-projection is not a linear map")

    def unmerge(self) -> None:
        """Nothing to undo (adapters are never merged)."""

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        """The base layer's output plus each active adapter's correction."""
        out = self.base_layer(x, *args, **kwargs)
        if self.disable_adapters:
            return out
        for name in self.active_adapters:
            if name not in self.bottleneck_down:
                continue
            down = self.bottleneck_down[name]
            h = self.bottleneck_drop[name](out.to(down.weight.dtype))
            delta = self.bottleneck_up[name](self.bottleneck_act[name](down(h)))
            out = out + (self.bottleneck_scaling[name] * delta).to(out.dtype)
        return out

    def __repr__(self) -> str:
        return "bottleneck." + super().__repr__()


class BottleneckModel(BaseTuner):
    """PEFT tuner that wraps the target linear layers in :class:`BottleneckLayer`."""

    prefix: str = "bottleneck_"
    tuner_layer_cls = BottleneckLayer
    target_module_mapping: dict[str, list[str]] = {}

    def _prepare_adapter_config(self, peft_config: PeftConfig, model_config: dict[str, Any]) -> PeftConfig:
        if peft_config.target_modules is None:
            peft_config.target_modules = DEFAULT_TARGETS
        return peft_config

    def _create_and_replace(self, peft_config: PeftConfig, adapter_name: str, target: nn.Module, target_name: str,
                            parent: nn.Module, current_key: str, **kwargs: Any) -> None:
        if isinstance(target, BottleneckLayer):
            target.update_layer(adapter_name, peft_config)
            return
        if not isinstance(target, nn.Linear):
            raise ValueError(f"bottleneck adapters wrap linear layers; {current_key} is a {type(target).__name__}")
        new = BottleneckLayer(target, adapter_name, peft_config)
        if adapter_name not in self.active_adapters:
            new.requires_grad_(False)
        self._replace_module(parent, target_name, new, target)

    def _unload_and_optionally_merge(self, merge: bool = True, progressbar: bool = False, safe_merge: bool = False,
                                     adapter_names: list[str] | None = None) -> Any:
        if merge:
            raise ValueError("bottleneck adapters cannot be merged into the base weights (their non-linearity)")
        for name, module in list(self.model.named_modules()):
            if isinstance(module, BottleneckLayer):
                parent_name, _, child = name.rpartition(".")
                setattr(self.model.get_submodule(parent_name) if parent_name else self.model, child,
                        module.get_base_layer())
        return self.model


def register() -> None:
    """Make ``bottleneck`` a PEFT method (idempotent): a ``PeftType`` member and the mapping entries."""
    from peft.utils import register_peft_method

    if "BOTTLENECK" not in PeftType.__members__:
        _add_member(PeftType, "BOTTLENECK")
        register_peft_method(name=NAME, config_cls=BottleneckConfig, model_cls=BottleneckModel)


def _add_member(cls: type[enum.Enum], name: str) -> None:
    """Add a member to a ``str`` enum after its creation (Enum has no public API for this)."""
    member = str.__new__(cls, name)
    member._name_ = name
    member._value_ = name
    member.__objclass__ = cls  # type: ignore[attr-defined]
    cls._member_names_.append(name)  # type: ignore[attr-defined]
    cls._member_map_[name] = member  # type: ignore[attr-defined]
    cls._value2member_map_[name] = member  # type: ignore[attr-defined]
    type.__setattr__(cls, name, member)
