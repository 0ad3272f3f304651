//! Where the binaries under test are, and scratch directories for their output.

use std::path::PathBuf;

/// The path of a workspace binary (`ipclog`, `constat`) built next to this test.
///
/// The e2e tests live in their own package, so cargo does not build the other packages'
/// binaries for them: run `cargo build --workspace --bins` first (the README's test command and
/// `.ci/run` do).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test>-<hash> -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("test binary is in target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} not found: build the binaries first with `cargo build --workspace --bins`",
        path.display()
    );
    path
}

/// The workspace root (where `Cargo.toml`, `constat/`, `lookup/` are).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The shared capture corpus beside the repository (`../shared/corpus`), if present.
pub fn corpus_dir() -> Option<PathBuf> {
    let d = repo_root().join("../shared/corpus");
    d.is_dir().then_some(d)
}

/// A fresh, empty scratch directory unique to this process and `name`.
pub fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("e2e-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create scratch dir");
    d
}
