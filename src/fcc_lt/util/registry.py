"""Name -> constructor registries, one per kind of part (losses, samplers, mixers, backbones, heads,
datasets).

A part's constructor takes what the framework supplies as positional arguments (class counts, feature
size, ...) and its user-tunable parameters as keyword-only arguments with type hints. That split lets
the registry validate a config's ``params`` mapping against the signature (unknown names, wrong types,
missing values, and ranges written as ``Annotated[float, Range(...)]``) before any data is loaded, and lets
`fcc configs`/docs list every parameter. Rules between parameters (one needs another) are a part's
classmethod ``validate_params(params, where)``, given every parameter with its default filled in.

``check_params`` is the one validation path of a part's parameters: config validation calls it, and so does
``build``; the constructors trust what they are given.
"""

from __future__ import annotations

import importlib
import inspect
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from fcc_lt.util.errors import ConfigError
from fcc_lt.util.typecheck import coerce, suggest

T = TypeVar("T", bound=Callable[..., Any])


@dataclass(frozen=True)
class Param:
    """One user-tunable keyword-only parameter of a registered constructor."""

    name: str
    annotation: Any
    default: Any  # inspect.Parameter.empty when required

    @property
    def required(self) -> bool:
        return self.default is inspect.Parameter.empty


class Registry(Generic[T]):
    """A mapping from names to constructors of one kind of part.

    ``modules`` are imported on first lookup so that every built-in part is registered without the
    registry having to import (and cyclically depend on) the modules that define them.
    """

    def __init__(self, kind: str, modules: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self._modules = modules
        self._entries: dict[str, T] = {}
        self._loaded = False

    def register(self, name: str) -> Callable[[T], T]:
        def add(ctor: T) -> T:
            if name in self._entries and self._entries[name] is not ctor:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = ctor
            return ctor

        return add

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            for module in self._modules:
                importlib.import_module(module)

    def names(self) -> list[str]:
        self._load()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def get(self, name: str, where: str = "") -> T:
        self._load()
        if name not in self._entries:
            at = f"{where}: " if where else ""
            raise ConfigError(
                f"{at}unknown {self.kind} {name!r}{suggest(name, self._entries)}; "
                f"known: {', '.join(sorted(self._entries))}"
            )
        return self._entries[name]

    def params(self, name: str) -> list[Param]:
        """The keyword-only (user-tunable) parameters of ``name``'s constructor."""
        ctor = self.get(name)
        target = ctor.__init__ if inspect.isclass(ctor) else ctor
        hints = typing.get_type_hints(target, include_extras=True)
        out = []
        for p in inspect.signature(ctor).parameters.values():
            if p.kind is inspect.Parameter.KEYWORD_ONLY:
                out.append(Param(p.name, hints.get(p.name, Any), p.default))
        return out

    def check_params(self, name: str, params: Mapping[str, Any], where: str, rules: bool = True) -> dict[str, Any]:
        """Validate and coerce ``params`` for ``name``; errors name ``where.<key>``. ``rules``: also the part's
        rules between parameters (``check_rules``)."""
        self.get(name, where)
        known = {p.name: p for p in self.params(name)}
        if not isinstance(params, Mapping):
            raise ConfigError(f"{where}: expected a mapping of parameters, got {type(params).__name__}")
        out: dict[str, Any] = {}
        for key, value in params.items():
            if key not in known:
                hint = suggest(str(key), known)
                options = ", ".join(known) or "none"
                raise ConfigError(
                    f"{where}.{key}: {self.kind} {name!r} has no parameter {key!r}{hint}; "
                    f"its parameters: {options}"
                )
            out[key] = coerce(value, known[key].annotation, f"{where}.{key}")
        missing = [p.name for p in known.values() if p.required and p.name not in out]
        if missing:
            raise ConfigError(f"{where}: {self.kind} {name!r} needs {', '.join(missing)}")
        if rules:
            self.check_rules(name, out, where)
        return out

    def check_rules(self, name: str, params: Mapping[str, Any], where: str) -> None:
        """The part's own rules between its (checked) parameters: its classmethod ``validate_params``, given
        every parameter with the defaults filled in."""
        rules = getattr(self.get(name), "validate_params", None)
        if rules is not None:
            defaults = {p.name: p.default for p in self.params(name) if not p.required}
            rules({**defaults, **params}, where)

    def build(self, name: str, params: Mapping[str, Any], where: str, *args: Any) -> Any:
        """Construct ``name`` with framework arguments ``args`` and validated user ``params``."""
        checked = self.check_params(name, params, where)
        ctor = self.get(name, where)
        try:
            return ctor(*args, **checked)
        except ConfigError:
            raise
        except ValueError as err:
            # A constructor's own range check (a depth that is not 6n+2, ...): report it as the config
            # error it is, naming the key, instead of a traceback from inside the part.
            raise ConfigError(f"{where}: {self.kind} {name!r} rejects these parameters: {err}") from None


LOSSES: Registry = Registry("loss", ("fcc_lt.methods.losses",))
SAMPLERS: Registry = Registry("sampler", ("fcc_lt.methods.samplers",))
MIXERS: Registry = Registry("mixer", ("fcc_lt.methods.mixers",))
BACKBONES: Registry = Registry("backbone", ("fcc_lt.models.resnet_cifar", "fcc_lt.models.resnet"))
HEADS: Registry = Registry("head", ("fcc_lt.models.heads",))
DATASETS: Registry = Registry("dataset", ("fcc_lt.data.cifar", "fcc_lt.data.image_datasets"))
