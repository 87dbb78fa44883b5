"""Sessions for tests across TensorFlow versions, lint, type checks, docs and packaging.

Run ``nox -l`` to list them, e.g. ``nox -s "tests(tensorflow='2.16')"`` or ``nox -s lint``.
"""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "typecheck", "tests(tensorflow='2.21')"]
nox.options.reuse_existing_virtualenvs = True

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


def _install_stack(session: nox.Session, tensorflow: str) -> None:
    pins = [f"tensorflow=={tensorflow}.*", f"keras=={KERAS_FOR_TF[tensorflow]}",
            ONNX_FOR_TF[tensorflow]]
    session.install(*pins)
    session.install("-e", ".[test]", *pins)


@nox.session(python=PYTHON)
@nox.parametrize("tensorflow", list(KERAS_FOR_TF))
def tests(session: nox.Session, tensorflow: str) -> None:
    """Run the test suite on one TensorFlow version (with its Keras)."""
    _install_stack(session, tensorflow)
    session.run("python", "-c", "import tensorflow as tf, keras; "
                "print('TensorFlow', tf.__version__, 'Keras', keras.__version__)")
    session.run("pytest", *session.posargs, success_codes=[0, 5])


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
