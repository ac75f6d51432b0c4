# A layered OCI image per Linux variant (packages.docker, packages.docker-cpu), run as a
# non-root user (uid 1000) with its data in the /data volume:
#   nix build .#docker && docker load < result
#   docker run --gpus all -p 7860:7860 -v sd-data:/data stable-diffusion-webui:<tag>
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
      image =
        package:
        pkgs.dockerTools.buildLayeredImage {
          name = "stable-diffusion-webui";
          tag = "${package.passthru.variant}-${package.version}";
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
            ];
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
