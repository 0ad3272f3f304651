// Build script shared by ipclog and constat (their Cargo.toml point here): `--version` names
// the git revision it was built from, so a bug report says which code ran. Built outside a
// git checkout (a source tarball), the revision comes from $IPCLOG_GIT_REV, else "unknown".
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !s.is_empty()).then_some(s)
}

fn main() {
    println!("cargo:rerun-if-env-changed=IPCLOG_GIT_REV");
    let rev = std::env::var("IPCLOG_GIT_REV")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| git(&["rev-parse", "--short", "HEAD"]));
    // Rebuilt when HEAD moves: HEAD itself (a branch switch), the branch's ref, packed refs.
    if rev.is_some() {
        for p in ["HEAD", "packed-refs"] {
            if let Some(f) = git(&["rev-parse", "--git-path", p]) {
                println!("cargo:rerun-if-changed={f}");
            }
        }
        if let Some(r) = git(&["symbolic-ref", "-q", "HEAD"]) {
            if let Some(f) = git(&["rev-parse", "--git-path", &r]) {
                println!("cargo:rerun-if-changed={f}");
            }
        }
    }
    let rev = rev.unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=GIT_REV={rev}");
}
