"""Write a small sample video in the generic layout (JPEGImages/<video>/*.jpg + first-frame Annotations).

Two textured shapes move over a textured background; the first frame's mask is a palette PNG with
objects 1 and 2, for the demo and for trying the tools without a dataset.

    python scripts/make_sample_video.py --output sample_data
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluation.sample_video import MIN_SIDE, write_sample_output  # noqa: E402
from util.cli import HelpFormatter  # noqa: E402
from util.outputs import run_command, wrote_line  # noqa: E402


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--output", default="sample_data", help="folder to write (JPEGImages/ and Annotations/)")
    p.add_argument("--name", default="shapes", help="video name")
    p.add_argument("--frames", type=int, default=30)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--width", type=int, default=427)
    p.add_argument("--video_file", action="store_true",
                   help="also write <output>/<name>.mp4 and <output>/<name>_first.png, for segment_video.py")
    p.add_argument("--overwrite", action="store_true",
                   help="write into an existing folder that is not a previous result (files of the same names "
                        "are replaced, nothing else)")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = get_args_parser()
    args = parser.parse_args(argv)
    if args.frames < 1:
        parser.error(f"--frames {args.frames}: must be at least 1")
    for flag in ("height", "width"):
        if getattr(args, flag) < MIN_SIDE:
            parser.error(f"--{flag} {getattr(args, flag)}: must be at least {MIN_SIDE} pixels")

    def body() -> int:
        out = write_sample_output(Path(args.output), "--output", args.name, args.frames, args.height, args.width,
                                  video_file=args.video_file, overwrite=args.overwrite)
        items = [(f"{args.frames} frames of '{args.name}'", out / "JPEGImages" / args.name),
                 ("its first-frame mask", out / "Annotations" / args.name)]
        if args.video_file:
            items.append(("the video file and its first-frame mask",
                          [out / f"{args.name}.mp4", out / f"{args.name}_first.png"]))
        print(wrote_line(*items))
        return 0

    return run_command(body)


if __name__ == "__main__":
    sys.exit(main())
