"""Released datasets in: one importer per dataset, registered like the feature extractors.

``evoke import FORMAT SOURCE --out DIR`` turns a dataset as its authors
released it into a manifest, evoke's own label tables and a ready config (see
:mod:`evoke.datasets.base`). Importing this package imports every importer
module, so :data:`IMPORTERS` is complete.
"""

import importlib

from evoke.datasets.base import (  # noqa: F401
    IMPORTERS,
    DatasetError,
    DatasetImporter,
    ImportResult,
    get_importer,
    register_importer,
    run_import,
)

# one module per released dataset; each registers its importer on import
IMPORTER_MODULES = ["vce", "v2v", "eev", "liris_accede", "deap", "cognimuse"]

for _name in IMPORTER_MODULES:
    importlib.import_module(f"evoke.datasets.{_name}")
