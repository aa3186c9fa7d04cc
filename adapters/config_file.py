"""Hyperparameter files: ``dqnkit train --config run.toml``, and ``--show-config`` to write one.

TOML, read by the standard library's ``tomllib``: no dependency, and no YAML-style guessing
(``no`` read as False, ``1e-3`` read as a string). The file is flat, one key per
:class:`~dqnkit.adapters.config.TrainConfig` field::

    env_id = "CartPole-v1"
    learning_rate = 1e-3
    hidden = [256, 256]
    eval_gate = "none"      # an optional number left unset

Values are checked against the field's type here, with the file and key in the message; the
ranges are checked by ``TrainConfig.validate`` like any other override. The resolved order is
preset < file < command-line options.
"""

import dataclasses
import json
import math
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

from dqnkit.adapters.config import TrainConfig
from dqnkit.adapters.errors import CommandError

__all__ = ["load_config_file", "to_toml"]

_NONE = "none"


def load_config_file(path: Path) -> dict[str, Any]:
    """The overrides in a TOML file: field name -> value of the field's type."""
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise CommandError(f"--config {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise CommandError(f"--config {path}: cannot read it ({error})") from error
    except tomllib.TOMLDecodeError as error:
        raise CommandError(f"--config {path}: not valid TOML ({error})") from error
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise CommandError(
            f"--config {path}: unknown keys {unknown}; the keys are TrainConfig's fields "
            f"(see dqnkit train ENV --show-config)"
        )
    return {name: _typed(path, name, value, fields[name].type) for name, value in data.items()}


def _typed(path: Path, name: str, value: Any, annotation: Any) -> Any:
    def bad(expected: str) -> CommandError:
        return CommandError(f"--config {path}: {name} = {value!r:.60} is not {expected}")

    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):  # float | None: "none" leaves it unset
        if value == _NONE:
            return None
        (annotation,) = [a for a in typing.get_args(annotation) if a is not type(None)]
        origin = typing.get_origin(annotation)
    if annotation is bool:
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if annotation is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise bad("an integer")
        return value
    if annotation is float:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise bad("a number")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise bad("a string")
        return value
    if origin is typing.Literal:
        choices = typing.get_args(annotation)
        if value not in choices:
            raise bad(f"one of {list(choices)}")
        return value
    if origin is tuple:
        if not isinstance(value, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        ):
            raise bad("a list of integers")
        return tuple(value)
    raise bad(f"a value of type {annotation}")


def to_toml(config: TrainConfig) -> str:
    """``config`` as a file :func:`load_config_file` reads back to the same config."""
    lines = ["# dqnkit train --config FILE (TOML; command-line options override it)"]
    for field in dataclasses.fields(TrainConfig):
        lines.append(f"{field.name} = {_toml_value(getattr(config, field.name))}")
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if value is None:
        return json.dumps(_NONE)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # a TOML basic string is a JSON string for these values
