"""Test the validity of all DAGs. **USED BY DEV PARSE COMMAND DO NOT EDIT**"""

import logging
import os
from contextlib import contextmanager

import pytest
from airflow.dag_processing.dagbag import BundleDagBag

from devplatform.config import bundle_config

# The scaffold parses one dags/ folder; this project has one bundle per domain (team).
BUNDLES = [(b["name"], b["kwargs"]["path"]) for b in bundle_config()]


@contextmanager
def suppress_logging(namespace):
    logger = logging.getLogger(namespace)
    old_value = logger.disabled
    logger.disabled = True
    try:
        yield
    finally:
        logger.disabled = old_value


def get_import_errors():
    """Generate a tuple for import errors in the dag bags."""
    out = [(None, None)]
    with suppress_logging("airflow"):
        for name, path in BUNDLES:
            dag_bag = BundleDagBag(dag_folder=path, bundle_path=path, bundle_name=name)

            def strip_path_prefix(p):
                return os.path.relpath(p, os.environ.get("AIRFLOW_HOME", "."))

            out += [(strip_path_prefix(k), v.strip()) for k, v in dag_bag.import_errors.items()]
    return out


@pytest.mark.parametrize("rel_path,rv", get_import_errors(), ids=[x[0] for x in get_import_errors()])
def test_file_imports(rel_path, rv):
    """Test for import errors on a file"""
    if rel_path and rv:
        raise Exception(f"{rel_path} failed to import with message \n {rv}")
