# The script both modules run before the webui to put declared store models in place.
# Store links from an earlier configuration are removed first, so none is left stale; a
# user's own file or link at a declared name is kept (and reported), never replaced.
{
  pkgs,
  lib,
  modelsDir,
  links,
}:
pkgs.writeShellScript "stable-diffusion-webui-link-models" ''
  set -eu
  # A user manager's PATH is the session's; name every tool.
  PATH=${
    lib.makeBinPath [
      pkgs.coreutils
      pkgs.findutils
    ]
  }
  mkdir -p ${lib.escapeShellArg modelsDir}
  find ${lib.escapeShellArg modelsDir} -type l -lname ${lib.escapeShellArg "${builtins.storeDir}/*"} -delete
  ${lib.concatMapStrings (l: ''
    mkdir -p ${lib.escapeShellArg "${modelsDir}/${l.folder}"}
    target=${lib.escapeShellArg "${modelsDir}/${l.target}"}
    if [ -e "$target" ] || [ -L "$target" ]; then
      echo "keeping your own $target; the declared model ${l.source} is not linked there" >&2
    else
      ln -sn ${lib.escapeShellArg l.source} "$target"
    fi
  '') links}
''
