"""Two-stage training (cRT, LWS, tau-norm; Kang et al. 2020): stage 2 starts from a stage-1 run's weights
(``model.init_from``, minus ``model.init_exclude``) and freezes what it does not retrain
(``train.freeze``). The tau-normalised view of a trained head is in fcc_lt.models.tau_norm.
"""

from __future__ import annotations

from torch import nn

from fcc_lt.config.schema import Config
from fcc_lt.models.checkpoint_file import load_model_state
from fcc_lt.util.errors import ConfigError
from fcc_lt.util.typecheck import suggest


def init_from(network: nn.Module, cfg: Config) -> None:
    """Load ``model.init_from`` (a run directory or checkpoint, ours or the original code's) into ``network``,
    except the keys under ``model.init_exclude``."""
    from fcc_lt.evaluation.run_loader import read_run

    own = network.state_dict()
    for prefix in cfg.model.init_exclude:
        if not any(k == prefix or k.startswith(prefix + ".") for k in own):
            names = {k.rsplit(".", 1)[0] for k in own}
            raise ConfigError(f"model.init_exclude: {prefix!r} names no weights of the model{suggest(prefix, names)}")
    source = cfg.model.init_from
    assert source is not None
    art = read_run(source, what="model.init_from")
    where = f"model.init_from {art.path}"
    weights = art.weights_for(network, where, exclude=cfg.model.init_exclude)  # the original code's names too
    load_model_state(network, weights, where, exclude=cfg.model.init_exclude)


def freeze(network: nn.Module, prefixes: list[str]) -> list[nn.Module]:
    """Stop gradients under each ``train.freeze`` prefix; returns the frozen modules."""
    frozen = []
    names = dict(network.named_modules())
    for prefix in prefixes:
        if prefix not in names:
            hint = suggest(prefix, [n for n in names if n])
            raise ConfigError(f"train.freeze: the model has no module {prefix!r}{hint}")
        module = names[prefix]
        module.requires_grad_(False)
        frozen.append(module)
    return frozen
