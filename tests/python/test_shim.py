"""Unit tests of the Python shim's pure parts (no upstream, no torch)."""

import json
import os
import sys
import textwrap
from pathlib import Path

import pytest
from webui_shim import arguments, hooks, pip_guard, requirements
from webui_shim.config import LaunchConfig, PythonEnv


def test_pip_request_present_package_is_satisfied():
    check = requirements.check_pip_request(["install", "-U", "--prefer-binary", "packaging"])
    assert check.satisfied and not check.missing


def test_pip_request_lists_every_missing_package_and_ignores_option_values(tmp_path):
    reqs = tmp_path / "requirements.txt"
    reqs.write_text("# comment\nabsent-b>=1  # why\n-r more.txt\n")
    (tmp_path / "more.txt").write_text("absent-c\n")
    check = requirements.check_pip_request(
        ["install", "--index-url", "https://x.invalid", "absent-a==1.0", "-r", str(reqs), "packaging"]
    )
    assert check.missing == ["absent-a==1.0", "absent-b>=1", "absent-c"]
    assert not check.satisfied


def test_pip_request_version_outside_specifier_is_reported_not_missing():
    check = requirements.check_pip_request(["install", "packaging<1"])
    assert check.satisfied
    assert check.mismatched and check.mismatched[0].startswith("packaging<1 (installed: ")


def test_markers_and_vcs_urls():
    check = requirements.check_pip_request(
        ["install", "absent-win; sys_platform == 'win32'", "git+https://x.invalid/r.git#egg=absent-vcs"]
    )
    assert check.missing == ["absent-vcs"]


def test_uninstall_and_other_subcommands_are_refused():
    assert requirements.check_pip_request(["uninstall", "-y", "torch"]).unsupported == "pip uninstall -y torch"


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ('"/nix/store/x/bin/python3" -m pip install foo --prefer-binary', ["install", "foo", "--prefer-binary"]),
        ("pip install 'a>=1' b", ["install", "a>=1", "b"]),
        ("git clone https://x.invalid/pip.git", None),
        ('"python" script.py', None),
    ],
)
def test_pip_is_recognised_in_shell_commands(command, expected):
    assert requirements.pip_args_from_shell(command) == expected


@pytest.mark.parametrize(
    ("args", "shell", "expected"),
    [
        ([sys.executable, "-m", "pip", "install", "x"], False, ["install", "x"]),
        (["/usr/bin/python3", "-u", "-m", "pip", "uninstall", "-y", "x"], False, ["uninstall", "-y", "x"]),
        (["pip3.11", "install", "x"], False, ["install", "x"]),
        ([b"pip", b"show", b"x"], False, ["show", "x"]),
        ([sys.executable, "-c", "import pip"], False, None),
        ([sys.executable, "script.py", "-m", "pip"], False, None),
        (["git", "clone", "https://x.invalid/pip"], False, None),
        ("pip install x", False, None),  # no shell: the program "pip install x" does not exist
        ("pip install x", True, ["install", "x"]),
        ("FOO=1 pip3.11 -q install x", True, ["-q", "install", "x"]),
        ([sys.executable, "-W", "ignore", "-m", "pip", "install", "x"], False, ["install", "x"]),
        (["pip install x"], True, ["install", "x"]),  # a list with shell=True
        (Path("/usr/bin/true"), False, None),  # a path-like program
        ('echo "run pip install foo to fix"', True, None),  # only mentions pip
        ("cd x && pip install y", True, None),  # pip inside a longer line (refused, see below)
        ([], False, None),
    ],
)
def test_pip_started_directly_is_recognised(args, shell, expected):
    assert pip_guard.pip_arguments(args, shell) == expected


def test_pip_guard_checks_writing_pip_commands_and_lets_the_rest_run(monkeypatch, tmp_path):
    import subprocess

    checked = []
    monkeypatch.setattr(subprocess, "Popen", subprocess.Popen)
    monkeypatch.setattr(os, "system", os.system)
    pip_guard.install(checked.append)
    marker = tmp_path / "ran"
    # A writing pip command is checked and replaced by a no-op that exits 0.
    assert subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "absent-x"]).returncode == 0
    assert os.system("pip uninstall -y absent-y") == 0
    assert checked == [["install", "--no-index", "absent-x"], ["uninstall", "-y", "absent-y"]]
    # Anything else runs as asked (here it writes a file).
    subprocess.run([sys.executable, "-c", f"open({str(marker)!r}, 'w')"], check=True)
    assert marker.exists()
    # A refusal from the check reaches the caller, and the launcher's own pip run passes.
    pip_guard.install(lambda args: (_ for _ in ()).throw(requirements.PipBlocked("refused")))
    with pytest.raises(requirements.PipBlocked, match="refused"):
        subprocess.check_call(["pip", "install", "absent-z"])
    # Global options before the subcommand, a path-like program, `executable` given by position.
    checked.clear()
    pip_guard.install(checked.append)
    assert subprocess.run(["pip", "--disable-pip-version-check", "-q", "install", "absent-q"]).returncode == 0
    assert subprocess.run(Path(sys.executable).parent / "python3", input=b"", capture_output=True).returncode == 0
    with subprocess.Popen(["pip", "install", "absent-p"], -1, "/nonexistent/pip") as process:
        assert process.wait() == 0
    assert os.system('echo "mentions pip install foo" > /dev/null') == 0
    assert checked == [["install", "absent-q"], ["install", "absent-p"]]
    # pip inside a longer command line: checked, then the line is refused (it cannot run in part).
    with pytest.raises(requirements.PipBlocked, match="inside a longer shell command"):
        subprocess.run("cd / && pip install absent-chain", shell=True)
    assert checked[-1] == ["install", "absent-chain"]
    with pip_guard.allowed():
        with pip_guard.allowed():
            pass
        assert not pip_guard._intercepted([sys.executable, "-m", "pip", "install", "x"], False)
    assert not pip_guard._intercepted(["pip", "show", "x"], False)
    monkeypatch.setattr(pip_guard, "_check", None)


