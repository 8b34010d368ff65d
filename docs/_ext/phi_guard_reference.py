"""A Sphinx extension that writes the reference pages from the project's JSON Schemas and fits the README in.

The policy and facet references are filled in when their stubs are read, from the policy models' JSON
Schema and the facet schemas shipped in the package, so they can never drift from the code. The README,
the site's front page, links to files of the repository that are no pages of the site; those links are
pointed at the repository.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import TYPE_CHECKING, Any

from sphinx.errors import ExtensionError
from sphinx.util import logging

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from sphinx.application import Sphinx
    from sphinx.environment import BuildEnvironment

log = logging.getLogger(__name__)

#: The line of a reference page's stub that the generated text replaces; it must appear exactly once.
MARKER = "<!-- phi-guard-reference: generated at build time, do not write below -->"

#: Where each generated page's stub lives (its Sphinx docname), and what fills it.
POLICY_PAGE = "reference/policy"
FACETS_PAGE = "reference/facets"

_TOP = ""
#: A Markdown link or image target: ``](target)`` with the target's text captured.
_LINK = re.compile(r"\]\(([^)\s]+)\)")
_ROLE = re.compile(r":[a-z]+(?::[a-z]+)?:`~?([^`]+)`")


def setup(app: Sphinx) -> dict[str, Any]:
    """Register the hooks that fill the reference pages each time they are read.

    :param app: the Sphinx application.
    :return: the extension's metadata.
    """
    app.add_config_value("phi_guard_repository_url", "", "env", types=[str])
    app.connect("source-read", _fill_reference)
    app.connect("env-get-outdated", _always_reread)
    app.connect("include-read", _readme_links)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}


def _renderers() -> dict[str, Callable[[], str]]:
    return {POLICY_PAGE: policy_reference, FACETS_PAGE: facet_reference}


def _always_reread(
    app: Sphinx, env: BuildEnvironment, added: set[str], changed: set[str], removed: set[str]
) -> list[str]:
    # The pages' text comes from the schemas, not from their stubs: an incremental build must read them
    # again even when the stub is unchanged, or the site would show the schemas of an earlier build.
    return [docname for docname in _renderers() if docname in env.found_docs]


def _fill_reference(app: Sphinx, docname: str, source: list[str]) -> None:
    render = _renderers().get(docname)
    if render is None:
        return
    count = source[0].count(MARKER)
    if count != 1:
        raise ExtensionError(f"{docname}: the marker line must appear exactly once (found {count}): {MARKER}")
    source[0] = source[0].replace(MARKER, render())
    log.info("generated %s from its schemas", docname)


def _readme_links(app: Sphinx, relative_path: Any, parent_docname: str, content: list[str]) -> None:
    # The README links to pages of this site as docs/<page>.md (the include directive's relative-docs
    # option resolves those) and to other files of the repository, such as the changelog, which are no
    # pages here: those go to the file in the repository, so a new one cannot break the build.
    if str(relative_path).replace("\\", "/") != "../README.md":
        return
    base = app.config.phi_guard_repository_url.rstrip("/")
    if not base:
        raise ExtensionError("set phi_guard_repository_url in conf.py: the README links to repository files")

    def point(match: re.Match[str]) -> str:
        target = match.group(1)
        if target.startswith(("docs/", "#")) or re.match(r"^[a-z][a-z0-9+.-]*:", target):
            return match.group(0)
        return f"]({base}/blob/main/{target})"

    content[0] = _LINK.sub(point, content[0])


# -- the policy ---------------------------------------------------------------------------------------


def policy_schema() -> dict[str, Any]:
    """The JSON Schema of a policy file, as ``phi-guard policy schema`` exports it.

    :return: the schema, with the nested models under ``$defs``.
    """
    from airflow_phi_guard.policy.schema import policy_json_schema

    return policy_json_schema()


def policy_reference() -> str:
    """The policy reference in Markdown: every key of a policy file, by its place in the file.

    :return: MyST Markdown with one section per nested object, one per enumeration, and the schema.
    """
    schema = policy_schema()
    definitions = schema.get("$defs", {})
    sections = _policy_sections(schema, definitions)
    lines: list[str] = []

    for path, name, node in sections:
        title = "The top level" if path == _TOP else f"`{path}`"
        lines += [f"({_policy_label(name)})=", f"## {title}", ""]
        if node.get("description"):
            lines += [_prose(node["description"]), ""]
        lines += _property_table(
            node, definitions, _policy_link, "Any other key is refused when the policy loads."
        )

    enumerations = sorted(name for name, node in definitions.items() if "enum" in node)
    lines += ["(policy-enumerations)=", "## Enumerations", ""]
    for name in enumerations:
        node = definitions[name]
        values = ", ".join(f"`{value}`" for value in node["enum"])
        lines += [f"({_policy_label(name)})=", f"### {name}", "", _prose(node.get("description", "")), ""]
        lines += [f"Values: {values}.", ""]

    lines += [
        "(policy-json-schema)=",
        "## The JSON Schema",
        "",
        "The whole schema, for an editor's YAML language server (`phi-guard policy schema`; the package "
        "ships it as `src/airflow_phi_guard/policy/schema/policy.schema.json`):",
        "",
        "```json",
        json.dumps(schema, indent=2, sort_keys=False),
        "```",
        "",
    ]
    return "\n".join(lines)


def _policy_sections(
    schema: dict[str, Any], definitions: dict[str, Any]
) -> list[tuple[str, str, dict[str, Any]]]:
    sections: list[tuple[str, str, dict[str, Any]]] = [(_TOP, "Policy", schema)]
    seen = {"Policy"}
    index = 0
    while index < len(sections):
        path, _, node = sections[index]
        index += 1
        for key, prop in node.get("properties", {}).items():
            for name, where in _object_refs(prop, definitions):
                if name in seen:
                    continue
                seen.add(name)
                prefix = "" if path == _TOP else f"{path}."
                sections.append((f"{prefix}{key}{where}", name, definitions[name]))
    return sections


def _object_refs(prop: dict[str, Any], definitions: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """The nested models a property holds, each with the path suffix that reaches it."""
    if "$ref" in prop:
        name = _ref_name(prop["$ref"])
        if "properties" in definitions.get(name, {}):
            yield name, ""
    for option in prop.get("anyOf", []):
        yield from _object_refs(option, definitions)
    if isinstance(prop.get("additionalProperties"), dict):
        for name, where in _object_refs(prop["additionalProperties"], definitions):
            yield name, f".<COLUMN>{where}"
    if isinstance(prop.get("items"), dict):
        for name, where in _object_refs(prop["items"], definitions):
            yield name, f"[]{where}"


def _policy_label(name: str) -> str:
    return f"policy-{name.lower()}"


def _policy_link(reference: str) -> str:
    name = _ref_name(reference)
    return f"{{ref}}`{name} <{_policy_label(name)}>`"


# -- the facets ---------------------------------------------------------------------------------------


def facet_schema_documents() -> list[tuple[str, str, dict[str, Any]]]:
    """The facet schemas shipped in the package, read from its ``lineage/schemas/<version>/`` folders.

    :return: (version, file name, schema) per file, by file name and then newest version first.
    """
    root = resources.files("airflow_phi_guard.lineage") / "schemas"
    documents = []
    for version in root.iterdir():
        if not version.is_dir():
            continue
        for entry in version.iterdir():
            if entry.name.endswith(".json"):
                documents.append((version.name, entry.name, json.loads(entry.read_text(encoding="utf-8"))))
    documents.sort(key=lambda item: (item[1], [-int(part) for part in item[0].split("-")]))
    return documents


def facet_key(document: dict[str, Any]) -> str:
    """The name a facet takes in an event (``phiGuard_policy``), from its schema's top-level properties.

    :param document: one facet schema.
    :return: the facet's key.
    """
    (key,) = document["properties"]
    return key


def facet_reference() -> str:
    """The facet reference in Markdown: every custom facet, every schema version, every field.

    :return: MyST Markdown with a section per facet and, in it, one per schema version.
    """
    by_facet: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for version, file_name, document in facet_schema_documents():
        by_facet.setdefault(facet_key(document), []).append((version, file_name, document))
    lines = _facet_overview(by_facet)

    for key, versions in sorted(by_facet.items()):
        newest = versions[0][2]
        main = newest["$defs"][_ref_name(newest["properties"][key]["$ref"])]
        lines += [f"(facet-{key.lower()})=", f"## `{key}`", ""]
        lines += [_prose(main.get("description", "")), ""]
        for position, (version, file_name, document) in enumerate(versions):
            older = versions[position + 1] if position + 1 < len(versions) else None
            lines += _facet_version(key, version, file_name, document, older)
    return "\n".join(lines)


def _facet_overview(by_facet: dict[str, list[tuple[str, str, dict[str, Any]]]]) -> list[str]:
    lines = ["| facet | kind | schema versions | schema file |", "| --- | --- | --- | --- |"]
    for key, versions in sorted(by_facet.items()):
        _, file_name, document = versions[0]
        kind = _facet_kind(document, key)
        listed = ", ".join(f"{{ref}}`{v} <{_facet_label(key, v, None)}>`" for v, _, _ in versions)
        lines.append(f"| {{ref}}`{key} <facet-{key.lower()}>` | {kind} | {listed} | `{file_name}` |")
    return [*lines, ""]


def _facet_version(
    key: str,
    version: str,
    file_name: str,
    document: dict[str, Any],
    older: tuple[str, str, dict[str, Any]] | None,
) -> list[str]:
    definitions = document["$defs"]
    main_name = _ref_name(document["properties"][key]["$ref"])
    main = _facet_body(definitions[main_name])
    lines = [f"({_facet_label(key, version, None)})=", f"### Schema {version}", ""]
    lines += [
        f"`_schemaURL`: `{document['$id']}#/$defs/{main_name}`",
        "",
        f"Shipped as `src/airflow_phi_guard/lineage/schemas/{version}/{file_name}`; "
        f"{_facet_kind(document, key)} on {_facet_base(definitions[main_name])}.",
        "",
    ]
    if older is not None:
        lines += [_facet_changes(key, main, older), ""]

    def link(reference: str) -> str:
        if not reference.startswith("#/$defs/"):
            return f"[{_ref_name(reference)}]({reference})"
        name = _ref_name(reference)
        target = None if name == main_name else name
        return f"{{ref}}`{name} <{_facet_label(key, version, target)}>`"

    lines += _property_table(main, definitions, link)
    for name, node in definitions.items():
        if name == main_name:
            continue
        lines += [f"({_facet_label(key, version, name)})=", f"#### `{name}`", ""]
        if node.get("description"):
            lines += [_prose(node["description"]), ""]
        lines += _property_table(node, definitions, link) if "properties" in node else _scalar(node, link)
    return lines


def _facet_body(node: dict[str, Any]) -> dict[str, Any]:
    """The object part of a facet definition, which extends an OpenLineage base facet with ``allOf``."""
    for part in node.get("allOf", []):
        if "properties" in part:
            return part
    return node


def _facet_base(node: dict[str, Any]) -> str:
    for part in node.get("allOf", []):
        if "$ref" in part:
            return f"[{_ref_name(part['$ref'])}]({part['$ref']})"
    return "no OpenLineage base facet"


def _facet_kind(document: dict[str, Any], key: str) -> str:
    main = document["$defs"][_ref_name(document["properties"][key]["$ref"])]
    base = next((_ref_name(part["$ref"]) for part in main.get("allOf", []) if "$ref" in part), "")
    return {"RunFacet": "run facet", "JobFacet": "job facet"}.get(base, "dataset facet")


def _facet_changes(key: str, main: dict[str, Any], older: tuple[str, str, dict[str, Any]]) -> str:
    version, _, document = older
    previous = _facet_body(document["$defs"][_ref_name(document["properties"][key]["$ref"])])
    added = [name for name in main.get("properties", {}) if name not in previous.get("properties", {})]
    removed = [name for name in previous.get("properties", {}) if name not in main.get("properties", {})]
    parts = []
    if added:
        parts.append("adds " + ", ".join(f"`{name}`" for name in added))
    if removed:
        parts.append("removes " + ", ".join(f"`{name}`" for name in removed))
    changes = " and ".join(parts) or "keeps the same fields (their definitions may differ)"
    return f"Compared with {{ref}}`{version} <{_facet_label(key, version, None)}>`, this version {changes}."


def _facet_label(key: str, version: str, definition: str | None) -> str:
    label = f"facet-{key.lower()}-{version}"
    return f"{label}-{definition.lower()}" if definition else label


# -- shared rendering ---------------------------------------------------------------------------------


def _property_table(
    node: dict[str, Any],
    definitions: dict[str, Any],
    link: Callable[[str], str],
    closed: str = "The schema allows no other keys.",
) -> list[str]:
    required = set(node.get("required", []))
    lines = ["| key | type | required | description |", "| --- | --- | --- | --- |"]
    for name, prop in node.get("properties", {}).items():
        if name in required:
            need = "yes"
        elif "default" in prop:
            default = prop["default"]
            shown = default if isinstance(default, str) else json.dumps(default)
            need = f"no (default `{shown}`)"
        else:
            need = "no"
        description = _prose(prop.get("description", "")) or _prose(
            definitions.get(_ref_name(prop.get("$ref", "")), {}).get("description", "")
        )
        lines.append(f"| `{name}` | {_cell(_type(prop, link))} | {need} | {_cell(description)} |")
    closing = [closed, ""] if node.get("additionalProperties") is False else []
    lines += ["", *closing]
    for name, prop in node.get("properties", {}).items():
        if "properties" in prop:
            lines += [f"Fields of `{name}`:", ""]
            lines += _property_table(prop, definitions, link, closed)
    return lines


def _scalar(node: dict[str, Any], link: Callable[[str], str]) -> list[str]:
    return [f"Type: {_type(node, link)}.", ""]


def _type(prop: dict[str, Any], link: Callable[[str], str]) -> str:
    if "$ref" in prop:
        return link(prop["$ref"])
    if "anyOf" in prop:
        options = [option for option in prop["anyOf"] if option.get("type") != "null"]
        text = " or ".join(_type(option, link) for option in options)
        return f"{text} or null" if len(options) < len(prop["anyOf"]) else text
    if "allOf" in prop and len(prop["allOf"]) == 1:
        return _type(prop["allOf"][0], link)
    if "enum" in prop:
        return "one of " + ", ".join(f"`{value}`" for value in prop["enum"])
    kind = prop.get("type")
    if kind == "array":
        items = _type(prop["items"], link) if isinstance(prop.get("items"), dict) else "any"
        unique = ", no repeats" if prop.get("uniqueItems") else ""
        least = f", at least {prop['minItems']}" if "minItems" in prop else ""
        return f"list of {items}{least}{unique}"
    if kind == "object":
        values = prop.get("additionalProperties")
        if isinstance(values, dict):
            keys = prop.get("propertyNames", {})
            named = "one of " + ", ".join(f"`{v}`" for v in keys["enum"]) if "enum" in keys else "name"
            return f"mapping of {named} to {_type(values, link)}"
        return "object, fields below" if "properties" in prop else "object"
    text = kind if isinstance(kind, str) else " or ".join(kind or ["any"])
    facts = []
    if "format" in prop:
        facts.append(f"format {prop['format']}")
    if "pattern" in prop:
        facts.append(f"pattern `{prop['pattern']}`")
    if "minimum" in prop:
        facts.append(f"at least {prop['minimum']}")
    if "maximum" in prop:
        facts.append(f"at most {prop['maximum']}")
    if prop.get("minLength") == 1:
        facts.append("not empty")
    if "example" in prop:
        facts.append(f"e.g. `{json.dumps(prop['example'])}`")
    return f"{text} ({', '.join(facts)})" if facts else text


def _ref_name(reference: str) -> str:
    return reference.rsplit("/", 1)[-1]


def _prose(text: str) -> str:
    """A schema description as one Markdown line: Sphinx roles become code, HTML-like text is escaped."""
    text = " ".join(text.split())
    text = _ROLE.sub(lambda match: f"`{match.group(1).rsplit('.', 1)[-1]}`", text)
    # Outside code spans (the even pieces of a split on backticks), "<id>" would be read as raw HTML.
    pieces = text.split("`")
    return "`".join(piece if index % 2 else piece.replace("<", "\\<") for index, piece in enumerate(pieces))


def _cell(text: str) -> str:
    return text.replace("|", "\\|")
