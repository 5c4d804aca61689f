"""A wheel built from the repository works on its own: configs and models are package data.

The wheel is built from a copy of the package (so the build leaves nothing in the checkout),
offline, and installed into a fresh venv. Its dependencies (torch, ...) are not installed
again: the venv is made with --system-site-packages and is pointed at this environment's
site-packages by a .pth file (this environment is itself a venv, so the system site alone
would not hold them). The package must come from the wheel, not from the repository.
"""

import os
import shutil
import site
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile

from cocktailparty.core.checkpoint import DEFAULT_MODEL

ROOT = Path(__file__).resolve().parent.parent


def run(argv, cwd, env=None) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (argv, result.stdout[-2000:], result.stderr[-2000:])
    return result


@pytest.mark.slow
def test_wheel_installs_and_runs_with_its_configs_and_bundled_model(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "cocktailparty", source / "cocktailparty",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "-w", tmp_path / "dist", source], cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("cocktailparty-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = {p.name for p in (ROOT / "cocktailparty" / "configs").glob("*.yaml")}
    assert configs and {f"cocktailparty/configs/{name}" for name in configs} <= names
    assert f"cocktailparty/pretrained/{DEFAULT_MODEL}.safetensors" in names
    # cocktail serve's page is package data too: nothing of it is fetched at run time
    static = {p.name for p in (ROOT / "cocktailparty" / "serve" / "static").iterdir()}
    assert {"index.html", "app.js", "style.css"} <= static
    assert {f"cocktailparty/serve/static/{name}" for name in static} <= names

    env_dir = tmp_path / "venv"
    venv.create(env_dir, system_site_packages=True, with_pip=False)
    python = env_dir / "bin" / "python"
    run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel],
        cwd=tmp_path)
    purelib = run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], cwd=tmp_path)
    outer = [p for p in {*site.getsitepackages(), sysconfig.get_path("purelib")} if Path(p).is_dir()]
    (Path(purelib.stdout.strip()) / "outer-environment.pth").write_text("\n".join(outer) + "\n")

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(OMP_NUM_THREADS="1", PATH=f"{env_dir / 'bin'}{os.pathsep}{env.get('PATH', '')}")
    where = run([python, "-c", "import cocktailparty, cocktailparty.core.config as c; print(cocktailparty.__file__); "
                 "print(c.CONFIG_DIR); print(sorted(p.name for p in c.CONFIG_DIR.glob('*.yaml')))"], tmp_path, env)
    package_file, config_dir, listed = where.stdout.splitlines()
    assert Path(package_file).is_relative_to(env_dir) and Path(config_dir).is_relative_to(env_dir)
    assert eval(listed) == sorted(configs)

    page = run([python, "-c", "from cocktailparty.serve.app import STATIC; print(STATIC / 'index.html')"], tmp_path, env)
    assert Path(page.stdout.strip()).is_relative_to(env_dir) and Path(page.stdout.strip()).is_file()

    cocktail = env_dir / "bin" / "cocktail"
    help_text = run([cocktail, "train", "--config", "tdanet-lrs2", "--help"], tmp_path, env).stdout
    assert "--config FILE" in help_text and "examples:" in help_text
    # A config's name resolves inside the installed package (train would fail without one).
    built = run([python, "-c", "from cocktailparty.core.checkpoint import load_model; "
                 "print(load_model('tdanet-lrs2').architecture)"], tmp_path, env)
    assert built.stdout.strip() == "tdanet"

    rate = 16000
    t = np.arange(rate) / rate
    soundfile.write(tmp_path / "one.wav", (0.2 * np.sin(2 * np.pi * 220 * t) + 0.2 * np.sin(2 * np.pi * 1700 * t)
                                           ).astype(np.float32), rate)
    run([cocktail, "-q", "separate", "one.wav", "-o", "out", "--device", "cpu"], tmp_path, env)
    for name in ("one_s1.wav", "one_s2.wav"):
        samples, out_rate = soundfile.read(tmp_path / "out" / name)
        assert out_rate == rate and samples.shape == (rate,) and np.isfinite(samples).all()
