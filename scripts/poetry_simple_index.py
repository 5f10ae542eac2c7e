"""Run Poetry with package metadata read from the standard simple index only.

Poetry reads each release's metadata from PyPI's per-release JSON API
(``/pypi/<name>/<version>/json``). Registry mirrors and caching proxies often serve
only the standard simple index (PEP 503/691) with core metadata files (PEP 658), and
there Poetry fails with "Package ... not found". This launcher makes Poetry's PyPI
repository read releases the way its own legacy-index repository does: versions,
files and hashes from the simple index, dependencies from the core metadata file.
The lock file is identical either way, because the files and hashes are the same.
"""

from __future__ import annotations

import sys
from typing import Any

from poetry.console.application import main
from poetry.core.packages.package import Package
from poetry.inspection.info import PackageInfo
from poetry.repositories.exceptions import PackageNotFoundError
from poetry.repositories.pypi_repository import PyPiRepository


def _get_release_info(self: PyPiRepository, name: Any, version: Any) -> dict[str, Any]:
    page = self.get_page(name)
    info = PackageInfo(
        name=name,
        version=version.text,
        summary="",
        requires_dist=[],
        requires_python=None,
        files=[],
        yanked=page.yanked(name, version),
        cache_version=str(self.CACHE_VERSION),
    )
    return self._links_to_data(list(page.links_for_version(name, version)), info)


def _find_links_for_package(self: PyPiRepository, package: Package) -> list[Any]:
    try:
        page = self.get_page(package.name)
    except PackageNotFoundError:
        return []
    return list(page.links_for_version(package.name, package.version))


PyPiRepository._get_release_info = _get_release_info  # type: ignore[method-assign]
PyPiRepository.find_links_for_package = _find_links_for_package  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(main())
