"""Turn a CustomResourceDefinition into the JSON Schema that ``check-jsonschema`` validates with.

Usage: python deploy/k8s/schemas/vendor_crds.py CRD.yaml VERSION OUT.json [SOURCE]

The schema is the CRD version's ``openAPIV3Schema`` with two changes that make an offline check
as strict as ``kubectl apply --validate=strict`` against a real API server:

* every object that lists ``properties`` (and does not carry
  ``x-kubernetes-preserve-unknown-fields``) gets ``additionalProperties: false``, so a misspelt
  field is an error instead of being pruned silently;
* ``apiVersion`` and ``kind`` are pinned to the CRD's group/version and kind, and ``metadata``
  requires a ``name``.

Descriptions are dropped (they are most of the bytes and no part of validation).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml


def strict(node: Any) -> Any:
    if isinstance(node, dict):
        out = {k: strict(v) for k, v in node.items() if k != "description"}
        if ("properties" in out and "additionalProperties" not in out
                and not out.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        return [strict(v) for v in node]
    return node


def convert(crd: dict[str, Any], version: str, source: str) -> dict[str, Any]:
    spec = crd["spec"]
    (ver,) = [v for v in spec["versions"] if v["name"] == version]
    schema = strict(ver["schema"]["openAPIV3Schema"])
    props = schema.setdefault("properties", {})
    props["apiVersion"] = {"type": "string", "const": f"{spec['group']}/{version}"}
    props["kind"] = {"type": "string", "const": spec["names"]["kind"]}
    props["metadata"] = {"type": "object", "required": ["name"],
                         "properties": {"name": {"type": "string", "minLength": 1}}}
    schema["required"] = sorted({*schema.get("required", ()), "apiVersion", "kind", "metadata",
                                 "spec"})
    return {"$schema": "http://json-schema.org/draft-07/schema#",
            "$comment": f"{spec['names']['kind']} {spec['group']}/{version} from {source}; "
                        "Apache-2.0 (see deploy/k8s/schemas/README.md); strict: "
                        "additionalProperties false (vendor_crds.py)",
            **schema}


def main(argv: list[str]) -> int:
    src, version, out = argv[1], argv[2], Path(argv[3])
    source = argv[4] if len(argv) > 4 else src
    crd = yaml.safe_load(Path(src).read_text())
    out.write_text(json.dumps(convert(crd, version, source), separators=(",", ":"),
                              sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
