"""Sessions for tests across TensorFlow versions, lint, type checks, docs and packaging.

Run ``nox -l`` to list them, e.g. ``nox -s "tests(tensorflow='2.16')"`` or ``nox -s lint``.
``nox -s tests compat_table`` runs the whole matrix and regenerates the compatibility table in
the docs from it.
"""

from __future__ import annotations

import datetime
import json
import platform
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import nox

nox.options.sessions = ["lint", "typecheck", "tests(tensorflow='2.21')"]
nox.options.reuse_existing_virtualenvs = True
# uv installs a TensorFlow stack in well under a minute (pip: about two); plain virtualenv and
# pip where uv is not installed (pip install "nox[uv]").
nox.options.default_venv_backend = "uv|virtualenv"

PYTHON = "3.11"

#: The Keras 3 release each supported TensorFlow is tested with: the one current when that
#: TensorFlow came out (TensorFlow's own requirement only sets a floor).
KERAS_FOR_TF = {
    "2.16": "3.6.0",
    "2.17": "3.8.0",
    "2.18": "3.8.0",
    "2.19": "3.10.0",
    "2.20": "3.11.3",
    "2.21": "3.15.1",
}
OLDEST, NEWEST = min(KERAS_FOR_TF), max(KERAS_FOR_TF)

#: onnx 1.19 and later need ml_dtypes >= 0.5, which TensorFlow 2.16-2.18 do not allow.
ONNX_FOR_TF = {version: "onnx<1.19" if version <= "2.18" else "onnx>=1.14"
               for version in KERAS_FOR_TF}


#: The runtime TFLite exports are checked with: TensorFlow's own interpreter (what a user without
#: LiteRT gets) on 2.16-2.19 and in the README's test command, LiteRT on 2.20 and 2.21, so the
#: matrix runs both.
LITERT_FOR_TF = {version: ["ai-edge-litert"] if version >= "2.20" else []
                 for version in KERAS_FOR_TF}


def _install_stack(session: nox.Session, tensorflow: str) -> None:
    pins = [f"tensorflow=={tensorflow}.*", f"keras=={KERAS_FOR_TF[tensorflow]}",
            ONNX_FOR_TF[tensorflow]]
    session.install(*pins, *LITERT_FOR_TF[tensorflow])
    session.install("-e", ".[test]", *pins)


#: Where each ``tests`` session leaves its JUnit XML and package versions for ``compat_table``.
RESULTS = Path(".nox") / "results"
#: The generated compatibility table that docs/versions.rst renders.
COMPAT_TABLE = Path("docs") / "compatibility.json"
#: Distributions whose versions the compatibility table records.
STACK = ("tensorflow", "keras", "numpy", "ml_dtypes", "onnx", "onnxruntime", "tf2onnx",
         "ai-edge-litert")
_VERSIONS_SCRIPT = """
import json, sys
from importlib.metadata import PackageNotFoundError, version
def get(name):
    try:
        return version(name)
    except PackageNotFoundError:
        return None
with open(sys.argv[1], "w") as out:
    json.dump({name: get(name) for name in sys.argv[2:]}, out, indent=1)
"""


@nox.session(python=PYTHON)
@nox.parametrize("tensorflow", list(KERAS_FOR_TF))
def tests(session: nox.Session, tensorflow: str) -> None:
    """Run the test suite on one TensorFlow version (with its Keras).

    Its counts, time and package versions are kept for ``nox -s compat_table``.
    """
    _install_stack(session, tensorflow)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / f"tests-{tensorflow}"
    session.run("python", "-c", _VERSIONS_SCRIPT, f"{stem}.versions.json", *STACK)
    (RESULTS / f"tests-{tensorflow}.args.json").write_text(json.dumps(session.posargs))
    session.run("pytest", f"--junitxml={stem}.xml", *session.posargs, success_codes=[0, 5])


