# checks.nixos-vm: a NixOS VM boots the service on the CPU with the tiny model and generates an
# image through the launcher's proxy. Also: the model declared as a store path is linked in,
# a locked setting is refused by the API, the login file arrives through LoadCredential.
{
  pkgs,
  module,
  package,
  tinyModel,
}:
pkgs.testers.runNixOSTest {
  name = "stable-diffusion-webui";

  nodes.machine = {
    imports = [ module ];
    virtualisation = {
      memorySize = 4096;
      cores = 2;
      diskSize = 4096;
    };
    services.stable-diffusion-webui = {
      enable = true;
      inherit package;
      extraArgs = [
        "--api"
        "--precision"
        "full"
      ];
      # No network in the VM; the tiny model needs none.
      environment = {
        HF_HUB_OFFLINE = "1";
        TRANSFORMERS_OFFLINE = "1";
      };
      models = [
        {
          path = "${tinyModel}/tiny.safetensors";
          folder = "Stable-diffusion";
        }
        {
          path = "${tinyModel}/tiny.yaml";
          folder = "Stable-diffusion";
        }
      ];
      lockedSettings.enable_pnginfo = false;
      authFile = "/run/keys/sd-login";
    };
    # The login file as a deployment places it: outside the store, root's only.
    systemd.tmpfiles.rules = [ "f+ /run/keys/sd-login 0400 root root - alice:wonderland" ];
  };

  testScript = ''
    import base64
    import json

    url = "http://127.0.0.1:7860"

    machine.wait_for_unit("stable-diffusion-webui-models.service")
    # Type=notify: active only once the launcher said READY=1 (proxy forwarding to the webui).
    machine.wait_for_unit("stable-diffusion-webui.service", timeout=1800)

    with subtest("the store model is linked into the data dir"):
        machine.succeed("test -L /var/lib/stable-diffusion-webui/models/Stable-diffusion/tiny.safetensors")
        names = [m["model_name"] for m in json.loads(machine.succeed(f"curl -sf {url}/sdapi/v1/sd-models"))]
        assert "tiny" in names, names

    with subtest("txt2img through the proxy returns a 64x64 PNG"):
        body = json.dumps({"prompt": "a cat", "steps": 3, "width": 64, "height": 64, "seed": 1, "sampler_name": "Euler a"})
        out = machine.succeed(f"curl -sf -X POST -H 'Content-Type: application/json' -d '{body}' {url}/sdapi/v1/txt2img")
        png = base64.b64decode(json.loads(out)["images"][0])
        assert png[:8] == b"\x89PNG\r\n\x1a\n", png[:16]
        size = (int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big"))
        assert size == (64, 64), size

    with subtest("a locked setting is refused by the API"):
        code = machine.succeed(
            f"curl -s -o /dev/null -w '%{{http_code}}' -X POST -H 'Content-Type: application/json' -d '{{\"enable_pnginfo\": true}}' {url}/sdapi/v1/options"
        )
        assert code == "403", code

    with subtest("gradio's login reads the credential"):
        machine.succeed(f"curl -sf -X POST -d 'username=alice&password=wonderland' {url}/login")
        code = machine.succeed(f"curl -s -o /dev/null -w '%{{http_code}}' -X POST -d 'username=alice&password=wrong' {url}/login")
        assert code == "400", code

    with subtest("sandboxed, and stops cleanly"):
        machine.succeed("systemctl show -p ProtectSystem stable-diffusion-webui | grep -qx ProtectSystem=strict")
        machine.succeed("systemctl show -p PrivateDevices stable-diffusion-webui | grep -qx PrivateDevices=yes")
        machine.succeed("systemctl stop stable-diffusion-webui")
        machine.succeed("systemctl show -p ExecMainStatus stable-diffusion-webui | grep -qx ExecMainStatus=0")
  '';
}
