"""The README's first command: segment a small sample video with the released STCN weights.

1. writes a sample video with two moving objects and its first-frame mask (scripts/make_sample_video.py);
2. fetches the released s012 weights to saves/stcn.pth when absent (downloads/model.py, as
   download_model.py does);
3. runs the eval_generic.py command on it and writes palette PNG masks to <output>/<video>/ and an overlay
   video to <output>/overlays/<video>.mp4.

    python scripts/demo.py [--output demo_output] [--model saves/stcn.pth]
"""
from __future__ import annotations

import argparse
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from downloads.model import ensure_model  # noqa: E402
from evaluation.sample_video import write_sample_output  # noqa: E402
from util.outputs import run_command  # noqa: E402


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="saves/stcn.pth", help="checkpoint; fetched when absent")
    p.add_argument("--data", default="demo_data", help="where the sample video is written")
    p.add_argument("--output", default="demo_output", help="where the masks are written")
    p.add_argument("--device", default="auto")
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
    args = get_args_parser().parse_args(argv)
    return run_command(lambda: demo(args))


def demo(args: argparse.Namespace) -> int:
    data = write_sample_output(Path(args.data), "--data")
    print(f"sample video written to {data}")
    model = ensure_model(args.model)  # a DownloadError becomes the one `error:` line of run_command
    code = run_command_line(  # a command of its own: entry points do not import each other
        [sys.executable, str(ROOT / "eval_generic.py"),
         "--model", str(model), "--data_path", str(data), "--output", args.output, "--device", args.device,
         "--overlay", str(Path(args.output) / "overlays")]
    )
    if code == 0:
        print(f"masks written to {args.output}/, overlay videos to {args.output}/overlays/")
    return code


if __name__ == "__main__":
    sys.exit(main())
