# checks.nixos-vm-instances: two CPU instances behind the nginx virtual host, sharing the
# declared models read-only. Each instance generates (least_conn sends two API requests to
# the two instances in turn), and an instance cannot write into the shared folder.
{
  pkgs,
  module,
  package,
  tinyModel,
}:
pkgs.testers.runNixOSTest {
  name = "stable-diffusion-webui-instances";

  nodes.machine = {
    imports = [ module ];
    virtualisation = {
      memorySize = 6144;
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
      instances = {
        a.port = 7861;
        b.port = 7862;
      };
      nginx = {
        enable = true;
        virtualHost = "localhost";
      };
    };
  };

  testScript = ''
    import json

    machine.wait_for_unit("stable-diffusion-webui-a.service", timeout=1800)
    machine.wait_for_unit("stable-diffusion-webui-b.service", timeout=1800)
    machine.wait_for_unit("nginx.service")

    with subtest("each instance answers on its own port"):
        for port in (7861, 7862):
            machine.succeed(f"curl -sf http://127.0.0.1:{port}/sdapi/v1/sd-models | grep -q tiny")
        machine.fail("curl -sf http://127.0.0.1:7860/")

    with subtest("two API requests through nginx reach both instances"):
        body = json.dumps({"prompt": "a cat", "steps": 3, "width": 64, "height": 64, "seed": 1, "save_images": True})
        for _ in range(2):
            machine.succeed(f"curl -sf -X POST -H 'Content-Type: application/json' -d '{body}' http://localhost/sdapi/v1/txt2img")
        for name in ("a", "b"):
            machine.succeed(f"find /var/lib/stable-diffusion-webui/instances/{name}/outputs -name '*.png' | grep -q .")

    with subtest("the UI through nginx"):
        machine.succeed("curl -sf http://localhost/ | grep -qi gradio")

    with subtest("the shared models are read-only inside an instance, its own data is not"):
        pid = machine.succeed("systemctl show -p MainPID --value stable-diffusion-webui-a").strip()
        d = "/var/lib/stable-diffusion-webui/instances/a"
        machine.fail(f"nsenter -t {pid} -m touch {d}/models/Stable-diffusion/probe")
        machine.succeed(f"nsenter -t {pid} -m touch {d}/probe")
  '';
}
