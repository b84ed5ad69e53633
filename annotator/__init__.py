"""The annotation tool (`interactive_demo.py`): a local web application to draw, propagate, correct and
export the masks of one video. `workspace`: its state on disk; `session`: the interactive core, the
background jobs and the exports; `server`: the HTTP API (FastAPI) and the page (`static/`)."""
