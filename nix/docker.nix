# A layered OCI image per Linux variant (packages.docker, packages.docker-cpu), run as a
# non-root user (uid 1000) with its data in the /data volume:
#   nix build .#docker && docker load < result
#   docker run --gpus all -p 7860:7860 -v sd-data:/data stable-diffusion-webui:<tag>
# <tag> is nix/docker-reference.nix's, e.g. cuda-0.1.0-webui.1937682a.
{ ... }:
{
  perSystem =
    {
      pkgs,
      lib,
      self',
      ...
    }:
    let
      uid = "1000";
      nss = pkgs.fakeNss.override {
        extraPasswdLines = [ "webui:x:${uid}:${uid}:stable-diffusion-webui:/data:/sbin/nologin" ];
        extraGroupLines = [ "webui:x:${uid}:" ];
      };
      # The NVIDIA driver inside a container: torch-bin finds libcuda.so.1 through the RUNPATH
      # autoAddDriverRunpath gives it (/run/opengl-driver/lib: driverLink in nixpkgs'
      # pkgs/by-name/ad/addDriverRunpath). `docker run --gpus all` (nvidia-container-toolkit)
      # mounts the host's driver libraries into /usr/lib64 or /usr/lib/x86_64-linux-gnu (legacy
      # mode; CDI mode: the host's own paths) and registers them in /etc/ld.so.cache, which
      # nixpkgs' glibc never reads. So the image names those directories itself, as nixpkgs'
      # CUDA maintainers advise for Nix-built images (NixOS/nixpkgs#278969, review of 2024-01-15:
      # "set the LD_LIBRARY_PATH"). NVIDIA_* make the toolkit inject the compute libraries.
      cudaEnv = [
        "LD_LIBRARY_PATH=/run/opengl-driver/lib:/usr/lib64:/usr/lib/x86_64-linux-gnu:/usr/lib"
        "NVIDIA_VISIBLE_DEVICES=all"
        "NVIDIA_DRIVER_CAPABILITIES=compute,utility"
      ];
      image =
        package:
        let
          reference = import ./docker-reference.nix {
            inherit (package.passthru) variant;
            inherit (package) version;
          };
        in
        pkgs.dockerTools.buildLayeredImage {
          inherit (reference) name tag;
          contents = [
            package
            nss
            pkgs.cacert
          ];
          # /data for the user's files, /tmp for gradio's uploads; both owned by the user.
          fakeRootCommands = ''
            mkdir -p data tmp
            chown ${uid}:${uid} data
            chmod 1777 tmp
          '';
          enableFakechroot = false;
          config = {
            Entrypoint = [ (lib.getExe package) ];
            # Inside a container the UI must listen on all interfaces to be reachable.
            Cmd = [ "--listen" ];
            User = "${uid}:${uid}";
            WorkingDirectory = "/data";
            Env = [
              "HOME=/data"
              "XDG_DATA_HOME=/data"
              "XDG_CACHE_HOME=/data/.cache"
              "SSL_CERT_FILE=${pkgs.cacert}/etc/ssl/certs/ca-bundle.crt"
            ]
            ++ lib.optionals (package.passthru.variant == "cuda") cudaEnv;
            ExposedPorts."7860/tcp" = { };
            Volumes."/data" = { };
          };
          # Separate layers for the big, rarely changing parts (torch, CUDA) come from
          # buildLayeredImage's popularity ordering; keep the count under Docker's limit.
          maxLayers = 100;
        };
    in
    lib.mkIf pkgs.stdenv.hostPlatform.isLinux {
      packages = {
        docker = image self'.packages.default;
        docker-cpu = image self'.packages.cpu;
      };
    };
}
