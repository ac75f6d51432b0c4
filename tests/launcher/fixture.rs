//! Test harness: a webui-shaped fixture tree, a Python environment with stub torch, fake
//! `pip`/`git` executables that record any call, and the launcher binary run against them.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tempfile::TempDir;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

#[path = "../support/prereq.rs"]
pub mod prereq;

/// The interpreter whose site-packages (with `packaging`) the fixture environment reuses:
/// `SD_WEBUI_TEST_PYTHON`, else `python3`. Must be the same Python minor version the launcher
/// embeds. `Err` says why it is unusable.
fn test_python() -> Result<PathBuf, String> {
    let python = std::env::var_os(prereq::PYTHON_VAR)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("python3"));
    match Command::new(&python)
        .args(["-c", "import packaging"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(status) if status.success() => Ok(python),
        Ok(status) => Err(format!(
            "`{}` cannot import `packaging` ({status})",
            python.display()
        )),
        Err(e) => Err(format!("`{}` does not run: {e}", python.display())),
    }
}

/// The interpreter for `test`; without one, the test is skipped (saying so), or fails where
/// the environment must exist (see [`prereq`]).
pub fn require_python(test: &str) -> Option<PathBuf> {
    match test_python() {
        Ok(python) => Some(python),
        Err(why) if prereq::python_required() => panic!(
            "{test}: no usable Python for the fixture: {why} ({} or {}=1 say one must be there)",
            prereq::PYTHON_VAR,
            prereq::REQUIRE_VAR
        ),
        Err(why) => {
            prereq::skip(
                test,
                &format!(
                    "no Python with `packaging` ({why}; set {})",
                    prereq::PYTHON_VAR
                ),
            );
            None
        }
    }
}

pub struct TestEnv {
    pub tmp: TempDir,
    pub webui: PathBuf,
    pub home: PathBuf,
    pub python_env: PathBuf,
    pub spawned_log: PathBuf,
    path: String,
    pythonpath: PathBuf,
}

/// Copies a fixture tree. `NAME.fixture.py` becomes `NAME.py`: the fixture's stand-ins for
/// upstream module names are stored under another name so they can never be mistaken for (or
/// flagged as) upstream code in the repository.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry
            .file_name()
            .to_string_lossy()
            .replace(".fixture.py", ".py");
        let target = to.join(name);
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn python_output(python: &Path, code: &str) -> String {
    let out = Command::new(python).args(["-c", code]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

impl TestEnv {
    /// The fixture for `test`, or `None` when it is skipped (see [`require_python`]).
    pub fn new(test: &str) -> Option<TestEnv> {
        let python = require_python(test)?;
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let webui = root.join("webui");
        copy_dir(&Path::new(FIXTURE).join("webui"), &webui);
        // The pinned repositories' places: the launcher checks the layout, the fixture needs
        // nothing inside them.
        for name in stable_diffusion_webui::sources::Sources::pinned()
            .repositories
            .keys()
        {
            std::fs::create_dir_all(webui.join("repositories").join(name)).unwrap();
        }
        let home = root.join("home");
        std::fs::create_dir_all(&home).unwrap();

        // A python environment: stub torch & co (the webui only checks they exist) plus the
        // test interpreter's packages through a .pth file.
        let version = python_output(
            &python,
            "import sys; print(f'python{sys.version_info[0]}.{sys.version_info[1]}')",
        );
        let purelib = python_output(
            &python,
            "import sysconfig; print(sysconfig.get_paths()['purelib'])",
        );
        // A real venv, so subprocesses started with its bin/python3 see the same packages.
        let python_env = root.join("env");
        let status = Command::new(&python)
            .args(["-m", "venv", "--without-pip"])
            .arg(&python_env)
            .status()
            .unwrap();
        assert!(status.success(), "python -m venv failed");
        let site = python_env.join("lib").join(&version).join("site-packages");
        write(&site.join("test-python.pth"), &format!("{purelib}\n"));
        write(
            &site.join("torch/__init__.py"),
            "__version__ = '2.7.0'\nclass cuda:\n    @staticmethod\n    def is_available():\n        return False\n    version = None\nclass backends:\n    mps = None\nclass version:\n    cuda = None\n",
        );
        write(&site.join("clip/__init__.py"), "");
        for (dist, ver) in [
            ("torch", "2.7.0"),
            ("torchvision", "0.22.0"),
            ("open_clip_torch", "2.20.0"),
        ] {
            write(
                &site.join(format!("{dist}-{ver}.dist-info/METADATA")),
                &format!(
                    "Metadata-Version: 2.1\nName: {}\nVersion: {ver}\n",
                    dist.replace('_', "-")
                ),
            );
        }

        // Fake pip and git: any call is recorded in spawned.log.
        let spawned_log = root.join("spawned.log");
        let fakebin = root.join("fakebin");
        for tool in ["pip", "pip3", "git"] {
            let script = fakebin.join(tool);
            write(
                &script,
                &format!(
                    "#!/bin/sh\necho \"{tool} $*\" >> '{}'\nexit 1\n",
                    spawned_log.display()
                ),
            );
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let pythonpath = root.join("fakepy");
        let record = format!(
            "import sys\nopen({:?}, 'a').write('python -m pip ' + ' '.join(sys.argv[1:]) + '\\n')\nsys.exit(1)\n",
            spawned_log.display().to_string()
        );
        write(&pythonpath.join("pip/__init__.py"), "");
        write(&pythonpath.join("pip/__main__.py"), &record);
        let path = format!(
            "{}:{}",
            fakebin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Some(TestEnv {
            tmp,
            webui,
            home,
            python_env,
            spawned_log,
            path,
            pythonpath,
        })
    }

    /// The user extension that asks for a present and an absent package.
    pub fn add_extension(&self, data: &Path) {
        copy_dir(
            &Path::new(FIXTURE).join("extensions"),
            &data.join("extensions"),
        );
    }

    /// A copy of one extension of `tests/fixtures/<set>/<name>` in `<data>/extensions`, as a
    /// user installs one.
    #[allow(
        dead_code,
        reason = "used by tests/extensions.rs, not tests/launcher.rs"
    )]
    pub fn add_fixture_extension(&self, data: &Path, set: &str, name: &str) {
        copy_dir(
            &Path::new(FIXTURE).join(set).join(name),
            &data.join("extensions").join(name),
        );
    }

    /// A copy of the managed extensions fixture (a directory the Nix package would build).
    #[allow(
        dead_code,
        reason = "used by tests/extensions.rs, not tests/launcher.rs"
    )]
    pub fn add_managed(&self) -> PathBuf {
        let dir = self.tmp.path().join("managed");
        copy_dir(&Path::new(FIXTURE).join("managed-extensions"), &dir);
        dir
    }

    /// The launcher with a clean, isolated environment.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_stable-diffusion-webui"));
        cmd.env_clear()
            .env("HOME", &self.home)
            .env("PATH", &self.path)
            .env("PYTHONPATH", &self.pythonpath)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("SD_WEBUI_ROOT", &self.webui)
            .env("SD_WEBUI_PYTHON_ENV", &self.python_env)
            .current_dir(self.tmp.path());
        cmd
    }

    pub fn spawned(&self) -> String {
        std::fs::read_to_string(&self.spawned_log).unwrap_or_default()
    }
}

