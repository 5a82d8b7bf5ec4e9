"""``help(AutoPEFTSearcher)`` shows how to build the space and the cost from a model name."""

from __future__ import annotations

import ast
import pydoc
import textwrap

from autopeft_ray.searchers import AutoPEFTSearcher


def _example_code() -> str:
    """The code block (after ``::``) of the docstring's Examples section."""
    doc = AutoPEFTSearcher.__doc__ or ""
    section = doc[doc.index("    Examples:") :]
    block = section[section.index("::") + 2 :]
    lines = []
    for line in block.splitlines()[1:]:
        if line.strip() and not line.startswith(" " * 12):
            break
        lines.append(line)
    return textwrap.dedent("\n".join(lines))


def test_help_has_an_example_from_a_model_name():
    shown = pydoc.render_doc(AutoPEFTSearcher, renderer=pydoc.plaintext)
    assert "Examples:" in shown
    code = _example_code()
    assert "SearchSpace.from_model_config(model)" in code
    assert "cost_fn=ParamCost.from_model(model)" in code
    assert "search_callbacks(searcher" in code
    # It is valid Python whose imports all resolve.
    tree = ast.parse(code)
    imports = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert len(imports) >= 6
    exec(compile(ast.Module(body=imports, type_ignores=[]), "<example>", "exec"), {})
