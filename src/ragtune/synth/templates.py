"""The Jinja2 prompt templates of the synthesis stage, each carrying a version.

The packaged templates live in ``ragtune/synth/templates/`` and are read through
:mod:`importlib.resources` (so they work from a wheel as well as a source tree); a folder named by
``synth.templates_dir`` overrides any of them by file name. Every template starts with a
``{# version: N #}`` comment, and the stage records ``name@N`` for each template it used in every
item's provenance and in the dataset card, so a dataset says which prompts wrote it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from ragtune.core.errors import ConfigError

PACKAGE = "ragtune.synth"
FOLDER = "templates"
_VERSION = re.compile(r"\A\s*\{#-?\s*version:\s*([^\s#]+)\s*-?#\}")


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    version: str
    origin: str
    template: jinja2.Template

    @property
    def ref(self) -> str:
        """``name@version``, as recorded in provenance."""
        return f"{self.name}@{self.version}"

    def render(self, **values: Any) -> str:
        try:
            return self.template.render(**values).strip()
        except jinja2.TemplateError as err:
            raise ConfigError(f"{self.origin}: cannot render: {err}") from None


def _packaged_source(filename: str) -> str | None:
    resource = resources.files(PACKAGE).joinpath(FOLDER, filename)
    return resource.read_text(encoding="utf-8") if resource.is_file() else None


class TemplateSet:
    """Loads ``<name>.j2`` from ``templates_dir`` if present there, else from the package."""

    def __init__(self, templates_dir: str | Path | None = None) -> None:
        self.templates_dir = Path(templates_dir).expanduser() if templates_dir else None
        if self.templates_dir is not None and not self.templates_dir.is_dir():
            raise ConfigError(f"synth.templates_dir: {self.templates_dir} is not a folder")
        self._env = jinja2.Environment(
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
            autoescape=False,
        )
        self._loaded: dict[str, PromptTemplate] = {}

    def get(self, name: str) -> PromptTemplate:
        if name in self._loaded:
            return self._loaded[name]
        filename = f"{name}.j2"
        source: str | None = None
        origin = f"{PACKAGE}/{FOLDER}/{filename}"
        if self.templates_dir is not None and (self.templates_dir / filename).is_file():
            origin = str(self.templates_dir / filename)
            source = (self.templates_dir / filename).read_text(encoding="utf-8")
        else:
            source = _packaged_source(filename)
        if source is None:
            raise ConfigError(f"prompt template {filename!r} not found (package or synth.templates_dir)")
        match = _VERSION.match(source)
        if match is None:
            raise ConfigError(f"{origin}: a prompt template must start with '{{# version: N #}}'")
        try:
            compiled = self._env.from_string(source)
        except jinja2.TemplateSyntaxError as err:
            raise ConfigError(f"{origin}:{err.lineno}: template syntax error: {err.message}") from None
        loaded = PromptTemplate(name=name, version=match.group(1), origin=origin, template=compiled)
        self._loaded[name] = loaded
        return loaded

    def refs(self) -> dict[str, str]:
        """``name -> name@version`` of every template loaded so far."""
        return {name: template.ref for name, template in sorted(self._loaded.items())}
