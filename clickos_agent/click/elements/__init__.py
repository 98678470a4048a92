"""The element catalog: importing this package registers every element class.

Each module here defines elements with ``@element_class``; all modules are
imported so that ``clickos_agent.click.element.ELEMENTS`` is complete.
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
