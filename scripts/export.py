"""Export the key encoder, value encoder and decoder of a checkpoint as ONNX models.

    python scripts/export.py --model saves/stcn.pth --output saves/stcn_onnx
    python eval_davis.py --backend onnxruntime --onnx_dir saves/stcn_onnx --output results/d17

Writes key_encoder.onnx, value_encoder.onnx, decoder.onnx and manifest.json (the weights' digest,
exporter, torch version) into --output, with dynamic frame size (padded to multiples of 16) and
object count; tensors and axes in model/export.py. --output follows the output contract of
util/outputs.py: new, empty or an earlier result of this project (replaced whole); a folder holding
an older export's manifest.json, or any folder with --overwrite, gets only the export's files
replaced, nothing else in it touched; never the --model file's folder. Ctrl-C leaves no half export.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from util.cli import HelpFormatter  # noqa: E402
from util.defaults import EXPORTERS  # noqa: E402
from util.io import DataError  # noqa: E402
from util.outputs import OutputDir  # noqa: E402


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--model", default="saves/stcn.pth", help="network weights (released format)")
    p.add_argument("--output", required=True, help="folder for the ONNX models")
    p.add_argument("--single_object", action="store_true",
                   help="the stage-0 network (no 'other objects' input), from stage-0 weights; the evaluation "
                        "commands run the multi-object network (stage-0 weights are converted to it)")
    p.add_argument("--exporter", choices=EXPORTERS, default="auto",
                   help="torch.onnx exporter: dynamo (torch.export; default where available) or torchscript")
    p.add_argument("--overwrite", action="store_true",
                   help="write into an existing folder that is not an earlier export, replacing only the export's "
                        "files; never the folder of --model")
    return p


def prepare_export_dir(folder: str | Path, model: str, overwrite: bool = False) -> OutputDir:
    """The checked --output (util/outputs.py); an older export (a manifest.json, no result marker) is
    written into as with --overwrite: its export files are replaced, nothing else in it is touched."""
    from model.export import read_manifest  # torch: imported once the flags are read, as below

    older = Path(folder).is_dir() and read_manifest(folder) is not None
    return OutputDir(folder, "--output", [model], overwrite or older)


def load_export_network(model: str, single_object: bool):
    """The network to export; multi-object weights with --single_object are one error line (their value
    encoder reads the other objects' masks too, which the stage-0 network has no input for)."""
    from model.checkpoint import CheckpointError, load_network

    try:
        return load_network(model, single_object=single_object)
    except CheckpointError:
        if not single_object:
            raise
        load_network(model)  # a file that is no STCN checkpoint at all: its own error
        raise DataError("--single_object", f"{model} holds multi-object weights (stages 1-3 or released), and "
                        "--single_object exports the stage-0 network, which has no 'other objects' input",
                        "leave --single_object out (the evaluation commands run the multi-object network)") from None


def write_export(out: OutputDir, net, exporter: str) -> dict:
    """Export `net` into a partial folder beside `out`, then move it into place (the manifest last)."""
    from model.export import MANIFEST, PART_FILES, export_network

    with out.partial() as tmp:
        manifest = export_network(net, tmp, exporter=exporter)
        if not out.ours:  # file by file into the unmarked export: it is incomplete until the manifest is back
            (out.path / MANIFEST).unlink(missing_ok=True)
            for name in PART_FILES.values():
                (tmp / name).replace(out.check_target(out.path / name))
    return manifest


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    # the network's modules (torch) only once the flags are read: `--help` and a mistyped flag answer at once
    from evaluation.run_video import report_errors
    from model.export import PART_FILES

    def body() -> int:
        out = prepare_export_dir(args.output, args.model, args.overwrite)
        net = load_export_network(args.model, args.single_object)
        with out:
            manifest = write_export(out, net, args.exporter)
        print(f"wrote {', '.join(PART_FILES.values())} to {out.path} ({manifest['exporter']} exporter, "
              f"opset {manifest['opset']}, weights {manifest['weights']})")
        return 0

    return report_errors(body)


if __name__ == "__main__":
    sys.exit(main())
