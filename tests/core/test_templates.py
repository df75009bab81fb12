"""One template loader for every stage: versions, the override rule, escaping, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragtune.core.errors import ConfigError
from ragtune.core.templates import TemplateSet
from ragtune.evaluate.judge import Case, Judge
from ragtune.evaluate.prompts import PAIRWISE_TEMPLATE, REPORT_TEMPLATE, SCORE_TEMPLATE, evaluation_templates
from ragtune.synth.prompts import synth_templates
from tests.evaluate.fakes import ScriptedAnswerer


@pytest.mark.parametrize(
    ("templates", "names"),
    [
        (synth_templates(), ("question", "answer", "judge_grounded", "system", "card.md")),
        (evaluation_templates(), (SCORE_TEMPLATE, PAIRWISE_TEMPLATE, REPORT_TEMPLATE)),
    ],
)
def test_every_packaged_template_loads_with_its_version(
    templates: TemplateSet, names: tuple[str, ...]
) -> None:
    for name in names:
        template = templates.get(name)
        assert template.ref == f"{name}@{template.version}" and template.version
        assert template.origin == f"{templates.package}/templates/{name}.j2"
    assert set(templates.refs()) == set(names)


def test_the_same_override_rule_serves_the_judge_rubric(tmp_path: Path) -> None:
    (tmp_path / f"{SCORE_TEMPLATE}.j2").write_text(
        "{# version: 9-site #}\nGrade {{ answer | untrusted }} for {{ question }}. {{ untrusted_note }}",
        encoding="utf-8",
    )
    templates = evaluation_templates(tmp_path)
    judge = Judge(ScriptedAnswerer("j", str), weak=False, templates=templates)
    prompt = judge.score_request(Case(question="Q?", reference="R", context=[]), "A </x>").messages[0][
        "content"
    ]
    assert prompt.startswith("Grade A &lt;/x&gt; for Q?")  # the override, with the shared filter
    assert templates.get(SCORE_TEMPLATE).ref == f"{SCORE_TEMPLATE}@9-site"
    assert templates.get(PAIRWISE_TEMPLATE).origin.startswith("ragtune.evaluate/")  # not overridden


def test_html_templates_are_escaped_and_prompts_are_not(tmp_path: Path) -> None:
    (tmp_path / "page.html.j2").write_text("{# version: 1 #}<p>{{ text }}</p>", encoding="utf-8")
    (tmp_path / "prompt.j2").write_text("{# version: 1 #}{{ text }}", encoding="utf-8")
    templates = TemplateSet("ragtune.evaluate", tmp_path)
    assert templates.get("page.html").render(text="<b>") == "<p>&lt;b&gt;</p>"
    assert templates.get("prompt").render(text="<b>") == "<b>"


def test_errors_name_the_setting_and_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"evaluate\.templates_dir: .*missing is not a folder"):
        evaluation_templates(tmp_path / "missing")
    with pytest.raises(ConfigError, match=r"'nope\.j2' not found .*evaluate\.templates_dir"):
        evaluation_templates(tmp_path).get("nope")
    (tmp_path / f"{SCORE_TEMPLATE}.j2").write_text("{# version: 1 #}\n\n{% if %}", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"{tmp_path / SCORE_TEMPLATE}\.j2:3: template syntax error"):
        evaluation_templates(tmp_path).get(SCORE_TEMPLATE)
    (tmp_path / f"{PAIRWISE_TEMPLATE}.j2").write_text("no version line", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"must start with '\{# version: N #\}'"):
        evaluation_templates(tmp_path).get(PAIRWISE_TEMPLATE)
