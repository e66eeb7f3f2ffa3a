#!/usr/bin/env bash
# Sets up a virtual environment, writes a real sample photo (scikit-image's public-domain astronaut) and
# upscales it x4 with the default model. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q "torch==2.13.0" -e . scikit-image
mkdir -p out
"$VENV/bin/python" -c "import skimage.data, PIL.Image; PIL.Image.fromarray(skimage.data.astronaut()[:256, 128:384]).save('out/astronaut.png')"
"$VENV/bin/realesr" upscale out/astronaut.png -o out/astronaut_x4.png
echo "result: $(pwd)/out/astronaut_x4.png"
