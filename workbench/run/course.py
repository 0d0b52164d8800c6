"""The course outside the checkout: the numbered notebooks and their parameter profiles,
copied out of the installed package (``workbench notebooks DIR``) into a folder a user owns,
where ``workbench run`` and JupyterLab find them.

The canonical notebooks live in the repository's ``notebooks/``; a wheel carries a copy in
``workbench/_notebooks/`` (``setup.py`` puts it there when the wheel is built), which
:func:`workbench.core.paths.shipped_notebooks` locates in either case.
"""

from __future__ import annotations

from pathlib import Path

from workbench.core import atomic, paths

PROFILE_PATTERN = "params/*.yaml"  # the parameter profiles (smoke) beside the notebooks


class CourseError(ValueError):
    """The notebooks cannot be copied out; the message says why and what to do."""


def course_files(source: Path | None = None) -> list[Path]:
    """The files that make the course, relative to ``source`` (default: the shipped copy):
    the numbered notebooks and the parameter profiles."""
    source = source or paths.shipped_notebooks()
    found = [*source.glob(paths.NOTEBOOK_PATTERN), *source.glob(PROFILE_PATTERN)]
    return sorted(path.relative_to(source) for path in found)


def copy_notebooks(dest: Path | str, *, force: bool = False) -> list[Path]:
    """Copy the shipped notebooks and their profiles into ``dest`` (created if needed).

    A file already there with the same content is left alone; one that differs (a notebook
    you edited, say) stops the copy before anything is written, unless ``force``.

    Returns:
        The files written (absolute paths).

    Raises:
        CourseError: nothing is shipped (a broken installation), ``dest`` is a file, or it
            holds different copies of the notebooks and ``force`` is not set.
    """
    source = paths.shipped_notebooks()
    files = course_files(source)
    if not any(f.suffix == ".ipynb" for f in files):
        raise CourseError(
            f"No notebooks found in {source}: this installation of edge-cloud-workbench is "
            "incomplete (a wheel carries them in workbench/_notebooks/). Reinstall it, or run "
            "from a checkout of the repository."
        )
    dest = Path(dest).expanduser()
    if dest.exists() and not dest.is_dir():
        raise CourseError(
            f"{dest} is a file, not a folder: name a folder to copy the notebooks to."
        )
    differ = [
        str(f)
        for f in files
        if (dest / f).exists() and (dest / f).read_bytes() != (source / f).read_bytes()
    ]
    if differ and not force:
        raise CourseError(
            f"{dest} already holds different copies of {', '.join(differ)}; nothing was "
            "copied, so your changes are kept. Copy into another folder, or pass --force to "
            "replace them with the shipped ones."
        )
    written = []
    for f in files:
        data = (source / f).read_bytes()
        target = dest / f
        if target.exists() and target.read_bytes() == data:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        written.append(atomic.write_bytes(target, data).resolve())
    return written
