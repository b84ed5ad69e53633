"""The README's first command: segment a small sample video with the released STCN weights.

1. writes a sample video with two moving objects and its first-frame mask (scripts/make_sample_video.py);
2. fetches the released s012 weights to saves/stcn.pth when absent (as download_model.py
   does); a --model file that exists is used as it is (eval_generic.py checks it);
   --random_weights uses a randomly initialised network instead (no download: meaningless masks,
   but every step runs);
3. runs the eval_generic.py command on it and writes palette PNG masks to <output>/<video>/ and an overlay
   video to <output>/overlays/<video>.mp4.

The 427x240 sample is upscaled to the network's 480 pixels by default (about 5 minutes on a 2-core
CPU); --size 240 runs it at its own size, about 4 times faster.

    python scripts/demo.py [--output demo_output] [--model saves/stcn.pth | --random_weights] [--size 240]
"""
from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from util.cli import HelpFormatter  # noqa: E402
from util.errors import UserError  # noqa: E402

DEFAULT_MODEL = "saves/stcn.pth"
RANDOM_SEED = 0  # --random_weights: the same meaningless network on every run


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--model", default=None,
                   help=f"checkpoint (default: {DEFAULT_MODEL}, fetched when absent; a file that exists is used "
                        "as it is)")
    p.add_argument("--random_weights", action="store_true",
                   help="a randomly initialised network instead of --model: no download, meaningless masks, "
                        "every step runs")
    p.add_argument("--size", type=int, default=None,
                   help="shorter side the frames are resized to for the network (default: eval_generic.py's, "
                        "480 as the paper; 240: the sample's own size, about 4x faster on a CPU)")
    p.add_argument("--data", default="demo_data", help="where the sample video is written")
    p.add_argument("--output", default="demo_output", help="where the masks are written")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:i")
    return p


def run_command_line(cmd: list[str]) -> int:
    """Run `cmd` to completion and return its exit status. Ctrl-C reaches the command too (same process
    group) and SIGTERM is passed on: we keep waiting while it removes its partial outputs and reports
    the interrupt itself."""
    sys.stdout.flush()  # our lines before the command's
    with subprocess.Popen(cmd) as proc:
        previous = signal.signal(signal.SIGTERM, lambda signum, frame: proc.send_signal(signum))
        try:
            while True:
                try:
                    return proc.wait()
                except KeyboardInterrupt:
                    continue
        finally:
            signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)  # before the heavy imports: --help is instant
    from util.outputs import run_command

    return run_command(lambda: demo(args))


def demo(args: argparse.Namespace) -> int:
    from evaluation.sample_video import write_sample_output

    if args.random_weights and args.model is not None:
        raise UserError("--random_weights", "replaces --model", "leave one of them out")
    data = write_sample_output(Path(args.data), "--data")
    print(f"sample video written to {data}")
    with tempfile.TemporaryDirectory(prefix="stcn-demo-") as scratch:
        model = random_weights(Path(scratch)) if args.random_weights else demo_model(args.model)
        cmd = [sys.executable, str(ROOT / "eval_generic.py"),
               "--model", str(model), "--data_path", str(data), "--output", args.output, "--device", args.device,
               "--overlay", str(Path(args.output) / "overlays")]
        code = run_command_line(cmd + ([] if args.size is None else ["--size", str(args.size)]))
    if code == 0:
        print(f"masks written to {args.output}/, overlay videos to {args.output}/overlays/"
              + (" (random weights: the masks are meaningless)" if args.random_weights else ""))
    return code


def demo_model(path: str | None) -> Path:
    """The weights to run: a file that exists is used as it is (nothing is written beside it; eval_generic.py
    checks it when loading), else the released model is fetched to `path` (default saves/stcn.pth). A failed
    fetch says how to try the demo without the weights, and names only flags the demo has."""
    from downloads.fetch import DownloadError
    from downloads.model import ensure_model

    path = Path(path or DEFAULT_MODEL)
    if path.is_file():
        return path
    try:
        return ensure_model(path)
    except DownloadError as exc:
        fix = exc.fix if "--" not in exc.fix else ("fetch it with `python download_model.py` (its flags: "
                                                   "docs/downloads.md) and pass it with --model")
        raise DownloadError(exc.where, exc.problem, f"{fix}; or try the pipeline without it: bash scripts/demo.sh "
                            "--random_weights --size 240 (random weights: meaningless masks, every step runs)"
                            ) from None


def random_weights(folder: Path) -> Path:
    """A randomly initialised STCN (seeded) saved as `folder/random.pth`, in the released format."""
    import torch

    from model.network import STCN

    torch.manual_seed(RANDOM_SEED)
    path = folder / "random.pth"
    torch.save(STCN(single_object=False, pretrained=False).state_dict(), path)
    print("using randomly initialised weights: every step runs, the masks are meaningless")
    return path


if __name__ == "__main__":
    sys.exit(main())
