# Sourced by the other scripts: installs what fastapi1 needs (scripts/install.sh: from nothing
# but Python 3.11 or 3.12 and the package index; quick when nothing changed), then works
# from the repository root, where `python -m fastapi1...` finds the package.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/install.sh"
cd "$ROOT"
