#!/usr/bin/env bash
# README command 1: set up the environment (cached, keyed by requirements.txt), fetch the released
# weights when absent, and segment a generated sample video. Arguments go to scripts/demo.py.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
python scripts/demo.py "$@"
