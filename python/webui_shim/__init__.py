"""Replacement for upstream's ``launch.py`` / ``webui.sh`` environment handling.

The Rust launcher (``stable-diffusion-webui``) embeds CPython and calls
``webui_shim.bootstrap.main``. Everything here exists because upstream assumes a writable
checkout that it may pip-install into; we run it read-only from a Nix store path or any
checkout, verify instead of installing, and hand process control to the launcher.
"""
