"""A gradio 3.41.2 app standing in for the webui in the proxy's integration tests.

    python gradio_app.py --home DIR --port N [--auth USER:PASS] [--root-path /sd]

It lays out what the webui would have under a dot-directory data dir, serves it the way the
webui does, and prints one line `READY {json}` on stdout naming the files. It stops when its
standard input closes, so it never outlives the test that started it.

- `DIR/.local/share/sdw` is the data dir: `outputs/txt2img-images/2026-01-01/{a,big}.png` and
  an extension script `extensions/x/javascript/x.js`.
- `DIR/plain` holds the same images under a path without dots (gradio serves those itself).
- The Blocks app has a Gallery filled by a queued event `gen`, and a non-queued `echo`.
- Like the webui's `modules/ui_tempdir.py`, images that are already saved are handed to the
  frontend by their own path plus `?<mtime>` instead of a temp copy, which is exactly what
  gradio then refuses to serve from a dot-directory.
"""

import argparse
import json
import os
import random
import shutil
import sys


def make_files(home):
    from PIL import Image

    data = os.path.join(home, ".local", "share", "sdw")
    outputs = os.path.join(data, "outputs", "txt2img-images", "2026-01-01")
    script_dir = os.path.join(data, "extensions", "x", "javascript")
    plain = os.path.join(home, "plain")
    for path in (outputs, script_dir, plain):
        os.makedirs(path, exist_ok=True)

    small = os.path.join(outputs, "a.png")
    Image.new("RGB", (64, 64), (200, 30, 30)).save(small)

    # About 1 MB: noise does not compress, and level 0 keeps the size predictable.
    rng = random.Random(1)
    side = 578
    noise = Image.frombytes("RGB", (side, side), rng.randbytes(side * side * 3))
    big = os.path.join(outputs, "big.png")
    noise.save(big, compress_level=0)

    script = os.path.join(script_dir, "x.js")
    with open(script, "w", encoding="utf-8") as f:
        f.write("// extension script served through the proxy\nwindow.xLoaded = true;\n")

    plain_small = os.path.join(plain, "a.png")
    plain_big = os.path.join(plain, "big.png")
    shutil.copyfile(small, plain_small)
    shutil.copyfile(big, plain_big)
    return {
        "data": data,
        "outputs": outputs,
        "image": small,
        "big": big,
        "script": script,
        "plain": plain,
        "plain_image": plain_small,
        "plain_big": plain_big,
    }


def install_saved_image_patch(gr, demo):
    """The webui's `ui_tempdir.save_pil_to_file`, reduced to the part that matters here."""
    original = gr.components.IOComponent.pil_to_temp_file

    def register(filename):
        demo.temp_file_sets[0] = demo.temp_file_sets[0] | {os.path.abspath(filename)}

    def save_pil_to_file(self, pil_image, dir=None, format="png"):
        saved = getattr(pil_image, "already_saved_as", None)
        if saved and os.path.isfile(saved):
            register(saved)
            with_mtime = f"{saved}?{os.path.getmtime(saved)}"
            register(with_mtime)
            return with_mtime
        return original(self, pil_image, dir=dir, format=format)

    gr.components.IOComponent.pil_to_temp_file = save_pil_to_file


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--home", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--auth", default=None, help="USER:PASS")
    parser.add_argument("--root-path", default=None)
    args = parser.parse_args()

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr
    from PIL import Image

    files = make_files(args.home)

    def load(path):
        image = Image.open(path)
        image.already_saved_as = path
        return image

    def gen():
        return [load(files["image"]), load(files["big"])]

    def echo(text):
        return text

    with gr.Blocks(analytics_enabled=False) as demo:
        gallery = gr.Gallery(label="images")
        button = gr.Button("Generate")
        button.click(gen, None, gallery, api_name="gen")
        text_in = gr.Textbox(label="in")
        text_out = gr.Textbox(label="out")
        echo_button = gr.Button("Echo")
        echo_button.click(echo, text_in, text_out, api_name="echo", queue=False)
    install_saved_image_patch(gr, demo)
    demo.queue(concurrency_count=8)

    auth = None
    if args.auth:
        user, password = args.auth.split(":", 1)
        auth = [(user, password)]
    demo.launch(
        server_name="127.0.0.1",
        server_port=args.port,
        prevent_thread_lock=True,
        allowed_paths=[files["plain"], files["data"]],
        auth=auth,
        root_path=args.root_path,
        quiet=True,
        show_api=False,
    )
    print("READY " + json.dumps(dict(files, port=args.port)), flush=True)
    try:
        while sys.stdin.read(4096):
            pass
    finally:
        demo.close()


if __name__ == "__main__":
    main()
