# The tiny random-weights SD1 model of the end-to-end tests (tests/support/tiny_model.py) as a
# store path: tiny.safetensors, tiny.yaml beside it (upstream picks the yaml by name) and
# tiny-clip/, which the yaml names by its absolute store path. A few MB, byte-deterministic.
{ runCommand, pythonEnv }:
runCommand "stable-diffusion-tiny-model" { nativeBuildInputs = [ pythonEnv ]; } ''
  python ${../../tests/support/tiny_model.py} $out
  test -f $out/tiny.safetensors && test -f $out/tiny.yaml
''
