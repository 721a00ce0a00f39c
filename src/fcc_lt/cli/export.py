"""`fcc export`: a trained run's evaluated model -> a TorchScript, ONNX or safetensors file and its JSON."""

from __future__ import annotations

import argparse

from fcc_lt.util import argtypes

FORMATS = ("torchscript", "onnx", "safetensors")  # evaluation.export.FORMATS, without importing torch here


def cmd_export(args: argparse.Namespace) -> int:
    from fcc_lt.evaluation.export import export_run

    result = export_run(args.run, args.format, args.out, checkpoint=args.checkpoint)
    meta = result.metadata
    folded = "folded into the model" if meta["normalization"]["folded"] else f"not folded: see {result.metadata_path}"
    size = meta["input"]["shape"][2]
    print(f"wrote {result.path} ({args.format}; input {meta['input']['dtype']} RGB 3x{size}x{size}, normalisation "
          f"{folded}{'; tau-normalised head' if meta['tau_norm_folded'] else ''})")
    print(f"wrote {result.metadata_path} (input size, resize rule, mean / std, {len(meta['class_names'])} class "
          "names, config)")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a trained run's model (TorchScript, ONNX or safetensors)",
                       description="fcc export RUN_DIR [--format torchscript|onnx|safetensors] [--out FILE]: what "
                                   "`fcc eval` evaluates (tau-normalisation included). TorchScript and ONNX take "
                                   "uint8 RGB pixels (B, 3, S, S) with the normalisation folded in; safetensors "
                                   "holds the weights, the normalisation is written beside it in FILE.json. ONNX "
                                   "and safetensors need pip install 'fcc-lt[export]'. See docs/api.md.")
    p.add_argument("run", type=argtypes.path, help="run directory (or one of its checkpoint files)")
    p.add_argument("--format", choices=FORMATS, default="torchscript", help="file format (default torchscript)")
    p.add_argument("--out", type=argtypes.output_file,
                   help="model file to write (default: RUN/export/<checkpoint>.torchscript.pt, .onnx or "
                        ".safetensors); its description goes to the same name + .json")
    p.add_argument("--checkpoint", default="last", type=argtypes.checkpoint,
                   help="last (default), best, or a checkpoint file")
    p.set_defaults(func=cmd_export)
