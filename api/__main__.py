"""`python -m aistack.api [DIR]`: write the generated CRD (default: ./crds)."""

from __future__ import annotations

import sys
from pathlib import Path

from aistack.api.crd import CRD_FILE, crd_yaml


def main(argv: list[str]) -> int:
    target = Path(argv[0] if argv else "crds")
    target.mkdir(parents=True, exist_ok=True)
    path = target / CRD_FILE
    path.write_text(crd_yaml(), encoding="utf-8")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
