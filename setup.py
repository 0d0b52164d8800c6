"""One build step beyond pyproject.toml: the notebooks travel inside the wheel.

The canonical notebooks live in the repository's ``notebooks/`` (committed without outputs);
an installed package has no repository around it, so the build copies the numbered notebooks
and their parameter profiles into the built package as ``workbench/_notebooks/``, where
``workbench.core.paths.shipped_notebooks`` finds them and ``workbench notebooks DIR`` copies
them out. Nothing is copied into the source tree, and an editable install (``pip install -e
.``) reads the checkout's ``notebooks/`` directly. ``MANIFEST.in`` puts the same files in the
source distribution, so a wheel built from it carries them too.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SOURCE = Path(__file__).resolve().parent / "notebooks"
PATTERNS = ("[0-9][0-9]-*.ipynb", "params/*.yaml")  # what `workbench run` needs
TARGET = ("workbench", "_notebooks")


class BuildWithNotebooks(build_py):
    """``build_py`` that also copies ``notebooks/`` into the built package."""

    def notebook_files(self) -> list[Path]:
        return sorted(p for pattern in PATTERNS for p in SOURCE.glob(pattern))

    def run(self) -> None:
        super().run()
        if self.editable_mode:  # the checkout's notebooks/ is read in place
            return
        files = self.notebook_files()
        if not any(p.suffix == ".ipynb" for p in files):
            raise SystemExit(f"setup.py: no notebooks in {SOURCE}; the wheel would ship none")
        for path in files:
            target = Path(self.build_lib, *TARGET, path.relative_to(SOURCE))
            self.mkpath(str(target.parent))
            self.copy_file(str(path), str(target))

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        extra = [
            str(Path(self.build_lib, *TARGET, p.relative_to(SOURCE))) for p in self.notebook_files()
        ]
        return super().get_outputs(include_bytecode) + ([] if self.editable_mode else extra)


setup(cmdclass={"build_py": BuildWithNotebooks})
