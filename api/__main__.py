"""`python -m aistack.api`: write the generated CRD (crds/) and API reference (docs/)."""

from __future__ import annotations

import sys
from pathlib import Path

from aistack.api.crd import CRD_FILE, crd_yaml
from aistack.api.reference import REFERENCE_FILE, build_reference


def main(argv: list[str]) -> int:
    root = Path(argv[0] if argv else ".")
    for path, text in ((root / "crds" / CRD_FILE, crd_yaml()),
                       (root / "docs" / REFERENCE_FILE, build_reference() + "\n")):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
