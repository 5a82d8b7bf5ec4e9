"""One source for each setting: its default and help live on the dataclass field.

A field declared with :func:`option` carries its help text, its CLI flag and
how the flag parses; :func:`add_arguments` builds argparse arguments from the
fields (the CLI never repeats a default), and :func:`given_values` reads back
only what the user gave, so a dataclass default applies everywhere else.
:func:`flag_of` maps a field name to its flag, so errors raised by the
dataclasses can name the flag the user typed.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

from autopeft_ray.exceptions import AutoPeftError

_MISSING: Any = dataclasses.MISSING


def option(
    default: Any = _MISSING,
    *,
    help: str,
    default_factory: Callable[[], Any] | Any = _MISSING,
    flag: str | None = None,
    choices: Iterable[Any] | None = None,
    metavar: str | tuple[str, ...] | None = None,
    parse: Callable[[str], Any] | None = None,
    append: bool = False,
    combine: Callable[[list[Any]], Any] | None = None,
    cli: bool = True,
) -> Any:
    """A dataclass field with its help and CLI flag (``--field-name`` unless ``flag``).

    Args:
        default, default_factory: as ``dataclasses.field``.
        help: one line for ``--help`` and the docs.
        flag: the CLI flag, when it is not the field name in kebab case.
        choices, metavar: as argparse's.
        parse: turns one command-line string into the value (default: from the type).
        append: the flag repeats, each occurrence adds one item (a tuple field).
        combine: turns the list of repeated items into the value (default: a tuple).
        cli: ``False`` keeps the field off the command line.
    """
    metadata = {
        "help": help,
        "flag": flag,
        "choices": None if choices is None else tuple(choices),
        "metavar": metavar,
        "parse": parse,
        "append": append,
        "combine": combine,
        "cli": cli,
    }
    if default_factory is not _MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def cli_fields(cls: type) -> list[dataclasses.Field[Any]]:
    """The fields of ``cls`` that have a CLI flag."""
    return [f for f in dataclasses.fields(cls) if f.metadata.get("cli")]


def flag_of(field: dataclasses.Field[Any]) -> str:
    return field.metadata.get("flag") or "--" + field.name.replace("_", "-")


def default_of(field: dataclasses.Field[Any]) -> Any:
    if field.default_factory is not _MISSING:
        return cast(Callable[[], Any], field.default_factory)()
    return field.default


def _shown(value: Any) -> str:
    if isinstance(value, (tuple, list, dict)):
        return " ".join(str(v) for v in value) or "none"
    return "none" if value is None else str(value)


def add_arguments(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    *,
    only: Iterable[str] | None = None,
    skip: Iterable[str] = (),
    inherited: Iterable[str] = (),
) -> None:
    """Add an argument per CLI field of ``cls``; defaults are the fields' own.

    Args:
        parser: a parser or argument group.
        cls: a dataclass whose fields were declared with :func:`option`.
        only, skip: which fields.
        inherited: fields whose default is taken from elsewhere (an earlier
            search): their help says so instead of showing the field default.
    """
    hints = typing.get_type_hints(cls)
    wanted = None if only is None else set(only)
    inherit = set(inherited)
    for f in cli_fields(cls):
        if (wanted is not None and f.name not in wanted) or f.name in set(skip):
            continue
        meta = f.metadata
        flag = flag_of(f)
        default = "the search's" if f.name in inherit else _shown(default_of(f))
        text = meta["help"]
        kwargs: dict[str, Any] = {
            "dest": f.name,
            "default": argparse.SUPPRESS,
            "help": text if "(default" in text else f"{text} (default: {default})",
            "metavar": meta["metavar"] or flag.lstrip("-").replace("-", "_").upper(),
        }
        if meta["choices"] is not None:
            kwargs["choices"] = meta["choices"]
            if meta["metavar"] is None:
                del kwargs["metavar"]
        kwargs.update(_from_type(hints[f.name], meta))
        if kwargs.get("action") is argparse.BooleanOptionalAction:
            kwargs.pop("metavar", None)
        parser.add_argument(flag, **kwargs)


def _from_type(hint: Any, meta: Mapping[str, Any]) -> dict[str, Any]:
    """argparse ``type``/``nargs``/``action`` for a field's type."""
    if meta["parse"] is not None:
        return {
            "type": _as_argument_type(meta["parse"]),
            **({"action": "append"} if meta["append"] else {}),
        }
    base = _without_none(hint)
    if base is bool:
        return {"action": argparse.BooleanOptionalAction}
    if typing.get_origin(base) is tuple:
        items = typing.get_args(base)
        if meta["append"] or (len(items) == 2 and items[1] is Ellipsis):
            return {"type": items[0], "action": "append"}
        return {"type": items[0], "nargs": len(items)}
    if base in (int, float, str):
        optional = base is not hint  # ``X | None``: "none" on the command line
        return {"type": _or_none(base) if optional and base is not str else base}
    raise TypeError(f"no CLI parsing for {hint!r}: give the field a `parse`")


def _or_none(kind: type) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        return None if text.strip().lower() == "none" else kind(text)

    convert.__name__ = kind.__name__
    return convert


def _as_argument_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """``parse`` whose errors argparse prints in full (it hides a ValueError's text)."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except AutoPeftError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = parse.__name__
    return convert


def _without_none(hint: Any) -> Any:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        kinds = [a for a in typing.get_args(hint) if a is not type(None)]
        return kinds[0] if len(kinds) == 1 else hint
    return hint


def given_values(
    cls: type, args: argparse.Namespace, only: Iterable[str] | None = None
) -> dict[str, Any]:
    """The CLI fields of ``cls`` (or those in ``only``) the user gave, as field values."""
    wanted = None if only is None else set(only)
    values = {}
    for f in cli_fields(cls):
        if hasattr(args, f.name) and (wanted is None or f.name in wanted):
            value = getattr(args, f.name)
            if isinstance(value, list):
                value = (f.metadata["combine"] or tuple)(value)
            values[f.name] = value
    return values


def flags(*classes: type) -> dict[str, str]:
    """Field name -> CLI flag, for error messages in the user's terms."""
    return {f.name: flag_of(f) for cls in classes for f in cli_fields(cls)}
