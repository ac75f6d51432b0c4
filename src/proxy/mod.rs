//! Reverse proxy in front of gradio (in progress).