/// Every file below `dir` with its contents hash: proof that nothing was written there.
pub fn tree_snapshot(dir: &Path) -> BTreeMap<PathBuf, u64> {
    fn walk(dir: &Path, base: &Path, out: &mut BTreeMap<PathBuf, u64>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let rel = path.strip_prefix(base).unwrap().to_owned();
            if entry.file_type().unwrap().is_dir() {
                out.insert(rel, u64::MAX);
                walk(&path, base, out);
            } else {
                use std::hash::{Hash, Hasher};
                let mut h = std::collections::hash_map::DefaultHasher::new();
                std::fs::read(&path).unwrap().hash(&mut h);
                out.insert(rel, h.finish());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// A running launcher with its stderr collected line by line.
pub struct Running {
    pub child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Running {
    pub fn start(mut cmd: Command) -> Running {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            Box::new(child.stderr.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stdout.take().unwrap()),
        ] {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(line);
                }
            });
        }
        Running { child, lines }
    }

    pub fn output(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    pub fn count(&self, needle: &str) -> usize {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Wait until `needle` has appeared `n` times (panics with the output on timeout).
    pub fn wait_for(&mut self, needle: &str, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.count(needle) < n {
            if let Ok(Some(status)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(200));
                panic!(
                    "launcher exited ({status}) before {needle:?}:\n{}",
                    self.output()
                );
            }
            assert!(
                Instant::now() < deadline,
                "timeout waiting for {needle:?}:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn wait_ready(&mut self, n: usize) {
        self.wait_for("webui ready at", n);
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// Wait for exit; returns the status code.
    pub fn wait_exit(&mut self) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(100));
                return status.code().unwrap_or(-1);
            }
            assert!(
                Instant::now() < deadline,
                "launcher did not exit:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Minimal HTTP/1.1 client (the fixture closes the connection after each response).
pub fn http(port: u16, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

pub fn info(port: u16) -> serde_json::Value {
    let (status, body) = http(port, "GET", "/info", "");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}
