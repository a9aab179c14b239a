"""CLI hooks: `pneumoscan models` lists the architectures; `pneumoscan card` and `pneumoscan docs` print the shipped
model's card and pneumoscan's guides."""
from __future__ import annotations

import argparse
import sys

from pneumoscan.card import SOURCE_PATHS
from pneumoscan.errors import warn


def cmd_models(args: argparse.Namespace) -> int:
    from pneumoscan.models.registry import PLUGIN_GROUP, get_spec, list_models

    names = list_models()
    sources = {name: get_spec(name).origin.describe() if get_spec(name).origin else "pneumoscan" for name in names}
    width, source_width = max(12, *(len(n) + 2 for n in names)), max(len(s) for s in sources.values()) + 2
    print(f"{'name':<{width}}{'params':>11}{'size':>6}  {'from':<{source_width}}description")
    for name in names:
        spec = get_spec(name)
        print(f"{name:<{width}}{_parameters_shown(name):>11}{spec.image_size:>6}  {sources[name]:<{source_width}}"
              f"{spec.description}")
    print("ensemble: the mean of trained models; build one with `pneumoscan ensemble RUN RUN --out DIR`")
    print(f"plugins: installed packages add models through the entry point group {PLUGIN_GROUP} (`pneumoscan docs "
          f"training`: Your own architecture); a built-in name cannot be replaced by one")
    return 0


def _parameters_shown(name: str) -> str:
    """The number of weights of model `name` as `train` builds it by default (its options' defaults, at its
    registered input size), or '?' (with a warning) for a plugin's model that cannot be built so."""
    from pneumoscan.models.registry import count_parameters, create_model, get_spec, model_config

    try:
        return f"{count_parameters(create_model(name, **model_config(name, image_size=get_spec(name).image_size))):,}"
    except Exception as err:  # noqa: BLE001 - a plugin's builder may fail in any way
        warn(f"model {name!r} cannot be built with its default options ({type(err).__name__}: {err})")
        return "?"


def cmd_card(args: argparse.Namespace) -> int:
    from pneumoscan.card import model_card_text

    sys.stdout.write(model_card_text())
    return 0


def cmd_docs(args: argparse.Namespace) -> int:
    from pneumoscan.card import guide_text, guides

    if args.guide is not None:
        sys.stdout.write(guide_text(args.guide))
        return 0
    known = guides()
    width = max(12, *(len(name) + 2 for name in known)) if known else 12
    for name, title in known.items():
        print(f"{name:<{width}}{title}")
    print("`pneumoscan docs GUIDE` prints one; `pneumoscan card` prints the shipped model's card")
    print(f"The {SOURCE_PATHS}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """`models`, `card` and `docs`."""
    p = sub.add_parser("models", help="list the registered model architectures, installed plugins' too, and the "
                                       "package each comes from")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("card", help="print the model card (Markdown) of the model shipped with pneumoscan: what it is "
                                     "for, its data, recipe, test figures and known failure modes; it describes that "
                                     "model only, not one you train (the service sends it at GET /model/card)")
    p.set_defaults(func=cmd_card)

    p = sub.add_parser("docs", help="print one of pneumoscan's guides (Markdown: training, evaluation, the service, "
                                     "the Python API, ...) or its README, installed with it from its source; "
                                     "without GUIDE, list them. The " + SOURCE_PATHS)
    p.add_argument("guide", nargs="?", metavar="GUIDE", help="the guide's name, as listed, in any case and with "
                                                               "or without .md: e.g. training or Training.md")
    p.set_defaults(func=cmd_docs)
