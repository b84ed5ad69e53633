r"""Segment your own video in the browser: draw a mask, propagate it, correct it, export the masks.

    python interactive_demo.py --video clip.mp4
    python interactive_demo.py --images frames/ --workspace work/clip --port 8000
    python interactive_demo.py --workspace work/clip            (resume a workspace)

Starts a local web server and prints the URL to open (it holds a random access token). On a remote
GPU machine: `ssh -L 8000:127.0.0.1:8000 gpu-host`, start the tool there with --port 8000 and open
the printed URL here. Everything is saved in the workspace as it happens (frames of a video file are
extracted there when first needed; a folder of images is read in place); starting the tool on the same
workspace resumes it. The scribble and click tools need --s2m_model (python download_model.py --model
s2m); the brush works without. docs/annotator.md: the page, the HTTP API and the exports.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from evaluation.flags import add_option, add_size_arg, options_from_args
from util.cli import HelpFormatter
from util.defaults import INTERACTIVE_CACHE_MB
from util.io import DataError
from util.outputs import run_command

TOOL = "interactive_demo"
DEFAULT_PORT = 8765


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="STCN's annotation tool: draw, propagate, correct and export "
                                     "masks in the browser", epilog=__doc__, formatter_class=HelpFormatter)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--video", default=None, help="video file (anything FFmpeg decodes: .mp4, .mov, ...)")
    source.add_argument("--images", default=None, help="folder of the video's frames (.jpg, .png, ...)")
    parser.add_argument("--workspace", default=None,
                        help="folder of the annotation (created, or resumed when it exists; default: "
                             "workspaces/<video name>)")
    parser.add_argument("--model", default="saves/stcn.pth", help="STCN weights")
    parser.add_argument("--s2m_model", default="saves/s2m.pth",
                        help="scribble-to-mask weights (scribbles and clicks; without them only the brush)")
    parser.add_argument("--fusion_model", default="saves/fusion_stcn.pth",
                        help="difference-aware fusion weights (corrections fused with earlier results; without "
                             "them a correction's propagation replaces them)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (another one serves the tool to other machines: a warning)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port to listen on (0: any free port)")
    parser.add_argument("--cache_mb", type=float, default=INTERACTIVE_CACHE_MB,
                        help="MiB of frames' network inputs and features kept for the next propagation (the rest "
                             "is recomputed when needed)")
    add_size_arg(parser)
    for name in ("device", "amp", "top_k", "max_mem_frames", "max_mem_mb"):
        add_option(parser, name)
    return parser


def workspace_of(args: argparse.Namespace) -> str | None:
    """--workspace, or workspaces/<video name> (None when neither it nor a video is given)."""
    source = args.video or args.images
    return args.workspace or (str(Path("workspaces") / Path(source).stem) if source else None)


def saved_line(workspace: str | Path | None) -> str:
    """How to resume, said when the tool stops (Ctrl-C, SIGTERM or the server's own end)."""
    return f"everything is saved in {workspace}; python interactive_demo.py --workspace {workspace} resumes it"


def open_session(args: argparse.Namespace):
    """The workspace, the networks and the session the flags ask for (before any server starts)."""
    from annotator.session import Session
    from annotator.workspace import Workspace
    from inference_core.predictor import Predictor, PredictorError
    from model.fusion import load_fusion
    from model.s2m import load_s2m

    if not args.cache_mb > 0:
        raise DataError("--cache_mb", f"{args.cache_mb} is not positive", "give a size in MiB, e.g. 1024")
    workspace = workspace_of(args)
    if workspace is None:
        raise DataError("--video", "none given", "give --video FILE, --images FOLDER, or --workspace of a started one")
    options = options_from_args(args)
    ws = Workspace.open(workspace, video=args.video, images=args.images)
    try:
        try:
            predictor = Predictor.from_checkpoint(args.model, options)
        except PredictorError as exc:
            raise exc.on_command_line() from None
        if predictor.note:
            print(predictor.note, file=sys.stderr)
        s2m = fusion = None
        reason = ""
        if Path(args.s2m_model).is_file():
            s2m = load_s2m(args.s2m_model, device=predictor.device)
        else:
            reason = f"no weights at {args.s2m_model}; python download_model.py --model s2m"
            print(f"note: scribbles and clicks are off: {reason}", file=sys.stderr)
        if Path(args.fusion_model).is_file():
            fusion = load_fusion(args.fusion_model, device=predictor.device)
        else:
            print(f"note: no fusion weights at {args.fusion_model}: a correction's propagation replaces earlier "
                  "results (python download_model.py --model fusion_stcn)", file=sys.stderr)
    except BaseException:
        ws.discard_if_new()
        raise
    return Session(ws, predictor, s2m=s2m, fusion=fusion, s2m_reason=reason, cache_mb=args.cache_mb)


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)

    def body() -> int:
        import socket

        import uvicorn

        from annotator.server import allowed_hosts, create_app, new_token, url_of

        if not 0 <= args.port <= 65535:
            raise DataError("--port", f"{args.port} is not a port", "give 1..65535, or 0 for any free port")
        family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((args.host, args.port))
        except OSError as exc:
            sock.close()
            raise DataError(f"--host {args.host} --port {args.port}", f"cannot listen there ({exc.strerror})",
                            "pass another --port (0: any free one)") from None
        session = open_session(args)
        token = new_token()
        if args.host not in ("127.0.0.1", "localhost", "::1"):
            print(f"warning: --host {args.host} serves the tool beyond this machine: anyone who can reach it and "
                  "has the URL (its token) can read the video and change the masks", file=sys.stderr)
        port = sock.getsockname()[1]
        app = create_app(session, token, allowed_hosts(args.host))
        print(f"workspace: {session.ws.path}")
        print(f"open {url_of(args.host, port, token)}", flush=True)
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5))
        try:
            server.run(sockets=[sock])
        finally:
            session.close()  # a running job stops before its next frame; what it finished is saved
            sock.close()
        print(f"stopped; {saved_line(workspace_of(args))}", file=sys.stderr)
        return 0

    return run_command(body, resume_hint=saved_line(workspace_of(args)), tool=TOOL)


if __name__ == "__main__":
    sys.exit(main())
