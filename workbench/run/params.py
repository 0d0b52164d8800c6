"""The notebooks and their parameters: the numbered notebooks in flow order, what each
``parameters`` cell declares, what a profile (``full``, ``smoke``) injects, and the data
they will read, checked before anything runs.
"""

from __future__ import annotations

import ast

import yaml

from workbench.core import paths

# Notebook parameters naming a dataset; None means CIFAR-10 from its default places.
DATA_PARAMETERS = ("cifar10_path", "data_path")


class ProfileError(ValueError):
    """A parameter profile is missing, or sets a parameter a notebook does not declare."""


def notebook_names() -> list[str]:
    """Stems of the numbered notebooks (``NN-*.ipynb``) in flow order, from the folder
    :func:`workbench.core.paths.notebooks_dir` names."""
    return sorted(p.stem for p in paths.notebooks_dir().glob(paths.NOTEBOOK_PATTERN))


SOLUTIONS = "solutions"  # the folder, beside the notebooks, of their solutions notebooks


def solution_names() -> list[str]:
    """The solutions notebooks, as names :func:`workbench.run.notebooks.execute` runs:
    ``solutions/<notebook>`` for ``notebooks/solutions/<notebook>.ipynb``, in flow order.

    A solution answers the exercises of the notebook of the same stem and reads what that
    notebook recorded, so it runs after it. ``make run`` never runs them
    (:func:`notebook_names` lists only the numbered notebooks); the notebook tests do.
    """
    folder = paths.notebooks_dir() / SOLUTIONS
    return sorted(f"{SOLUTIONS}/{p.stem}" for p in folder.glob(paths.NOTEBOOK_PATTERN))


def notebook_of(solution: str) -> str:
    """The notebook a solution answers: ``solutions/01-edge-iris-knn`` -> ``01-edge-iris-knn``."""
    return solution.removeprefix(f"{SOLUTIONS}/")


def profile_names() -> list[str]:
    """The profiles a run can use: ``full`` and one per ``params/*.yaml`` beside the notebooks."""
    return ["full", *sorted(p.stem for p in (paths.notebooks_dir() / "params").glob("*.yaml"))]


def notebook_parameters(name: str) -> dict[str, dict]:
    """The parameters notebook ``name`` declares in its ``parameters`` cell.

    Returns:
        {parameter: {"name", "inferred_type_name", "default" (source text), "help"}},
        as ``papermill.inspect_notebook`` reads them.
    """
    import papermill as pm

    return pm.inspect_notebook(paths.notebooks_dir() / f"{name}.ipynb")


def profile_parameters(name: str, profile: str) -> dict:
    """Parameters injected into notebook ``name`` for ``profile`` (``full`` injects none).

    Raises:
        ProfileError: no such profile, or it sets a parameter the notebook does not
            declare (a typo that papermill would otherwise inject as a dead variable).
    """
    if profile == "full":
        return {}
    file = paths.notebooks_dir() / "params" / f"{profile}.yaml"
    if not file.exists():
        raise ProfileError(
            f"No profile file {file}; profiles are 'full' or a YAML in notebooks/params/."
        )
    sections = yaml.safe_load(file.read_text()) or {}
    values = dict(sections.get(name) or {})
    unknown = sorted(set(values) - set(notebook_parameters(name)))
    if unknown:
        raise ProfileError(
            f"{file} sets {unknown} for {name}, which its parameters cell does not declare: "
            "fix the name in the profile or add the parameter to the notebook."
        )
    return values


def check_data(names: list[str], profile: str = "full") -> list[str]:
    """Check, before any notebook runs, that the datasets ``names`` read are there.

    For every notebook declaring a dataset parameter (:data:`DATA_PARAMETERS`), the
    value it will get (the profile's, else its default) is located with
    :func:`workbench.data.cifar10.locate_cifar10`: a named path must exist; ``None`` means the
    CIFAR-10 cache or archive, downloaded now if allowed and possible.

    Returns:
        The sources found, in words (one per distinct value).

    Raises:
        workbench.data.datasets.DatasetError: a dataset is missing; the message says what to do.
    """
    from workbench.data import cifar10

    found: dict[str | None, str] = {}
    for name in names:
        declared = notebook_parameters(name)
        values = profile_parameters(name, profile)
        for parameter in DATA_PARAMETERS:
            if parameter not in declared:
                continue
            if parameter in values:
                value = values[parameter]
            else:
                try:
                    value = ast.literal_eval(declared[parameter]["default"])
                except (ValueError, SyntaxError):  # an expression: only the notebook knows
                    continue
            key = None if value is None else str(value)
            if key not in found:
                found[key] = cifar10.locate_cifar10(key)
    return list(found.values())


def notebook_values(name: str, profile: str) -> dict:
    """The parameters notebook ``name`` gets in ``profile``: the profile's values over the
    defaults of its parameters cell (defaults that are not literals are left out)."""
    values = {}
    for parameter, info in notebook_parameters(name).items():
        try:
            values[parameter] = ast.literal_eval(info["default"])
        except (ValueError, SyntaxError):
            continue
    return values | profile_parameters(name, profile)
