"""The ``segsem`` command line: each subcommand parses flags and calls the library."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import SegSEMError

__all__ = ["main", "build_parser"]


def _parse_sets(pairs: list[str]) -> dict:
    values = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise SegSEMError(f"--set {pair!r}: expected STAGE.FIELD=VALUE, for example gate.tau_conf=0.8")
        key, raw = pair.split("=", 1)
        try:
            values[key] = json.loads(raw)
        except json.JSONDecodeError:
            values[key] = raw
    return values


def _config(args):
    from .config import PipelineConfig

    return PipelineConfig.from_dict(_parse_sets(args.set))


def _engine(args):
    from .engine import Engine

    return Engine(workers=args.workers or 0, scheduler=args.scheduler)


def _model(args, engine=None):
    """The model, loaded here; on a Dask engine a reference that each worker loads once."""
    if engine is not None and engine.distributed:
        from .engine import ModelRef

        return ModelRef(args.model, checkpoint=args.checkpoint, device=args.device, threads=1)
    from .registry import load_model

    return load_model(args.model, checkpoint=args.checkpoint, device=args.device)


def _cmd_synth(args) -> int:
    if args.chip_sites:
        from .synth.chip import write_chip_dataset

        if args.renderer == "wide":
            raise SegSEMError("--renderer wide: a chip's sites are imaged by 'physics' or 'independent'")

        out = write_chip_dataset(args.out, n_sites=args.chip_sites, seed=args.seed, size=args.size,
                                 max_offset_nm=args.max_offset, renderer=args.renderer)
        print(f"wrote {out} (chip.gds on layer 1/0; meta.csv holds each image's nominal and true site)")
        return 0
    if args.n_per_case is None:
        raise SegSEMError("--n-per-case is required (or --chip-sites for a chip layout with images of its sites)")
    if args.renderer == "independent":
        from .synth.independent import write_independent_dataset

        out = write_independent_dataset(args.out, n_per_condition=args.n_per_case, seed=args.seed, size=args.size,
                                        test_per_condition=min(args.test_per_case, args.n_per_case),
                                        with_design=args.design)
        print(f"wrote {out}")
        return 0
    if args.renderer == "wide":
        from .synth.wide import write_wide_dataset

        out = write_wide_dataset(args.out, n=10 * args.n_per_case, seed=args.seed, size=args.size,
                                 n_test=10 * min(args.test_per_case, args.n_per_case - 1), progress=not args.quiet)
        print(f"wrote {out}")
        return 0
    from .synth import write_dataset

    cases = tuple(int(c) for c in args.cases.split(",")) if args.cases else None
    out = write_dataset(args.out, n_per_case=args.n_per_case, seed=args.seed, size=args.size,
                        test_per_case=min(args.test_per_case, args.n_per_case), cases=cases,
                        bit_depth=args.bit_depth, progress=not args.quiet)
    print(f"wrote {out}")
    return 0


def _cmd_check(args) -> int:
    from .dataset import check_dataset

    report = check_dataset(args.dataset)
    for line in report.problems:
        print(line, file=sys.stderr)
    for line in report.warnings:
        print(f"warning: {line}", file=sys.stderr)
    if report.summary:
        print(report.format_summary())
    if report.problems:
        print(f"{len(report.problems)} problem(s) in {args.dataset}", file=sys.stderr)
        return 1
    return 0


def _crop(text: str | None):
    if text is None:
        return None
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4:
        raise SegSEMError(f"--crop {text!r}: expected x0,y0,x1,y1 in px, for example 0,0,1024,676")
    return values


def _cmd_extract(args) -> int:
    import csv

    from .batch import extract_dataset
    from .dataset import Dataset

    config = _config(args)
    engine = _engine(args)
    model = _model(args, engine)
    from .layout import parse_layer

    ds = Dataset(args.dataset, pixel_size_nm=args.pixel_size, crop=_crop(args.crop), layout=args.layout,
                 layer=args.layer, search_nm=args.align_search, reference=args.reference)
    rows = extract_dataset(ds, args.out, model=model, config=config, resume=args.resume,
                           progress=not args.quiet, engine=engine, gauge_step_nm=args.gauge_step,
                           gauges=args.gauges, export_layer=parse_layer(args.export_layer))
    with open(Path(args.out) / "images.csv", newline="") as fh:
        images = list(csv.DictReader(fh))
    unknown = [r["stem"] for r in images if r["pixel_size_source"].startswith("default")]
    if unknown:
        print(f"warning: no pixel size for {len(unknown)} image(s) ({', '.join(unknown[:3])}"
              f"{', ...' if len(unknown) > 3 else ''}): nm figures assume {config.pixel_size_nm:g} nm/px; "
              f"give --pixel-size or a pixel_size_nm column in meta.csv", file=sys.stderr)
    for r in images:
        if r.get("align_status", "").startswith("flagged"):
            print(f"warning: {r['stem']}: alignment {r['align_status']}", file=sys.stderr)
        if r["status"] == "error" and r["message"].startswith("no targets"):
            print(f"warning: {r['stem']}: {r['message']}", file=sys.stderr)
    n_err = sum(r["status"] == "error" for r in rows)
    by_source = {}
    for r in rows:
        if r["status"] in ("ok", "flagged"):
            by_source[r["source"]] = by_source.get(r["source"], 0) + 1
    print(f"{len(rows) - n_err} targets extracted ({', '.join(f'{k}: {v}' for k, v in sorted(by_source.items())) or 'none'}),"
          f" {n_err} errors; records in {Path(args.out) / 'records.csv'}")
    n_flag = sum(r["status"] == "flagged" for r in rows)
    if n_flag:
        print(f"{n_flag} targets flagged for a look (see the message column)", file=sys.stderr)
    for r in rows:
        if r["status"] == "error":
            print(f"error: {r['stem']}{':' + r['label'] if r['label'] else ''}: {r['message']}", file=sys.stderr)
    return 1 if n_err else 0


def _cmd_report(args) -> int:
    import ast

    from .report import run_chapter

    params = {}
    for pair in args.param or []:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise SegSEMError(f"-p {pair!r}: expected NAME=VALUE, for example -p model=traditional")
        try:
            params[name] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            params[name] = value
    notebook, page = run_chapter(args.chapter, args.data, args.out, parameters=params)
    print(f"wrote {notebook}" + (f" and {page}" if page else ""))
    return 0


def _cmd_evaluate(args) -> int:
    from .batch import evaluate_dataset, format_table

    config = _config(args)
    engine = _engine(args)
    model = _model(args, engine)
    report = evaluate_dataset(args.dataset, model=model, config=config, split=args.split, progress=not args.quiet,
                              engine=engine)
    report.write(args.out)
    print(format_table(report))
    print(f"wrote {Path(args.out) / 'per_case.csv'}, per_sample.csv, summary.json")
    return 0


def _cmd_label(args) -> int:
    from .dataset import Dataset
    from .label import label_images

    config = _config(args)
    engine = _engine(args)
    model = _model(args, engine)
    ds = Dataset(args.images, pixel_size_nm=args.pixel_size, crop=_crop(args.crop), layout=args.layout,
                 layer=args.layer)
    summary = label_images(ds, args.out, model=model, config=config, progress=not args.quiet, engine=engine)
    print(summary.format())
    print(f"review: set accept to no in {Path(args.out) / 'review.csv'} for a wrong mask (overlays in "
          f"{Path(args.out) / 'proposals'}), then run the same command again; then "
          f"segsem finetune {args.out} --model default --train encoders --out RUN")
    return 0


def _add_model_flags(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument("--model", default=default,
                   help="'traditional' (Sauvola only), 'default', a built-in model name, a project checkpoint, "
                        "or an official config name (sam2.1_hiera_t ...) with --checkpoint (default: %(default)s)")
    p.add_argument("--checkpoint", help="checkpoint in Meta's format ({'model': state_dict}) for an official config")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, npu or mps (default: %(default)s)")
    p.add_argument("--set", action="append", metavar="STAGE.FIELD=VALUE",
                   help="override a pipeline setting, e.g. gate.tau_conf=0.8 (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_engine_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=int, metavar="N",
                   help="run on a local Dask cluster of N processes, one thread each (default: in this process)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="run on an existing Dask cluster, e.g. tcp://host:8786 (dask scheduler / dask worker, "
                        "dask-jobqueue, dask-kubernetes); its workers must see the dataset and output folders")


def build_parser() -> argparse.ArgumentParser:
    from .registry import DEFAULT_MODEL

    parser = argparse.ArgumentParser(prog="segsem", description="SegSEM contour extraction from SEM images.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="write a synthetic CD-SEM dataset")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--n-per-case", type=int, help="images per exposure case")
    p.add_argument("--chip-sites", type=int, metavar="N",
                   help="instead: a chip layout (chip.gds) with N sites, an image of each and nominal sites in "
                        "meta.csv off by up to --max-offset nm, as a stage places them")
    p.add_argument("--max-offset", type=float, default=100.0, metavar="NM",
                   help="largest stage error of --chip-sites, each axis (default: %(default)s)")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--size", type=int, default=512, help="image side in px (default: %(default)s)")
    p.add_argument("--test-per-case", type=int, default=1, help="images per case in the test split")
    p.add_argument("--cases", help="comma-separated exposure cases (default: 1-10)")
    p.add_argument("--bit-depth", type=int, choices=(8, 16), default=8)
    p.add_argument("--renderer", choices=("physics", "wide", "independent"), default="physics",
                   help="'physics' (the training generator, exposure cases 1-10), 'wide' (the same physics with "
                        "every appearance drawn per image, both tones, lag, JPEG: 10 x --n-per-case images; for "
                        "training) or 'independent' (the second appearance model, one case per appearance "
                        "condition; for validation)")
    p.add_argument("--design", action="store_true",
                   help="with --renderer independent: also write each image's design polygons (layout/), so "
                        "targets get box prompts and the gate a design to check against")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser("data", help="dataset tools")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    c = data_sub.add_parser("check", help="validate a dataset and summarise it")
    c.add_argument("dataset", type=Path)
    c.set_defaults(func=_cmd_check)

    p = sub.add_parser("extract", help="extract contours (mask, JSON, CSV, GDS, overlay) and metrology for every "
                                          "target")
    p.add_argument("dataset", type=Path,
                   help="a dataset folder (images/, masks/, meta.csv, prompts.csv), a folder of image files "
                        "(TIFF, PNG, JPEG, BMP), or one image file")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--pixel-size", type=float, metavar="NM",
                   help="nm per pixel where meta.csv gives none (it comes before the file's own metadata)")
    p.add_argument("--crop", metavar="X0,Y0,X1,Y1",
                   help="the field in px, instead of the image without its detected data bar")
    p.add_argument("--resume", action="store_true", help="skip targets finished by an earlier run (any engine)")
    g = p.add_argument_group("design layout (contours, gauges and EPE in layout coordinates)")
    g.add_argument("--layout", type=Path, metavar="CHIP.gds|.oas",
                   help="the chip's layout; meta.csv gives each image's site (layout_x_nm, layout_y_nm, "
                        "optional rotation_deg) at its centre pixel ((W-1)/2, (H-1)/2)")
    g.add_argument("--layer", metavar="L/D", help="the layout layer to read (needed when the file has several)")
    g.add_argument("--align-search", type=float, default=150.0, metavar="NM",
                   help="largest stage error searched when aligning to the design or to --reference "
                        "(default: %(default)s)")
    g.add_argument("--gauge-step", type=float, default=10.0, metavar="NM",
                   help="spacing of the gauges along design edges (default: %(default)s)")
    g.add_argument("--gauges", type=Path, metavar="CSV", help="cutline gauges x1,y1,x2,y2 in layout nm (CD per cutline)")
    g.add_argument("--export-layer", default="100/0", metavar="L/D",
                   help="layer of the contours in contours_layout.gds/.oas (default: %(default)s)")
    g.add_argument("--reference", type=Path, metavar="IMAGE",
                   help="register every image to this image of the same site (ref_* columns of images.csv)")
    _add_model_flags(p, DEFAULT_MODEL)
    _add_engine_flags(p)
    p.set_defaults(func=_cmd_extract)

    p = sub.add_parser("label", help="propose a mask per target, write a review sheet (accept yes/no per target) "
                                     "and a dataset of the accepted masks for segsem finetune")
    p.add_argument("images", type=Path, help="image files, a folder of them or a dataset folder, as extract takes")
    p.add_argument("--out", required=True, type=Path,
                   help="the labelled dataset: proposals/, review.csv, then images/, masks/, meta.csv")
    p.add_argument("--pixel-size", type=float, metavar="NM", help="nm per pixel where meta.csv gives none")
    p.add_argument("--crop", metavar="X0,Y0,X1,Y1", help="the field in px, instead of the image without its data bar")
    p.add_argument("--layout", type=Path, metavar="CHIP.gds|.oas",
                   help="the chip's layout: its features are the targets")
    p.add_argument("--layer", metavar="L/D", help="the layout layer to read")
    _add_model_flags(p, DEFAULT_MODEL)
    _add_engine_flags(p)
    p.set_defaults(func=_cmd_label)

    p = sub.add_parser("report", help="run a chapter of the book on a dataset: executed notebook and HTML page")
    p.add_argument("chapter", help="a chapter name such as 07_exposure_analysis, or a MyST .md / .ipynb file")
    p.add_argument("data", type=Path, help="the dataset (the chapter's data_dir)")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("-p", "--param", action="append", metavar="NAME=VALUE",
                   help="another parameter of the chapter (a Python literal, else a string); repeatable")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("evaluate", help="standard against SegSEM per exposure case (the paper's Table I)")
    p.add_argument("dataset", type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--split", help="only this split (train, val or test)")
    _add_model_flags(p, DEFAULT_MODEL)
    _add_engine_flags(p)
    p.set_defaults(func=_cmd_evaluate)

    try:
        from .sam.cli import add_subcommands
    except ImportError:
        pass
    else:
        add_subcommands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``segsem``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SegSEMError as exc:
        print(f"segsem: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("segsem: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
