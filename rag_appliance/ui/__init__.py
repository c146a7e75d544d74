"""The appliance's web UI (Gradio), mounted into the FastAPI app at /ui."""

from rag_appliance.ui.app import UI_PATH, build_ui, mount_ui

__all__ = ["UI_PATH", "build_ui", "mount_ui"]
