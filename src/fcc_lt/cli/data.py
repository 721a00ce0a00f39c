"""`fcc data`: the dataset tools' command lines (the work itself is in ``data.tools.convert``), the
long-tailed CIFAR counts and CAM generation.

Kept apart from the converters so that building the parser (``fcc --help``) imports nothing heavy.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fcc_lt.util import argtypes
from fcc_lt.util.argtypes import int_at_least, number_at_least, output_file, path
from fcc_lt.util.errors import ConfigError


def _report(written: list) -> None:
    for w in written:
        print(f"wrote {w.describe()}")


def cmd_tfrecords(args: argparse.Namespace) -> int:
    from fcc_lt.data.tools.convert import convert_tfrecords

    _report(convert_tfrecords(Path(args.input), Path(args.out), args.prefix, args.num_classes))
    return 0


def cmd_lists(args: argparse.Namespace) -> int:
    from fcc_lt.data.tools.convert import convert_lists

    _report(convert_lists([Path(p) for p in args.lists], Path(args.image_root), Path(args.out),
                          sizes=not args.no_sizes, num_classes=args.num_classes, relative=args.relative))
    return 0


def cmd_inat18(args: argparse.Namespace) -> int:
    from fcc_lt.data.tools.convert import convert_inat

    _report([convert_inat(Path(args.input), Path(args.image_root), Path(args.out), relative=args.relative,
                          remap_categories=args.remap_categories)])
    return 0


def cmd_from_folder(args: argparse.Namespace) -> int:
    from fcc_lt.data.tools.convert import convert_folder, read_class_names

    names = read_class_names(Path(args.class_names_from)) if args.class_names_from else None
    _report([convert_folder(Path(args.root), Path(args.out), sizes=not args.no_sizes, relative=args.relative,
                            class_names=names)])
    return 0


def cmd_replace_path(args: argparse.Namespace) -> int:
    from fcc_lt.data.tools.convert import replace_path

    out = Path(args.out) if args.out else Path(args.json)
    changed, total = replace_path(Path(args.json), args.find, args.replace, out)
    print(f"{out}: rewrote {changed} of {total} fpaths ({args.find!r} -> {args.replace!r})")
    return 0


def cmd_make_lt(args: argparse.Namespace) -> int:
    from fcc_lt.data.tools.convert import make_long_tailed

    written, short = make_long_tailed(Path(args.json), Path(args.out), args.imbalance,
                                      max_per_class=args.max_per_class, seed=args.seed, order=args.order)
    _report([written])
    if short:
        print(f"note: {short} classes had fewer images than the profile asks for and kept all they had")
    return 0


def add_commands(tools: argparse._SubParsersAction) -> None:
    """Register the dataset tools under `fcc data`."""
    q = tools.add_parser(
        "tfrecords", help="Cui et al.'s long-tailed CIFAR TFRecords -> PNG images + train/valid JSON",
        description="Reads INPUT/train.tfrecords and INPUT/eval.tfrecords (no TensorFlow needed; every "
                    "checksum is verified) and writes OUT/<prefix>/images/<label>/*.png plus "
                    "OUT/<prefix>_train.json and OUT/<prefix>_valid.json.")
    q.add_argument("input", type=path,
                   help="folder with train.tfrecords and eval.tfrecords, e.g. cifar-10-data-im-0.01")
    q.add_argument("--out", required=True, type=path, help="output folder")
    q.add_argument("--prefix", help="name of the outputs (default: the input folder's name)")
    q.add_argument("--num-classes", type=int_at_least(1), help="default: the largest label plus one")
    q.set_defaults(func=cmd_tfrecords)

    q = tools.add_parser(
        "imagenet-lt", help="split lists ('relative/path label' lines) + image root -> one JSON per list",
        description="Converts ImageNet-LT split lists (ImageNet_LT_{train,val,test}.txt; the iNat18 lists of "
                    "the same format work too) to OUT/<list name>.json. Image sizes are read from the file "
                    "headers; --no-sizes skips that (and the check that the images exist).")
    q.add_argument("lists", nargs="+", type=path, help="split list files")
    q.add_argument("--image-root", required=True, type=path, help="the folder the list paths are relative to")
    q.add_argument("--out", required=True, type=path, help="output folder")
    q.add_argument("--no-sizes", action="store_true", help="do not open the images (sizes left out)")
    q.add_argument("--num-classes", type=int_at_least(1), help="default: the largest label in the lists plus one")
    q.add_argument("--relative", action="store_true",
                   help="write the list's relative paths (then set data.image_root) instead of absolute ones")
    q.set_defaults(func=cmd_lists)

    q = tools.add_parser("inat18", help="an official iNaturalist 2018 annotation file -> JSON",
                         description="Converts train2018.json / val2018.json (COCO-like) to the fcc JSON format, "
                                     "matching labels to images by image_id.")
    q.add_argument("input", type=path, help="train2018.json or val2018.json")
    q.add_argument("--image-root", required=True, type=path, help="the folder holding train_val2018/")
    q.add_argument("--out", required=True, type=path,
                   help="output JSON file, or a folder (then iNat18_<input name>.json)")
    q.add_argument("--relative", action="store_true", help="keep file_name relative (then set data.image_root)")
    q.add_argument("--remap-categories", action="store_true",
                   help="number category ids 0..C-1 in increasing order when they are not already")
    q.set_defaults(func=cmd_inat18)

    q = tools.add_parser("from-folder", help="a class-per-folder image tree -> JSON (classes sorted by name)")
    q.add_argument("root", type=path, help="ROOT/<class>/<images>")
    q.add_argument("--out", required=True, type=output_file, help="output JSON file")
    q.add_argument("--no-sizes", action="store_true", help="do not open the images (sizes left out)")
    q.add_argument("--relative", action="store_true", help="paths relative to ROOT (then set data.image_root)")
    q.add_argument("--class-names-from", metavar="JSON", type=path,
                   help="take the class order from this JSON's class_names (e.g. the training split's)")
    q.set_defaults(func=cmd_from_folder)

    q = tools.add_parser("replace-path", help="rewrite the fpath prefix of every entry (atomic)")
    q.add_argument("json", type=path, help="annotation file")
    q.add_argument("--find", "-f", required=True, help="the old prefix (whole path components)")
    q.add_argument("--replace", "-r", required=True, help="the new prefix ('' makes the paths relative)")
    q.add_argument("--out", type=output_file, help="write here instead of rewriting the file in place")
    q.set_defaults(func=cmd_replace_path)

    q = tools.add_parser("make-lt", help="a long-tailed subset (exponential profile, seeded) of a JSON dataset")
    q.add_argument("json", type=path, help="annotation file")
    q.add_argument("--out", required=True, type=output_file, help="output JSON file")
    q.add_argument("--imbalance", type=number_at_least(1), required=True, help="imbalance factor n_max/n_min (>= 1)")
    q.add_argument("--max-per-class", type=int_at_least(1),
                   help="images of the largest class (default: its current size)")
    q.add_argument("--seed", type=int_at_least(0, 2**32 - 1), default=0, help="seed of the per-class selection")
    q.add_argument("--order", choices=["index", "size"], default="index",
                   help="rank classes by id (CIFAR-LT convention) or by current size, largest first")
    q.set_defaults(func=cmd_make_lt)


def cmd_data_cifar_lt(args: argparse.Namespace) -> int:
    from fcc_lt.data.cifar import long_tail_counts

    classes = {"cifar10": 10, "cifar100": 100}[args.dataset]
    max_per_class = args.max_per_class or 50000 // classes
    if args.imbalance < 1:
        raise ConfigError(f"--imbalance: expected a number >= 1, got {args.imbalance}")
    counts = long_tail_counts(classes, args.imbalance, max_per_class)
    print(f"# {args.dataset}-LT, imbalance factor {args.imbalance:g}, {max_per_class} images in the largest class")
    print("class\timages")
    for c, n in enumerate(counts):
        print(f"{c}\t{n}")
    print(f"total\t{sum(counts)}")
    empty = [c for c, n in enumerate(counts) if n == 0]
    if empty:
        print(f"warning: classes {empty} get no images: with {max_per_class} images in the largest class the "
              f"imbalance factor can be at most {max_per_class} (--imbalance)", file=sys.stderr)
    return 0


def cmd_data_cam_generate(args: argparse.Namespace) -> int:
    from fcc_lt.evaluation.run_loader import load_run_config
    from fcc_lt.methods.cam import generate

    run_dir = Path(args.run)
    cfg = load_run_config(run_dir, [f"device={args.device}"] if args.device else [])
    done = generate(run_dir, Path(args.out), cfg=cfg, checkpoint=args.checkpoint, cap=args.cap, seed=args.seed,
                    batch_size=args.batch_size, overwrite=args.overwrite)
    print(f"wrote {done['images']} images and {done['json']} (new images per class: {done['new_counts']})")
    print(f"stage 2: fcc train CONFIG data.extra_train_json={done['json']} "
          f"model.init_from={run_dir / 'checkpoints' / 'last.pt'}")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="dataset tools")
    data_sub = p.add_subparsers(dest="tool", required=True)
    q = data_sub.add_parser("cifar-lt", help="print the per-class training counts of a long-tailed CIFAR")
    q.add_argument("--dataset", choices=["cifar10", "cifar100"], default="cifar10",
                   help="which CIFAR (default cifar10)")
    q.add_argument("--imbalance", type=number_at_least(1), default=100.0, help="imbalance factor n_max/n_min")
    q.add_argument("--max-per-class", type=int_at_least(0), default=0,
                   help="images of the largest class (default: all)")
    q.set_defaults(func=cmd_data_cifar_lt)

    q = data_sub.add_parser("cam-generate", help="CAM-based sampling: write CAM-augmented images of the small "
                            "classes from a stage-1 run, for a stage 2 with data.extra_train_json")
    q.add_argument("run", type=argtypes.path, help="the stage-1 run directory")
    q.add_argument("--out", required=True, type=argtypes.path,
                   help="output folder (images/ and cam_train.json)")
    q.add_argument("--checkpoint", default="last", type=argtypes.checkpoint,
                   help="last (default), best, or a checkpoint file")
    q.add_argument("--cap", type=int_at_least(1), help="at most this many new images per class, none for "
                   "classes of at least this many images (default: no cap, n_max + n_min - n_c each)")
    q.add_argument("--seed", type=int_at_least(0), help="seed of the draws (default: the run's seed)")
    q.add_argument("--batch-size", type=int_at_least(1), default=256,
                   help="images per forward pass (default 256; lower it when the device runs out of memory)")
    q.add_argument("--device", help="device (default: the run's)")
    q.add_argument("--overwrite", action="store_true", help="write into a non-empty --out")
    q.set_defaults(func=cmd_data_cam_generate)

    add_commands(data_sub)
