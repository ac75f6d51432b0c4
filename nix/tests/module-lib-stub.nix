# A stand-in for the nixpkgs `lib` functions nix/module/lib.nix uses, in builtins only, so that
# CI (Debian's nix-bin, no nixpkgs) can evaluate the module's logic. Same behaviour as nixpkgs'
# lib/{attrsets,lists,strings}.nix for these inputs; nix/tests/module-lib.nix also runs against
# the real lib when given one (`--arg lib 'import <nixpkgs/lib>'`).
let
  inherit (builtins)
    attrNames
    elem
    filter
    foldl'
    listToAttrs
    stringLength
    substring
    ;
in
{
  filterAttrs =
    pred: set:
    listToAttrs (
      map (name: {
        inherit name;
        value = set.${name};
      }) (filter (name: pred name set.${name}) (attrNames set))
    );
  mapAttrsToList = f: set: map (name: f name set.${name}) (attrNames set);
  hasPrefix = prefix: s: substring 0 (stringLength prefix) s == prefix;
  removePrefix =
    prefix: s:
    let
      n = stringLength prefix;
    in
    if substring 0 n s == prefix then substring n (stringLength s - n) s else s;
  optional = cond: x: if cond then [ x ] else [ ];
  optionals = cond: xs: if cond then xs else [ ];
  optionalAttrs = cond: set: if cond then set else { };
  unique = foldl' (acc: x: if elem x acc then acc else acc ++ [ x ]) [ ];
}