def test_missing_message_names_packages_and_the_declarative_fix():
    message = requirements.missing_message("Extension 'x'", ["Foo_Bar>=1", "baz"])
    assert "Extension 'x' needs Python packages that are not installed: Foo_Bar>=1, baz." in message
    assert "extraPythonPackages = ps: [ ps.foo-bar ps.baz ];" in message
    assert "pip install 'Foo_Bar>=1' baz" in message


def test_path_options_are_made_absolute_against_the_launch_directory():
    argv = ["--ckpt", "m.safetensors", "--api", "--vae-dir=vae", "--styles-file", "/abs.csv", "--port", "1"]
    assert arguments.absolutize_paths(argv, "/home/u") == [
        "--ckpt", "/home/u/m.safetensors", "--api", "--vae-dir=/home/u/vae",
        "--styles-file", "/abs.csv", "--port", "1",
    ]  # fmt: skip


def test_accelerator_defaults_respect_the_users_choice():
    assert arguments.with_accelerator_defaults(["--use-cpu", "interrogate"], "cpu") == [
        "--use-cpu", "interrogate", "--skip-torch-cuda-test", "--no-half",
    ]  # fmt: skip
    assert arguments.with_accelerator_defaults(["--api"], "cuda") == ["--api"]


def test_after_import_patches_a_module_right_after_it_runs(tmp_path, monkeypatch):
    (tmp_path / "shim_probe_mod.py").write_text("VALUE = 1\nDOUBLE = VALUE * 2\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    hooks.after_import("shim_probe_mod", lambda m: setattr(m, "VALUE", 10))
    import shim_probe_mod

    assert shim_probe_mod.VALUE == 10
    assert shim_probe_mod.DOUBLE == 2, "the patch runs after the module body, not before"
    sys.modules.pop("shim_probe_mod")


def test_launch_config_round_trips_through_json():
    config = LaunchConfig(
        mode="run", webui_root="/w", data_dir="/d", cache_dir="/c", launch_cwd="/", executable="/p",
        shim_dir="/s", argv=["--api"], python_env=PythonEnv(prefix="/v", isolated=True),
    )  # fmt: skip
    again = LaunchConfig.from_json(config.to_json())
    assert again == config
    data = json.loads(config.to_json())
    data["unknown_future_field"] = 1
    assert LaunchConfig.from_json(json.dumps(data)) == config


def test_path_options_cover_upstreams_parser():
    """Every path-typed option of upstream's parser is in PATH_OPTIONS (gated on a tree)."""
    root = os.environ.get("SD_WEBUI_TEST_ROOT")
    if not root:
        pytest.skip("SD_WEBUI_TEST_ROOT (an upstream webui tree) not set")
    import subprocess

    code = textwrap.dedent(
        """
        import json, sys, glob, os, argparse, importlib.util
        sys.argv = ["x"]
        sys.path.insert(0, os.getcwd())
        from modules import cmd_args
        from modules.paths_internal import normalized_filepath
        parser = cmd_args.parser
        for preload in glob.glob("extensions-builtin/*/preload.py"):
            spec = importlib.util.spec_from_file_location("p", preload)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            module.preload(parser)
        names = [a.option_strings[-1] for a in parser._actions
                 if a.type is normalized_filepath or (a.dest.endswith(("_file", "_path", "_dir")) and a.type is str)
                 or a.dest in ("gradio_allowed_path", "styles_file")]
        print(json.dumps(names))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    upstream = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert upstream - arguments.PATH_OPTIONS == set()


def test_bytecode_of_the_tree_goes_to_the_cache_and_the_rest_is_untouched(tmp_path):
    """Only modules under the webui tree get their bytecode redirected (see environment.py)."""
    import subprocess

    tree, cache = tmp_path / "tree", tmp_path / "cache"
    (tree / "pkg").mkdir(parents=True)
    (tree / "pkg" / "__init__.py").write_text("X = 1\n")
    other = tmp_path / "other"
    other.mkdir()
    (other / "elsewhere.py").write_text("Y = 2\n")
    code = (
        "import sys; sys.dont_write_bytecode = False\n"
        f"sys.path[:0] = [{str(tree)!r}, {str(other)!r}]\n"
        "from webui_shim.environment import redirect_bytecode\n"
        f"redirect_bytecode([{str(tree)!r}], {str(cache)!r})\n"
        "import pkg, elsewhere\n"
    )
    root = os.path.join(os.path.dirname(__file__), "..", "..", "python")
    env = {**os.environ, "PYTHONPATH": root}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    assert not (tree / "pkg" / "__pycache__").exists(), "bytecode written into the tree"
    assert list(cache.rglob("pkg/__init__.*.pyc")), "tree bytecode not in the cache"
    assert list((other / "__pycache__").glob("elsewhere.*.pyc")), "other modules keep their own __pycache__"
