# The image reference of packages.docker*: pure (builtins only), so .ci/nix-check.sh checks it
# against Docker's reference grammar without nixpkgs. The package version carries semver build
# metadata ("0.1.0+webui.1937682a"); `+` is not allowed in a Docker tag
# ([A-Za-z0-9_][A-Za-z0-9_.-]{0,127}) and `docker load` refuses such an image, so it becomes `-`.
{ variant, version }:
{
  name = "stable-diffusion-webui";
  tag = builtins.replaceStrings [ "+" ] [ "-" ] "${variant}-${version}";
}
