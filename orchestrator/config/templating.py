"""Jinja2 templates for metric and step strings: `host`, `vars`, `hostvars`, `phase`, `run_id`.

Two environments: one for values (URLs, queries, addresses) and one for shell
commands, where every `{{ expression }}` is shell-quoted on output, so a host
variable holding `; rm -rf /` arrives as one harmless argument.
"""

from __future__ import annotations

import shlex
from functools import lru_cache
from typing import Any

from orchestrator._exceptions import ConfigError


@lru_cache(maxsize=2)
def _env(shell: bool) -> Any:
    import jinja2

    def finalize(value: Any) -> Any:
        return shlex.quote(str(value)) if shell else value

    return jinja2.Environment(undefined=jinja2.StrictUndefined, finalize=finalize,
                              autoescape=False, keep_trailing_newline=True)


@lru_cache(maxsize=1024)
def _compiled(template: str, shell: bool) -> Any:
    """Compiling is most of a render's cost; a poll cycle renders the same few strings for
    every host, so each is compiled once."""
    return _env(shell).from_string(template)


def render(template: str, context: dict[str, Any], shell: bool = False) -> str:
    """Render; an undefined name is a ConfigError naming it, never an empty string."""
    if "{{" not in template and "{%" not in template:
        return template
    import jinja2

    try:
        return str(_compiled(template, shell).render(**context))
    except jinja2.TemplateError as exc:
        raise ConfigError(f"template {template!r}: {exc}") from exc


def context_for(host: str, hostvars: dict[str, dict[str, Any]], phase: int | None,
                run_id: str | None) -> dict[str, Any]:
    return {"host": host, "vars": hostvars.get(host, {}), "hostvars": hostvars,
            "phase": phase, "run_id": run_id}
