"""The original project's import paths (``MetaPuppet.core.SweetSocketServer`` and friends)."""
