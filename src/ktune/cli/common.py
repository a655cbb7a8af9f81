"""Small helpers shared by subcommands: --json output and common options (KB, generation backend)."""

from __future__ import annotations

import json
import sys

from ktune.paths import DEFAULT_KB_HELP


def add_kb_option(p) -> None:
    p.add_argument("--kb", metavar="PATH", help=f"knowledge base file or postgresql:// URL (default: {DEFAULT_KB_HELP})")
    p.add_argument("--schema", metavar="FILE", help="attribute schema JSON (default: the shipped CMeKG schema)")


def add_json_option(p) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable JSON on stdout")


def emit_json(obj) -> None:
    json.dump(obj, sys.stdout, ensure_ascii=False, indent=2)
    sys.stdout.write("\n")


def open_kb(args, create: bool = False):
    from ktune.kb import KnowledgeBase

    return KnowledgeBase.open(args.kb, schema=args.schema, create=create)


def add_backend_options(p, key_flag: str = "--api-key") -> None:
    """--backend, --base-url, --model, the server's key and --grammar-field (ask, chat, predict, eval, serve).
    `key_flag`: the key's flag where --api-key means something else (serve: its own clients' key)."""
    from ktune.pipeline.backend import BACKENDS, GRAMMAR_FIELDS

    g = p.add_argument_group("generation backend (ktune.pipeline.backend)")
    g.add_argument("--backend", choices=BACKENDS, default="local",
                   help="local: the run's model in this process (default); openai: an OpenAI-compatible completions "
                   "server (llama.cpp server, vLLM) serving the run's model (ktune export --gguf for llama.cpp, "
                   "--merge for vLLM)")
    g.add_argument("--base-url", metavar="URL", help="the server (--backend openai), e.g. http://127.0.0.1:8080")
    g.add_argument("--model", metavar="NAME", help="the model name the server serves (--backend openai)")
    g.add_argument(key_flag, dest="backend_api_key", metavar="KEY",
                   help="sent to the --backend openai server as a bearer token when given (OPENAI_API_KEY is never "
                   "read)")
    g.add_argument("--grammar-field", choices=GRAMMAR_FIELDS, default="grammar",
                   help="the request body field the stage-1 GBNF grammar goes in: grammar (llama.cpp server, the "
                   "default), structured_outputs.grammar (vLLM), guided_grammar (older vLLM), none (free decoding "
                   "+ KB linking)")


def make_backend(args):
    """The backend the flags of add_backend_options choose: None for the local one."""
    from ktune.errors import ConfigError

    if getattr(args, "backend", "local") == "local":
        return None
    if not args.base_url or not args.model:
        raise ConfigError("--backend openai needs --base-url (the server) and --model (the name it serves)")
    from ktune.pipeline.backend import OpenAIBackend

    return OpenAIBackend(args.base_url, args.model, api_key=args.backend_api_key, grammar_field=args.grammar_field)
