"""tools/install_system_deps.sh: SVOX Pico and RHVoice from a private non-free sources list, each skipped with a
warning where it cannot be installed. Run against stub commands (nothing is installed)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "install_system_deps.sh"
PRESENT = ("espeak-ng", "flite", "festival", "g++", "make")


def _stubs(root: Path, apt_fails_for: str = "") -> Path:
    """A bin/ of stub commands: the synthesizers and tools present, ``id`` says root, ``apt-get`` logs its
    arguments (and fails when they mention ``apt_fails_for``), ``tee`` writes its stdin to the file it is given."""
    bin_dir = root / "bin"
    bin_dir.mkdir()
    stubs = {name: "exit 0" for name in PRESENT}
    stubs["ldconfig"] = "echo 'libsndfile.so.1 (libc6,x86-64) => /usr/lib/libsndfile.so.1'"
    stubs["id"] = "echo 0"
    stubs["apt-get"] = (f'echo "apt-get $*" >> {root}/apt.log\n'
                        + (f'case "$*" in *{apt_fails_for}*) exit 100 ;; esac\n' if apt_fails_for else "")
                        + "exit 0")
    stubs["tee"] = 'cat > "$1"'
    for name, body in stubs.items():
        path = bin_dir / name
        path.write_text(f"#!/bin/bash\n{body}\n")
        path.chmod(0o755)
    return bin_dir


def _run(tmp_path: Path, os_release: str, apt_fails_for: str = "") -> subprocess.CompletedProcess:
    tmp_path.mkdir(exist_ok=True)
    bin_dir = _stubs(tmp_path, apt_fails_for)
    (tmp_path / "os-release").write_text(os_release)
    # pico2wave and RHVoice-test must look missing, installed here or not: the PATH holds only the stubs and a few
    # system tools
    env = {"PATH": f"{bin_dir}:{_system_tools(tmp_path)}", "ASRKIT_OS_RELEASE": str(tmp_path / "os-release"),
           "ASRKIT_NONFREE_LIST": str(tmp_path / "asrkit-nonfree.list"), "HOME": str(tmp_path)}
    return subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True)


def _system_tools(tmp_path: Path) -> str:
    """A directory of links to the few system tools the script and the stubs use (bash, cat, grep)."""
    tools = tmp_path / "sys"
    tools.mkdir(exist_ok=True)
    for name in ("bash", "cat", "grep", "echo", "true", "dirname", "env"):
        for d in ("/usr/bin", "/bin"):
            if (Path(d) / name).exists() and not (tools / name).exists():
                os.symlink(Path(d) / name, tools / name)
    return str(tools)


DEBIAN = 'ID=debian\nVERSION_CODENAME=bookworm\n'


def test_pico_comes_from_a_private_nonfree_list_for_the_debian_suite(tmp_path: Path) -> None:
    proc = _run(tmp_path, DEBIAN)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "asrkit-nonfree.list").read_text() == "deb http://deb.debian.org/debian bookworm non-free\n"
    log = (tmp_path / "apt.log").read_text().splitlines()
    assert any(f"-o Dir::Etc::sourcelist={tmp_path}/asrkit-nonfree.list" in line and "update" in line for line in log)
    assert any("install" in line and "libttspico-utils" in line and "--no-install-recommends" in line for line in log)
    assert any("install" in line and "rhvoice rhvoice-english" in line and "--no-install-recommends" in line
               for line in log)
    assert "installed SVOX Pico" in proc.stdout and "installed RHVoice" in proc.stdout


def test_pico_is_skipped_with_a_warning_when_it_cannot_be_installed(tmp_path: Path) -> None:
    proc = _run(tmp_path, DEBIAN, apt_fails_for="libttspico-utils")
    assert proc.returncode == 0, proc.stderr
    assert "WARNING: could not install SVOX Pico" in proc.stderr
    assert "installed RHVoice" in proc.stdout and "RHVoice" not in proc.stderr  # the other engine still comes
    proc = _run(tmp_path / "no-update", DEBIAN, apt_fails_for="update")
    assert proc.returncode == 0, proc.stderr
    assert "could not install SVOX Pico" in proc.stderr and "could not install RHVoice" in proc.stderr


def test_pico_is_skipped_off_debian(tmp_path: Path) -> None:
    proc = _run(tmp_path, 'ID=ubuntu\nVERSION_CODENAME=noble\n')
    assert proc.returncode == 0, proc.stderr
    assert "WARNING" in proc.stderr and "SVOX Pico (pico2wave) skipped" in proc.stderr
    assert "RHVoice (RHVoice-test) skipped" in proc.stderr
    assert not (tmp_path / "asrkit-nonfree.list").exists()
