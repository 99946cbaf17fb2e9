#!/usr/bin/env python3
"""Counts the validation table cases per kind in crates/api/src/validation/
and rewrites the table between the markers in docs/validation.md.

A case is one row of a test table (a line starting with `("`) or one
direct check of `messages(…)` inside a `#[test]` function. Each test function is counted for the kind its name
starts with (`deployment_invalid` → Deployment) and the part its name says
(valid, update, status; anything else counts as invalid creates)."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ROOT / "crates/api/src/validation"
DOC = ROOT / "docs/validation.md"
BEGIN, END = "<!-- cases:begin -->", "<!-- cases:end -->"


def snake(kind):
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", kind).lower()


def served_kinds():
    """The built-in kinds, from the resource table (`def::<apps::v1::Deployment>`)."""
    table = (ROOT / "crates/api/src/resources.rs").read_text()
    return set(re.findall(r"def::<[\w:]+::(\w+)>", table))


def count(path, kinds):
    text = path.read_text()
    # Short forms the tests use for long kind names.
    aliases = {"pvc": "PersistentVolumeClaim", "pv": "PersistentVolume", "rc": "ReplicationController",
               "hpa": "HorizontalPodAutoscaler", "pdb": "PodDisruptionBudget", "crd": "CustomResourceDefinition",
               "csr": "CertificateSigningRequest", "vap": "ValidatingAdmissionPolicy", "quota": "ResourceQuota",
               "pod_placement": "Pod", "placement": "Pod", "ephemeral": "Pod", "gated": "Pod", "webhook": "ValidatingWebhookConfiguration"}
    counts = {}
    for match in re.finditer(r"#\[test\]\s*fn (\w+)\(\)\s*\{(.*?)(?=\n    #\[test\]|\n}\s*$)", text, re.S):
        name, body = match.group(1), match.group(2)
        rows = len(re.findall(r'^\s*\("', body, re.M)) + len(re.findall(r"\bmessages\(", body))
        if not rows:
            continue
        kind = next((k for k in kinds if name.startswith(snake(k))), None)
        kind = kind or next((k for a, k in aliases.items() if name.startswith(a)), None) or "(shared)"
        part = "valid" if "valid" in name and "invalid" not in name else "update" if "update" in name else "status" if "status" in name else "invalid"
        counts.setdefault(kind, {"invalid": 0, "update": 0, "status": 0, "valid": 0})[part] += rows
    return counts


def main():
    rows, total = [], 0
    paths = sorted(SOURCES.glob("*.rs"))
    kinds = sorted(served_kinds(), key=lambda k: -len(snake(k)))
    for path in paths:
        for kind, c in sorted(count(path, kinds).items()):
            n = sum(c.values())
            total += n
            rows.append(f"| {path.stem} | {kind} | {c['invalid']} | {c['update']} | {c['status']} | {c['valid']} | {n} |")
    table = "\n".join([
        f"Table cases in all: **{total}** (`python3 scripts/validation_coverage.py`).", "",
        "| module | kind | invalid | update | status | valid | all |", "|---|---|---|---|---|---|---|", *rows])
    doc = DOC.read_text()
    head, rest = doc.split(BEGIN)
    _, tail = rest.split(END)
    DOC.write_text(f"{head}{BEGIN}\n{table}\n{END}{tail}")
    print(f"{total} cases")


if __name__ == "__main__":
    main()
