#!/usr/bin/env bash
# Creates (once) and activates the project's virtual environment, with this clone installed in it
# in place (`pip install -e .`: `import inference_core` from any folder, the `stcn-*` commands on PATH).
# The environment lives outside the clone, in a cache folder keyed by a hash of requirements.txt,
# so a fresh clone reuses it and a change of requirements builds a new one. Clones sharing it take
# turns: the editable install points at the clone that sourced this file last (re-pointed in a
# second, without touching the installed requirements). A build or re-point holds a lock
# (`flock`, where the system has it), so two first runs at once do not undo each other.
#   STCN_ENV_CACHE   cache folder (default: ${XDG_CACHE_HOME:-$HOME/.cache}/stcn-env)
# Source it from bash or zsh:  source scripts/env.sh
if [ -n "${BASH_VERSION:-}" ]; then
    _stcn_src="${BASH_SOURCE[0]}"
elif [ -n "${ZSH_VERSION:-}" ]; then
    eval '_stcn_src="${(%):-%x}"'  # zsh: the file being sourced
else
    echo "error: scripts/env.sh: this shell cannot tell where a sourced file is; source it from bash or zsh" \
        "(bash -c 'source scripts/env.sh && ...')" >&2
    return 1 2>/dev/null || exit 1
fi
_stcn_root="$(cd "$(dirname "$_stcn_src")/.." && pwd)" || { return 1 2>/dev/null || exit 1; }
_stcn_hash="$(sha256sum "$_stcn_root/requirements.txt" | cut -c1-16)"
_stcn_cache="${STCN_ENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/stcn-env}"
_stcn_venv="$_stcn_cache/venv-$_stcn_hash"
_stcn_lock="$_stcn_cache/.lock-$_stcn_hash"
if [ ! -f "$_stcn_venv/.complete" ]; then
    mkdir -p "$_stcn_cache" || { return 1 2>/dev/null || exit 1; }
    (
        if command -v flock >/dev/null 2>&1; then flock 9 || exit 1; fi
        [ -f "$_stcn_venv/.complete" ] && exit 0  # built by another run while this one waited
        echo "[env] building $_stcn_venv from requirements.txt (first run downloads ~3 GB of PyTorch)"
        rm -rf "$_stcn_venv"  # a build left half-done by a killed run (the lock is ours)
        python3 -m venv "$_stcn_venv" || exit 1
        "$_stcn_venv/bin/python" -m pip install --upgrade --quiet pip || exit 1
        "$_stcn_venv/bin/python" -m pip install --quiet -r "$_stcn_root/requirements.txt" \
            || { echo "[env] pip install failed; nothing cached" >&2; rm -rf "$_stcn_venv"; exit 1; }
        touch "$_stcn_venv/.complete"
    ) 9>"$_stcn_lock" || { return 1 2>/dev/null || exit 1; }
fi
# Is this clone the one installed (editable) in the environment? A fast look at pip's record, no imports.
if ! "$_stcn_venv/bin/python" - "$_stcn_root" <<'EOF'
import importlib.metadata, json, os, sys, urllib.parse, urllib.request
try:
    info = json.loads(importlib.metadata.distribution("stcn").read_text("direct_url.json") or "{}")
except importlib.metadata.PackageNotFoundError:
    sys.exit(1)
path = urllib.request.url2pathname(urllib.parse.urlparse(info.get("url", "")).path)
editable = info.get("dir_info", {}).get("editable", False)
sys.exit(0 if editable and os.path.realpath(path) == os.path.realpath(sys.argv[1]) else 1)
EOF
then
    (
        if command -v flock >/dev/null 2>&1; then flock 9 || exit 1; fi
        # --no-deps: requirements.txt is installed already. setuptools >= 70.1 (in the environment
        # with the requirements) builds it offline; an older one is replaced by pip's isolated build.
        if "$_stcn_venv/bin/python" -c "import setuptools as s, sys; sys.exit(tuple(map(int, s.__version__.split('.')[:2])) < (70, 1))" 2>/dev/null; then
            _stcn_log="$("$_stcn_venv/bin/python" -m pip install --quiet --no-deps --no-build-isolation -e "$_stcn_root" 2>&1)"
        else
            _stcn_log="$("$_stcn_venv/bin/python" -m pip install --quiet --no-deps -e "$_stcn_root" 2>&1)"
        fi \
            || { echo "$_stcn_log" >&2; exit 1; }
    ) 9>"$_stcn_lock" || { echo "[env] could not install $_stcn_root into $_stcn_venv (pip install -e)" >&2
                           return 1 2>/dev/null || exit 1; }
fi
# shellcheck disable=SC1091
source "$_stcn_venv/bin/activate"
unset _stcn_src _stcn_root _stcn_hash _stcn_cache _stcn_venv _stcn_lock