@nox.session(python=False)
def compat_table(session: nox.Session) -> None:
    """Write docs/compatibility.json from the last run of each ``tests`` session."""
    rows = []
    for tensorflow in KERAS_FOR_TF:
        stem = RESULTS / f"tests-{tensorflow}"
        if not Path(f"{stem}.xml").is_file():
            session.warn(f"no result of tests(tensorflow='{tensorflow}'): run it first")
            continue
        suite = ElementTree.parse(f"{stem}.xml").getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        counts = {key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors",
                                                          "skipped")}
        rows.append({
            "session": f"tests(tensorflow='{tensorflow}')",
            "selection": " ".join(json.loads(Path(f"{stem}.args.json").read_text())) or "all",
            "versions": json.loads(Path(f"{stem}.versions.json").read_text()),
            "passed": counts["tests"] - counts["failures"] - counts["errors"]
            - counts["skipped"],
            "failed": counts["failures"] + counts["errors"],
            "skipped": counts["skipped"],
            "seconds": round(float(suite.get("time", 0))),
            "date": suite.get("timestamp", "")[:10],
        })
    table = {"generated": datetime.date.today().isoformat(), "python": platform.python_version(),
             "machine": f"{platform.system()} {platform.machine()}", "sessions": rows}
    COMPAT_TABLE.write_text(json.dumps(table, indent=1) + "\n")
    session.log(f"wrote {COMPAT_TABLE} ({len(rows)} sessions)")


@nox.session(python=PYTHON)
def compat(session: nox.Session) -> None:
    """Save models with the oldest TensorFlow, load them with the newest, and back."""
    import os

    script = "tests/compat/check_models.py"
    old_dir, new_dir = f"{session.create_tmp()}/old", f"{session.create_tmp()}/new"
    _install_stack(session, OLDEST)
    session.run("python", script, "save", old_dir)
    newest = os.path.join(session.create_tmp(), "newest-venv")
    session.run("python", "-m", "venv", newest)
    new_python = os.path.join(newest, "bin", "python")
    session.run(new_python, "-m", "pip", "install", "-q", "-e", ".",
                f"tensorflow=={NEWEST}.*", f"keras=={KERAS_FOR_TF[NEWEST]}", external=True)
    # Old -> new must work; new -> old must work or fail with a clear version error.
    session.run(new_python, script, "load", old_dir, "--must-load", external=True)
    session.run(new_python, script, "save", new_dir, external=True)
    session.run("python", script, "load", new_dir)


@nox.session(python=PYTHON)
def screenshots(session: nox.Session) -> None:
    """Regenerate the Getting-started images from a fresh demo run (needs Chromium)."""
    session.install("-e", ".")
    session.run("python", "docs/screenshots.py")


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """Lint with ruff."""
    session.install("ruff>=0.5")
    session.run("ruff", "check", "src", "tests", "noxfile.py", "benchmarks", "docs")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """Type-check src/ with mypy in strict mode."""
    session.install("mypy>=1.10", "-e", ".")
    session.run("mypy")


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """Build the Sphinx docs with warnings as errors and nitpicky references."""
    session.install("-e", ".[docs]")
    session.run("sphinx-build", "-W", "-n", "--keep-going", "-b", "html", "docs",
                "docs/_build/html")
    session.run("sphinx-build", "-W", "-q", "-b", "doctest", "docs", "docs/_build/doctest")


@nox.session(python=PYTHON)
def build(session: nox.Session) -> None:
    """Build sdist and wheel, check their metadata, install the wheel and smoke-test it."""
    import glob
    import shutil

    shutil.rmtree("dist", ignore_errors=True)
    session.install("build>=1.2", "twine>=5")
    session.run("python", "-m", "build")
    session.run("twine", "check", "--strict", *glob.glob("dist/*"))
    wheel = glob.glob("dist/*.whl")[0]
    session.install(wheel)
    session.run("fruitclf", "--help", silent=True)
    session.run("python", "-c", "import fruitclf, tempfile; "
                "d = fruitclf.write_demo_dataset(tempfile.mkdtemp()); "
                "assert d.num_train + d.num_test == 1797; print('wheel OK', fruitclf.__version__)")
