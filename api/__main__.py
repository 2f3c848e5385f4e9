"""`python -m aistack.api`: write the generated CRD (crds/) and API reference (docs/)."""

from __future__ import annotations

import sys
from pathlib import Path

from aistack.api.crd import CRD_FILE, crd_yaml
from aistack.api.generated import write_generated
from aistack.api.reference import REFERENCE_FILE, build_reference


def main(argv: list[str]) -> int:
    root = Path(argv[0] if argv else ".")
    write_generated({root / "crds" / CRD_FILE: crd_yaml(),
                     root / "docs" / REFERENCE_FILE: build_reference() + "\n"})
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
