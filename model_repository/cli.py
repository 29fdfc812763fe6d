"""CLI of the repository stage: repo (generate a model repository) and publish (upload it for replicas)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("repo", help="generate a Triton model repository from an export (or a known model's configs)")
    p.add_argument("source", nargs="?",
                   help="export directory (model.onnx, tokenizer.json, spec.json), or base-v2/large-v2 for configs only")
    p.add_argument("--out", default=None, help="model repository root")
    p.add_argument("--examples", action="store_true",
                   help="regenerate the committed example repositories (model_repository/examples/, or --out)")
    p.add_argument("--target", default="portable", choices=["portable", "onnx", "trt", "openvino"],
                   help="scorer: portable (python + ONNX Runtime or OpenVINO, any Triton), onnx (onnxruntime_onnx), "
                        "trt (tensorrt_plan), openvino (Triton's openvino backend, NGC image)")
    p.add_argument("--name", default=None, help="ensemble name (default: from the spec)")
    p.add_argument("--engine", default=None, help="directory with model.plan (trt target)")
    p.add_argument("--instance-kind", default="gpu", choices=["gpu", "cpu"], help="onnx target: where ONNX Runtime runs")
    p.add_argument("--precision", default=None, choices=["fp32", "bf16"],
                   help="portable and openvino targets: what the CPU scorer computes in. fp32: exact, ONNX Runtime (the "
                        "portable default); bf16: OpenVINO, ~3x fp32 on CPUs with AMX, refused on CPUs without "
                        "avx512_bf16/amx_bf16. The openvino target defaults to this CPU's native one (docs/cpu-precision.md)")
    p.add_argument("--runtime", default=None, choices=["onnxruntime", "openvino"],
                   help="portable target: the scorer's runtime (default: onnxruntime for fp32, openvino for bf16)")
    p.add_argument("--threads", type=int, default=0,
                   help="portable and openvino targets: the scorer's intra-op threads (default 0: every core)")
    p.add_argument("--allow-fp32-fallback", action="store_true",
                   help="with --precision bf16 on a CPU without native bf16: write fp32 instead of refusing "
                        "(the repository then says fp32 everywhere)")
    p.add_argument("--special-tokens-in-text", default=None, choices=["parse", "text"],
                   help="special-token strings inside queries and documents: parse them as special tokens, as the "
                        "reference does (default, same scores), or as plain text (untrusted text cannot imitate the "
                        "prompt template; scores of such texts then differ from the reference)")
    p.add_argument("--padding", default=None, choices=["buckets", "multiple"],
                   help="tokenizer padding: length buckets (lets requests merge) or multiple of 8 (least padding); "
                        "default: buckets for trt/onnx, multiple for portable")
    p.set_defaults(handler=_repo)

    p = commands.add_parser("publish", help="upload a generated model repository to S3 for tritonserver replicas")
    p.add_argument("repository", help="generated model repository (local folder)")
    p.add_argument("url", help="s3://BUCKET/PREFIX")
    p.add_argument("--endpoint", default=None, help="S3-compatible endpoint URL (MinIO, moto, ...); default AWS")
    p.add_argument("--delete-extra", action="store_true", help="delete objects under PREFIX the repository lacks")
    p.set_defaults(handler=_publish)


def _repo(args) -> int:
    from mxbai_triton.core.model import KNOWN_MODELS, SPEC_FILENAME, ModelSpec
    from mxbai_triton.core.serving import ServingLimits

    from .configs import CPU_TARGETS
    from .generate import cpu_scoring, default_precision, generate_examples, generate_repository
    from .preflight import check_export

    if args.examples:
        if args.source:
            raise ValueError("--examples takes no SOURCE: it writes every known model x target")
        for path in generate_examples(*([args.out] if args.out else [])):
            print(path)
        return 0
    if not args.source or not args.out:
        raise ValueError("repo needs SOURCE and --out (or --examples)")
    source = Path(args.source)
    if args.source in KNOWN_MODELS and not source.exists():
        spec, export_dir = KNOWN_MODELS[args.source], None
    elif source.is_dir() or any(source.parent.glob(f".{source.name}.partial-*")):
        problems = check_export(source)
        if problems:
            raise ValueError(f"{args.source} cannot be used:\n  " + "\n  ".join(problems))
        spec, export_dir = ModelSpec.load(source), source
    else:
        raise ValueError(f"{args.source}: neither an export directory (no {SPEC_FILENAME}) nor a known model")
    scoring, note = None, None
    if args.target in CPU_TARGETS:
        scoring, note = cpu_scoring(args.target, args.precision or default_precision(args.target), args.runtime,
                                    args.threads, allow_fp32_fallback=args.allow_fp32_fallback)
    elif args.precision or args.runtime or args.threads or args.allow_fp32_fallback:
        raise ValueError(f"--precision, --runtime, --threads and --allow-fp32-fallback apply to the {' and '.join(CPU_TARGETS)} "
                         f"targets; the {args.target} target computes in the export's dtype (export --dtype)")
    limits = ServingLimits.for_model(spec)
    if args.special_tokens_in_text:
        limits = limits.with_overrides(special_tokens_in_text=args.special_tokens_in_text)
    root = generate_repository(
        args.out, spec, target=args.target, name=args.name, export_dir=export_dir,
        engine_dir=args.engine, instance_kind=args.instance_kind, padding=args.padding, limits=limits, scoring=scoring,
    )
    name = args.name or spec.triton_name
    computes = f" (scorer: {scoring.describe()})" if scoring else ""
    print(f"wrote {args.target} repository for {spec.name} to {root}: models {name}, {name}_tokenizer, {name}_scorer{computes}")
    if note:
        print(f"note: {note}")
    if export_dir is None:
        print("configs only: generate from an export directory to include tokenizer.json and the weights")
    return 0


def _publish(args) -> int:
    from .publish import parse_s3_url, publish

    counts = publish(args.repository, args.url, endpoint=args.endpoint, delete_extra=args.delete_extra)
    print(f"published {counts['files']} files ({counts['bytes'] / 1e6:.1f} MB) to {args.url}")
    if counts["extra"] and not counts["deleted"]:
        print(f"note: {counts['extra']} other objects under that prefix (--delete-extra removes them)")
    endpoint = f" --s3-endpoint {args.endpoint}" if args.endpoint else ""
    print(f"serve it: mxbai-triton serve {args.url}{endpoint}   "
          f"(tritonserver --model-repository={parse_s3_url(args.url).triton_url(args.endpoint)})")
    return 0
