"""Only what pyproject.toml cannot say: compile the gettext catalogs (.po -> .mo) while building.

The .mo files are not kept in git. A wheel (`pip install .`) gets them in its build folder; an
editable install (`pip install -e .`) gets them beside the .po files, where the checkout reads them.
"""
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
CATALOGS = HERE / "screening" / "translations"


class BuildPyWithCatalogs(build_py):
    """build_py, then every screening/translations/<lang>/LC_MESSAGES/messages.po compiled to .mo."""

    def run(self):
        super().run()
        from babel.messages.mofile import write_mo
        from babel.messages.pofile import read_po

        root = CATALOGS if self.editable_mode else Path(self.build_lib) / "screening" / "translations"
        for po in sorted(CATALOGS.glob("*/LC_MESSAGES/messages.po")):
            mo = root / po.relative_to(CATALOGS).with_suffix(".mo")
            mo.parent.mkdir(parents=True, exist_ok=True)
            with po.open("rb") as f:
                catalog = read_po(f, locale=po.parent.parent.name)
            with mo.open("wb") as out:
                write_mo(out, catalog)


setup(cmdclass={"build_py": BuildPyWithCatalogs})
