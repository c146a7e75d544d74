"""The CLI against a running server: `index`, `search` and `eval` with `--server URL`."""
