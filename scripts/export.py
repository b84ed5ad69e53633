"""Export the key encoder, value encoder and decoder of a checkpoint as ONNX models.

    python scripts/export.py --model saves/stcn.pth --output saves/stcn_onnx
    python eval_davis.py --backend onnxruntime --onnx_dir saves/stcn_onnx --output results/d17

Writes key_encoder.onnx, value_encoder.onnx, decoder.onnx and manifest.json (the weights' digest,
exporter, torch version) into --output, with dynamic frame size (padded to multiples of 16) and
object count; tensors and axes in model/export.py. --output must be new, empty, or an earlier
export (its files are replaced, nothing else in it is touched).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluation.run_video import report_errors  # noqa: E402
from model.checkpoint import load_network  # noqa: E402
from model.export import EXPORTERS, MANIFEST, PART_FILES, export_network, read_manifest  # noqa: E402
from util.io import DataError  # noqa: E402


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="saves/stcn.pth", help="network weights (released format)")
    p.add_argument("--output", required=True, help="folder for the ONNX models")
    p.add_argument("--single_object", action="store_true", help="the stage-0 network (no 'other objects' input)")
    p.add_argument("--exporter", choices=EXPORTERS, default="auto",
                   help="torch.onnx exporter: dynamo (torch.export; default where available) or torchscript")
    return p


def check_output(folder: Path) -> None:
    """DataError unless `folder` is new, empty or an earlier export."""
    if not folder.exists():
        return
    if not folder.is_dir():
        raise DataError(folder, "exists and is not a folder", "choose a new --output folder")
    if any(folder.iterdir()) and read_manifest(folder) is None:
        raise DataError(folder, f"is not empty and holds no {MANIFEST} of an earlier export",
                        "choose a new or empty --output folder")


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)

    def body() -> int:
        out = Path(args.output)
        check_output(out)
        net = load_network(args.model, single_object=args.single_object)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        try:
            manifest = export_network(net, tmp, exporter=args.exporter)
            out.mkdir(exist_ok=True)
            (out / MANIFEST).unlink(missing_ok=True)  # an earlier export's, until every part is replaced
            for name in [*PART_FILES.values(), MANIFEST]:  # the manifest last: it marks a complete export
                os.replace(tmp / name, out / name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        print(f"wrote {', '.join(PART_FILES.values())} to {out} ({manifest['exporter']} exporter, "
              f"opset {manifest['opset']}, weights {manifest['weights']})")
        return 0

    return report_errors(body)


if __name__ == "__main__":
    sys.exit(main())
