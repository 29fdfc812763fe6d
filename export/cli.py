"""CLI of the export stage: standin (alias tiny-model), tokenize, export, build-engine, validate."""

from __future__ import annotations

import argparse
import json
import sys

from mxbai_triton.core.memory import SIZES


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("standin", aliases=["tiny-model"],
                            help="write an offline random-weight stand-in checkpoint (alias: tiny-model)")
    p.add_argument("out", help="output directory")
    p.add_argument("--size", default="tiny", choices=tuple(SIZES),
                   help="tiny and small for tests and demos; base and large have the real shapes")
    p.add_argument("--seed", type=int, default=0, help="same seed, same weights")
    p.set_defaults(handler=_tiny_model)

    p = commands.add_parser("tokenize", help="print reference-exact token ids, one JSON line per document")
    p.add_argument("model_dir", help="export or checkpoint directory with tokenizer.json")
    p.add_argument("--query", required=True, help="the query")
    p.add_argument("--instruction", default=None, help="the reference's optional instruction line")
    p.add_argument("--max-length", type=int, default=None, help="the reference's max_length (default: the spec's, 8192)")
    p.add_argument("documents", nargs="+", metavar="DOC", help="the documents")
    p.set_defaults(handler=_tokenize)

    p = commands.add_parser("export", help="export a checkpoint to ONNX with the folded score head")
    p.add_argument("model", help="base-v2, large-v2, a Hugging Face id or a local checkpoint directory")
    p.add_argument("--out", required=True, help="export directory")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "fp16", "bf16"],
                   help="graph precision: fp32 for CPU serving, fp16 (or bf16) for GPU engines")
    p.add_argument("--name", default=None, help="model name in the spec (default: the checkpoint's)")
    p.add_argument("--skip-validation", action="store_true", help="do not compare ONNX Runtime with PyTorch")
    p.set_defaults(handler=_export)

    p = commands.add_parser("build-engine", help="build a TensorRT engine (model.plan) from an export, within one instance's memory budget")
    p.add_argument("export_dir", help="export directory (`export --dtype fp16` for an fp16 engine)")
    p.add_argument("--out", required=True, help="engine directory")
    p.add_argument("--precision", default="fp16", choices=["fp16", "bf16", "fp32"],
                   help="engine precision; must match the export's --dtype (fp32 fits short profiles only)")
    p.add_argument("--profiles", default=None, help="MIN:OPT:MAX sequence lengths, comma-separated (default: the spec's)")
    p.add_argument("--opt-level", type=int, default=3, choices=range(6), metavar="0-5", help="builder optimization level")
    p.add_argument("--timing-cache", default=None, help="timing cache to reuse and update (default: OUT/timing.cache)")
    p.set_defaults(handler=_build_engine)

    p = commands.add_parser("validate", help="compare an export's ONNX Runtime scores with PyTorch")
    p.add_argument("export_dir", help="export directory (model.onnx, tokenizer.json, spec.json)")
    p.add_argument("--batches", default="1,4", help="comma-separated batch sizes")
    p.add_argument("--lengths", default="16,97,256", help="comma-separated sequence lengths")
    p.set_defaults(handler=_validate)


def _tiny_model(args) -> int:
    from .standin import build_standin

    out = build_standin(args.out, size=args.size, seed=args.seed)
    print(f"wrote random-weight stand-in ({args.size}, seed {args.seed}) to {out}")
    return 0


def _spec_for_dir(model_dir: str):
    from pathlib import Path

    from mxbai_triton.core.model import SPEC_FILENAME, ModelSpec, resolve_spec

    return ModelSpec.load(model_dir) if (Path(model_dir) / SPEC_FILENAME).is_file() else resolve_spec(model_dir)


def _tokenize(args) -> int:
    from mxbai_triton.core.preprocess import RerankPreprocessor

    pre = RerankPreprocessor.from_dir(args.model_dir, _spec_for_dir(args.model_dir), max_length=args.max_length)
    for ids in pre.encode(args.query, args.documents, instruction=args.instruction):
        sys.stdout.write(json.dumps({"input_ids": ids}) + "\n")
    return 0


def _export(args) -> int:
    from .onnx_export import export_onnx

    path = export_onnx(args.model, args.out, dtype=args.dtype, name=args.name, validate=not args.skip_validation)
    print(f"exported {path}")
    return 0


def _build_engine(args) -> int:
    from .tensorrt import build_engine, import_tensorrt, memory_summary, parse_profiles

    import_tensorrt()  # before anything else: without TensorRT (TensorRTMissing, exit 3), do nothing
    profiles = parse_profiles(args.profiles) if args.profiles else None
    plan = build_engine(
        args.export_dir, args.out, precision=args.precision, profiles=profiles,
        optimization_level=args.opt_level, timing_cache=args.timing_cache,
    )
    print(f"built {plan}")
    print(memory_summary(plan.parent))
    return 0


def _validate(args) -> int:
    from .validate import ValidationError, validate_export

    try:
        results = validate_export(
            args.export_dir,
            batches=[int(x) for x in args.batches.split(",")],
            lengths=[int(x) for x in args.lengths.split(",")],
        )
    except ValidationError as error:
        print(f"validation FAILED: {error}", file=sys.stderr)
        return 1
    for r in results:
        print(f"batch {r.batch:3d} x {r.length:5d}: max |diff| {r.max_abs_diff:.3g}  ok")
    return 0
