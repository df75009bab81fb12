"""The one loader of every Jinja2 template we ship: prompts, judge rubrics, the dataset card, the report.

Each stage keeps its templates beside its code (``ragtune/<stage>/templates/<name>.j2``, read through
:mod:`importlib.resources`, so they work from a wheel as well as a source tree). One override rule
serves them all: a folder named by the stage's ``templates_dir`` setting replaces any packaged
template by file name. Every template starts with a ``{# version: N #}`` comment, and whoever uses
one records its ``name@N`` (item provenance, the dataset card, ``metrics.json``), so an output says
which prompt or rubric wrote it, and changing a rubric means bumping its version.

Templates named ``*.html.j2`` are autoescaped; prompts are not, and get the ``untrusted`` filter
(and the ``untrusted_note`` global) that wraps document text so it cannot close a prompt's tags.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from ragtune.core.errors import ConfigError
from ragtune.core.llm.prompting import UNTRUSTED_NOTE, quote_untrusted

FOLDER = "templates"
SUFFIX = ".j2"
_VERSION = re.compile(r"\A\s*\{#-?\s*version:\s*([^\s#]+)\s*-?#\}")


@dataclass(frozen=True)
class Template:
    """A loaded template: its name (file name without ``.j2``), version and where it came from."""

    name: str
    version: str
    origin: str
    template: jinja2.Template

    @property
    def ref(self) -> str:
        """``name@version``, as recorded in provenance and reports."""
        return f"{self.name}@{self.version}"

    def render(self, **values: Any) -> str:
        try:
            return self.template.render(**values).strip()
        except jinja2.TemplateError as err:
            raise ConfigError(f"{self.origin}: cannot render: {err}") from None


class TemplateSet:
    """The templates of one stage package, each overridable by a file of the same name in ``override_dir``.

    ``setting`` names the config key of ``override_dir`` (e.g. ``synth.templates_dir``) for errors.
    """

    def __init__(
        self, package: str, override_dir: str | Path | None = None, *, setting: str = "templates_dir"
    ) -> None:
        self.package = package
        self.setting = setting
        self.override_dir = Path(override_dir).expanduser() if override_dir else None
        if self.override_dir is not None and not self.override_dir.is_dir():
            raise ConfigError(f"{setting}: {self.override_dir} is not a folder")
        self._env = jinja2.Environment(
            loader=jinja2.FunctionLoader(self._source),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
            autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default=False),
        )
        self._env.filters["untrusted"] = quote_untrusted
        self._env.globals["untrusted_note"] = UNTRUSTED_NOTE
        self._sources: dict[str, tuple[str, str]] = {}  # file name -> (text, origin)
        self._loaded: dict[str, Template] = {}

    def _source(self, filename: str) -> str | None:
        """The override's text if the folder has the file, else the packaged one (``None``: neither)."""
        if self.override_dir is not None and (self.override_dir / filename).is_file():
            origin = str(self.override_dir / filename)
            text = (self.override_dir / filename).read_text(encoding="utf-8")
        else:
            resource = resources.files(self.package).joinpath(FOLDER, filename)
            if not resource.is_file():
                return None
            origin = f"{self.package}/{FOLDER}/{filename}"
            text = resource.read_text(encoding="utf-8")
        self._sources[filename] = (text, origin)
        return text

    def get(self, name: str) -> Template:
        """The template ``<name>.j2``, loaded once."""
        if name in self._loaded:
            return self._loaded[name]
        filename = name + SUFFIX
        try:
            compiled = self._env.get_template(filename)
        except jinja2.TemplateNotFound:
            raise ConfigError(
                f"template {filename!r} not found (in {self.package}/{FOLDER} or {self.setting})"
            ) from None
        except jinja2.TemplateSyntaxError as err:
            origin = self._sources.get(filename, ("", filename))[1]
            raise ConfigError(f"{origin}:{err.lineno}: template syntax error: {err.message}") from None
        source, origin = self._sources[filename]
        match = _VERSION.match(source)
        if match is None:
            raise ConfigError(f"{origin}: a template must start with '{{# version: N #}}'")
        loaded = Template(name=name, version=match.group(1), origin=origin, template=compiled)
        self._loaded[name] = loaded
        return loaded

    def refs(self) -> dict[str, str]:
        """``name -> name@version`` of every template loaded so far."""
        return {name: template.ref for name, template in sorted(self._loaded.items())}
