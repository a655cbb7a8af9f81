"""`ktune` entry point: builds the parser from the subcommand modules and turns library errors into one line."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from ktune import __version__

# subcommand name -> module under ktune.cli that defines add_parser(subparsers) and run(args)
COMMANDS = {
    "kb": "kb",
    "data": "data",
    "models": "models",
    "train": "train",
    "export": "export",
    "ask": "ask",
    "chat": "ask",
    "predict": "ask",
    "eval": "evaluate",
    "serve": "serve",
    "demo": "demo",
}

EPILOG = """\
the method, stage by stage:
  ktune kb import cmekg                 load the CMeKG knowledge base (27k entities) into SQLite
  ktune data build --out data/          build the knowledge-tuning dataset from the KB
  ktune train --base MODEL --data data/ --out runs/x   LoRA knowledge-tuning
  ktune ask --run runs/x "问题"          question -> query -> knowledge -> answer, with provenance
  ktune eval --run runs/x --data data/  accuracy vs BM25, dense and rule baselines
environment: KTUNE_HOME (state folder), KTUNE_KB (default KB path), HF_HUB_OFFLINE=1 (no hub downloads)
"""


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ktune",
        description="Knowledge-tune LLMs on a structured medical knowledge base (Wang et al., arXiv 2309.04175).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"ktune {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    loaded = set()
    for module in COMMANDS.values():
        if module in loaded:
            continue
        loaded.add(module)
        try:
            mod = importlib.import_module(f"ktune.cli.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"ktune.cli.{module}":
                raise
            continue  # stage not built in this version
        mod.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from ktune.errors import KtuneError

    try:
        return args.func(args) or 0
    except KtuneError as exc:
        print(f"ktune: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ktune: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
